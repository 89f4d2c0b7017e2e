// Errors as values, with the google.rpc details they will carry to the caller.
//
// Every layer below the service adapter reports failures as absl::Status. The details a caller
// sees (google.rpc.ErrorInfo, RetryInfo, BadRequest, QuotaFailure) ride on the status as
// payloads keyed by their type URL, holding the serialized message. The service adapter turns
// them into `grpc-status-details-bin` with ToRpcStatus(): that is the one place details are
// read, and the helpers below are the one place they are written.
#ifndef COPILOT_GATEWAY_SERVER_COMMON_ERRORS_H_
#define COPILOT_GATEWAY_SERVER_COMMON_ERRORS_H_

#include <cstddef>
#include <map>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"

namespace copilot::gateway {

// ErrorInfo.domain of every error the gateway returns.
inline constexpr absl::string_view kErrorDomain = "copilot-gateway";

// Bounds on what one error carries, so that it always fits in gRPC's trailers (clients refuse
// metadata over 8 KiB by default, and the message travels twice: grpc-message and the details).
// Longer texts are cut on a UTF-8 boundary; violations past the limit are dropped.
inline constexpr std::size_t kMaxErrorMessageBytes = 512;
inline constexpr std::size_t kMaxViolationTextBytes = 160;
inline constexpr int kMaxViolations = 8;

// `text` cut to at most `max_bytes` without splitting a UTF-8 sequence; "..." marks a cut.
std::string TruncateUtf8(absl::string_view text, std::size_t max_bytes);

// A status with an ErrorInfo: `reason` is the upstream error_code or one of ours (UPPER or
// lower snake case as the source has it), `metadata` e.g. {"http_status": "404"}.
absl::Status MakeError(absl::StatusCode code, absl::string_view message, absl::string_view reason,
                       const std::map<std::string, std::string>& metadata = {});

// The text of an errno value, for log lines and internal details (thread-safe, unlike
// std::strerror).
std::string ErrnoText(int error_number);

// CANCELLED, reason "cancelled_by_caller": the caller cancelled the call or its deadline passed.
// Every layer that ends a call for that reason uses this one status.
absl::Status CancelledByCaller();

// Adds (or replaces) a RetryInfo saying when a retry can succeed.
void SetRetryDelay(absl::Status& status, absl::Duration delay);
// Appends a BadRequest field violation; `field` is a path like "message.content".
void AddFieldViolation(absl::Status& status, absl::string_view field,
                       absl::string_view description);
// Appends a QuotaFailure violation naming the limit that was hit.
void AddQuotaViolation(absl::Status& status, absl::string_view subject,
                       absl::string_view description);

// Sets ErrorInfo.metadata[key] = value unless the status has no ErrorInfo (one is added) or the
// key is already there. OK statuses are left alone.
void SetErrorMetadataIfAbsent(absl::Status& status, absl::string_view key, absl::string_view value);

// Text for operators only (e.g. libcurl's "Failed to connect to 10.0.0.7 port 443 after 5 ms"):
// rides on the status as a payload that ToRpcStatus never packs, so callers never see it, while
// the call's log line can (the transport decorator copies it onto the call's trace). Cut to
// kMaxInternalDetailBytes. OK statuses are left alone.
inline constexpr std::size_t kMaxInternalDetailBytes = 256;
void SetInternalDetail(absl::Status& status, absl::string_view detail);
// The detail set above; empty when none.
std::string GetInternalDetail(const absl::Status& status);

// Readers, for tests and decorators (e.g. retry): absent when the status has no such detail.
std::optional<google::rpc::ErrorInfo> GetErrorInfo(const absl::Status& status);
std::optional<google::rpc::RetryInfo> GetRetryInfo(const absl::Status& status);
std::optional<google::rpc::BadRequest> GetBadRequest(const absl::Status& status);
std::optional<google::rpc::QuotaFailure> GetQuotaFailure(const absl::Status& status);

// Whether a failed upstream call may have been carried out by the upstream: its transport says a
// byte of the request was sent (ErrorInfo metadata "request_sent": "true",
// server/transport/http_transport.h), then the call failed, was cancelled or ran out of time. An
// answer of the upstream (any HTTP status) and a failure before anything was sent are not.
bool MayHaveReachedUpstream(const absl::Status& status);

// The google.rpc.Status for `status`: code, message (cut to kMaxErrorMessageBytes) and every
// detail above packed as Any.
google::rpc::Status ToRpcStatus(const absl::Status& status);

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_COMMON_ERRORS_H_
