// Every metric family the gateway exports, declared in one place (the README's Operations
// section lists them). Label values are bounded: gRPC methods and codes, upstream endpoint
// templates and status classes, configured tenant IDs; never raw request input.
#ifndef COPILOT_GATEWAY_SERVER_OPS_GATEWAY_METRICS_H_
#define COPILOT_GATEWAY_SERVER_OPS_GATEWAY_METRICS_H_

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <initializer_list>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "server/common/log_writer.h"
#include "server/limits/limit_events.h"
#include "server/ops/usage_haufe_api.h"
#include "server/transport/resilience_events.h"

namespace copilot::gateway {

// The counters of one family by their label values, each found in the family once and kept:
// Family::Add builds a prometheus::Labels map and hashes it under the family's mutex each time
// (a unary call counted eight series that way). Only for families whose series are
// never removed, so the pointers stay valid; it holds exactly the series the family holds.
// Thread-safe.
class CounterSeries {
 public:
  // `label_names`: the family's labels, in the order Get's values give them.
  CounterSeries(prometheus::Family<prometheus::Counter>& family,
                std::vector<std::string> label_names);
  prometheus::Counter& Get(std::initializer_list<absl::string_view> values);

 private:
  prometheus::Family<prometheus::Counter>& family_;
  const std::vector<std::string> label_names_;
  absl::Mutex mu_;
  // The values, each length-prefixed, joined -> the family's series.
  absl::flat_hash_map<std::string, prometheus::Counter*> series_ ABSL_GUARDED_BY(mu_);
};

// The gRPC codes 0..16, as go-grpc-prometheus names them ("OK", "Canceled", ...).
inline constexpr int kGrpcCodeCount = 17;
absl::string_view GrpcCodeName(int code);

// The upstream status classes of copilot_gateway_upstream_requests_total: "2xx", "3xx", "4xx",
// "429" (split from 4xx: the upstream's rate limit), "5xx", "error" (no HTTP status: connect
// failure, timeout, cancel).
inline constexpr int kUpstreamStatusClassCount = 6;
int UpstreamStatusClass(int http_status);
absl::string_view UpstreamStatusClassName(int status_class);

// Thread-safe: prometheus-cpp metrics are atomic; the maps created on first use are guarded.
class GatewayMetrics final : public AdmissionEvents,
                             public UsageEvents,
                             public ResilienceEvents,
                             public SharedRequestIdEvents {
 public:
  // The series of one gRPC method (go-grpc-prometheus families), created up front for every
  // method of copilot.v1.CopilotService and every code, so rates start at zero.
  struct Method {
    std::string name;  // "Run"
    std::string type;  // "unary" or "server_stream"
    prometheus::Counter* started = nullptr;
    prometheus::Counter* msg_received = nullptr;
    prometheus::Counter* msg_sent = nullptr;
    prometheus::Histogram* handling = nullptr;
    prometheus::Histogram* overhead = nullptr;
    std::array<prometheus::Counter*, kGrpcCodeCount> handled{};
  };
  // The series of one upstream endpoint ("POST /v1/threads/{thread_id}/run").
  struct Endpoint {
    std::array<prometheus::Counter*, kUpstreamStatusClassCount> requests{};
    prometheus::Histogram* duration = nullptr;
    prometheus::Histogram* time_to_first_byte = nullptr;
  };

  // `version` goes into copilot_gateway_build_info.
  explicit GatewayMetrics(absl::string_view version);
  GatewayMetrics(const GatewayMetrics&) = delete;
  GatewayMetrics& operator=(const GatewayMetrics&) = delete;

  const std::shared_ptr<prometheus::Registry>& registry() const { return registry_; }

  // The method of copilot.v1.CopilotService named `name`, or null.
  const Method* FindMethod(absl::string_view name) const;
  // copilot_gateway_tenant_calls_total; `tenant` must be a configured tenant ID or
  // "unauthenticated".
  void CountTenantCall(const std::string& tenant, const Method& method, int code);

  // The series of `endpoint` (a template, never a concrete URL), created on first use.
  const Endpoint& UpstreamEndpoint(const std::string& endpoint);
  // copilot_gateway_upstream_transport_errors_total: an upstream request that got no HTTP
  // status, by the transport's reason (upstream_unreachable, upstream_tls_error, upstream_reset,
  // ...; anything else counts as "other", so the label stays bounded).
  void CountUpstreamTransportError(absl::string_view reason);
  prometheus::Gauge& upstream_in_flight() { return *upstream_in_flight_; }
  // copilot_gateway_upstream_connections: open upstream connections, idle ones included.
  prometheus::Gauge& upstream_connections() { return *upstream_connections_; }
  prometheus::Gauge& calls_in_flight() { return *calls_in_flight_; }
  prometheus::Gauge& ready() { return *ready_; }
  // Memory bounds, set when scraped: copilot_gateway_request_id_bytes / _entries / _waiters
  // (request_id de-duplication), copilot_gateway_upstream_buffered_bytes,
  // copilot_gateway_upstream_holds (429 holds in force), copilot_gateway_health_watches (open
  // grpc.health.v1 Watch streams), copilot_gateway_ops_connections (open ops HTTP connections).
  prometheus::Gauge& request_id_bytes() { return *request_id_bytes_; }
  prometheus::Gauge& request_id_entries() { return *request_id_entries_; }
  prometheus::Gauge& request_id_waiters() { return *request_id_waiters_; }
  prometheus::Gauge& upstream_buffered_bytes() { return *upstream_buffered_bytes_; }
  prometheus::Gauge& upstream_holds() { return *upstream_holds_; }
  prometheus::Gauge& health_watches() { return *health_watches_; }
  prometheus::Gauge& ops_connections() { return *ops_connections_; }
  // copilot_gateway_grpc_connections (open gRPC connections, set when scraped) and
  // copilot_gateway_grpc_connections_refused_total (closed at server.max_connections).
  prometheus::Gauge& grpc_connections() { return *grpc_connections_; }
  prometheus::Counter& grpc_connections_refused() { return *grpc_connections_refused_; }
  // copilot_gateway_grpc_connections_cut_total (past server.max_calls_per_connection).
  prometheus::Counter& grpc_connections_cut() { return *grpc_connections_cut_; }
  // copilot_gateway_upstream_read_yields_total (upstream.max_read_per_turn reached).
  prometheus::Counter& upstream_read_yields() { return *upstream_read_yields_; }

  // copilot_gateway_log_lines_dropped_total and copilot_gateway_log_buffered_bytes of `log`
  // ("stderr", or "audit" for an audit log file), from its writer's figures when scraped.
  void SetLogStats(const std::string& log, const LogWriter::Stats& stats);

  // A config reload was applied (`ok`) or refused.
  void RecordReload(bool ok);
  // The SHA-256 (hex) of the config file in force.
  void SetConfigHash(const std::string& sha256_hex);

  // copilot_gateway_redis_degraded (exported once Redis is configured).
  void SetRedisDegraded(bool degraded);

  // AdmissionEvents: copilot_gateway_limit_decisions_total, copilot_gateway_admitted_in_flight,
  // copilot_gateway_budget_wait_seconds.
  void Decided(const std::string& tenant, absl::string_view limit,
               absl::string_view decision) override;
  void Waited(CallClass klass, absl::Duration wait) override;
  void InFlight(CallClass klass, int delta) override;

  // UsageEvents: copilot_gateway_usage_answers_total, _usage_characters_total,
  // _usage_upstream_seconds_total, _usage_threads_created_total.
  void Answered(const AnswerRecord& record) override;
  void MessageAdded(const std::string& tenant, const std::string& assistant_label,
                    int64_t characters) override;
  void ThreadCreated(const std::string& tenant, const std::string& assistant_label) override;
  // ResilienceEvents: copilot_gateway_upstream_retries_total{endpoint,reason},
  // _upstream_retries_denied_total{endpoint,cause}, _upstream_circuit_state (0 closed, 1 open,
  // 2 half-open), _upstream_circuit_transitions_total{to},
  // _upstream_circuit_rejected_total{endpoint}.
  void OnRetry(absl::string_view endpoint, absl::string_view reason) override;
  void OnRetryDenied(absl::string_view endpoint, absl::string_view cause) override;
  void OnCircuitTransition(CircuitState from, CircuitState to) override;
  void OnCircuitRejected(absl::string_view endpoint) override;
  // SharedRequestIdEvents: copilot_gateway_request_id_shared_lookups_total{result}.
  void SharedRequestIdLookup(absl::string_view result) override;

  // copilot_gateway_tenant_quota_used / _limit, set when scraped from the quota ledger; series
  // of quotas no longer configured are removed.
  void SetQuotaSamples(const std::vector<QuotaSample>& samples);

 private:
  const std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& tenant_calls_;
  prometheus::Family<prometheus::Counter>& upstream_requests_;
  prometheus::Family<prometheus::Histogram>& upstream_duration_;
  prometheus::Family<prometheus::Histogram>& upstream_ttfb_;
  prometheus::Family<prometheus::Counter>& upstream_transport_errors_;
  prometheus::Family<prometheus::Counter>& reloads_;
  prometheus::Family<prometheus::Gauge>& config_info_;
  prometheus::Family<prometheus::Counter>& limit_decisions_;
  prometheus::Family<prometheus::Counter>& usage_answers_;
  prometheus::Family<prometheus::Counter>& usage_characters_;
  prometheus::Family<prometheus::Counter>& usage_upstream_seconds_;
  prometheus::Family<prometheus::Counter>& usage_threads_;
  prometheus::Family<prometheus::Gauge>& quota_used_;
  prometheus::Family<prometheus::Gauge>& quota_limit_;
  prometheus::Family<prometheus::Counter>& retries_;
  prometheus::Family<prometheus::Counter>& retries_denied_;
  prometheus::Family<prometheus::Counter>& circuit_transitions_;
  prometheus::Family<prometheus::Counter>& circuit_rejected_;
  prometheus::Family<prometheus::Counter>& shared_request_id_lookups_;
  // The per-call counters' series (declared after their families, which they use).
  CounterSeries tenant_call_series_;      // tenant, grpc_method, grpc_code
  CounterSeries limit_decision_series_;   // tenant, limit, decision
  CounterSeries answer_series_;           // tenant, assistant, status
  CounterSeries character_series_;        // tenant, assistant, direction
  CounterSeries upstream_second_series_;  // tenant, assistant
  CounterSeries thread_series_;           // tenant, assistant
  prometheus::Gauge* circuit_state_;
  prometheus::Gauge* redis_degraded_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::array<prometheus::Gauge*, 2> admitted_in_flight_{};
  std::array<prometheus::Histogram*, 2> budget_wait_{};
  prometheus::Gauge* upstream_in_flight_;
  prometheus::Gauge* upstream_connections_;
  prometheus::Gauge* calls_in_flight_;
  prometheus::Gauge* ready_;
  prometheus::Gauge* request_id_bytes_;
  prometheus::Gauge* request_id_entries_;
  prometheus::Gauge* request_id_waiters_;
  prometheus::Gauge* upstream_buffered_bytes_;
  prometheus::Gauge* upstream_holds_;
  prometheus::Gauge* health_watches_;
  prometheus::Gauge* ops_connections_;
  prometheus::Gauge* grpc_connections_;
  prometheus::Counter* grpc_connections_refused_;
  prometheus::Counter* grpc_connections_cut_;
  prometheus::Counter* upstream_read_yields_;
  prometheus::Family<prometheus::Counter>* log_lines_dropped_;
  prometheus::Family<prometheus::Gauge>* log_buffered_bytes_;
  prometheus::Gauge* last_reload_ok_;
  prometheus::Counter* reloads_ok_;
  prometheus::Counter* reloads_failed_;
  std::map<std::string, Method, std::less<>> methods_;  // Immutable after construction.
  absl::Mutex mu_;
  std::map<std::string, Endpoint> endpoints_ ABSL_GUARDED_BY(mu_);
  prometheus::Gauge* config_info_series_ ABSL_GUARDED_BY(mu_) = nullptr;
  // (tenant, quota) -> its used and limit gauges.
  std::map<std::pair<std::string, std::string>, std::pair<prometheus::Gauge*, prometheus::Gauge*>>
      quota_series_ ABSL_GUARDED_BY(mu_);
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_OPS_GATEWAY_METRICS_H_
