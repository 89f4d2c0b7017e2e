#include "server/app/gateway_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/app/log.h"
#include "server/common/cpus.h"
#include "server/common/crypto.h"
#include "server/common/pem_file.h"
#include "server/config/config_loader.h"
#include "server/ops/instrumented_transport.h"
#include "server/upstream/haufe_client.h"

namespace copilot::gateway {
namespace {

// "host:port" with the port replaced by `port`.
std::string WithPort(const std::string& listen, int port) {
  const std::size_t colon = listen.rfind(':');
  return absl::StrCat(listen.substr(0, colon), ":", port);
}

HaufeClientConfig ClientConfig(const GatewayConfig& config) {
  HaufeClientConfig client;
  client.base_url = config.upstream.base_url;
  client.connect_timeout = config.upstream.connect_timeout;
  client.stall_timeout = config.upstream.stall_timeout;
  client.max_response_bytes = config.upstream.max_response_bytes;
  client.max_ndjson_line_bytes = config.upstream.max_ndjson_line_bytes;
  client.inline_decode_bytes = config.upstream.inline_decode_bytes;
  client.connections_per_tenant = config.upstream.connections_per_tenant;
  return client;
}

// GetUsage from the quota ledger.
class LedgerUsageReader final : public UsageReader {
 public:
  explicit LedgerUsageReader(QuotaLedger& ledger) : ledger_(ledger) {}
  void ReadUsage(
      const Tenant& tenant,
      absl::AnyInvocable<void(absl::StatusOr<copilot::v1::GetUsageResponse>) &&> done) override {
    ledger_.Read(
        tenant.id, tenant.limits.quotas,
        [done = std::move(done)](absl::StatusOr<UsageReport> report) mutable {
          if (!report.ok()) return std::move(done)(report.status());
          copilot::v1::GetUsageResponse response;
          for (const PeriodUsage& usage : report->periods) {
            copilot::v1::UsagePeriod& period =
                usage.period.name == "day" ? *response.mutable_day() : *response.mutable_month();
            period.mutable_start_time()->set_seconds(absl::ToUnixSeconds(usage.period.start));
            period.mutable_end_time()->set_seconds(absl::ToUnixSeconds(usage.period.end));
            period.set_answers(usage.answers);
            period.set_characters(usage.characters);
            period.set_answers_quota(usage.answers_limit);
            period.set_characters_quota(usage.characters_limit);
            if (usage.answers_limit > 0) {
              period.set_answers_remaining(
                  std::max<int64_t>(0, usage.answers_limit - usage.answers));
            }
            if (usage.characters_limit > 0) {
              period.set_characters_remaining(
                  std::max<int64_t>(0, usage.characters_limit - usage.characters));
            }
          }
          std::move(done)(std::move(response));
        });
  }

