// An HttpTransport decorator that measures every upstream request: count by endpoint and status
// class, duration, time to first byte, requests in flight (GatewayMetrics), and the time and
// status on the request's CallTrace (for the call's overhead and log line). Adds no behaviour;
// the requests and their events pass through unchanged.
#ifndef COPILOT_GATEWAY_SERVER_OPS_INSTRUMENTED_TRANSPORT_H_
#define COPILOT_GATEWAY_SERVER_OPS_INSTRUMENTED_TRANSPORT_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/common/clock.h"
#include "server/ops/gateway_metrics.h"
#include "server/transport/http_transport.h"

namespace copilot::gateway {

// Logs why TLS with the upstream failed: once per cause, again when the cause changes or a
// minute after it was last logged (with the count of failures not logged in between), so a
// broken trust bundle says so in the log without a line per call. Thread-safe.
class TlsFailureLog {
 public:
  static constexpr absl::Duration kQuietPeriod = absl::Minutes(1);
  void Report(absl::string_view endpoint, const std::string& cause, absl::Time now);

 private:
  absl::Mutex mu_;
  std::string last_cause_ ABSL_GUARDED_BY(mu_);
  absl::Time last_logged_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  int64_t suppressed_ ABSL_GUARDED_BY(mu_) = 0;
};

// Also counts requests that got no HTTP status by reason (transport errors), and reports TLS
// failures to a TlsFailureLog. Thread-safe like the transport it wraps. `metrics` and `clock`
// must outlive it.
class InstrumentedTransport final : public HttpTransport {
 public:
  InstrumentedTransport(std::shared_ptr<HttpTransport> inner, GatewayMetrics& metrics,
                        const Clock& clock);

  std::shared_ptr<HttpTransfer> Start(HttpRequest request,
                                      std::shared_ptr<HttpTransferHandler> handler) override;

 private:
  class MeasuringHandler;

  const std::shared_ptr<HttpTransport> inner_;
  GatewayMetrics& metrics_;
  const Clock& clock_;
  const std::shared_ptr<TlsFailureLog> tls_failures_;
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_OPS_INSTRUMENTED_TRANSPORT_H_
