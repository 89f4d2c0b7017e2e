#include "server/upstream/http_status_table.h"

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/common/errors.h"
#include "server/common/secrets.h"
#include "server/transport/retry_after.h"
#include "server/upstream/bounded_json.h"

namespace copilot::gateway {
namespace {

// One validation problem from a `detail` array.
struct Violation {
  std::string field;
  std::string description;
};

// What the table reads from an error body. Every field is optional.
struct ErrorBody {
  bool empty = true;      // No bytes, or only whitespace.
  bool parseable = true;  // JSON (any JSON value; only objects carry fields).
  std::string error_code;
  std::string detail;   // `detail` when it is a string.
  std::string message;  // `message` when it is a string.
  bool has_violations = false;
  std::vector<Violation> violations;
};

// "loc": ["body", "messages", 0, "content"] -> "messages.0.content".
std::string FieldFromLoc(const JsonValue& loc) {
  if (loc.IsString()) return std::string(JsonText(loc));
  if (!loc.IsArray()) return "";
  std::vector<std::string> parts;
  for (const JsonValue& part : loc.GetArray()) {
    if (part.IsString()) {
      parts.emplace_back(JsonText(part));
    } else if (part.IsUint64()) {
      parts.push_back(absl::StrCat(part.GetUint64()));
    } else if (part.IsInt64()) {
      parts.push_back(absl::StrCat(part.GetInt64()));
    }
  }
  if (!parts.empty() && (parts.front() == "body" || parts.front() == "path" ||
                         parts.front() == "query" || parts.front() == "header")) {
    parts.erase(parts.begin());
  }
  return absl::StrJoin(parts, ".");
}

// `secrets` are redacted from every string taken from the body, after JSON decoding (an escaped
// echo such as "PI\/123" decodes to the secret and is caught there).
ErrorBody ReadErrorBody(absl::string_view text, absl::Span<const std::string> secrets) {
  ErrorBody body;
  body.empty = absl::StripAsciiWhitespace(text).empty();
  if (body.empty) return body;
  // A body nested too deep to walk safely counts as unparseable.
  JsonDocument parsed;
  if (ParseUpstreamJson(text, parsed) != JsonRead::kOk) {
    body.parseable = false;
    return body;
  }
  if (!parsed.IsObject()) return body;
  body.error_code = RedactSecrets(JsonStringMember(parsed, "error_code"), secrets);
  body.detail = RedactSecrets(JsonStringMember(parsed, "detail"), secrets);
  body.message = RedactSecrets(JsonStringMember(parsed, "message"), secrets);
  if (const JsonValue* detail = JsonMember(parsed, "detail");
      detail != nullptr && detail->IsArray()) {
    body.has_violations = true;
    for (const JsonValue& item : detail->GetArray()) {
      if (!item.IsObject()) continue;
      Violation violation;
      if (const JsonValue* loc = JsonMember(item, "loc")) violation.field = FieldFromLoc(*loc);
      violation.description = JsonStringMember(item, "message");  // Custom (old) shape.
      if (violation.description.empty()) violation.description = JsonStringMember(item, "msg");
      if (violation.description.empty()) violation.description = "invalid value";
      violation.field = RedactSecrets(violation.field, secrets);
      violation.description = RedactSecrets(violation.description, secrets);
      body.violations.push_back(std::move(violation));
    }
  }
  return body;
}

// An upstream error_code becomes ErrorInfo.reason only when it looks like one: at most 63
// characters of [A-Za-z0-9_] (AIP-193's shape, in either case, as the upstream writes them).
constexpr std::size_t kMaxReasonBytes = 63;
constexpr std::size_t kMaxUpstreamErrorCodeBytes = 64;

bool IsUsableErrorCode(absl::string_view code) {
  return !code.empty() && code.size() <= kMaxReasonBytes &&
         std::all_of(code.begin(), code.end(), [](char c) {
           return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_';
         });
}

absl::StatusCode CodeForHttpStatus(int http_status) {
  switch (http_status) {
    case 400:
    case 422:
      return absl::StatusCode::kInvalidArgument;
    case 401:
      return absl::StatusCode::kInternal;
    case 403:
      return absl::StatusCode::kPermissionDenied;
    case 404:
      return absl::StatusCode::kNotFound;
    case 409:
      return absl::StatusCode::kAborted;
    case 429:
      return absl::StatusCode::kResourceExhausted;
    case 500:
      return absl::StatusCode::kInternal;
    case 502:
    case 503:
    case 504:
      return absl::StatusCode::kUnavailable;
    default:
      break;
  }
  if (http_status >= 400 && http_status < 500) return absl::StatusCode::kFailedPrecondition;
  return absl::StatusCode::kInternal;  // Other 5xx; 1xx and 3xx are not expected at all.
}

// The HTTP status the upstream answers a documented error_code with (haufe-api.md section 8),
// for error lines inside a 200 stream, which carry no status of their own; 500 when unknown.
int HttpStatusOfErrorCode(absl::string_view error_code) {
  static const auto* const kStatuses = new absl::flat_hash_map<std::string, int>({
      {"content_filter_error", 400},
      {"bad_request", 400},
      {"length_finish_reason_error", 400},
      {"thread_is_deactivated", 400},
      {"attachment_document_raised_an_error", 400},
      {"unauthorized", 401},
      {"permission_denied", 403},
      {"assistant_not_available", 403},
      {"attachment_access_forbidden", 403},
      {"assistant_not_found", 404},
      {"thread_not_found", 404},
      {"message_not_found", 404},
      {"resource_not_found", 404},
      {"tenant_not_found", 404},
      {"attachment_document_does_not_exist", 404},
      {"conflict_error", 409},
      {"conflict", 409},
      {"incorrect_stack_ending", 422},
      {"tool_message_has_no_matching_tool_call", 422},
      {"unprocessable_entity", 422},
      {"validation_error", 422},
      {"request_metadata_missing_or_incomplete", 422},
      {"message_content_empty", 422},
      {"attachment_not_unique", 422},
      {"attachment_url_invalid", 422},
      {"engine_does_not_support_streaming", 422},
      {"rate_limit_gateway", 429},
      {"rate_limit_error", 429},
      {"internal_service_error", 503},
      {"attachment_document_not_reachable", 503},
  });
  auto it = kStatuses->find(error_code);
  return it == kStatuses->end() ? 500 : it->second;
}

std::string QuotaDescription(absl::string_view error_code) {
  if (error_code == "rate_limit_gateway") return "upstream API gateway rate limit exceeded";
  if (error_code == "rate_limit_error") return "upstream model provider rate limit exceeded";
  if (error_code.empty()) return "upstream rate limit exceeded";
  return absl::StrCat("upstream rate limit exceeded (", error_code, ")");
}

std::string ValidationSummary(const std::vector<Violation>& violations) {
  if (violations.empty()) return "the upstream rejected the request as invalid";
  const Violation& first = violations.front();
  std::string text =
      absl::StrCat("the upstream rejected the request as invalid: ",
                   first.field.empty() ? "request" : first.field, ": ", first.description);
  if (violations.size() > 1) absl::StrAppend(&text, " (and ", violations.size() - 1, " more)");
  return text;
}

// `table_status` picks the row; `metadata` is what ErrorInfo reports. With `response_started`
// (an error line after part of a streamed answer) UNAVAILABLE becomes INTERNAL: the run has
// happened, and a caller told "retry" would run it again.
absl::Status Map(int table_status, const ErrorBody& body, absl::string_view retry_after,
                 absl::Time now, std::map<std::string, std::string> metadata,
                 bool response_started) {
  absl::StatusCode code = CodeForHttpStatus(table_status);
  std::string reason = body.error_code;
  if (!reason.empty() && !IsUsableErrorCode(reason)) {
    // Not a code (too long, or not an identifier): kept, cut, for operators, but never the
    // reason callers branch on (and never a header-sized blob in the trailers).
    metadata["upstream_error_code"] = TruncateUtf8(reason, kMaxUpstreamErrorCodeBytes);
    reason.clear();
  }

  if (!body.empty && !body.parseable) {
    // Something other than the API answered (a proxy, a load balancer): only the status line
    // can be trusted, and only where it says "try again".
    if (code != absl::StatusCode::kResourceExhausted && code != absl::StatusCode::kUnavailable) {
      code = absl::StatusCode::kInternal;
    }
    reason = "upstream_unparseable_body";
  } else if (table_status >= 400 && table_status < 500 && table_status != 401 &&
             table_status != 429 &&
             (reason == "thread_is_deactivated" || reason == "engine_does_not_support_streaming" ||
              reason == "request_metadata_missing_or_incomplete")) {
    // A 4xx whose body names one of these is a precondition, whatever 4xx carried it (a
    // soft-deleted thread may come as 400 or 404: haufe-api.md 4.2 [U]). Not a 401 (the
    // gateway's key was rejected) nor a 429 (retry later), which keep their rows: found by the
    // http_status fuzzer, a 401 naming thread_is_deactivated became FAILED_PRECONDITION.
    // request_metadata_missing_or_incomplete: the gateway builds meta_data (the licence), so
    // the caller cannot fix it by changing fields.
    code = absl::StatusCode::kFailedPrecondition;
  }
  if (reason.empty()) {
    reason = body.has_violations ? "upstream_validation_error"
                                 : absl::StrCat("UPSTREAM_HTTP_", table_status);
  }

  std::string message;
  if (table_status == 401) {
    // Never the upstream's text: the caller must not learn anything about our credentials.
    message =
        "the upstream rejected the gateway's API key (HTTP 401); this is a gateway "
        "configuration problem, not the caller's";
  } else if (code == absl::StatusCode::kFailedPrecondition &&
             reason == "request_metadata_missing_or_incomplete") {
    message = absl::StrCat(
        "the upstream requires request metadata the gateway did not send (check the tenant's "
        "licence configuration for this assistant)",
        body.detail.empty() ? "" : ": ", body.detail);
  } else if (!body.detail.empty()) {
    message = body.detail;
  } else if (!body.message.empty()) {
    message = body.message;
  } else if (body.has_violations) {
    message = ValidationSummary(body.violations);
  } else if (!body.empty && !body.parseable) {
    message =
        absl::StrCat("the upstream answered HTTP ", table_status, " with a body that is not JSON");
  } else {
    message = absl::StrCat("the upstream answered HTTP ", table_status);
  }

  if (response_started && code == absl::StatusCode::kUnavailable) {
    code = absl::StatusCode::kInternal;
  }
  absl::Status status = MakeError(code, message, reason, metadata);
  if (code == absl::StatusCode::kInvalidArgument) {
    for (const Violation& violation : body.violations) {
      AddFieldViolation(status, violation.field, violation.description);
    }
    // Without a `detail` array the upstream named no field: the request as a whole was refused.
    if (body.violations.empty()) AddFieldViolation(status, "request", message);
  }
  if (code == absl::StatusCode::kResourceExhausted) {
    SetRetryDelay(status, ParseRetryAfter(retry_after, now));
    AddQuotaViolation(status, "upstream", QuotaDescription(body.error_code));
  }
  return status;
}

}  // namespace

bool IsUpstreamRateLimit(const absl::Status& status) {
  if (status.code() != absl::StatusCode::kResourceExhausted) return false;
  const std::optional<google::rpc::ErrorInfo> info = GetErrorInfo(status);
  if (!info.has_value()) return false;
  const auto it = info->metadata().find("http_status");
  return it != info->metadata().end() && it->second == "429";
}

bool IsUpstreamThreadNotFound(const absl::Status& status) {
  if (status.code() != absl::StatusCode::kNotFound) return false;
  const std::optional<google::rpc::ErrorInfo> info = GetErrorInfo(status);
  return info.has_value() && info->reason() == "thread_not_found";
}

absl::Duration ParseRetryAfter(absl::string_view value, absl::Time now) {
  return ParseRetryAfterValue(value, now).value_or(kDefaultUpstreamRetryDelay);
}

absl::Status StatusFromHttpError(int http_status, absl::string_view body,
                                 absl::string_view retry_after, absl::Time now,
                                 absl::Span<const std::string> secrets) {
  return Map(http_status, ReadErrorBody(body, secrets), retry_after, now,
             {{"http_status", absl::StrCat(http_status)}}, /*response_started=*/false);
}

absl::Status StatusFromStreamErrorLine(absl::string_view line,
                                       absl::Span<const std::string> secrets) {
  const ErrorBody body = ReadErrorBody(line, secrets);
  return Map(HttpStatusOfErrorCode(body.error_code), body, /*retry_after=*/"", absl::UnixEpoch(),
             {{"http_status", "200"}, {"stream_error", "true"}}, /*response_started=*/true);
}

}  // namespace copilot::gateway