 private:
  QuotaLedger& ledger_;
};

CoreOptions CoreOptionsOf(const GatewayConfig& config, const GatewaySecrets& secrets) {
  CoreOptions options;
  options.api_key = secrets.api_key;
  options.default_tenant.id = config.default_tenant.id;
  options.default_tenant.licence = secrets.licence;
  options.max_call_timeout = config.upstream.max_call_timeout;
  options.limits.max_content_chars = config.limits.max_content_chars;
  options.limits.max_messages = config.limits.max_messages;
  options.limits.max_tool_calls = config.limits.max_tool_calls;
  options.limits.max_tool_arguments_bytes = config.limits.max_tool_arguments_bytes;
  options.limits.max_tools = config.limits.max_tools;
  options.limits.max_tools_bytes = config.limits.max_tools_bytes;
  options.limits.max_title_chars = config.limits.max_title_chars;
  options.request_ids.ttl = config.request_ids.ttl;
  options.request_ids.max_entries = config.request_ids.max_entries;
  options.request_ids.max_bytes = config.request_ids.max_bytes;
  options.request_ids.max_tenant_share = config.request_ids.max_tenant_share;
  options.request_ids.max_waiters_per_request = config.request_ids.max_waiters_per_request;
  options.request_ids.max_waiters_per_tenant = config.request_ids.max_waiters_per_tenant;
  return options;
}

ListenerIdentity TlsIdentity(const TlsListenerConfig& tls) {
  ListenerIdentity identity;
  for (const CallerIdentity method : tls.identity) {
    if (method == CallerIdentity::kMtls) identity.mtls = true;
    if (method == CallerIdentity::kBearer) identity.bearer = true;
  }
  return identity;
}

// TLS server credentials whose certificate files are re-read every refresh_interval; client
// certificates are requested and verified against client_ca_file when it is set (required when
// mtls is the only identity accepted).
std::shared_ptr<grpc::ServerCredentials> TlsCredentials(const TlsListenerConfig& tls) {
  const unsigned refresh =
      static_cast<unsigned>(std::max<int64_t>(1, absl::ToInt64Seconds(tls.refresh_interval)));
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      tls.key_file, tls.cert_file, tls.client_ca_file, refresh);
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_identity_key_cert_pairs();
  const ListenerIdentity identity = TlsIdentity(tls);
  if (tls.client_ca_file.empty()) {
    options.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  } else {
    options.watch_root_certs();
    options.set_cert_request_type(identity.bearer
                                      ? GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY
                                      : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  }
  return grpc::experimental::TlsServerCredentials(options);
}

// The listener's certificate, key and client CA are read at start-up: gRPC's certificate watcher
// would only log that it cannot read them and fail every handshake.
absl::Status CheckTlsListenerFiles(const TlsListenerConfig& tls) {
  if (absl::Status status = CheckPemFile("tls.cert_file", tls.cert_file, PemKind::kCertificates);
      !status.ok()) {
    return status;
  }
  if (absl::Status status = CheckPemFile("tls.key_file", tls.key_file, PemKind::kPrivateKey);
      !status.ok()) {
    return status;
  }
  if (tls.client_ca_file.empty()) return absl::OkStatus();
  return CheckPemFile("tls.client_ca_file", tls.client_ca_file, PemKind::kCertificates);
}

// The upstream budget of `config` (0 disables a window).
BudgetConfig BudgetOf(const GatewayConfig& config) {
  const UpstreamBudgetConfig& budget = config.upstream_budget;
  BudgetConfig out;
  const absl::Duration second = absl::Seconds(1) + budget.window_margin;
  const absl::Duration minute = absl::Seconds(60) + budget.window_margin;
  out.answer = {{budget.answer_per_second, second}, {budget.answer_per_minute, minute}};
  out.other = {{budget.other_per_second, second}, {budget.other_per_minute, minute}};
  out.max_wait = budget.max_wait;
  out.max_retry_after = budget.max_retry_after;
  out.slot_ttl = config.upstream.max_call_timeout + absl::Minutes(1);
  return out;
}

int Milliseconds(absl::Duration duration) {
  return static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(duration), INT32_MAX));
}

// HTTP/2 keepalive and connection age (KeepaliveConfig).
void ApplyKeepalive(const KeepaliveConfig& keepalive, grpc::ServerBuilder& builder) {
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, Milliseconds(keepalive.time));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, Milliseconds(keepalive.timeout));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             Milliseconds(keepalive.min_client_ping_interval));
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 2);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS,
                             Milliseconds(keepalive.max_connection_idle));
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS,
                             Milliseconds(keepalive.max_connection_age));
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
                             Milliseconds(keepalive.max_connection_age_grace));
}

