// The production transport, kept apart so the object graph (gateway_server.cc) reads top down.
#include "server/app/gateway_server.h"
#include "server/transport/curl_transport.h"

namespace copilot::gateway {

absl::StatusOr<std::shared_ptr<HttpTransport>> MakeUpstreamTransport(const GatewayConfig& config) {
  absl::StatusOr<std::unique_ptr<CurlTransport>> transport = CurlTransport::Create();
  if (!transport.ok()) return transport.status();
  return std::shared_ptr<HttpTransport>(*std::move(transport));
}

}  // namespace copilot::gateway
