// GatewayServer: the whole object graph of the gateway, built in one place, bottom up:
// transport (CurlTransport, instrumented) -> HaufeClient -> the decorators that record usage,
// admit through the limits and reserve quotas -> CopilotCore -> CopilotServiceAdapter ->
// grpc::Server, beside metrics, health and the ops listener.
#ifndef COPILOT_GATEWAY_SERVER_APP_GATEWAY_SERVER_H_
#define COPILOT_GATEWAY_SERVER_APP_GATEWAY_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/app/grpc_listeners.h"
#include "server/common/clock.h"
#include "server/config/gateway_config.h"
#include "server/core/copilot_core.h"
#include "server/core/signed_thread_handles.h"
#include "server/core/tenant_directory.h"
#include "server/core/thread_handles.h"
#include "server/limits/admission_controller.h"
#include "server/limits/admitted_haufe_api.h"
#include "server/limits/local_limit_store.h"
#include "server/limits/quota_haufe_api.h"
#include "server/limits/quota_ledger.h"
#include "server/limits/redis_limit_store.h"
#include "server/limits/redis_request_ids.h"
#include "server/limits/tenant_waiter_admission.h"
#include "server/ops/audit_log.h"
#include "server/ops/call_gate.h"
#include "server/ops/gateway_metrics.h"
#include "server/ops/health_service.h"
#include "server/ops/ops_http_server.h"
#include "server/ops/process_collector.h"
#include "server/ops/usage_haufe_api.h"
#include "server/service/copilot_service_adapter.h"
#include "server/transport/http_transport.h"
#include "server/transport/resilience_events.h"
#include "server/upstream/decode_pool.h"
#include "server/upstream/haufe_api.h"
#include "server/upstream/response_memory.h"

namespace copilot::gateway {

// Replacements for unit tests: each piece left null is built for production.
struct GatewayReplacements {
  // The transport under HaufeClient (default: CurlTransport from the config).
  std::shared_ptr<HttpTransport> transport;
  // The upstream API (default: HaufeClient over `transport`). When set, no transport is built.
  std::shared_ptr<HaufeApi> api;
  // The clock of the core (default: SystemClock).
  std::shared_ptr<const Clock> clock;
};

// Owns and runs the gateway. Thread-safe: Shutdown() and Wait() may be called from any thread,
// Shutdown() more than once.
class GatewayServer {
 public:
  // Builds the object graph and starts serving. Fails when the listen address cannot be bound
  // or a piece cannot be built.
  static absl::StatusOr<std::unique_ptr<GatewayServer>> Start(
      const GatewayConfig& config, const GatewaySecrets& secrets,
      GatewayReplacements replacements = {});
  // Shuts down (with no grace) if Shutdown() was not called, then tears the graph down in
  // reverse order.
  ~GatewayServer();
  GatewayServer(const GatewayServer&) = delete;
  GatewayServer& operator=(const GatewayServer&) = delete;

  // The address actually listened on, with the real port ("127.0.0.1:43121").
  const std::string& address() const { return address_; }
  int port() const { return port_; }
  // The TLS listener's address and port; empty / 0 without one.
  const std::string& tls_address() const { return tls_address_; }
  int tls_port() const { return tls_port_; }
  // The /metrics /healthz /readyz listener's address; empty with metrics_listen: off.
  std::string metrics_address() const {
    return ops_http_ != nullptr ? ops_http_->address() : std::string();
  }
  GatewayMetrics& metrics() { return *metrics_; }
  // The /metrics page: the gateway's families and the process_* ones, in text format.
  std::string ScrapeMetrics() const;
  // Readiness (gRPC health "readiness" and "", /readyz, copilot_gateway_ready): once started
  // and, with Redis configured, once Redis first answered; false again while draining.
  bool ready() const { return ready_.load(); }
  // The tenants in force (a reload replaces its directory).
  TenantResolver& tenants() { return *tenants_; }
  // The server itself, e.g. for InProcessChannel in tests.
  grpc::Server& grpc_server() { return *server_; }

  // Graceful shutdown (SIGTERM): readiness turns NOT_SERVING at once; calls are still accepted
  // for `delay` (so that endpoints and load balancers stop routing here); then Shutdown(grace).
  void Drain(absl::Duration delay, absl::Duration grace);
  // Refuses new calls (UNAVAILABLE), lets calls in flight finish for up to `grace`, then stops
  // the gRPC server, cancelling the rest (their upstream transfers are aborted). Returns when all
  // calls have ended: as soon as the last one did, not only at the end of `grace`.
  void Shutdown(absl::Duration grace);
  // Blocks until the server has shut down.
  void Wait();

 private:
  GatewayServer() = default;
  // The steps of Start, in order, each one purpose. The /metrics /healthz /readyz listener
  // (first: a slow start is visible), unless metrics_listen is off.
  absl::Status StartOpsListener(const GatewayConfig& config);
  // transport_ (instrumented), response_memory_, decode_pool_ and api_, or the replacements.
  absl::Status BuildUpstream(const GatewayConfig& config, const GatewaySecrets& secrets,
                             GatewayReplacements& replacements);
  // limit_store_ (in process, or Redis with its fail-open fallback_store_).
  absl::Status BuildLimitStores(const GatewayConfig& config, const GatewaySecrets& secrets);
  // The decorators over api_ (usage, admission, quotas), their stores and the usage reader.
  absl::Status BuildLimits(const GatewayConfig& config, const GatewaySecrets& secrets);
  // Thread handles, tenants, the core and the service adapter.
  absl::Status BuildCore(const GatewayConfig& config, const GatewaySecrets& secrets);
  // The gRPC server on every listener, with health and reflection.
  absl::Status StartGrpcServer(const GatewayConfig& config);
  void LogServing(const GatewayConfig& config, const GatewaySecrets& secrets) const;
  void StartReadiness();
  // Sets readiness everywhere it is reported.
  void SetReady(bool ready);