// Bounds on what callers can make the server hold, credentials or not: threads, memory
// (buffers of connections and calls; past it gRPC stops reading and refuses new calls),
// concurrent calls per connection (health Watch streams included), the time a new connection
// has to finish its handshake; keepalive and connection age. (The number of connections is
// GrpcListeners'.)
void ApplyServerBounds(const ServerConfig& server, grpc::ServerBuilder& builder) {
  ApplyKeepalive(server.keepalive, builder);
  grpc::ResourceQuota quota("copilot-gateway");
  quota.SetMaxThreads(server.max_threads);
  quota.Resize(server.max_grpc_memory);
  builder.SetResourceQuota(quota);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, server.max_concurrent_streams);
  builder.AddChannelArgument(GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS,
                             Milliseconds(server.handshake_timeout));
  // A second gateway on the same port must fail, not silently share it (gRPC enables
  // SO_REUSEPORT by default on Linux).
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
}

// The thread-handle keys of `secrets`; without a signing key, a random one (with a warning).
ThreadHandleKeys ThreadHandleKeysOf(const GatewaySecrets& secrets) {
  ThreadHandleKeys keys{secrets.thread_signing_key, secrets.previous_thread_signing_keys,
                        secrets.user_id_key};
  if (keys.current.empty()) {
    keys.current = RandomBytes(32);
    LogLine(
        "warning: no thread_signing_key_file/_env configured: thread IDs are signed with a "
        "random key and stop working when this process ends (and on other replicas)");
  }
  if (keys.user_id_key.empty()) {
    LogLine(absl::StrCat(
        "warning: no user_id_key_file/_env configured: end-user IDs are encrypted under a key "
        "derived from the thread signing key, so rotating that key changes every end user's "
        "upstream identity",
        secrets.thread_signing_key.empty() ? " (with the random key: on every restart and replica)"
                                           : ""));
  }
  return keys;
}

ListenerIdentity PlaintextIdentity(const GatewayConfig& config) {
  ListenerIdentity identity;
  identity.bearer = config.server.identity == CallerIdentity::kBearer;
  identity.anonymous = config.server.identity == CallerIdentity::kNone;
  return identity;
}

}  // namespace

std::shared_ptr<const TenantDirectory> BuildTenantDirectory(const GatewayConfig& config,
                                                            const GatewaySecrets& secrets) {
  std::vector<DirectoryEntry> entries;
  for (const ResolvedTenant& resolved : secrets.tenants) {
    entries.push_back(DirectoryEntry{std::make_shared<const Tenant>(resolved.tenant),
                                     resolved.token_sha256, resolved.identities});
  }
  Tenant anonymous;
  anonymous.id = config.default_tenant.id;
  anonymous.licence = secrets.licence;
  return std::make_shared<const TenantDirectory>(std::move(entries),
                                                 std::make_shared<const Tenant>(anonymous));
}

absl::StatusOr<std::unique_ptr<GatewayServer>> GatewayServer::Start(
    const GatewayConfig& config, const GatewaySecrets& secrets, GatewayReplacements replacements) {
  std::unique_ptr<GatewayServer> gateway(new GatewayServer());
  gateway->clock_ = replacements.clock != nullptr ? std::move(replacements.clock)
                                                  : std::make_shared<SystemClock>();
  gateway->metrics_ = std::make_unique<GatewayMetrics>(COPILOT_GATEWAY_VERSION);
  // In the order each needs the one before: the core calls quota_api_ -> admitted_api_ ->
  // usage_api_ -> api_ -> transport_.
  absl::Status status = gateway->StartOpsListener(config);
  if (status.ok()) status = gateway->BuildUpstream(config, secrets, replacements);
  if (status.ok()) status = gateway->BuildLimits(config, secrets);
  if (status.ok()) status = gateway->BuildCore(config, secrets);
  if (status.ok()) status = gateway->StartGrpcServer(config);
  if (!status.ok()) return status;
  gateway->built_.store(true, std::memory_order_release);
  gateway->LogServing(config, secrets);
  gateway->StartReadiness();
  return gateway;
}

