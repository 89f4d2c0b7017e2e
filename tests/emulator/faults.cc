#include "tests/emulator/faults.h"

#include <array>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "tests/emulator/routes.h"

namespace copilot::emulator {
namespace {

using nlohmann::json;

constexpr std::array<std::pair<absl::string_view, FaultType>, 11> kTypes = {{
    {"latency", FaultType::kLatency},
    {"status", FaultType::kStatus},
    {"rate_limit", FaultType::kRateLimit},
    {"reset_before_headers", FaultType::kResetBeforeHeaders},
    {"reset_mid_body", FaultType::kResetMidBody},
    {"stall", FaultType::kStall},
    {"malformed_json", FaultType::kMalformedJson},
    {"truncated_ndjson", FaultType::kTruncatedNdjson},
    {"mid_stream_error", FaultType::kMidStreamError},
    {"oversized_body", FaultType::kOversizedBody},
    {"raw_body", FaultType::kRawBody},
}};

absl::Status FieldError(absl::string_view field, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat("fault rule: field '", field, "' ", problem));
}

// Reads an optional integer field into `out`; absent or null leaves `out` alone.
absl::Status ReadInt(const json& j, absl::string_view field, int64_t min, int64_t max,
                     std::optional<int64_t>& out) {
  auto it = j.find(std::string(field));
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_number_integer()) return FieldError(field, "must be an integer");
  int64_t value = it->get<int64_t>();
  if (value < min || value > max) {
    return FieldError(field, absl::StrCat("must be between ", min, " and ", max));
  }
  out = value;
  return absl::OkStatus();
}

absl::Status ReadString(const json& j, absl::string_view field, std::string& out) {
  auto it = j.find(std::string(field));
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_string()) return FieldError(field, "must be a string");
  out = it->get<std::string>();
  return absl::OkStatus();
}

}  // namespace

absl::string_view FaultTypeName(FaultType type) {
  for (const auto& [name, value] : kTypes) {
    if (value == type) return name;
  }
  return "unknown";
}

absl::StatusOr<FaultRule> ParseFaultRule(absl::string_view json_text) {
  json j = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError("fault rule: not valid JSON");
  return FaultRuleFromJson(j);
}

