#include "server/ops/gateway_metrics.h"

#include <google/protobuf/descriptor.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdlib>
#include <iterator>
#include <utility>

#include "copilot/v1/copilot_service.pb.h"
#include "copilot/v1/resources.pb.h"

namespace copilot::gateway {
namespace {

constexpr char kService[] = "copilot.v1.CopilotService";

// go-grpc-prometheus's handling-time buckets, extended to 300 s for answer generation.
const prometheus::Histogram::BucketBoundaries& LatencyBuckets() {
  static const auto* const buckets = new prometheus::Histogram::BucketBoundaries{
      0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300};
  return *buckets;
}

// The gateway's own time per call is expected well under a millisecond.
const prometheus::Histogram::BucketBoundaries& OverheadBuckets() {
  static const auto* const buckets = new prometheus::Histogram::BucketBoundaries{
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1};
  return *buckets;
}

}  // namespace

absl::string_view GrpcCodeName(int code) {
  static constexpr absl::string_view kNames[kGrpcCodeCount] = {
      "OK",       "Canceled",       "Unknown",          "InvalidArgument",   "DeadlineExceeded",
      "NotFound", "AlreadyExists",  "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
      "Aborted",  "OutOfRange",     "Unimplemented",    "Internal",          "Unavailable",
      "DataLoss", "Unauthenticated"};
  if (code < 0 || code >= kGrpcCodeCount) return "Unknown";
  return kNames[code];
}

int UpstreamStatusClass(int http_status) {
  if (http_status == 429) return 3;
  if (http_status >= 200 && http_status < 300) return 0;
  if (http_status >= 300 && http_status < 400) return 1;
  if (http_status >= 400 && http_status < 500) return 2;
  if (http_status >= 500 && http_status < 600) return 4;
  return 5;
}

absl::string_view UpstreamStatusClassName(int status_class) {
  static constexpr absl::string_view kNames[kUpstreamStatusClassCount] = {"2xx", "3xx", "4xx",
                                                                          "429", "5xx", "error"};
  if (status_class < 0 || status_class >= kUpstreamStatusClassCount) return "error";
  return kNames[status_class];
}

CounterSeries::CounterSeries(prometheus::Family<prometheus::Counter>& family,
                             std::vector<std::string> label_names)
    : family_(family), label_names_(std::move(label_names)) {}

prometheus::Counter& CounterSeries::Get(std::initializer_list<absl::string_view> values) {
  if (values.size() != label_names_.size()) std::abort();  // A caller's bug: no such series.
  // Built in this thread's buffer: a series found (every call but its first) allocates nothing.
  thread_local std::string key;
  key.clear();
  for (const absl::string_view value : values) {
    std::array<char, 20> digits{};  // Appended by hand: StrAppend was ~550 instructions a value.
    char* const end = std::to_chars(digits.data(), digits.data() + digits.size(), value.size()).ptr;
    key.append(digits.data(), end).append(1, ':').append(value.data(), value.size());
  }
  {
    absl::ReaderMutexLock lock(&mu_);
    if (auto it = series_.find(key); it != series_.end()) return *it->second;
  }
  prometheus::Labels labels;
  auto name = label_names_.begin();
  for (const absl::string_view value : values) labels.emplace(*name++, std::string(value));
  prometheus::Counter& counter = family_.Add(labels);  // The same series for the same labels.
  absl::MutexLock lock(&mu_);
  series_.emplace(key, &counter);
  return counter;
}

GatewayMetrics::GatewayMetrics(absl::string_view version)
    : registry_(std::make_shared<prometheus::Registry>()),
      tenant_calls_(prometheus::BuildCounter()
                        .Name("copilot_gateway_tenant_calls_total")
                        .Help("Calls finished, by configured tenant, gRPC method and code.")
                        .Register(*registry_)),
      upstream_requests_(prometheus::BuildCounter()
                             .Name("copilot_gateway_upstream_requests_total")
                             .Help("Upstream HTTP requests finished, by endpoint and status class "
                                   "(2xx, 3xx, 4xx, 429, 5xx, error = no HTTP status).")
                             .Register(*registry_)),
      upstream_duration_(prometheus::BuildHistogram()
                             .Name("copilot_gateway_upstream_request_duration_seconds")
                             .Help("Upstream HTTP request time, start to last byte, by endpoint.")
                             .Register(*registry_)),
      upstream_ttfb_(prometheus::BuildHistogram()
                         .Name("copilot_gateway_upstream_time_to_first_byte_seconds")
                         .Help("Upstream time from request start to response headers.")
                         .Register(*registry_)),
      upstream_transport_errors_(
          prometheus::BuildCounter()
              .Name("copilot_gateway_upstream_transport_errors_total")
              .Help("Upstream requests that ended without an HTTP status, by reason "
                    "(upstream_unreachable, upstream_tls_error, upstream_reset, ...).")
              .Register(*registry_)),
      reloads_(prometheus::BuildCounter()
                   .Name("copilot_gateway_config_reloads_total")
                   .Help("Config reloads by result (ok: applied; failed: refused, old config "
                         "stays in force).")
                   .Register(*registry_)),
      config_info_(prometheus::BuildGauge()
                       .Name("copilot_gateway_config_info")
                       .Help("1, labelled with the SHA-256 of the config file in force.")
                       .Register(*registry_)),
      limit_decisions_(prometheus::BuildCounter()
                           .Name("copilot_gateway_limit_decisions_total")
                           .Help("Admission decisions by tenant, limit (tenant_rate, "
                                 "tenant_concurrency, upstream_budget) and decision (allowed, "
                                 "limited, degraded; tenant_quota also unavailable).")
                           .Register(*registry_)),
      usage_answers_(prometheus::BuildCounter()
                         .Name("copilot_gateway_usage_answers_total")
                         .Help("Answer generations (Run, StreamRun, Complete, StreamComplete) that "
                               "reached the upstream, by tenant, assistant (configured IDs, else "
                               "other) and status (ok, error).")
                         .Register(*registry_)),
      usage_characters_(prometheus::BuildCounter()
                            .Name("copilot_gateway_usage_characters_total")
                            .Help("Characters (Unicode code points of message content) by tenant, "
                                  "assistant and direction (in: sent by callers with AddMessage, "
                                  "Complete and StreamComplete; out: answers received).")
                            .Register(*registry_)),
      usage_upstream_seconds_(prometheus::BuildCounter()
                                  .Name("copilot_gateway_usage_upstream_seconds_total")
                                  .Help("Seconds the upstream spent on answer generations, by "
                                        "tenant and assistant.")
                                  .Register(*registry_)),
      usage_threads_(prometheus::BuildCounter()
                         .Name("copilot_gateway_usage_threads_created_total")
                         .Help("Threads created, by tenant and assistant.")
                         .Register(*registry_)),
      quota_used_(prometheus::BuildGauge()
                      .Name("copilot_gateway_tenant_quota_used")
                      .Help("Use of a tenant's quota (answers_per_day, answers_per_month, "
                            "characters_per_day, characters_per_month) in the current period, as "
                            "last seen by this replica (shared figures with Redis).")
                      .Register(*registry_)),
      quota_limit_(prometheus::BuildGauge()
                       .Name("copilot_gateway_tenant_quota_limit")
                       .Help("A tenant's configured quota, by quota.")
                       .Register(*registry_)),
      retries_(prometheus::BuildCounter()
                   .Name("copilot_gateway_upstream_retries_total")
                   .Help("Upstream requests sent again, by endpoint and reason (the transport's "
                         "reason for the failed attempt, or http_429, http_502, ...).")
                   .Register(*registry_)),
      retries_denied_(prometheus::BuildCounter()
                          .Name("copilot_gateway_upstream_retries_denied_total")
                          .Help("Retries the rules allowed but that were not made, by endpoint "
                                "and cause (budget: the retry budget is spent; deadline; "
                                "attempts: max_attempts reached).")
                          .Register(*registry_)),
      circuit_transitions_(prometheus::BuildCounter()
                               .Name("copilot_gateway_upstream_circuit_transitions_total")
                               .Help("Circuit breaker transitions, by the state entered (open, "
                                     "half_open, closed).")
                               .Register(*registry_)),
      circuit_rejected_(prometheus::BuildCounter()
                            .Name("copilot_gateway_upstream_circuit_rejected_total")
                            .Help("Upstream requests failed fast (UNAVAILABLE "
                                  "upstream_circuit_open) by the circuit breaker, by endpoint.")
                            .Register(*registry_)),
      shared_request_id_lookups_(
          prometheus::BuildCounter()
              .Name("copilot_gateway_request_id_shared_lookups_total")
              .Help("Lookups of request_ids in the store shared by the replicas (Redis), by "
                    "result: claimed, remembered, in_flight (a retry waiting for another "
                    "replica; once per poll), reused, unknown, unavailable (Redis did not "
                    "answer: redis.on_failure applies).")
              .Register(*registry_)),
      tenant_call_series_(tenant_calls_, {"tenant", "grpc_method", "grpc_code"}),
      limit_decision_series_(limit_decisions_, {"tenant", "limit", "decision"}),
      answer_series_(usage_answers_, {"tenant", "assistant", "status"}),
      character_series_(usage_characters_, {"tenant", "assistant", "direction"}),
      upstream_second_series_(usage_upstream_seconds_, {"tenant", "assistant"}),
      thread_series_(usage_threads_, {"tenant", "assistant"}),
      circuit_state_(&prometheus::BuildGauge()
                          .Name("copilot_gateway_upstream_circuit_state")
                          .Help("The upstream circuit breaker: 0 closed, 1 open, 2 half-open.")
                          .Register(*registry_)
                          .Add({})) {
  for (absl::string_view to : {"open", "half_open", "closed"}) {
    circuit_transitions_.Add({{"to", std::string(to)}});
  }
  auto& admitted = prometheus::BuildGauge()
                       .Name("copilot_gateway_admitted_in_flight")
                       .Help("Admitted upstream calls in flight, by class (answer, other).")
                       .Register(*registry_);
  auto& waits = prometheus::BuildHistogram()
                    .Name("copilot_gateway_budget_wait_seconds")
                    .Help("Time calls waited for the upstream budget, by class.")
                    .Register(*registry_);
  for (CallClass klass : {CallClass::kAnswer, CallClass::kOther}) {
    const std::string name(CallClassName(klass));
    admitted_in_flight_[static_cast<std::size_t>(klass)] = &admitted.Add({{"class", name}});
    budget_wait_[static_cast<std::size_t>(klass)] = &waits.Add(
        {{"class", name}}, prometheus::Histogram::BucketBoundaries{
                               0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60});
  }
  auto& started = prometheus::BuildCounter()
                      .Name("grpc_server_started_total")
                      .Help("Total number of RPCs started on the server.")
                      .Register(*registry_);
  auto& handled = prometheus::BuildCounter()
                      .Name("grpc_server_handled_total")
                      .Help(
                          "Total number of RPCs completed on the server, regardless of "
                          "success or failure.")
                      .Register(*registry_);
  auto& received = prometheus::BuildCounter()
                       .Name("grpc_server_msg_received_total")
                       .Help("Total number of RPC stream messages received on the server.")
                       .Register(*registry_);
  auto& sent = prometheus::BuildCounter()
                   .Name("grpc_server_msg_sent_total")
                   .Help("Total number of gRPC stream messages sent by the server.")
                   .Register(*registry_);
  auto& handling = prometheus::BuildHistogram()
                       .Name("grpc_server_handling_seconds")
                       .Help(
                           "Histogram of response latency (seconds) of gRPC that had been "
                           "application-level handled by the server.")
                       .Register(*registry_);
  auto& overhead = prometheus::BuildHistogram()
                       .Name("copilot_gateway_overhead_seconds")
                       .Help(
                           "The gateway's own time per call: total handling time minus the "
                           "time spent waiting for upstream requests.")
                       .Register(*registry_);
  // Referencing a generated type links (and registers) copilot_service.pb.cc; a lookup by name
  // in the generated pool alone could find nothing.
  const google::protobuf::ServiceDescriptor* service =
      copilot::v1::RunRequest::descriptor()->file()->FindServiceByName("CopilotService");
  for (int i = 0; i < service->method_count(); ++i) {
    const google::protobuf::MethodDescriptor* descriptor = service->method(i);
    Method method;
    method.name = descriptor->name();
    method.type = descriptor->server_streaming() ? "server_stream" : "unary";
    const prometheus::Labels labels = {
        {"grpc_type", method.type}, {"grpc_service", kService}, {"grpc_method", method.name}};
    method.started = &started.Add(labels);
    method.msg_received = &received.Add(labels);
    method.msg_sent = &sent.Add(labels);
    method.handling = &handling.Add(labels, LatencyBuckets());
    method.overhead = &overhead.Add({{"grpc_method", method.name}}, OverheadBuckets());
    for (int code = 0; code < kGrpcCodeCount; ++code) {
      prometheus::Labels with_code = labels;
      with_code["grpc_code"] = std::string(GrpcCodeName(code));
      method.handled[static_cast<std::size_t>(code)] = &handled.Add(with_code);
    }
    methods_.emplace(method.name, std::move(method));
  }
  upstream_in_flight_ = &prometheus::BuildGauge()
                             .Name("copilot_gateway_upstream_in_flight")
                             .Help("Upstream HTTP requests in flight.")
                             .Register(*registry_)
                             .Add({});
  upstream_connections_ =
      &prometheus::BuildGauge()
           .Name("copilot_gateway_upstream_connections")
           .Help(
               "Upstream connections open, in use or idle in a connection cache (one cache per "
               "tenant and event loop with upstream.connections_per_tenant).")
           .Register(*registry_)
           .Add({});
  calls_in_flight_ = &prometheus::BuildGauge()
                          .Name("copilot_gateway_calls_in_flight")
                          .Help("gRPC calls of copilot.v1.CopilotService in flight.")
                          .Register(*registry_)
                          .Add({});
  ready_ = &prometheus::BuildGauge()
                .Name("copilot_gateway_ready")
                .Help("1 while readiness is SERVING; 0 while starting or draining.")
                .Register(*registry_)
                .Add({});
  auto gauge = [this](const char* name, const char* help) {
    return &prometheus::BuildGauge().Name(name).Help(help).Register(*registry_).Add({});
  };
  request_id_bytes_ =
      gauge("copilot_gateway_request_id_bytes",
            "Memory held for request_id de-duplication (keys, fingerprints, results), bytes; "
            "bounded by request_ids.max_bytes.");
  request_id_entries_ = gauge("copilot_gateway_request_id_entries",
                              "request_ids remembered or in flight; bounded by "
                              "request_ids.max_entries.");
  request_id_waiters_ = gauge("copilot_gateway_request_id_waiters",
                              "Retries waiting for the first attempt of their request_id (run "
                              "here or, with Redis, by another replica).");
  upstream_buffered_bytes_ =
      gauge("copilot_gateway_upstream_buffered_bytes",
            "Bytes of upstream responses held (bodies being collected, partial stream lines); "
            "bounded by upstream.max_buffered_bytes.");
  upstream_holds_ = gauge("copilot_gateway_upstream_holds",
                          "Upstream API keys whose calls are held after a 429, per call class; "
                          "each hold lasts at most upstream_budget.max_retry_after.");
  health_watches_ = gauge("copilot_gateway_health_watches",
                          "Open grpc.health.v1.Health/Watch streams; bounded by "
                          "max_health_watches.");
  ops_connections_ = gauge("copilot_gateway_ops_connections",
                           "Open connections to /metrics, /healthz and /readyz (this scrape's "
                           "included); at most 256, the oldest idle one closed to make room.");
  grpc_connections_ = gauge("copilot_gateway_grpc_connections",
                            "Open gRPC client connections over both listeners; bounded by "
                            "server.max_connections.");
  grpc_connections_refused_ = &prometheus::BuildCounter()
                                   .Name("copilot_gateway_grpc_connections_refused_total")
                                   .Help(
                                       "gRPC client connections closed at once because "
                                       "server.max_connections were open.")
                                   .Register(*registry_)
                                   .Add({});
  grpc_connections_cut_ = &prometheus::BuildCounter()
                               .Name("copilot_gateway_grpc_connections_cut_total")
                               .Help(
                                   "gRPC client connections cut because they had more calls in "
                                   "flight than server.max_calls_per_connection (a client "
                                   "opening and resetting streams without end).")
                               .Register(*registry_)
                               .Add({});
  upstream_read_yields_ = &prometheus::BuildCounter()
                               .Name("copilot_gateway_upstream_read_yields_total")
                               .Help(
                                   "Times an upstream response took upstream.max_read_per_turn "
                                   "in one turn of its event loop and yielded to the loop's "
                                   "other connections.")
                               .Register(*registry_)
                               .Add({});
  log_lines_dropped_ = &prometheus::BuildCounter()
                            .Name("copilot_gateway_log_lines_dropped_total")
                            .Help(
                                "Log lines lost: refused because log_buffer_bytes were waiting "
                                "to be written (stderr or the disk not taking them), or lost to "
                                "a failed write; log is stderr or audit (usage.audit_log file).")
                            .Register(*registry_);
  log_buffered_bytes_ = &prometheus::BuildGauge()
                             .Name("copilot_gateway_log_buffered_bytes")
                             .Help(
                                 "Bytes of log lines waiting to be written (at most "
                                 "log_buffer_bytes, besides the batch being written).")
                             .Register(*registry_);
  last_reload_ok_ = &prometheus::BuildGauge()
                         .Name("copilot_gateway_config_last_reload_successful")
                         .Help(
                             "1 when the last config reload was applied (or none was tried "
                             "yet), 0 when it was refused.")
                         .Register(*registry_)
                         .Add({});
  last_reload_ok_->Set(1);
  reloads_ok_ = &reloads_.Add({{"result", "ok"}});
  reloads_failed_ = &reloads_.Add({{"result", "failed"}});
  prometheus::BuildGauge()
      .Name("copilot_gateway_build_info")
      .Help("1, labelled with the gateway's version.")
      .Register(*registry_)
      .Add({{"version", std::string(version)}})
      .Set(1);
}

const GatewayMetrics::Method* GatewayMetrics::FindMethod(absl::string_view name) const {
  auto it = methods_.find(name);
  return it == methods_.end() ? nullptr : &it->second;
}

void GatewayMetrics::CountTenantCall(const std::string& tenant, const Method& method, int code) {
  tenant_call_series_.Get({tenant, method.name, GrpcCodeName(code)}).Increment();
}

const GatewayMetrics::Endpoint& GatewayMetrics::UpstreamEndpoint(const std::string& endpoint) {
  absl::MutexLock lock(&mu_);
  auto it = endpoints_.find(endpoint);
  if (it != endpoints_.end()) return it->second;
  Endpoint series;
  for (int i = 0; i < kUpstreamStatusClassCount; ++i) {
    series.requests[static_cast<std::size_t>(i)] = &upstream_requests_.Add(
        {{"endpoint", endpoint}, {"status", std::string(UpstreamStatusClassName(i))}});
  }
  series.duration = &upstream_duration_.Add({{"endpoint", endpoint}}, LatencyBuckets());
  series.time_to_first_byte = &upstream_ttfb_.Add({{"endpoint", endpoint}}, LatencyBuckets());
  return endpoints_.emplace(endpoint, series).first->second;
}

void GatewayMetrics::CountUpstreamTransportError(absl::string_view reason) {
  // The transport's reasons (server/transport/http_transport.h), and the gateway's own.
  static constexpr absl::string_view kKnown[] = {
      "upstream_unreachable",    "upstream_tls_error",          "upstream_reset",
      "upstream_stalled",        "upstream_transport_error",    "upstream_timeout",
      "upstream_call_cancelled", "upstream_response_too_large", "upstream_transfers_exhausted",
      "transport_shutdown",      "transport_misconfigured",     "upstream_proxy_error",
      "upstream_refused_stream", "upstream_bad_response"};
  const bool known = std::find(std::begin(kKnown), std::end(kKnown), reason) != std::end(kKnown);
  upstream_transport_errors_.Add({{"reason", known ? std::string(reason) : "other"}}).Increment();
}

void GatewayMetrics::OnRetry(absl::string_view endpoint, absl::string_view reason) {
  retries_.Add({{"endpoint", std::string(endpoint)}, {"reason", std::string(reason)}}).Increment();
}

void GatewayMetrics::OnRetryDenied(absl::string_view endpoint, absl::string_view cause) {
  retries_denied_.Add({{"endpoint", std::string(endpoint)}, {"cause", std::string(cause)}})
      .Increment();
}

void GatewayMetrics::OnCircuitTransition(CircuitState /*from*/, CircuitState to) {
  circuit_state_->Set(static_cast<double>(static_cast<int>(to)));
  circuit_transitions_.Add({{"to", std::string(CircuitStateName(to))}}).Increment();
}

void GatewayMetrics::OnCircuitRejected(absl::string_view endpoint) {
  circuit_rejected_.Add({{"endpoint", std::string(endpoint)}}).Increment();
}

void GatewayMetrics::SharedRequestIdLookup(absl::string_view result) {
  shared_request_id_lookups_.Add({{"result", std::string(result)}}).Increment();
}

void GatewayMetrics::SetLogStats(const std::string& log, const LogWriter::Stats& stats) {
  absl::MutexLock lock(&mu_);  // Two scrapes at once must not both add the same difference.
  prometheus::Counter& dropped = log_lines_dropped_->Add({{"log", log}});
  const double more = static_cast<double>(stats.lines_dropped) - dropped.Value();
  if (more > 0) dropped.Increment(more);
  log_buffered_bytes_->Add({{"log", log}}).Set(static_cast<double>(stats.buffered_bytes));
}

void GatewayMetrics::RecordReload(bool ok) {
  (ok ? reloads_ok_ : reloads_failed_)->Increment();
  last_reload_ok_->Set(ok ? 1 : 0);
}

void GatewayMetrics::Decided(const std::string& tenant, absl::string_view limit,
                             absl::string_view decision) {
  limit_decision_series_.Get({tenant, limit, decision}).Increment();
}

void GatewayMetrics::Answered(const AnswerRecord& record) {
  const std::string& tenant = record.tenant;
  const std::string& assistant = record.assistant_label;
  answer_series_.Get({tenant, assistant, record.code == absl::StatusCode::kOk ? "ok" : "error"})
      .Increment();
  character_series_.Get({tenant, assistant, "in"})
      .Increment(static_cast<double>(record.characters_in));
  character_series_.Get({tenant, assistant, "out"})
      .Increment(static_cast<double>(record.characters_out));
  upstream_second_series_.Get({tenant, assistant})
      .Increment(absl::ToDoubleSeconds(record.upstream_time));
}

void GatewayMetrics::MessageAdded(const std::string& tenant, const std::string& assistant_label,
                                  int64_t characters) {
  character_series_.Get({tenant, assistant_label, "in"}).Increment(static_cast<double>(characters));
}

void GatewayMetrics::ThreadCreated(const std::string& tenant, const std::string& assistant_label) {
  thread_series_.Get({tenant, assistant_label}).Increment();
}

void GatewayMetrics::SetQuotaSamples(const std::vector<QuotaSample>& samples) {
  absl::MutexLock lock(&mu_);
  std::map<std::pair<std::string, std::string>, std::pair<prometheus::Gauge*, prometheus::Gauge*>>
      current;
  for (const QuotaSample& sample : samples) {
    const std::pair<std::string, std::string> key{sample.tenant, sample.quota};
    auto it = quota_series_.find(key);
    std::pair<prometheus::Gauge*, prometheus::Gauge*> series;
    if (it != quota_series_.end()) {
      series = it->second;
      quota_series_.erase(it);
    } else {
      const prometheus::Labels labels = {{"tenant", sample.tenant}, {"quota", sample.quota}};
      series = {&quota_used_.Add(labels), &quota_limit_.Add(labels)};
    }
    series.first->Set(static_cast<double>(sample.used));
    series.second->Set(static_cast<double>(sample.limit));
    current.emplace(key, series);
  }
  for (auto& [key, series] : quota_series_) {  // No longer configured.
    quota_used_.Remove(series.first);
    quota_limit_.Remove(series.second);
  }
  quota_series_ = std::move(current);
}

void GatewayMetrics::SetRedisDegraded(bool degraded) {
  absl::MutexLock lock(&mu_);
  if (redis_degraded_ == nullptr) {
    redis_degraded_ = &prometheus::BuildGauge()
                           .Name("copilot_gateway_redis_degraded")
                           .Help(
                               "1 while Redis (shared limits) is unreachable and the gateway "
                               "runs in its configured degraded mode (redis.on_failure).")
                           .Register(*registry_)
                           .Add({});
  }
  redis_degraded_->Set(degraded ? 1 : 0);
}

void GatewayMetrics::Waited(CallClass klass, absl::Duration wait) {
  budget_wait_[static_cast<std::size_t>(klass)]->Observe(absl::ToDoubleSeconds(wait));
}

void GatewayMetrics::InFlight(CallClass klass, int delta) {
  admitted_in_flight_[static_cast<std::size_t>(klass)]->Increment(delta);
}

void GatewayMetrics::SetConfigHash(const std::string& sha256_hex) {
  absl::MutexLock lock(&mu_);
  if (config_info_series_ != nullptr) config_info_.Remove(config_info_series_);
  config_info_series_ = &config_info_.Add({{"sha256", sha256_hex}});
  config_info_series_->Set(1);
}

}  // namespace copilot::gateway