absl::Status GatewayServer::StartOpsListener(const GatewayConfig& config) {
  if (!config.server.metrics_listen.has_value()) return absl::OkStatus();
  OpsHandlers handlers;
  handlers.metrics = [this] { return ScrapeMetrics(); };
  handlers.live = [] { return true; };
  handlers.ready = [this] { return ready(); };
  absl::StatusOr<std::unique_ptr<OpsHttpServer>> ops =
      OpsHttpServer::Start(*config.server.metrics_listen, std::move(handlers));
  if (!ops.ok()) return ops.status();
  ops_http_ = *std::move(ops);
  ops_view_ = ops_http_.get();
  return absl::OkStatus();
}

absl::Status GatewayServer::BuildUpstream(const GatewayConfig& config,
                                          const GatewaySecrets& secrets,
                                          GatewayReplacements& replacements) {
  if (replacements.api != nullptr) {
    api_ = std::move(replacements.api);
    return absl::OkStatus();
  }
  if (replacements.transport != nullptr) {
    transport_ = std::move(replacements.transport);
  } else {
    absl::StatusOr<std::shared_ptr<HttpTransport>> transport = MakeUpstreamTransport(
        config, secrets, [yields = &metrics_->upstream_read_yields()] { yields->Increment(); },
        [connections = &metrics_->upstream_connections()](int delta) {
          connections->Increment(delta);
        });
    if (!transport.ok()) return transport.status();
    transport_ = *std::move(transport);
  }
  transport_ = std::make_shared<InstrumentedTransport>(std::move(transport_), *metrics_, *clock_);
  transport_ = WithResilience(config.upstream, std::move(transport_), *clock_, *metrics_,
                              &upstream_refusing_);
  response_memory_ = std::make_unique<ResponseMemory>(config.upstream.max_buffered_bytes);
  decode_pool_ = std::make_unique<DecodePool>(config.upstream.decode_threads > 0
                                                  ? config.upstream.decode_threads
                                                  : std::min(4, UsableCpus()));
  api_ = std::make_shared<HaufeClient>(
      ClientConfig(config), transport_, [] { return absl::Now(); }, response_memory_.get(),
      decode_pool_.get());
  return absl::OkStatus();
}

absl::Status GatewayServer::BuildLimitStores(const GatewayConfig& config,
                                             const GatewaySecrets& secrets) {
  if (config.redis.url.empty()) {
    limit_store_ = std::make_unique<LocalLimitStore>(*clock_);
    return absl::OkStatus();
  }
  RedisLimitStoreOptions base;
  base.connect_timeout = config.redis.connect_timeout;
  base.command_timeout = config.redis.command_timeout;
  // Used with a rediss:// url (ParseRedisUrl turns TLS on), refused otherwise.
  base.tls.ca_file = config.redis.ca_file;
  base.tls.cert_file = config.redis.cert_file;
  base.tls.key_file = config.redis.key_file;
  absl::StatusOr<RedisLimitStoreOptions> redis_options = ParseRedisUrl(config.redis.url, base);
  if (!redis_options.ok()) return redis_options.status();
  if (!secrets.redis_password.empty()) redis_options->password = secrets.redis_password;
  const bool tls = redis_options->tls.enabled;
  absl::StatusOr<std::unique_ptr<RedisLimitStore>> redis =
      RedisLimitStore::Create(*std::move(redis_options));
  if (!redis.ok()) return redis.status();
  redis_ = redis->get();
  limit_store_ = *std::move(redis);
  if (config.redis.on_failure == RedisFailureMode::kFailOpen) {
    fallback_store_ = std::make_unique<LocalLimitStore>(*clock_);
    fallback_share_ = 1.0 / static_cast<double>(config.redis.replicas);
  }
  LogLine(absl::StrCat("limits shared in Redis", tls ? " over TLS" : "",
                       "; when it is unreachable: ", RedisFailureModeName(config.redis.on_failure),
                       fallback_store_ != nullptr
                           ? absl::StrCat(" (1/", config.redis.replicas, " of each limit here)")
                           : std::string()));
  return absl::OkStatus();
}

