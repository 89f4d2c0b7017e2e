// Fault rules (docs/emulator.md, "Fault rules"): parsing, validation and first-match selection.
#ifndef COPILOT_TESTS_EMULATOR_FAULTS_H_
#define COPILOT_TESTS_EMULATOR_FAULTS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace copilot::emulator {

enum class FaultType {
  kLatency,
  kStatus,
  kRateLimit,
  kResetBeforeHeaders,
  kResetMidBody,
  kStall,
  kMalformedJson,
  kTruncatedNdjson,
  kMidStreamError,
  kOversizedBody,
  kRawBody,
};

// One validated rule. Parameters that a type does not use keep their defaults.
struct FaultRule {
  int64_t id = 0;
  std::string endpoint;  // a route name or "*"
  int64_t times = 0;     // 0: every matching request
  int64_t hits = 0;
  FaultType type = FaultType::kLatency;
  int64_t delay_ms = 0;                // latency
  int status = 500;                    // status
  std::string error_code;              // status, mid_stream_error ("" = default)
  std::string detail;                  // status, mid_stream_error ("" = default)
  std::string shape;                   // status: standard|message_only|fastapi|
                                       //   custom_validation|text; rate_limit: old|new|""
  std::optional<int64_t> retry_after;  // rate_limit, status: Retry-After seconds
  std::optional<int64_t> after_bytes;  // reset_mid_body, stall
  int64_t lines = 2;                   // truncated_ndjson, mid_stream_error
  int64_t bytes = 0;                   // oversized_body
  std::string body;                    // raw_body: the exact body sent
  std::string content_type;            // raw_body ("" = JSON, NDJSON on stream routes)

  nlohmann::json ToJson() const;
};

absl::string_view FaultTypeName(FaultType type);

// Parses and validates one rule from JSON text; errors name the offending field.
absl::StatusOr<FaultRule> ParseFaultRule(absl::string_view json_text);
absl::StatusOr<FaultRule> FaultRuleFromJson(const nlohmann::json& json);

// The installed rules, in installation order. Not thread-safe (loop thread only).
class FaultTable {
 public:
  // Installs `rule` and returns its id (1, 2, ...; ids are not reused until Clear()).
  int64_t Add(FaultRule rule);
  void Clear() { rules_.clear(); }
  // The first rule for `route` (or "*") that has hits left; counts the hit and drops the rule when
  // its `times` are used up. Returns a copy.
  std::optional<FaultRule> Take(absl::string_view route);
  nlohmann::json ToJson() const;
  size_t size() const { return rules_.size(); }

 private:
  int64_t next_id_ = 1;
  std::vector<FaultRule> rules_;
};

}  // namespace copilot::emulator

#endif  // COPILOT_TESTS_EMULATOR_FAULTS_H_
