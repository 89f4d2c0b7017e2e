// The production transport, kept apart so the object graph (gateway_server.cc) reads top down.
#include <algorithm>
#include <memory>
#include <string>
#include <utility>

#include "server/app/gateway_server.h"
#include "server/common/cpus.h"
#include "server/common/pem_file.h"
#include "server/transport/circuit_breaker_transport.h"
#include "server/transport/curl_transport.h"
#include "server/transport/retrying_transport.h"

namespace copilot::gateway {
namespace {

// upstream.event_loops 0: one per usable CPU, at least kMinDefaultEventLoops, at most
// kMaxDefaultEventLoops. Two even on one CPU: a loop reads an HTTP/2 connection whole, one
// tenant's multi-megabyte answers at once (~15 ms), while another tenant's calls on a second loop
// (thread) get the CPU in between (adversarial_bench --upstream h2: the victim's first chunk p99
// 21-33 ms under attack with one loop, 7 ms with two).
constexpr int kMinDefaultEventLoops = 2;
constexpr int kMaxDefaultEventLoops = 16;

}  // namespace

int UpstreamEventLoops(const UpstreamConfig& upstream) {
  return upstream.event_loops > 0
             ? upstream.event_loops
             : std::clamp(UsableCpus(), kMinDefaultEventLoops, kMaxDefaultEventLoops);
}

absl::StatusOr<std::shared_ptr<HttpTransport>> MakeUpstreamTransport(
    const GatewayConfig& config, const GatewaySecrets& secrets, std::function<void()> on_read_yield,
    std::function<void(int)> on_connections_changed) {
  const UpstreamConfig& upstream = config.upstream;
  CurlTransportOptions options;
  options.http2 = upstream.http2;
  options.max_transfers = static_cast<int64_t>(upstream.max_transfers);
  options.event_loops = UpstreamEventLoops(upstream);
  options.max_cached_connections = static_cast<long>(upstream.max_cached_connections);
  options.max_read_per_turn = upstream.max_read_per_turn;
  options.on_read_yield = std::move(on_read_yield);
  options.on_connections_changed = std::move(on_connections_changed);
  options.max_connections = static_cast<long>(upstream.max_connections);
  options.max_idle_connection_age = upstream.max_idle_connection_age;
  options.max_connection_lifetime = upstream.max_connection_lifetime;
  options.tls_min_version =
      upstream.tls_min_version == UpstreamTlsVersion::k1_3 ? TlsVersion::k1_3 : TlsVersion::k1_2;
  if (!upstream.ca_file.empty()) {
    if (absl::Status status =
            CheckPemFile("upstream.ca_file", upstream.ca_file, PemKind::kCertificates);
        !status.ok())
      return status;
    options.ca_file = upstream.ca_file;
  }
  options.proxy = secrets.proxy.url;
  options.no_proxy = secrets.proxy.no_proxy;
  options.proxy_username = secrets.proxy.username;
  options.proxy_password = secrets.proxy.password;
  absl::StatusOr<std::unique_ptr<CurlTransport>> transport = CurlTransport::Create(options);
  if (!transport.ok()) return transport.status();
  return std::shared_ptr<HttpTransport>(*std::move(transport));
}

std::shared_ptr<HttpTransport> WithResilience(const UpstreamConfig& upstream,
                                              std::shared_ptr<HttpTransport> transport,
                                              const Clock& clock, ResilienceEvents& events,
                                              std::function<bool()>* refusing) {
  if (refusing != nullptr) *refusing = nullptr;
  if (upstream.circuit_breaker.enabled) {
    auto breaker = std::make_shared<CircuitBreakerTransport>(std::move(transport), clock,
                                                             upstream.circuit_breaker, events);
    // Weak: the gateway destroys its transport at a point of its own; this must not keep it.
    if (refusing != nullptr) {
      *refusing = [weak = std::weak_ptr<CircuitBreakerTransport>(breaker)] {
        const std::shared_ptr<CircuitBreakerTransport> breaker = weak.lock();
        return breaker != nullptr && breaker->Refusing();
      };
    }
    transport = std::move(breaker);
  }
  if (upstream.retry.max_attempts > 1) {
    transport =
        std::make_shared<RetryingTransport>(std::move(transport), upstream.retry, clock, events);
  }
  return transport;
}

}  // namespace copilot::gateway