// Every upstream call is admitted first: the tenant's quotas, its limits, then the upstream
// budget, in this process or shared by all replicas in Redis; usage is recorded for the calls
// that reach the upstream.
absl::Status GatewayServer::BuildLimits(const GatewayConfig& config,
                                        const GatewaySecrets& secrets) {
  if (absl::Status status = BuildLimitStores(config, secrets); !status.ok()) return status;
  absl::TimeZone zone;
  if (!absl::LoadTimeZone(config.usage.time_zone, &zone)) {
    return absl::InvalidArgumentError(
        absl::StrCat("usage.time_zone: unknown time zone ", config.usage.time_zone));
  }
  std::vector<UsageEvents*> usage_events = {metrics_.get()};
  if (config.usage.audit_log != "off") {
    absl::StatusOr<std::unique_ptr<AuditLog>> audit =
        AuditLog::Open(config.usage.audit_log, config.server.log_buffer_bytes);
    if (!audit.ok()) return audit.status();
    audit_log_ = *std::move(audit);
    usage_events.push_back(audit_log_.get());
  }
  admission_ =
      std::make_unique<AdmissionController>(*limit_store_, *clock_, BudgetOf(config),
                                            metrics_.get(), fallback_store_.get(), fallback_share_);
  usage_api_ = std::make_unique<UsageHaufeApi>(*api_, *clock_, std::move(usage_events));
  admitted_api_ = std::make_unique<AdmittedHaufeApi>(
      *usage_api_, *admission_, config.upstream_budget.max_retry_after, upstream_refusing_);
  waiter_admission_ = std::make_unique<TenantWaiterAdmission>(*admission_);
  quota_ledger_ = std::make_unique<QuotaLedger>(*limit_store_, *clock_, zone, metrics_.get(),
                                                fallback_store_.get(), fallback_share_);
  quota_api_ = std::make_unique<QuotaHaufeApi>(*admitted_api_, *quota_ledger_);
  usage_reader_ = std::make_unique<LedgerUsageReader>(*quota_ledger_);
  return absl::OkStatus();
}

absl::Status GatewayServer::BuildCore(const GatewayConfig& config, const GatewaySecrets& secrets) {
  handles_ = std::make_unique<SignedThreadHandles>(ThreadHandleKeysOf(secrets));
  std::vector<std::string> ids = handles_->KeyIdsHex();
  LogLine(absl::StrCat("thread IDs signed with key id ", ids.front(),
                       ids.size() == 1 ? "" : "; also accepted: key id(s) ",
                       absl::StrJoin(ids.begin() + 1, ids.end(), ", ")));
  tenants_ = std::make_unique<TenantResolver>(BuildTenantDirectory(config, secrets));
  if (redis_ != nullptr && config.request_ids.max_entries > 0) {
    RedisRequestIdsOptions shared;
    shared.key_prefix = redis_->key_prefix();
    shared.ttl = config.request_ids.ttl;
    // The largest result this replica would remember itself.
    shared.max_result_bytes = static_cast<std::size_t>(
        static_cast<double>(config.request_ids.max_bytes) * config.request_ids.max_tenant_share);
    shared.fail_open = config.redis.on_failure == RedisFailureMode::kFailOpen;
    shared_request_ids_ = std::make_unique<RedisRequestIds>(*redis_, shared, metrics_.get());
    LogLine(
        absl::StrCat("request_id de-duplication shared by the replicas in Redis; when it is "
                     "unreachable: ",
                     RedisFailureModeName(config.redis.on_failure)));
  }
  core_ = std::make_unique<CopilotCore>(
      *quota_api_, *clock_, *handles_, CoreOptionsOf(config, secrets), tenants_.get(),
      waiter_admission_.get(), usage_reader_.get(), shared_request_ids_.get());
  AdapterOptions adapter_options;
  adapter_options.plaintext = PlaintextIdentity(config);
  adapter_options.tls = TlsIdentity(config.tls);
  adapter_options.max_queued_chunks = static_cast<std::size_t>(config.server.max_queued_chunks);
  adapter_options.metrics = metrics_.get();
  adapter_options.gate = &gate_;
  adapter_ = std::make_unique<CopilotServiceAdapter>(*core_, adapter_options);
  return absl::OkStatus();
}

