// What every fuzz target shares: a property check that aborts (so libFuzzer keeps the input as a
// crash and prints the stack), and the bounds every error the gateway returns must keep.
#ifndef COPILOT_TESTS_FUZZ_FUZZ_SUPPORT_H_
#define COPILOT_TESTS_FUZZ_FUZZ_SUPPORT_H_

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "server/common/errors.h"

// Aborts with `what` when `condition` is false: a broken property is a crash like any other.
#define FUZZ_CHECK(condition, what)                                                     \
  do {                                                                                  \
    if (!(condition)) {                                                                 \
      std::fprintf(stderr, "FUZZ_CHECK failed at %s:%d: %s (%s)\n", __FILE__, __LINE__, \
                   #condition, std::string(what).c_str());                              \
      std::abort();                                                                     \
    }                                                                                   \
  } while (false)

namespace copilot::gateway::fuzz {

// gRPC clients refuse trailers over 8 KiB by default; the message travels as grpc-message
// (percent-encoded: up to 3 bytes per byte) and again inside grpc-status-details-bin (base64:
// 4 bytes per 3). What one error may take of that, leaving room for the other trailers.
inline constexpr std::size_t kMaxErrorTrailerBytes = 7 * 1024;

// The trailer bytes `rpc` takes on the wire at most (grpc-message plus
// grpc-status-details-bin).
inline std::size_t TrailerBytes(const google::rpc::Status& rpc) {
  const std::size_t details = rpc.ByteSizeLong();
  return 3 * rpc.message().size() + (details + 2) / 3 * 4;
}

// An error status as the service adapter will send it: not OK, its google.rpc.Status serializes
// and parses back, the message and every violation keep errors.h's bounds, and the whole fits
// in the trailers. `what` names the call in the failure message.
inline void CheckErrorIsBounded(const absl::Status& status, absl::string_view what) {
  FUZZ_CHECK(!status.ok(), what);
  const google::rpc::Status rpc = ToRpcStatus(status);
  FUZZ_CHECK(rpc.code() == static_cast<int>(status.code()), what);
  FUZZ_CHECK(rpc.message().size() <= kMaxErrorMessageBytes, what);
  std::string bytes;
  FUZZ_CHECK(rpc.SerializeToString(&bytes), what);
  google::rpc::Status back;
  FUZZ_CHECK(back.ParseFromString(bytes), std::string(what) + ": details do not parse back");
  for (const google::protobuf::Any& any : rpc.details()) {
    google::rpc::BadRequest bad;
    if (any.UnpackTo(&bad)) {
      FUZZ_CHECK(bad.field_violations_size() <= kMaxViolations, what);
      for (const auto& violation : bad.field_violations()) {
        FUZZ_CHECK(violation.field().size() <= kMaxViolationTextBytes, what);
        FUZZ_CHECK(violation.description().size() <= kMaxViolationTextBytes, what);
      }
    }
    google::rpc::QuotaFailure quota;
    if (any.UnpackTo(&quota)) {
      FUZZ_CHECK(quota.violations_size() <= kMaxViolations, what);
      for (const auto& violation : quota.violations()) {
        FUZZ_CHECK(violation.subject().size() <= kMaxViolationTextBytes, what);
        FUZZ_CHECK(violation.description().size() <= kMaxViolationTextBytes, what);
      }
    }
    google::rpc::RetryInfo retry;
    if (any.UnpackTo(&retry)) {
      FUZZ_CHECK(retry.retry_delay().seconds() >= 0, what);
      FUZZ_CHECK(retry.retry_delay().nanos() >= 0 && retry.retry_delay().nanos() < 1000000000,
                 what);
    }
  }
  FUZZ_CHECK(TrailerBytes(rpc) <= kMaxErrorTrailerBytes,
             std::string(what) + ": the error does not fit in gRPC's trailers (" +
                 std::to_string(TrailerBytes(rpc)) + " bytes)");
}

// The ErrorInfo reason of `status`, or "" without one.
inline std::string Reason(const absl::Status& status) {
  auto info = GetErrorInfo(status);
  return info.has_value() ? info->reason() : "";
}

}  // namespace copilot::gateway::fuzz

#endif  // COPILOT_TESTS_FUZZ_FUZZ_SUPPORT_H_
