#include "server/common/errors.h"

#include <cstring>
#include <string>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/any.pb.h"
#include "google/protobuf/duration.pb.h"

namespace copilot::gateway {
namespace {

constexpr absl::string_view kTypePrefix = "type.googleapis.com/";

template <typename Message>
std::string TypeUrl() {
  return std::string(kTypePrefix) + Message::descriptor()->full_name();
}

template <typename Message>
std::optional<Message> GetDetail(const absl::Status& status) {
  auto payload = status.GetPayload(TypeUrl<Message>());
  if (!payload.has_value()) return std::nullopt;
  Message message;
  if (!message.ParseFromString(std::string(*payload))) return std::nullopt;
  return message;
}

template <typename Message>
void SetDetail(absl::Status& status, const Message& message) {
  if (status.ok()) return;  // OK carries no payloads.
  status.SetPayload(TypeUrl<Message>(), absl::Cord(message.SerializeAsString()));
}

}  // namespace

std::string TruncateUtf8(absl::string_view text, std::size_t max_bytes) {
  if (text.size() <= max_bytes) return std::string(text);
  constexpr absl::string_view kEllipsis = "...";
  std::size_t keep = max_bytes > kEllipsis.size() ? max_bytes - kEllipsis.size() : 0;
  // Back up to the start of a UTF-8 sequence (continuation bytes are 10xxxxxx).
  while (keep > 0 && (static_cast<unsigned char>(text[keep]) & 0xC0) == 0x80) --keep;
  return absl::StrCat(text.substr(0, keep), kEllipsis);
}

std::string ErrnoText(int error_number) {
  char buffer[128];
  // The GNU strerror_r: returns the text, in `buffer` or a static string.
  return strerror_r(error_number, buffer, sizeof(buffer));
}

absl::Status CancelledByCaller() {
  return MakeError(absl::StatusCode::kCancelled, "cancelled by the caller", "cancelled_by_caller");
}

absl::Status MakeError(absl::StatusCode code, absl::string_view message, absl::string_view reason,
                       const std::map<std::string, std::string>& metadata) {
  absl::Status status(code, message);
  google::rpc::ErrorInfo info;
  info.set_reason(std::string(reason));
  info.set_domain(std::string(kErrorDomain));
  for (const auto& [key, value] : metadata) (*info.mutable_metadata())[key] = value;
  SetDetail(status, info);
  return status;
}

void SetRetryDelay(absl::Status& status, absl::Duration delay) {
  google::rpc::RetryInfo retry;
  const int64_t nanos = absl::ToInt64Nanoseconds(delay);
  retry.mutable_retry_delay()->set_seconds(nanos / 1000000000);
  retry.mutable_retry_delay()->set_nanos(static_cast<int32_t>(nanos % 1000000000));
  SetDetail(status, retry);
}

void AddFieldViolation(absl::Status& status, absl::string_view field,
                       absl::string_view description) {
  google::rpc::BadRequest bad = GetBadRequest(status).value_or(google::rpc::BadRequest());
  if (bad.field_violations_size() >= kMaxViolations) return;
  auto* violation = bad.add_field_violations();
  violation->set_field(TruncateUtf8(field, kMaxViolationTextBytes));
  violation->set_description(TruncateUtf8(description, kMaxViolationTextBytes));
  SetDetail(status, bad);
}

void AddQuotaViolation(absl::Status& status, absl::string_view subject,
                       absl::string_view description) {
  google::rpc::QuotaFailure quota = GetQuotaFailure(status).value_or(google::rpc::QuotaFailure());
  if (quota.violations_size() >= kMaxViolations) return;
  auto* violation = quota.add_violations();
  violation->set_subject(TruncateUtf8(subject, kMaxViolationTextBytes));
  violation->set_description(TruncateUtf8(description, kMaxViolationTextBytes));
  SetDetail(status, quota);
}

void SetErrorMetadataIfAbsent(absl::Status& status, absl::string_view key,
                              absl::string_view value) {
  if (status.ok()) return;
  google::rpc::ErrorInfo info = GetErrorInfo(status).value_or(google::rpc::ErrorInfo());
  if (info.reason().empty()) {
    info.set_reason(absl::StatusCodeToString(status.code()));
    info.set_domain(std::string(kErrorDomain));
  }
  auto& metadata = *info.mutable_metadata();
  if (metadata.contains(std::string(key))) return;
  metadata[std::string(key)] = std::string(value);
  SetDetail(status, info);
}

// Not a type URL of any message: ToRpcStatus never packs it.
constexpr absl::string_view kInternalDetailUrl = "copilot-gateway/internal-detail";

void SetInternalDetail(absl::Status& status, absl::string_view detail) {
  if (status.ok()) return;
  status.SetPayload(kInternalDetailUrl, absl::Cord(TruncateUtf8(detail, kMaxInternalDetailBytes)));
}

std::string GetInternalDetail(const absl::Status& status) {
  auto payload = status.GetPayload(kInternalDetailUrl);
  return payload.has_value() ? std::string(*payload) : std::string();
}

std::optional<google::rpc::ErrorInfo> GetErrorInfo(const absl::Status& status) {
  return GetDetail<google::rpc::ErrorInfo>(status);
}
std::optional<google::rpc::RetryInfo> GetRetryInfo(const absl::Status& status) {
  return GetDetail<google::rpc::RetryInfo>(status);
}
std::optional<google::rpc::BadRequest> GetBadRequest(const absl::Status& status) {
  return GetDetail<google::rpc::BadRequest>(status);
}
std::optional<google::rpc::QuotaFailure> GetQuotaFailure(const absl::Status& status) {
  return GetDetail<google::rpc::QuotaFailure>(status);
}

bool MayHaveReachedUpstream(const absl::Status& status) {
  const std::optional<google::rpc::ErrorInfo> info = GetErrorInfo(status);
  if (!info.has_value()) return false;
  const auto sent = info->metadata().find("request_sent");
  return sent != info->metadata().end() && sent->second == "true";
}

google::rpc::Status ToRpcStatus(const absl::Status& status) {
  google::rpc::Status rpc;
  rpc.set_code(static_cast<int>(status.code()));
  rpc.set_message(TruncateUtf8(status.message(), kMaxErrorMessageBytes));
  // Fixed order, so the bytes on the wire are deterministic.
  if (auto info = GetErrorInfo(status)) rpc.add_details()->PackFrom(*info);
  if (auto retry = GetRetryInfo(status)) rpc.add_details()->PackFrom(*retry);
  if (auto bad = GetBadRequest(status)) rpc.add_details()->PackFrom(*bad);
  if (auto quota = GetQuotaFailure(status)) rpc.add_details()->PackFrom(*quota);
  return rpc;
}

}  // namespace copilot::gateway