// The service, grpc.health.v1.Health (services "", "liveness", "readiness",
// copilot.v1.CopilotService; our own, whose Watch streams are capped) and server reflection
// (v1alpha) on every listener.
absl::Status GatewayServer::StartGrpcServer(const GatewayConfig& config) {
  if (!config.tls.listen.empty()) {
    if (absl::Status status = CheckTlsListenerFiles(config.tls); !status.ok()) return status;
  }
  grpc::EnableDefaultHealthCheckService(false);
  health_ = std::make_unique<HealthService>(config.server.max_health_watches);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  ApplyServerBounds(config.server, builder);
  builder.SetMaxReceiveMessageSize(static_cast<int>(config.limits.max_request_bytes));
  // Our own sockets, accepted by GrpcListeners, which bounds the connections open at once.
  listeners_ =
      std::make_unique<GrpcListeners>(config.server.max_connections, [metrics = metrics_.get()] {
        if (metrics != nullptr) metrics->grpc_connections_refused().Increment();
      });
  // A connection with far more calls than it may have streams open is resetting them as fast as
  // it opens them (HTTP/2 "rapid reset", which gRPC 1.51 does not stop): cut it.
  gate_.LimitPerConnection(
      config.server.max_calls_per_connection > 0
          ? config.server.max_calls_per_connection
          : 2 * static_cast<int64_t>(config.server.max_concurrent_streams),
      [listeners = listeners_.get(), metrics = metrics_.get()](const std::string& peer) {
        if (listeners->Cut(peer) && metrics != nullptr) {
          metrics->grpc_connections_cut().Increment();
        }
      });
  absl::StatusOr<int> port =
      listeners_->Add(config.server.listen, grpc::InsecureServerCredentials(), builder);
  if (!port.ok()) return port.status();
  port_ = *port;
  if (!config.tls.listen.empty()) {
    absl::StatusOr<int> tls_port =
        listeners_->Add(config.tls.listen, TlsCredentials(config.tls), builder);
    if (!tls_port.ok()) return tls_port.status();
    tls_port_ = *tls_port;
  }
  builder.RegisterService(adapter_.get());
  builder.RegisterService(health_.get());
  server_ = builder.BuildAndStart();
  if (server_ == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve on ", config.server.listen, ": the gRPC server did not start"));
  }
  listeners_->Start();
  address_ = WithPort(config.server.listen, port_);
  if (!config.tls.listen.empty()) tls_address_ = WithPort(config.tls.listen, tls_port_);
  return absl::OkStatus();
}

