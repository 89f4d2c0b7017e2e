// RetryingTransport: an HttpTransport decorator that sends a request again only where the
// upstream provably did not act on it, with exponential backoff and jitter as timers of the
// transport's event loop (HttpTransport::RunAfter: no thread sleeps), inside the request's
// deadline and a retry budget.
//
// What is retried (decided per attempt; an attempt that passed any byte of its answer to the
// caller's handler is never retried):
//   - Any method, when the transport says the request was never sent (metadata "request_sent":
//     "false": nothing sent, or HTTP/2 refused every send) and the failure is transient:
//     "upstream_unreachable" (refused, DNS, connect timeout), "upstream_reset",
//     "upstream_refused_stream", "upstream_transport_error", "upstream_tls_error" during the
//     handshake (libcurl code 35; a certificate the gateway refuses fails the same way again),
//     "upstream_proxy_error" when the proxy could not reach the upstream (502, 503, 504) or
//     could not be resolved.
//   - Any method, on HTTP 429 with a Retry-After (seconds or an HTTP date) of at most
//     max_retry_after: the upstream refused the request. The wait is the larger of Retry-After
//     and the backoff. A 429 without Retry-After is passed on (the admission layer holds the
//     budget for it).
//   - GET and DELETE (idempotent) also on HTTP 502, 503 and 504 and on UNAVAILABLE transport
//     failures after the request was sent ("upstream_reset", "upstream_stalled",
//     "upstream_transport_error", "upstream_unreachable").
//   - Never: a POST that may have reached the upstream (INTERNAL "response_started", or
//     "request_sent": "true", which includes "resend_refused"), a deadline, a cancel, an open
//     circuit, a transport at its bound or shutting down, any other HTTP status.
// A retry is made only when all hold: attempts < max_attempts; the wait ends before the
// request's deadline; the retry budget allows it. Otherwise the attempt's outcome is passed on
// as it is, and the denial is reported (ResilienceEvents::OnRetryDenied).
//
// Over a transport without timers (RunAfter returns false when asked at construction) nothing
// is retried.
//
// Backoff: attempt n (n = 1 for the first retry) waits a uniform random time in [b/2, b] with
// b = min(max_backoff, initial_backoff * 2^(n-1)).
//
// A refused stream ("upstream_refused_stream": HTTP/2 REFUSED_STREAM, or a stream above a
// GOAWAY's last stream ID, on every send libcurl made) is the upstream asking for the request on
// another stream without having seen it: its first retry is made at once and is not charged to
// the budget, like gRFC A6's transparent retry (a GOAWAY cycle would otherwise spend the budget
// on retries that cost the upstream nothing). It still counts as an attempt, and a second one
// goes through every rule.
//
// The retry budget (RetryBudget): over a sliding window of `budget_window`, retries at most
// max(budget_ratio * requests, budget_min_per_second * window seconds), counting first attempts
// as requests: a failing upstream sees at most ~(1 + ratio) times the load, not max_attempts
// times (like gRPC's retry throttling and Envoy's retry budgets).
#ifndef COPILOT_GATEWAY_SERVER_TRANSPORT_RETRYING_TRANSPORT_H_
#define COPILOT_GATEWAY_SERVER_TRANSPORT_RETRYING_TRANSPORT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/common/clock.h"
#include "server/common/resilience_policy.h"
#include "server/transport/http_transport.h"
#include "server/transport/resilience_events.h"
#include "server/transport/windowed_counts.h"

namespace copilot::gateway {

// Thread-safe.
class RetryBudget {
 public:
  RetryBudget(const Clock& clock, const RetryPolicy& policy);
  // A first attempt.
  void RecordRequest();
  // True (and counted) when one more retry fits in the budget.
  bool TryRetry();

 private:
  const Clock& clock_;
  const double ratio_;
  const double floor_;  // Retries always allowed per window.
  absl::Mutex mu_;
  WindowedCounts counts_ ABSL_GUARDED_BY(mu_);  // a: requests, b: retries.
};

// Why an attempt's outcome may be retried under the rules above: the reason label
// ("upstream_unreachable", "http_503", ...), or nullopt. For tests and the decorator.
std::optional<std::string> RetryableFailure(const absl::Status& status, bool idempotent);
std::optional<std::string> RetryableResponse(int http_status, bool idempotent);

// Thread-safe like the transport it wraps. `clock` and `events` must outlive it and every
// request it started. `random01` returns uniform values in [0, 1) (the jitter; tests pin it).
class RetryingTransport final : public HttpTransport {
 public:
  RetryingTransport(std::shared_ptr<HttpTransport> inner, RetryPolicy policy, const Clock& clock,
                    ResilienceEvents& events, std::function<double()> random01 = nullptr);
  // Calls waiting for their next attempt end now with CANCELLED "transport_shutdown" (on this
  // thread); attempts in progress finish as usual.
  ~RetryingTransport() override;
  RetryingTransport(const RetryingTransport&) = delete;
  RetryingTransport& operator=(const RetryingTransport&) = delete;

  std::shared_ptr<HttpTransfer> Start(HttpRequest request,
                                      std::shared_ptr<HttpTransferHandler> handler) override;
  bool RunAfter(absl::Duration delay, absl::AnyInvocable<void() &&> task) override;

  // The wait before retry number `retry` (1-based), jitter included.
  absl::Duration Backoff(int retry);

 private:
  class Call;
  class AttemptHandler;
  struct Shared;  // What the calls in flight share with the transport (kept alive by them).

  const std::shared_ptr<Shared> shared_;
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_TRANSPORT_RETRYING_TRANSPORT_H_
