// The upstream retry and circuit-breaker settings as data: read by the config layer
// (upstream.retry, upstream.circuit_breaker), used by the transport's decorators
// (server/transport/retrying_transport.h, circuit_breaker_transport.h). Plain data.
#ifndef COPILOT_GATEWAY_SERVER_COMMON_RESILIENCE_POLICY_H_
#define COPILOT_GATEWAY_SERVER_COMMON_RESILIENCE_POLICY_H_

#include "absl/time/time.h"

namespace copilot::gateway {

struct RetryPolicy {
  // Attempts per request, the first included; 1: no retries.
  int max_attempts = 3;
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(2);
  // A 429 whose Retry-After is longer is passed on, not waited for.
  absl::Duration max_retry_after = absl::Seconds(10);
  double budget_ratio = 0.1;
  double budget_min_per_second = 5;
  absl::Duration budget_window = absl::Seconds(10);  // Not a setting.
};

struct CircuitBreakerPolicy {
  bool enabled = true;
  int consecutive_failures = 20;  // 0: not a trigger.
  double failure_ratio = 0.5;     // 0: not a trigger.
  int min_requests = 20;
  absl::Duration window = absl::Seconds(10);
  absl::Duration cooldown = absl::Seconds(10);
  int half_open_probes = 3;
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_COMMON_RESILIENCE_POLICY_H_