void GatewayServer::LogServing(const GatewayConfig& config, const GatewaySecrets& secrets) const {
  if (!tls_address_.empty()) {
    std::vector<std::string> identities;
    for (const CallerIdentity method : config.tls.identity) {
      identities.emplace_back(CallerIdentityName(method));
    }
    LogLine(absl::StrCat(
        "serving TLS on ", tls_address_, "; identity ", absl::StrJoin(identities, ", "),
        config.tls.client_ca_file.empty() ? "" : "; client certificates verified"));
  }
  if (config.server.identity == CallerIdentity::kNone) {
    LogLine(absl::StrCat("warning: identity: none on ", address_, ": every caller is tenant ",
                         config.default_tenant.id, " without credentials"));
  }
  // Which proxy is in force and where it came from: the first question behind a corporate proxy.
  const ResolvedProxy& proxy = secrets.proxy;
  const UpstreamConfig& upstream = config.upstream;
  LogLine(absl::StrCat(
      "upstream ", upstream.base_url, " ",
      proxy.url.empty()
          ? "direct (no proxy)"
          : absl::StrCat("through proxy ", ProxyForLog(proxy.url), " (from ", proxy.source,
                         proxy.username.empty() ? "" : ", as proxy user " + proxy.username, ")"),
      proxy.no_proxy.empty() ? "" : absl::StrCat(", not for ", proxy.no_proxy), "; TLS ",
      upstream.tls_min_version == UpstreamTlsVersion::k1_3 ? "1.3" : "1.2", "+ trusting ",
      upstream.ca_file.empty() ? "the system's CAs" : upstream.ca_file, "; ",
      UpstreamEventLoops(upstream), " event loop(s)", "; connections reused while idle < ",
      absl::FormatDuration(upstream.max_idle_connection_age),
      upstream.max_connection_lifetime == absl::ZeroDuration()
          ? ""
          : absl::StrCat(" and younger than ",
                         absl::FormatDuration(upstream.max_connection_lifetime))));
  LogLine(absl::StrCat("serving copilot.v1.CopilotService on ", address_, "; upstream ",
                       config.upstream.base_url, "; identity ",
                       CallerIdentityName(config.server.identity), "; ", secrets.tenants.size(),
                       " tenant(s)"));
  if (ops_http_ != nullptr) {
    LogLine(
        absl::StrCat("serving /metrics, /healthz and /readyz on http://", ops_http_->address()));
  }
}

// Ready at once, or with Redis configured once Redis first answers (live meanwhile).
void GatewayServer::StartReadiness() {
  if (redis_ == nullptr) return SetReady(true);
  SetReady(false);
  readiness_waiter_ = std::thread([this] {
    while (!draining_.load() && !redis_->healthy()) absl::SleepFor(absl::Milliseconds(50));
    absl::MutexLock lock(&ready_mu_);
    if (!draining_.load()) {
      LogLine("Redis answers: ready");
      SetReady(true);
    }
  });
}

void GatewayServer::SetReady(bool ready) {
  ready_.store(ready);
  metrics_->ready().Set(ready ? 1 : 0);
  if (health_ == nullptr) return;
  health_->SetServingStatus("liveness", true);
  health_->SetServingStatus("readiness", ready);
  health_->SetServingStatus("", ready);
  health_->SetServingStatus("copilot.v1.CopilotService", ready);
}

std::string GatewayServer::ScrapeMetrics() const {
  // A scrape while Start still builds the graph reports only what the registry holds.
  if (built_.load(std::memory_order_acquire)) {
    if (redis_ != nullptr) metrics_->SetRedisDegraded(!redis_->healthy());
    if (core_ != nullptr) {
      const RequestIdStore& request_ids = core_->request_ids();
      metrics_->request_id_bytes().Set(static_cast<double>(request_ids.bytes()));
      metrics_->request_id_entries().Set(static_cast<double>(request_ids.entries()));
      metrics_->request_id_waiters().Set(request_ids.waiters() + core_->shared_waiters());
    }
    if (quota_ledger_ != nullptr) {
      // Only quotas configured now, with their current limits (a reload may have changed them).
      std::vector<QuotaSample> samples = quota_ledger_->Samples();
      const std::shared_ptr<const TenantDirectory> directory = tenants_->Current();
      std::vector<QuotaSample> configured;
      for (QuotaSample& sample : samples) {
        const std::shared_ptr<const Tenant> tenant = directory->FindById(sample.tenant);
        if (tenant == nullptr) continue;
        sample.limit = QuotaNamed(tenant->limits.quotas, sample.quota);
        if (sample.limit > 0) configured.push_back(std::move(sample));
      }
      metrics_->SetQuotaSamples(configured);
    }
    if (response_memory_ != nullptr) {
      metrics_->upstream_buffered_bytes().Set(static_cast<double>(response_memory_->bytes()));
    }
    if (admission_ != nullptr) metrics_->upstream_holds().Set(admission_->holds());
    if (health_ != nullptr) metrics_->health_watches().Set(health_->watches());
    // This runs on the ops server's own thread (the handler), and counts this scrape too.
    if (ops_view_ != nullptr) metrics_->ops_connections().Set(ops_view_->connections());
    if (listeners_ != nullptr) metrics_->grpc_connections().Set(listeners_->connections());
    if (const LogWriter* writer = GetLogWriter(); writer != nullptr) {
      metrics_->SetLogStats("stderr", writer->stats());
    }
    if (audit_log_ != nullptr && audit_log_->file_writer() != nullptr) {
      metrics_->SetLogStats("audit", audit_log_->file_writer()->stats());
    }
  }
  std::vector<prometheus::MetricFamily> families = metrics_->registry()->Collect();
  std::vector<prometheus::MetricFamily> process = process_collector_.Collect();
  families.insert(families.end(), std::make_move_iterator(process.begin()),
                  std::make_move_iterator(process.end()));
  return prometheus::TextSerializer().Serialize(families);
}

