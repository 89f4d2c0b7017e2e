// The gateway's configuration: plain data, validated once by the loader (config_loader.h).
//
// Every field has the default documented in deploy/gateway.example.yaml. Secrets (the
// upstream API key, the licence when given by reference) are not part of this struct's file
// form: the file names where they come from, and ResolveSecrets() reads them.
#ifndef COPILOT_GATEWAY_SERVER_CONFIG_GATEWAY_CONFIG_H_
#define COPILOT_GATEWAY_SERVER_CONFIG_GATEWAY_CONFIG_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/common/resilience_policy.h"
#include "server/common/tenant.h"

namespace copilot::gateway {

// Fixed-value settings, as the loader parsed them (their names in the file are in the comments
// and in ...Name() for log lines).
// How a listener identifies callers: bearer (authorization: Bearer <token>), mtls (the client
// certificate's SPIFFE ID or DNS name), none (everyone is the default tenant; plaintext only).
enum class CallerIdentity { kBearer, kMtls, kNone };
// What limits do when the shared store (Redis) is unreachable.
enum class RedisFailureMode { kFailOpen, kFailClosed };

inline absl::string_view CallerIdentityName(CallerIdentity identity) {
  switch (identity) {
    case CallerIdentity::kBearer:
      return "bearer";
    case CallerIdentity::kMtls:
      return "mtls";
    case CallerIdentity::kNone:
      return "none";
  }
  return "none";
}
inline absl::string_view RedisFailureModeName(RedisFailureMode mode) {
  return mode == RedisFailureMode::kFailOpen ? "fail_open" : "fail_closed";
}

// Where the gateway reaches the Haufe Copilot REST API and how transfers are bounded.
enum class UpstreamTlsVersion { k1_2, k1_3 };

struct UpstreamConfig {
  // Base URL without the `/v1` part, e.g. "https://api.haufe.ai/agents".
  std::string base_url;
  // Exactly one of these names where the API key comes from: a file holding it (surrounding
  // whitespace trimmed) or an environment variable.
  std::string api_key_file;
  std::string api_key_env;
  // Bound on establishing a connection.
  absl::Duration connect_timeout = absl::Seconds(5);
  // A transfer receiving no byte for this long is failed as stalled.
  absl::Duration stall_timeout = absl::Seconds(60);
  // Bound on a call whose caller set no deadline (and a cap on any caller's deadline).
  absl::Duration max_call_timeout = absl::Minutes(5);
  // Larger upstream response bodies fail the call.
  std::size_t max_response_bytes = 16 * 1024 * 1024;
  // A longer line in an NDJSON stream fails the stream.
  std::size_t max_ndjson_line_bytes = 1024 * 1024;
  // Offer HTTP/2 over TLS and multiplex calls over shared connections (http:// stays HTTP/1.1).
  bool http2 = true;
  // Upstream transfers in flight at most; more fail at once with RESOURCE_EXHAUSTED.
  std::size_t max_transfers = 20000;
  // Transport event loops (threads, each with its own libcurl multi handle and connections).
  // 0: the CPUs the process may use (UsableCpus()), at least 2, at most 16.
  int event_loops = 0;
  // Idle connections kept for reuse; 0: as many as max_transfers (sized to the load; idle ones
  // close after max_idle_connection_age).
  std::size_t max_cached_connections = 0;
  // Connections to the upstream at most (0: sized to the load: no bound over HTTP/1.1, calls in
  // flight / 100 + 8 once the upstream negotiated HTTP/2; CurlTransportOptions). Over HTTP/2
  // each carries as many calls as the upstream's stream cap; calls beyond wait for a free
  // stream or connection, within their deadline.
  std::size_t max_connections = 0;
  // No upstream connection idle this long is reused (keep it below the upstream's keep-alive
  // timeout), nor one this old (0: no bound). Whole seconds.
  absl::Duration max_idle_connection_age = absl::Seconds(4);
  absl::Duration max_connection_lifetime = absl::Minutes(5);
  // Trust bundle (PEM) for the upstream and an https:// proxy; empty: the system's.
  std::string ca_file;
  UpstreamTlsVersion tls_min_version = UpstreamTlsVersion::k1_2;
  // The forward proxy: "http://host:port" or "https://host:port"; "none": direct even when the
  // environment names one; empty (absent): the environment's (https_proxy, ...), else direct.
  // See ResolveUpstreamProxy.
  std::string proxy;
  // A file holding "user:password" for the proxy (Basic); needs proxy.
  std::string proxy_credentials_file;
  // Hosts reached without the proxy (comma-separated names or domains, "*": all); needs proxy.
  std::string no_proxy;
  // Bytes of upstream response bodies held at once, over all calls (each also bounded by
  // max_response_bytes); a response that would pass it fails.
  std::size_t max_buffered_bytes = 256 * 1024 * 1024;
  // Threads decoding answers larger than inline_decode_bytes off the transport's event loop,
  // taking the tenants in turn. 0: the CPUs the process may use (UsableCpus()), at most 4.
  int decode_threads = 0;
  std::size_t inline_decode_bytes = 64 * 1024;
  // Response bytes one transfer takes per turn of its event loop before the loop's other
  // sockets get theirs (CurlTransportOptions::max_read_per_turn). 0: no bound.
  std::size_t max_read_per_turn = 64 * 1024;
  // upstream.retry and upstream.circuit_breaker (README, "Upstream failures").
  RetryPolicy retry;
  CircuitBreakerPolicy circuit_breaker;
  // Each tenant's calls use upstream connections of their own (HttpRequest::connection_pool),
  // so that over HTTP/2 one tenant's large answers never queue in front of another's on one
  // connection. Off: all tenants share the connections (fewer of them).
  bool connections_per_tenant = true;
  // Accept an http:// base_url on a host that is not loopback (the API key travels in clear
  // text). Off: such a URL is refused.
  bool allow_insecure_http = false;
};

// Request limits checked before any upstream call.
struct LimitsConfig {
  // Maximum message content length in Unicode code points (the upstream's limit).
  int max_content_chars = 30000;
  // Maximum number of messages in one Complete / StreamComplete request.
  int max_messages = 500;
  // Maximum size of one incoming gRPC message.
  std::size_t max_request_bytes = 4 * 1024 * 1024;
  // Maximum tool calls on one message, and bytes of one call's function.arguments.
  int max_tool_calls = 64;
  std::size_t max_tool_arguments_bytes = 64 * 1024;
  // Maximum tool definitions on one Run/Complete request, and their bytes together.
  int max_tools = 64;
  std::size_t max_tools_bytes = 256 * 1024;
  // Maximum thread title length in Unicode code points.
  int max_title_chars = 1000;
};

// AIP-155 request_id de-duplication: in process, and shared by the replicas with `redis`.
struct RequestIdConfig {
  // How long a completed request's result is remembered.
  absl::Duration ttl = absl::Minutes(10);
  // At most this many remembered requests; the oldest completed ones are forgotten first.
  std::size_t max_entries = 100000;
  // At most this many bytes of memory for remembered requests and results, over all methods
  // and tenants (same order of forgetting).
  std::size_t max_bytes = 64 * 1024 * 1024;
  // One tenant's remembered requests use at most this share of max_bytes and max_entries.
  double max_tenant_share = 0.25;
  // Retries waiting for the same request_id's first attempt, per request and per tenant; each
  // also takes the tenant's rate and concurrency like a call of its own.
  int max_waiters_per_request = 8;
  int max_waiters_per_tenant = 64;
};

// Where a secret comes from: at most one of the value itself (licences only), a file holding it
// (surrounding whitespace trimmed) or an environment variable.
struct SecretRef {
  std::string value;
  std::string file;
  std::string env;
  bool empty() const { return value.empty() && file.empty() && env.empty(); }
};

// The tenant of callers on a listener with `identity: none`.
struct TenantConfig {
  std::string id = "default";
  // The licence sent upstream as meta_data.user_data.licence. None: no licence is sent.
  std::string licence;
  std::string licence_file;
  std::string licence_env;
};

// An assistant a tenant may use, optionally with its own licence.
struct TenantAssistantConfig {
  std::string id;  // An assistant UUID, or "*" for every assistant.
  SecretRef licence;
};

// One tenant's limits, per class of call (answer generation: Run, StreamRun, Complete,
// StreamComplete; other: everything else). A rate is per second or per minute (not both); 0 is
// no limit. The burst defaults to the rate per second (at least 1).
struct TenantLimitsConfig {
  double answer_per_second = 0;
  double answer_per_minute = 0;
  int64_t answer_burst = 0;
  double other_per_second = 0;
  double other_per_minute = 0;
  int64_t other_burst = 0;
  // Answer generations in flight at once; 0 is no cap.
  int64_t max_concurrent_answers = 0;
};

// The global upstream budget (haufe-api.md section 9: trial tier 0), shared by all tenants; 0
// disables a window. When it is momentarily spent, calls wait up to max_wait (and never past
// their deadline), served fairly between tenants by weight.
struct UpstreamBudgetConfig {
  int64_t answer_per_second = 15;
  int64_t answer_per_minute = 60;
  int64_t other_per_second = 60;
  int64_t other_per_minute = 180;
  absl::Duration max_wait = absl::Seconds(10);
  // Added to each window: a call admitted here reaches the upstream a little later, and the
  // network's jitter must not squeeze two windows' calls into one of the upstream's.
  absl::Duration window_margin = absl::Milliseconds(250);
  // An upstream 429's Retry-After holds calls with the same API key at most this long.
  absl::Duration max_retry_after = absl::Seconds(60);
};

// Limits shared by every replica in Redis (one atomic script per decision). Without a url the
// limits live in this process.
struct RedisConfig {
  // "redis://[[user]:password@]host[:port][/db]", or "rediss://..." for TLS; empty: no Redis.
  std::string url;
  // With rediss:// only. The CA bundle (PEM) that verifies the server's certificate (empty: the
  // system's trust store); the server's certificate must name the url's host. A client
  // certificate and its key (PEM, both or neither) for Redis's tls-auth-clients. Read when
  // the gateway starts and at every (re)connection.
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  // The password, from a file or an environment variable (never in the url in production).
  std::string password_file;
  std::string password_env;
  // When Redis is unreachable: fail_open (each replica decides alone with its share of every
  // limit, 1/replicas) or fail_closed (calls are refused with UNAVAILABLE). Either way the
  // gauge copilot_gateway_redis_degraded is 1 and a line is logged; Redis is reconnected by
  // itself.
  RedisFailureMode on_failure = RedisFailureMode::kFailOpen;
  int64_t replicas = 1;
  absl::Duration connect_timeout = absl::Milliseconds(500);
  absl::Duration command_timeout = absl::Milliseconds(250);
};

// Usage records and quotas (per tenant: `quotas` in tenants[]).
struct UsageConfig {
  // The time zone of the quotas' calendar days and months: "UTC" or an IANA name
  // ("Europe/Berlin", read from the zoneinfo database when the gateway starts).
  std::string time_zone = "UTC";
  // One JSON line per answer generation: "stderr", "off", or a file to append to.
  std::string audit_log = "stderr";
};

// One tenant: how its callers are recognised, and what its calls send upstream.
struct TenantEntryConfig {
  std::string id;
  // Hex SHA-256 digests of the bearer tokens its callers send (several, for rotation).
  std::vector<std::string> bearer_token_sha256;
  // Verified client-certificate identities: SPIFFE IDs (URI SANs) and DNS SANs.
  std::vector<std::string> spiffe_ids;
  std::vector<std::string> dns_names;
  // The licence for assistants without one of their own.
  SecretRef licence;
  // The assistants it may use (required; "*" allows every assistant).
  std::vector<TenantAssistantConfig> assistants;
  // Its own upstream API key (file or env); none uses the gateway's.
  SecretRef api_key;
  TenantLimitsConfig limits;
  // Answers and characters per calendar day and month (usage.time_zone); 0 is no quota.
  TenantQuotas quotas;
  // Its share of the upstream budget when calls wait for it (relative to other tenants).
  double weight = 1;
};

// The TLS listener (optional): server certificate, and client certificates for mTLS.
struct TlsListenerConfig {
  // HOST:PORT; empty: no TLS listener.
  std::string listen;
  // PEM files, re-read every refresh_interval (Kubernetes secret rotation).
  std::string cert_file;
  std::string key_file;
  // CA bundle for client certificates; empty: none requested (no mTLS).
  std::string client_ca_file;
  // Accepted identities: mtls and/or bearer (at least one, each once).
  std::vector<CallerIdentity> identity = {CallerIdentity::kMtls, CallerIdentity::kBearer};
  absl::Duration refresh_interval = absl::Seconds(60);
};

// HTTP/2 keepalive and connection age of the gRPC listeners. The defaults suit long answer
// generation behind a Kubernetes Service: pings keep idle connections through NAT and
// conntrack, and a maximum connection age makes clients reconnect now and then, so that load
// spreads over new replicas; the grace lets a call in flight (up to max_call_timeout) finish.
struct KeepaliveConfig {
  // The server pings a connection idle this long, and closes it when no ack comes in `timeout`.
  absl::Duration time = absl::Seconds(60);
  absl::Duration timeout = absl::Seconds(20);
  // Clients may ping this often (more often is answered with GOAWAY "too_many_pings").
  absl::Duration min_client_ping_interval = absl::Seconds(10);
  // A connection without calls for this long is closed.
  absl::Duration max_connection_idle = absl::Minutes(15);
  // Connections are closed (GOAWAY) after this age, calls in flight get the grace to finish.
  absl::Duration max_connection_age = absl::Minutes(10);
  absl::Duration max_connection_age_grace = absl::Minutes(6);
};

// gRPC server settings.
struct ServerConfig {
  // Address the gRPC server listens on, e.g. "0.0.0.0:50051"; port 0 picks a free port.
  std::string listen = "0.0.0.0:50051";
  // On SIGTERM/SIGINT, calls in flight get this long to finish before they are cancelled.
  absl::Duration shutdown_grace = absl::Seconds(10);
  // On SIGTERM, readiness turns NOT_SERVING at once, and the server keeps accepting calls this
  // long before it stops, so that load balancers and Kubernetes endpoints stop routing to it.
  absl::Duration shutdown_delay = absl::Seconds(5);
  // HTTP listener for /metrics, /healthz and /readyz, HOST:PORT; none (`off` in the file)
  // disables it.
  std::optional<std::string> metrics_listen = "0.0.0.0:9464";
  // debug, info, warning or error; re-applied on every config reload.
  std::string log_level = "info";
  KeepaliveConfig keepalive;
  // Thread cap handed to gRPC (ResourceQuota::SetMaxThreads). Callback reactions run on gRPC's
  // own fixed executor; upstream calls hold no thread.
  int max_threads = 8;
  // Chunks queued per stream for a caller reading slowly before the upstream is paused.
  int max_queued_chunks = 16;
  // How callers on `listen` (plaintext) are identified: bearer (authorization: Bearer <token>
  // mapped to a tenant) or none (every caller is default_tenant; a warning at start-up).
  CallerIdentity identity = CallerIdentity::kBearer;
  // How often the config file is checked for changes to the tenants (also reloaded on SIGHUP).
  absl::Duration config_reload_interval = absl::Seconds(5);
  // Concurrent calls (HTTP/2 streams) one client connection may have open (gRPC health Watch
  // streams included).
  int max_concurrent_streams = 1000;
  // Calls of one client connection between their handler and gRPC's end of the call; a
  // connection past it is cut (its socket reset: gRPC cancels its calls). A well-behaved
  // client never has more than max_concurrent_streams; one that opens and resets streams without
  // end (HTTP/2 "rapid reset") is not held back by that bound, and its calls piled up in gRPC
  // 1.51 by the tens of thousands. 0: twice max_concurrent_streams.
  int max_calls_per_connection = 0;
  // gRPC client connections open at once over both listeners (plaintext and TLS); one more is
  // closed at once (the client sees UNAVAILABLE and connects again later). Keep the process's
  // open-files limit above it plus the upstream connections.
  int max_connections = 10000;
  // A connection that has not completed its TLS handshake and sent its HTTP/2 settings by then
  // is closed (gRPC's default is 120 s: idle sockets would hold max_connections that long).
  absl::Duration handshake_timeout = absl::Seconds(10);
  // grpc.health.v1.Health Watch streams open at once (any caller may open them, without
  // credentials); more are refused with RESOURCE_EXHAUSTED. Check (kubelet) is not capped.
  int max_health_watches = 100;
  // Memory gRPC may use for connections and calls in flight (its ResourceQuota): above all,
  // request messages it buffers before the service sees them, credentials or not. Past it gRPC
  // resets streams (RST_STREAM ENHANCE_YOUR_CALM; the caller sees RESOURCE_EXHAUSTED). Measured:
  // the process peaks at about 3x this when a client holds 400 almost-sent 4 MiB requests
  // (64 MiB: 190 MiB; 512 MiB, the earlier default: 925 MiB, past the pod's 512 MiB limit).
  std::size_t max_grpc_memory = 64 * 1024 * 1024;
  // Log lines (and audit lines, per audit file) waiting to be written: a thread of their own
  // writes them, so no call waits for stderr or a disk; past this, lines are dropped and counted
  // (copilot_gateway_log_lines_dropped_total). 4 MiB hold ~10,000 call and audit lines (~400
  // bytes).
  std::size_t log_buffer_bytes = 4 * 1024 * 1024;
};

// The whole configuration. Plain data; copyable; not synchronized.
struct GatewayConfig {
  ServerConfig server;
  UpstreamConfig upstream;
  LimitsConfig limits;
  RequestIdConfig request_ids;
  TenantConfig default_tenant;
  TlsListenerConfig tls;
  std::vector<TenantEntryConfig> tenants;
  UpstreamBudgetConfig upstream_budget;
  RedisConfig redis;
  UsageConfig usage;
  // The key that binds new thread handles to tenants (HMAC); every replica needs the same one.
  // None: a random key per process (handles die with it; a warning).
  SecretRef thread_signing_key;
  // Keys of earlier rotations: handles they signed are still accepted, none is signed with them.
  // Each names exactly one of `file` and `env` (YAML key_file / key_env).
  std::vector<SecretRef> previous_thread_signing_keys;
  // The key that scopes end-user IDs per tenant, kept when the signing key rotates. None: derived
  // from thread_signing_key (a warning: rotating that key then changes the upstream user IDs).
  SecretRef user_id_key;
};

// A configured tenant with its secrets read: what the tenant directory is built from.
struct ResolvedTenant {
  Tenant tenant;
  std::vector<std::string> token_sha256;  // Raw 32-byte digests.
  std::vector<std::string> identities;    // "spiffe://..." and "dns:NAME".
};

// The proxy the upstream transport uses, decided from upstream.proxy and the environment.
struct ResolvedProxy {
  std::string url;  // Empty: direct.
  std::string no_proxy;
  // Where `url` came from: "upstream.proxy", the environment variable's name, or "" (direct).
  std::string source;
  std::string username;  // From upstream.proxy_credentials_file; empty: none.
  std::string password;
};

// Values read from the places the config names. Never log these.
struct GatewaySecrets {
  std::string api_key;
  std::string licence;             // Empty: no licence configured.
  std::string thread_signing_key;  // Empty: none configured.
  std::vector<std::string> previous_thread_signing_keys;
  std::string user_id_key;     // Empty: none configured.
  std::string redis_password;  // Empty: none configured.
  std::vector<ResolvedTenant> tenants;
  ResolvedProxy proxy;  // Holds the proxy's password, if any.
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_CONFIG_GATEWAY_CONFIG_H_
