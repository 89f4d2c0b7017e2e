// The limits themselves, as plain data (configured per tenant and for the upstream budget).
#ifndef COPILOT_GATEWAY_SERVER_COMMON_LIMIT_TYPES_H_
#define COPILOT_GATEWAY_SERVER_COMMON_LIMIT_TYPES_H_

#include <cstdint>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace copilot::gateway {

// A GCRA limit: a sustained rate and a burst (the number of calls that may go at once after a
// quiet period). per_second <= 0 means no limit.
struct RateLimit {
  double per_second = 0;
  int64_t burst = 1;
};

// A sliding window: at most `max_requests` in any `window` (exact, like the upstream's own
// RPS/RPM windows). max_requests <= 0 means no limit.
struct WindowLimit {
  int64_t max_requests = 0;
  absl::Duration window = absl::Seconds(1);
};

// Answer generation (Run, StreamRun, Complete, StreamComplete: the upstream's tier limit) and
// every other call (the upstream's separate limit).
enum class CallClass { kAnswer = 0, kOther = 1 };
inline absl::string_view CallClassName(CallClass klass) {
  return klass == CallClass::kAnswer ? "answer" : "other";
}

// A tenant's quotas: answers generated and characters (sent by its callers plus received in
// answers) per calendar day and month. 0 is no quota.
struct TenantQuotas {
  int64_t answers_per_day = 0;
  int64_t answers_per_month = 0;
  int64_t characters_per_day = 0;
  int64_t characters_per_month = 0;
};

// One tenant's limits. Zero rates and caps mean "no limit".
struct TenantLimits {
  RateLimit answer_rate;
  RateLimit other_rate;
  int64_t max_concurrent_answers = 0;
  // Its share when calls wait for the upstream budget (relative to other tenants' weights).
  double weight = 1;
  TenantQuotas quotas;
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_COMMON_LIMIT_TYPES_H_