void GatewayServer::Drain(absl::Duration delay, absl::Duration grace) {
  {
    absl::MutexLock lock(&ready_mu_);
    draining_.store(true);
    SetReady(false);
  }
  LogLine(absl::StrCat("draining: readiness NOT_SERVING; still accepting calls for ",
                       absl::FormatDuration(delay)));
  absl::SleepFor(delay);
  Shutdown(grace);
}

GatewayServer::~GatewayServer() {
  draining_.store(true);
  if (readiness_waiter_.joinable()) readiness_waiter_.join();
  ops_http_.reset();
  Shutdown(absl::ZeroDuration());
  server_.reset();
  // Decisions still queued for Redis fail now, while the ledger, the decorators and the core
  // their callbacks reach still exist (members are destroyed after this body, the store last).
  if (redis_ != nullptr) redis_->Stop();
  api_.reset();
  transport_.reset();
}

void GatewayServer::Shutdown(absl::Duration grace) {
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return;
    shut_down_ = true;
  }
  if (server_ == nullptr) return;
  draining_.store(true);
  if (readiness_waiter_.joinable()) readiness_waiter_.join();
  SetReady(false);
  gate_.Close();
  LogLine(absl::StrCat("shutting down: no new calls; ", gate_.in_flight(),
                       " call(s) in flight get ", absl::FormatDuration(grace)));
  const absl::Time deadline = absl::Now() + grace;
  if (!gate_.WaitIdle(deadline)) {
    LogLine(absl::StrCat("drain time is up: cancelling ", gate_.in_flight(), " call(s)"));
  }
  // Calls with a request_id whose callers went away still run upstream, so that a retry gets
  // their result: they get the rest of the drain time too (cut short, their outcome is
  // unknown to the retries).
  if (core_ != nullptr && core_->outliving_calls() > 0) {
    LogLine(absl::StrCat("waiting for ", core_->outliving_calls(),
                         " call(s) with a request_id whose callers went away"));
    if (!core_->WaitForOutlivingCalls(deadline)) {
      LogLine(absl::StrCat("drain time is up: ", core_->outliving_calls(),
                           " call(s) with a request_id end unfinished"));
    }
  }
  // Every call of ours has ended (or is cancelled now). gRPC gets a moment to flush the last
  // statuses, then other calls (health Watch streams, reflection) are cancelled and idle
  // connections closed: Shutdown(deadline) would otherwise wait for idle clients to hang up.
  const absl::Duration flush = std::min(absl::Milliseconds(500), deadline - absl::Now());
  // Our listeners stop first: gRPC would drop a connection handed to it after its shutdown.
  if (listeners_ != nullptr) listeners_->Stop();
  server_->Shutdown(std::chrono::system_clock::now() +
                    absl::ToChronoNanoseconds(std::max(flush, absl::ZeroDuration())));
  server_->Wait();
  LogLine("shut down");
}

void GatewayServer::Wait() {
  if (server_ != nullptr) server_->Wait();
}

}  // namespace copilot::gateway
