// The production transport, kept apart so the object graph (gateway_server.cc) reads top down.
#include "server/app/gateway_server.h"

namespace copilot::gateway {

absl::StatusOr<std::shared_ptr<HttpTransport>> MakeUpstreamTransport(const GatewayConfig& config) {
  return absl::UnimplementedError("CurlTransport is not available yet");
}

}  // namespace copilot::gateway
