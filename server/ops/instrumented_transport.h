// An HttpTransport decorator that measures every upstream request: count by endpoint and status
// class, duration, time to first byte, requests in flight (GatewayMetrics), and the time and
// status on the request's CallTrace (for the call's overhead and log line). Adds one behaviour;
// the requests and their events pass through unchanged.
#ifndef COPILOT_GATEWAY_SERVER_OPS_INSTRUMENTED_TRANSPORT_H_
#define COPILOT_GATEWAY_SERVER_OPS_INSTRUMENTED_TRANSPORT_H_

#include <memory>

#include "server/common/clock.h"
#include "server/ops/gateway_metrics.h"
#include "server/transport/http_transport.h"

namespace copilot::gateway {

// Thread-safe like the transport it wraps. `metrics` and `clock` must outlive it.
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
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_OPS_INSTRUMENTED_TRANSPORT_H_
