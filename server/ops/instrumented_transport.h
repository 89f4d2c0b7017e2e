// An HttpTransport decorator that measures every upstream request: count by endpoint and status
// class, duration, time to first byte, requests in flight (GatewayMetrics), and the time and
// status on the request's CallTrace (for the call's overhead and log line). Adds no behaviour;
// the requests and their events pass through unchanged.
#ifndef COPILOT_GATEWAY_SERVER_OPS_INSTRUMENTED_TRANSPORT_H_
#define COPILOT_GATEWAY_SERVER_OPS_INSTRUMENTED_TRANSPORT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/common/clock.h"
#include "server/ops/gateway_metrics.h"
#include "server/transport/http_transport.h"

namespace copilot::gateway {

// Logs why the path to the upstream failed (TLS, the egress proxy): once per cause, again when
// the cause changes or a minute after it was last logged (with the count of failures not
// logged in between), so a broken trust bundle or proxy password says so in the log without a
// line per call. Thread-safe.
class FailureCauseLog {
 public:
  static constexpr absl::Duration kQuietPeriod = absl::Minutes(1);
  explicit FailureCauseLog(std::string message) : message_(std::move(message)) {}
  void Report(absl::string_view endpoint, const std::string& cause, absl::Time now);

 private:
  const std::string message_;  // The log line's "msg".
  absl::Mutex mu_;
  std::string last_cause_ ABSL_GUARDED_BY(mu_);
  absl::Time last_logged_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  int64_t suppressed_ ABSL_GUARDED_BY(mu_) = 0;
};

// Also counts requests that got no HTTP status by reason (transport errors), and logs the
// causes of TLS and proxy failures (FailureCauseLog). Thread-safe like the transport it wraps.
// `metrics` and `clock` must outlive it.
class InstrumentedTransport final : public HttpTransport {
 public:
  InstrumentedTransport(std::shared_ptr<HttpTransport> inner, GatewayMetrics& metrics,
                        const Clock& clock);

  std::shared_ptr<HttpTransfer> Start(HttpRequest request,
                                      std::shared_ptr<HttpTransferHandler> handler) override;
  bool RunAfter(absl::Duration delay, absl::AnyInvocable<void() &&> task) override {
    return inner_->RunAfter(delay, std::move(task));
  }

 private:
  class MeasuringHandler;

  const std::shared_ptr<HttpTransport> inner_;
  GatewayMetrics& metrics_;
  const Clock& clock_;
  const std::shared_ptr<FailureCauseLog> tls_failures_;
  const std::shared_ptr<FailureCauseLog> proxy_failures_;
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_OPS_INSTRUMENTED_TRANSPORT_H_
