// CircuitBreakerTransport: an HttpTransport decorator that stops sending to an upstream that is
// failing, so that callers get an answer at once instead of each waiting out a connect timeout
// or a 503, and a recovering upstream is not hit by every caller's backlog at once.
//
// States (one breaker for the upstream: every call goes to the same API):
//   closed     requests pass. Each attempt's outcome counts: a failure is a transport failure
//              of the path to the upstream ("upstream_unreachable", "upstream_tls_error",
//              "upstream_proxy_error", "upstream_reset", "upstream_stalled",
//              "upstream_transport_error") or HTTP 502, 503 or 504; a success is any other HTTP
//              answer (4xx and 500 included: they answer one request, they do not say the
//              upstream is down). Cancels, deadlines, the gateway's own refusals and HTTP/2
//              streams the upstream refused ("upstream_refused_stream": it is alive and said
//              it did not process them, e.g. above a GOAWAY) count as neither, so that a caller
//              with short deadlines cannot open the circuit for everybody. The circuit opens after
//              `consecutive_failures` failures in a row, or when over the last `window` at least
//              `min_requests` attempts ended and at least `failure_ratio` of them failed.
//   open       for `cooldown`, every request fails at once (inline, in Start) with UNAVAILABLE
//              "upstream_circuit_open" and RetryInfo (the cooldown left). Nothing is sent.
//   half-open  after the cooldown: up to `half_open_probes` requests pass as probes, the rest
//              fail fast as above. A probe failing opens the circuit again; `half_open_probes`
//              successful probes close it. Outcomes of requests started before the last
//              transition do not count.
// Readiness is not affected: every replica shares the upstream, so taking one out of the
// Service helps nobody.
#ifndef COPILOT_GATEWAY_SERVER_TRANSPORT_CIRCUIT_BREAKER_TRANSPORT_H_
#define COPILOT_GATEWAY_SERVER_TRANSPORT_CIRCUIT_BREAKER_TRANSPORT_H_

#include <cstdint>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/common/clock.h"
#include "server/common/resilience_policy.h"
#include "server/transport/http_transport.h"
#include "server/transport/resilience_events.h"
#include "server/transport/windowed_counts.h"

namespace copilot::gateway {

// The state machine alone, for the decorator and its tests. Thread-safe.
class CircuitBreaker {
 public:
  // What Admit decided: pass (a generation to report the outcome with) or fail fast.
  struct Ticket {
    bool admitted = false;
    bool probe = false;
    uint64_t generation = 0;
    absl::Duration retry_after;  // When refused: the cooldown left.
  };
  enum class Outcome { kSuccess, kFailure, kNeutral };

  CircuitBreaker(const Clock& clock, CircuitBreakerPolicy policy, ResilienceEvents& events);

  Ticket Admit();
  void Report(const Ticket& ticket, Outcome outcome);
  CircuitState state() const;
  // Whether Admit would refuse a call now (open within its cooldown, or half-open with every
  // probe out), changing nothing: no transition, no probe taken.
  bool Refusing() const;

 private:
  void TransitionLocked(CircuitState to) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Clock& clock_;
  const CircuitBreakerPolicy policy_;
  ResilienceEvents& events_;
  mutable absl::Mutex mu_;
  CircuitState state_ ABSL_GUARDED_BY(mu_) = CircuitState::kClosed;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 1;  // Bumped by every transition.
  int consecutive_ ABSL_GUARDED_BY(mu_) = 0;
  WindowedCounts window_ ABSL_GUARDED_BY(mu_);  // a: outcomes, b: failures.
  absl::Time open_until_ ABSL_GUARDED_BY(mu_);  // Monotonic.
  int probes_out_ ABSL_GUARDED_BY(mu_) = 0;
  int probe_successes_ ABSL_GUARDED_BY(mu_) = 0;
};

// The outcome class of one attempt, for the breaker: from its HTTP status (0: none) and its
// completion status.
CircuitBreaker::Outcome ClassifyForBreaker(int http_status, const absl::Status& status);

// Thread-safe like the transport it wraps. `clock` and `events` must outlive it and its
// requests.
class CircuitBreakerTransport final : public HttpTransport {
 public:
  CircuitBreakerTransport(std::shared_ptr<HttpTransport> inner, const Clock& clock,
                          CircuitBreakerPolicy policy, ResilienceEvents& events);

  std::shared_ptr<HttpTransfer> Start(HttpRequest request,
                                      std::shared_ptr<HttpTransferHandler> handler) override;
  bool RunAfter(absl::Duration delay, absl::AnyInvocable<void() &&> task) override {
    return inner_->RunAfter(delay, std::move(task));
  }

  CircuitState state() const { return breaker_->state(); }
  // Whether a request started now would be refused (CircuitBreaker::Refusing).
  bool Refusing() const { return breaker_->Refusing(); }

 private:
  class ObservingHandler;

  const std::shared_ptr<HttpTransport> inner_;
  ResilienceEvents& events_;
  const std::shared_ptr<CircuitBreaker> breaker_;
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_TRANSPORT_CIRCUIT_BREAKER_TRANSPORT_H_
