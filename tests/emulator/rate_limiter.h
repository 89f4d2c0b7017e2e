// The upstream's rate limits (haufe-api.md section 9; docs/emulator.md "Rate limits"): two route
// classes, each with a burst (1 s) and a sustained (60 s) sliding window, counted per API key.
#ifndef COPILOT_TESTS_EMULATOR_RATE_LIMITER_H_
#define COPILOT_TESTS_EMULATOR_RATE_LIMITER_H_

#include <array>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "tests/emulator/clock.h"

namespace copilot::emulator {

// Answer generation (run, run_stream, chat_completions, chat_completions_stream) shares one
// limit; every other route shares another.
enum class RouteClass { kAnswer = 0, kOther = 1 };
inline constexpr size_t kRouteClassCount = 2;

RouteClass ClassOfRoute(absl::string_view route_name);
absl::string_view RouteClassName(RouteClass route_class);  // "answer" | "other"

// The most requests admitted in any 1 s (rps) and any 60 s (rpm) window.
struct WindowLimits {
  int64_t rps = 0;
  int64_t rpm = 0;
  friend bool operator==(const WindowLimits& a, const WindowLimits& b) {
    return a.rps == b.rps && a.rpm == b.rpm;
  }
};

// Trial tier 0 (haufe-api.md section 9 [D]).
inline constexpr WindowLimits kTier0Answer = {15, 60};
inline constexpr WindowLimits kTier0Other = {60, 180};
// Every configured limit is 1..kMaxRateLimit.
inline constexpr int64_t kMaxRateLimit = 1000000;

struct RateLimitConfig {
  bool enforced = false;  // off: every request is admitted (and still counted)
  WindowLimits answer = kTier0Answer;
  WindowLimits other = kTier0Other;

  const WindowLimits& For(RouteClass route_class) const {
    return route_class == RouteClass::kAnswer ? answer : other;
  }
  // "off", "tier0" (enforced with the tier-0 values) or "custom" (enforced, other values).
  absl::string_view ModeName() const;
};

// A change to a RateLimitConfig, from the command line or the control API. Callers validate the
// values (mode off|tier0|custom, limits 1..kMaxRateLimit, not off together with a limit).
struct RateLimitUpdate {
  std::optional<std::string> mode = std::nullopt;
  std::optional<int64_t> answer_rps = std::nullopt;
  std::optional<int64_t> answer_rpm = std::nullopt;
  std::optional<int64_t> other_rps = std::nullopt;
  std::optional<int64_t> other_rpm = std::nullopt;

  bool HasLimit() const { return answer_rps || answer_rpm || other_rps || other_rpm; }
  // Mode "off" together with a limit.
  bool Contradicts() const { return mode == "off" && HasLimit(); }
};

// off: enforcement stops (values kept). tier0: enforced with the tier-0 values, then the given
// limits. custom: enforced with the current values, then the given limits. No mode: the given
// limits, and any of them turns enforcement on.
void ApplyRateLimitUpdate(const RateLimitUpdate& update, RateLimitConfig& config);

struct RateLimitDecision {
  bool admitted = true;
  // When refused: whole seconds (rounded up, >= 1) until this request would be admitted if nothing
  // else arrived.
  int64_t retry_after_seconds = 0;
};

struct RateLimitCounters {
  int64_t admitted = 0;
  int64_t refused = 0;
  // The most admitted requests in any 1 s / 60 s window so far.
  int64_t max_admitted_1s = 0;
  int64_t max_admitted_60s = 0;

  nlohmann::json ToJson() const;
};

// Sliding-window counting of admitted requests per (API key, route class). A request counts at
// arrival (Admit); a window of W ends at now and covers (now - W, now]; refused requests are not
// counted. Time comes from the clock's MonotonicNow. Not thread-safe (loop thread only).
class RateLimiter {
 public:
  RateLimiter(Clock& clock, const RateLimitConfig& config) : clock_(clock), config_(config) {}

  // Admits (and counts) the request or refuses it. Counts even when enforcement is off.
  RateLimitDecision Admit(absl::string_view api_key, RouteClass route_class);

  const RateLimitConfig& config() const { return config_; }
  // Applies to requests arriving afterwards; windows and counters are kept.
  void set_config(const RateLimitConfig& config) { config_ = config; }
  // Forgets windows and counters (not the config).
  void Clear() { buckets_.clear(); }

  // One key's counters.
  RateLimitCounters Counters(absl::string_view api_key, RouteClass route_class) const;
  // All keys: admitted and refused summed, the window maxima the largest of any key.
  RateLimitCounters Counters(RouteClass route_class) const;
  // {"answer": counters, "other": counters, "by_key": {key: {"answer", "other"}}}
  nlohmann::json StatsJson() const;

 private:
  struct Bucket {
    std::deque<absl::Duration> arrivals;  // admitted, last 60 s, oldest first
    RateLimitCounters counters;
  };
  using KeyBuckets = std::array<Bucket, kRouteClassCount>;

  Clock& clock_;
  RateLimitConfig config_;
  absl::flat_hash_map<std::string, KeyBuckets> buckets_;
};

}  // namespace copilot::emulator

#endif  // COPILOT_TESTS_EMULATOR_RATE_LIMITER_H_