  // Destruction runs in reverse declaration order: the gRPC server first (every call has ended),
  // then the upstream API and its transport (whose event loop delivers the last callbacks of
  // cancelled transfers while the core still exists), then the adapter and the core.
  std::shared_ptr<const Clock> clock_;
  std::unique_ptr<GatewayMetrics> metrics_;
  ProcessCollector process_collector_;
  std::atomic<bool> ready_{false};
  std::atomic<bool> draining_{false};
  // Set (release) once Start has built the objects ScrapeMetrics reads (redis_, core_,
  // response_memory_, admission_, health_): the ops HTTP server starts first and may be scraped
  // meanwhile.
  std::atomic<bool> built_{false};
  absl::Mutex ready_mu_;  // Orders the Redis waiter's SetReady(true) against the drain.
  // Waits for Redis's first answer before readiness turns SERVING.
  std::thread readiness_waiter_;
  CallGate gate_;
  // Reset first in the destructor: its handlers read the members above.
  std::unique_ptr<OpsHttpServer> ops_http_;
  // ops_http_.get(), set once before built_: what ScrapeMetrics (on the ops server's thread)
  // reads, since ops_http_ itself is written by the destructor's reset while a scrape may run.
  const OpsHttpServer* ops_view_ = nullptr;
  std::unique_ptr<SignedThreadHandles> handles_;
  std::unique_ptr<TenantResolver> tenants_;
  std::unique_ptr<CopilotCore> core_;
  std::unique_ptr<CopilotServiceAdapter> adapter_;
  // Decodes large answers off the transport's loop; destroyed after the transport (its last
  // jobs still complete calls of the core and adapter above).
  std::unique_ptr<DecodePool> decode_pool_;
  // Bounds the upstream response bytes held over all calls; outlives api_.
  std::unique_ptr<ResponseMemory> response_memory_;
  std::shared_ptr<HttpTransport> transport_;
  std::function<bool()> upstream_refusing_;  // The circuit breaker would refuse a call now.
  std::shared_ptr<HaufeApi> api_;
  // Limits: destroyed before the API they admit calls to (the core calls them through
  // admitted_api_), after the server.
  std::unique_ptr<LimitStore> limit_store_;
  RedisLimitStore* redis_ = nullptr;  // limit_store_ when Redis is configured.
  // request_id de-duplication across replicas, over redis_ (null without Redis).
  std::unique_ptr<RedisRequestIds> shared_request_ids_;
  std::unique_ptr<LimitStore> fallback_store_;  // Fail-open: this replica's share.
  double fallback_share_ = 1.0;                 // Of each limit, with fallback_store_.
  // Usage records of the calls that reach the upstream (metrics and the audit log).
  std::unique_ptr<AuditLog> audit_log_;
  std::unique_ptr<UsageHaufeApi> usage_api_;
  std::unique_ptr<AdmissionController> admission_;
  std::unique_ptr<AdmittedHaufeApi> admitted_api_;
  std::unique_ptr<TenantWaiterAdmission> waiter_admission_;
  // Quotas: the core calls quota_api_ -> admitted_api_ -> usage_api_ -> api_.
  std::unique_ptr<QuotaLedger> quota_ledger_;
  std::unique_ptr<QuotaHaufeApi> quota_api_;
  std::unique_ptr<UsageReader> usage_reader_;
  // grpc.health.v1.Health; outlives server_ (its Watch reactors reference it).
  std::unique_ptr<HealthService> health_;
  // The gRPC ports' sockets and the connection bound; stopped before server_ shuts down.
  std::unique_ptr<GrpcListeners> listeners_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
  int port_ = 0;
  std::string tls_address_;
  int tls_port_ = 0;
  absl::Mutex mu_;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

// The event loops of the production transport: upstream.event_loops, or for 0 one per usable
// CPU, at least 2, at most 16.
int UpstreamEventLoops(const UpstreamConfig& upstream);
// The production transport for `config` (CurlTransport: UpstreamEventLoops libcurl multi event
// loops).
// `on_read_yield` (may be empty): called on a loop thread each time an upstream response yields
// the loop after upstream.max_read_per_turn. `on_connections_changed` (may be empty): +1 / -1
// as upstream connections open and close (CurlTransportOptions).
absl::StatusOr<std::shared_ptr<HttpTransport>> MakeUpstreamTransport(
    const GatewayConfig& config, const GatewaySecrets& secrets,
    std::function<void()> on_read_yield = {}, std::function<void(int)> on_connections_changed = {});
// `transport` under the circuit breaker and, above it, the retries of `upstream` (each left out
// when disabled): every attempt passes the breaker, and a request refused by an open circuit is
// not retried. `refusing` (may be null) is set to whether the breaker would refuse a request now
// (empty without a breaker), for admission to spend no upstream budget on such calls.
std::shared_ptr<HttpTransport> WithResilience(const UpstreamConfig& upstream,
                                              std::shared_ptr<HttpTransport> transport,
                                              const Clock& clock, ResilienceEvents& events,
                                              std::function<bool()>* refusing = nullptr);

// The tenants of `config` with their secrets, plus default_tenant for identity: none.
std::shared_ptr<const TenantDirectory> BuildTenantDirectory(const GatewayConfig& config,
                                                            const GatewaySecrets& secrets);

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_APP_GATEWAY_SERVER_H_
