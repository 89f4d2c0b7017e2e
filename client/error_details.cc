#include "client/error_details.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/types/optional.h"
#include "google/rpc/error_details.pb.h"

namespace copilot::client {
namespace {

constexpr char kHttpStatusKey[] = "http_status";

absl::StatusCode ToAbslCode(grpc::StatusCode code) {
  const int number = static_cast<int>(code);
  // gRPC's codes and absl's canonical codes share their numbers 0..16.
  if (number < 0 || number > static_cast<int>(absl::StatusCode::kUnauthenticated)) {
    return absl::StatusCode::kUnknown;
  }
  return static_cast<absl::StatusCode>(number);
}

absl::Duration FromProtoDuration(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

ErrorDetails ExtractDetails(const google::rpc::Status& rpc) {
  ErrorDetails out;
  for (const google::protobuf::Any& any : rpc.details()) {
    if (google::rpc::ErrorInfo info; any.UnpackTo(&info)) {
      out.reason = info.reason();
      out.domain = info.domain();
      for (const auto& [key, value] : info.metadata()) out.metadata[key] = value;
      if (auto it = out.metadata.find(kHttpStatusKey); it != out.metadata.end()) {
        if (int http = 0; absl::SimpleAtoi(it->second, &http)) out.http_status = http;
      }
    } else if (google::rpc::RetryInfo retry; any.UnpackTo(&retry)) {
      out.retry_delay = FromProtoDuration(retry.retry_delay());
    } else if (google::rpc::BadRequest bad; any.UnpackTo(&bad)) {
      for (const auto& v : bad.field_violations()) {
        out.field_violations.push_back({v.field(), v.description()});
      }
    } else if (google::rpc::QuotaFailure quota; any.UnpackTo(&quota)) {
      for (const auto& v : quota.violations()) {
        out.quota_violations.push_back({v.subject(), v.description()});
      }
    } else if (google::rpc::PreconditionFailure pre; any.UnpackTo(&pre)) {
      for (const auto& v : pre.violations()) {
        out.precondition_violations.push_back({v.type(), v.subject(), v.description()});
      }
    } else if (google::rpc::RequestInfo request; any.UnpackTo(&request)) {
      out.request_id = request.request_id();
    }
    // Other detail types (Help, DebugInfo, ...) stay in the payload only.
  }
  return out;
}

// "a: b" or just "a" when there is no description.
std::string SubjectAndDescription(const std::string& subject, const std::string& description) {
  if (description.empty()) return subject;
  if (subject.empty()) return description;
  return absl::StrCat(subject, ": ", description);
}

// The bracketed summary, in a fixed order whatever the order of the details.
std::string Summarize(const ErrorDetails& d) {
  std::vector<std::string> parts;
  if (!d.reason.empty()) parts.push_back(absl::StrCat("reason: ", d.reason));
  for (const auto& [key, value] : d.metadata) {
    if (key == kHttpStatusKey && d.http_status.has_value()) {
      parts.push_back(absl::StrCat("upstream HTTP ", *d.http_status));
    } else {
      parts.push_back(absl::StrCat(key, "=", value));
    }
  }
  if (d.retry_delay.has_value()) {
    parts.push_back(absl::StrCat("retry after ", absl::FormatDuration(*d.retry_delay)));
  }
  for (const QuotaViolation& v : d.quota_violations) {
    parts.push_back(absl::StrCat("quota: ", SubjectAndDescription(v.subject, v.description)));
  }
  for (const FieldViolation& v : d.field_violations) {
    parts.push_back(absl::StrCat("field ", SubjectAndDescription(v.field, v.description)));
  }
  for (const PreconditionViolation& v : d.precondition_violations) {
    std::string subject = v.type.empty() ? v.subject : absl::StrCat(v.type, " ", v.subject);
    parts.push_back(absl::StrCat("precondition ", SubjectAndDescription(subject, v.description)));
  }
  if (!d.request_id.empty()) parts.push_back(absl::StrCat("request id ", d.request_id));
  return absl::StrJoin(parts, "; ");
}

}  // namespace

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  const absl::StatusCode code = ToAbslCode(status.error_code());
  std::string message = status.error_message();
  google::rpc::Status rpc;
  std::string summary;
  if (!status.error_details().empty()) {
    if (rpc.ParseFromString(status.error_details())) {
      summary = Summarize(ExtractDetails(rpc));
    } else {
      rpc.Clear();
      summary = "unreadable error details";
    }
  }
  if (!summary.empty()) absl::StrAppend(&message, message.empty() ? "" : " ", "[", summary, "]");
  // The trailer's code and message are authoritative (gRPC's convention); the
  // details travel with them.
  rpc.set_code(static_cast<int>(code));
  rpc.set_message(status.error_message());
  absl::Status result(code, message);
  result.SetPayload(kRpcStatusPayloadUrl, absl::Cord(rpc.SerializeAsString()));
  return result;
}

ErrorDetails GetErrorDetails(const absl::Status& status) {
  if (status.ok()) return {};
  absl::optional<absl::Cord> payload = status.GetPayload(kRpcStatusPayloadUrl);
  if (!payload.has_value()) return {};
  google::rpc::Status rpc;
  if (!rpc.ParseFromString(std::string(*payload))) return {};
  return ExtractDetails(rpc);
}

google::rpc::Status ToRpcStatus(const absl::Status& status) {
  google::rpc::Status rpc;
  if (status.ok()) return rpc;
  if (absl::optional<absl::Cord> payload = status.GetPayload(kRpcStatusPayloadUrl);
      payload.has_value() && rpc.ParseFromString(std::string(*payload))) {
    return rpc;
  }
  rpc.Clear();
  rpc.set_code(static_cast<int>(status.code()));
  rpc.set_message(std::string(status.message()));
  return rpc;
}

std::string FormatError(const absl::Status& status) {
  if (status.ok()) return "OK";
  return absl::StrCat(absl::StatusCodeToString(status.code()), ": ", status.message());
}

}  // namespace copilot::client
