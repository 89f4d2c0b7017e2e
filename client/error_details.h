// The client library's one grpc::Status -> absl::Status conversion, and the
// way back from an absl::Status to the structured google.rpc details.
//
// The gateway reports errors as AIP-193 describes (see the header comment of
// proto/copilot/v1/copilot_service.proto): a google.rpc.Status in the
// `grpc-status-details-bin` trailer, with ErrorInfo, RetryInfo, BadRequest and
// QuotaFailure among its details. FromGrpcStatus() keeps the status code and
// appends a readable summary of those details to the message, e.g.
//
//   NOT_FOUND: Thread not found [reason: thread_not_found; upstream HTTP 404]
//   RESOURCE_EXHAUSTED: Too many requests [reason: rate_limited; retry after 2s;
//       quota: tenant:acme: answer-generation rate]
//   INVALID_ARGUMENT: Bad request [field thread_id: must be a UUID]
//
// and attaches the whole error as a google.rpc.Status payload (type URL
// kRpcStatusPayloadUrl), so programs branch on GetErrorDetails() instead of
// parsing the message.
#ifndef COPILOT_CLIENT_ERROR_DETAILS_H_
#define COPILOT_CLIENT_ERROR_DETAILS_H_

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "google/rpc/status.pb.h"
#include "grpcpp/support/status.h"

namespace copilot::client {

// Type URL under which FromGrpcStatus() stores the google.rpc.Status payload.
inline constexpr char kRpcStatusPayloadUrl[] = "type.googleapis.com/google.rpc.Status";

// One entry of google.rpc.BadRequest.
struct FieldViolation {
  std::string field;
  std::string description;

  friend bool operator==(const FieldViolation&, const FieldViolation&) = default;
};

// One entry of google.rpc.QuotaFailure.
struct QuotaViolation {
  std::string subject;
  std::string description;

  friend bool operator==(const QuotaViolation&, const QuotaViolation&) = default;
};

// One entry of google.rpc.PreconditionFailure.
struct PreconditionViolation {
  std::string type;
  std::string subject;
  std::string description;

  friend bool operator==(const PreconditionViolation&, const PreconditionViolation&) = default;
};

// The structured details of an error, flattened. Fields are empty when the
// error did not carry the corresponding detail. Plain data; not synchronized.
struct ErrorDetails {
  // google.rpc.ErrorInfo.
  std::string reason;
  std::string domain;
  std::map<std::string, std::string> metadata;
  // ErrorInfo metadata `http_status` as a number, when present and numeric:
  // the upstream HTTP status behind the error.
  std::optional<int> http_status;
  // google.rpc.RetryInfo: how long to wait before retrying.
  std::optional<absl::Duration> retry_delay;
  // google.rpc.BadRequest.
  std::vector<FieldViolation> field_violations;
  // google.rpc.QuotaFailure.
  std::vector<QuotaViolation> quota_violations;
  // google.rpc.PreconditionFailure.
  std::vector<PreconditionViolation> precondition_violations;
  // google.rpc.RequestInfo: the server's ID of the failed request, to quote
  // when asking for support.
  std::string request_id;
};

// Converts the status of a finished call. The code is kept (gRPC and absl use
// the same numbers; anything outside 0..16 becomes UNKNOWN). When the call
// carried a google.rpc.Status in error_details(), a readable summary of its
// details is appended to the message in brackets; unreadable details are
// noted as "[unreadable error details]" rather than failing. Every non-OK
// result carries a google.rpc.Status payload whose code and message are the
// call's own and whose details are the ones the server sent (if readable).
absl::Status FromGrpcStatus(const grpc::Status& status);

// The details carried by `status` (see FromGrpcStatus). Empty for OK and for
// statuses without a payload, e.g. ones created locally.
ErrorDetails GetErrorDetails(const absl::Status& status);

// The error as a google.rpc.Status: the payload stored by FromGrpcStatus, or,
// for a status without one, just its code and message. Code 0 for OK.
google::rpc::Status ToRpcStatus(const absl::Status& status);

// "NOT_FOUND: Thread not found [...]": the code's name and the message,
// without the payloads that absl::Status::ToString() would print.
std::string FormatError(const absl::Status& status);

}  // namespace copilot::client

#endif  // COPILOT_CLIENT_ERROR_DETAILS_H_