absl::StatusOr<FaultRule> FaultRuleFromJson(const json& j) {
  if (!j.is_object()) return absl::InvalidArgumentError("fault rule: must be a JSON object");
  FaultRule rule;
  if (absl::Status s = ReadString(j, "endpoint", rule.endpoint); !s.ok()) return s;
  if (rule.endpoint.empty()) return FieldError("endpoint", "is required (a route name or \"*\")");
  if (rule.endpoint != "*" && !IsRouteName(rule.endpoint)) {
    return FieldError("endpoint", absl::StrCat("names no route: ", rule.endpoint));
  }
  std::string type_name;
  if (absl::Status s = ReadString(j, "type", type_name); !s.ok()) return s;
  bool known = false;
  for (const auto& [name, value] : kTypes) {
    if (name == type_name) {
      rule.type = value;
      known = true;
    }
  }
  if (!known) return FieldError("type", absl::StrCat("is unknown: '", type_name, "'"));

  std::optional<int64_t> value;
  constexpr int64_t kBig = int64_t{1} << 40;
  if (absl::Status s = ReadInt(j, "times", 0, kBig, value); !s.ok()) return s;
  rule.times = value.value_or(0);
  if (absl::Status s = ReadString(j, "error_code", rule.error_code); !s.ok()) return s;
  if (absl::Status s = ReadString(j, "detail", rule.detail); !s.ok()) return s;
  if (absl::Status s = ReadString(j, "shape", rule.shape); !s.ok()) return s;
  if (absl::Status s = ReadInt(j, "retry_after", 0, kBig, rule.retry_after); !s.ok()) return s;
  if (absl::Status s = ReadInt(j, "after_bytes", 0, kBig, rule.after_bytes); !s.ok()) return s;

  switch (rule.type) {
    case FaultType::kLatency: {
      std::optional<int64_t> delay;
      if (absl::Status s = ReadInt(j, "delay_ms", 0, int64_t{3600} * 1000, delay); !s.ok())
        return s;
      if (!delay) return FieldError("delay_ms", "is required for type latency");
      rule.delay_ms = *delay;
      break;
    }
    case FaultType::kStatus: {
      std::optional<int64_t> status;
      if (absl::Status s = ReadInt(j, "status", 100, 599, status); !s.ok()) return s;
      if (!status) return FieldError("status", "is required for type status");
      rule.status = static_cast<int>(*status);
      if (rule.shape.empty()) rule.shape = "standard";
      if (rule.shape != "standard" && rule.shape != "message_only" && rule.shape != "fastapi" &&
          rule.shape != "custom_validation" && rule.shape != "text") {
        return FieldError("shape",
                          "must be standard, message_only, fastapi, custom_validation "
                          "or text");
      }
      break;
    }
    case FaultType::kRateLimit:
      if (!rule.shape.empty() && rule.shape != "old" && rule.shape != "new") {
        return FieldError("shape", "must be old or new");
      }
      break;
    case FaultType::kTruncatedNdjson:
    case FaultType::kMidStreamError: {
      std::optional<int64_t> lines;
      if (absl::Status s = ReadInt(j, "lines", 0, 1000000, lines); !s.ok()) return s;
      rule.lines = lines.value_or(2);
      break;
    }
    case FaultType::kOversizedBody: {
      std::optional<int64_t> bytes;
      // Capped so a typo cannot make the emulator allocate gigabytes.
      if (absl::Status s = ReadInt(j, "bytes", 1, int64_t{1} << 28, bytes); !s.ok()) return s;
      if (!bytes) return FieldError("bytes", "is required for type oversized_body");
      rule.bytes = *bytes;
      break;
    }
    case FaultType::kRawBody: {
      std::optional<int64_t> status;
      if (absl::Status s = ReadInt(j, "status", 100, 599, status); !s.ok()) return s;
      rule.status = static_cast<int>(status.value_or(200));
      if (!j.contains("body")) return FieldError("body", "is required for type raw_body");
      if (absl::Status s = ReadString(j, "body", rule.body); !s.ok()) return s;
      if (absl::Status s = ReadString(j, "content_type", rule.content_type); !s.ok()) return s;
      break;
    }
    case FaultType::kResetBeforeHeaders:
    case FaultType::kResetMidBody:
    case FaultType::kStall:
    case FaultType::kMalformedJson:
      break;
  }
  return rule;
}

json FaultRule::ToJson() const {
  json j = {{"id", id},
            {"endpoint", endpoint},
            {"times", times},
            {"hits", hits},
            {"type", FaultTypeName(type)}};
  switch (type) {
    case FaultType::kLatency:
      j["delay_ms"] = delay_ms;
      break;
    case FaultType::kStatus:
      j["status"] = status;
      j["shape"] = shape;
      if (!error_code.empty()) j["error_code"] = error_code;
      if (!detail.empty()) j["detail"] = detail;
      break;
    case FaultType::kMidStreamError:
      j["lines"] = lines;
      if (!error_code.empty()) j["error_code"] = error_code;
      if (!detail.empty()) j["detail"] = detail;
      break;
    case FaultType::kTruncatedNdjson:
      j["lines"] = lines;
      break;
    case FaultType::kOversizedBody:
      j["bytes"] = bytes;
      break;
    case FaultType::kRawBody:
      j["status"] = status;
      j["body_bytes"] = body.size();
      if (!content_type.empty()) j["content_type"] = content_type;
      break;
    case FaultType::kRateLimit:
      if (!shape.empty()) j["shape"] = shape;
      break;
    default:
      break;
  }
  if (retry_after) j["retry_after"] = *retry_after;
  if (after_bytes) j["after_bytes"] = *after_bytes;
  return j;
}

int64_t FaultTable::Add(FaultRule rule) {
  rule.id = next_id_++;
  rule.hits = 0;
  rules_.push_back(std::move(rule));
  return rules_.back().id;
}

std::optional<FaultRule> FaultTable::Take(absl::string_view route) {
  for (auto it = rules_.begin(); it != rules_.end(); ++it) {
    if (it->endpoint != "*" && it->endpoint != route) continue;
    ++it->hits;
    FaultRule hit = *it;
    if (it->times > 0 && it->hits >= it->times) rules_.erase(it);
    return hit;
  }
  return std::nullopt;
}

json FaultTable::ToJson() const {
  json out = json::array();
  for (const FaultRule& rule : rules_) out.push_back(rule.ToJson());
  return out;
}

}  // namespace copilot::emulator
