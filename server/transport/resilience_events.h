// What the retry and circuit-breaker decorators of the transport report, for metrics
// (GatewayMetrics implements it) without the transport layer knowing them. Implementations are
// thread-safe and must not block: calls come from the transport's event loop and from callers'
// threads.
#ifndef COPILOT_GATEWAY_SERVER_TRANSPORT_RESILIENCE_EVENTS_H_
#define COPILOT_GATEWAY_SERVER_TRANSPORT_RESILIENCE_EVENTS_H_

#include "absl/strings/string_view.h"

namespace copilot::gateway {

enum class CircuitState { kClosed = 0, kOpen = 1, kHalfOpen = 2 };

inline absl::string_view CircuitStateName(CircuitState state) {
  switch (state) {
    case CircuitState::kClosed:
      return "closed";
    case CircuitState::kOpen:
      return "open";
    case CircuitState::kHalfOpen:
      return "half_open";
  }
  return "closed";
}

class ResilienceEvents {
 public:
  virtual ~ResilienceEvents() = default;
  // A request to `endpoint` (its template) is sent again because of `reason`: the transport's
  // reason ("upstream_unreachable", "upstream_reset", ...) or "http_429", "http_502", ...
  virtual void OnRetry(absl::string_view endpoint, absl::string_view reason) = 0;
  // A retry the rules allowed was not made: `cause` is "budget" (the retry budget is spent),
  // "deadline" (the wait does not fit in the caller's deadline) or "attempts" (max_attempts).
  virtual void OnRetryDenied(absl::string_view endpoint, absl::string_view cause) = 0;
  // The circuit breaker moved from `from` to `to`.
  virtual void OnCircuitTransition(CircuitState from, CircuitState to) = 0;
  // A request to `endpoint` failed fast: the circuit is open (or half-open with its probes out).
  virtual void OnCircuitRejected(absl::string_view endpoint) = 0;
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_TRANSPORT_RESILIENCE_EVENTS_H_
