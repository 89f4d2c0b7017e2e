// The production transport, kept apart so the object graph (gateway_server.cc) reads top down.
#include "server/app/gateway_server.h"
#include "server/transport/curl_transport.h"

namespace copilot::gateway {

absl::StatusOr<std::shared_ptr<HttpTransport>> MakeUpstreamTransport(const GatewayConfig& config) {
  CurlTransportOptions options;
  options.http2 = config.upstream.http2;
  options.max_transfers = static_cast<int64_t>(config.upstream.max_transfers);
  options.max_cached_connections = static_cast<long>(config.upstream.max_cached_connections);
  absl::StatusOr<std::unique_ptr<CurlTransport>> transport = CurlTransport::Create(options);
  if (!transport.ok()) return transport.status();
  return std::shared_ptr<HttpTransport>(*std::move(transport));
}

}  // namespace copilot::gateway
