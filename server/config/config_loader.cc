#include "server/config/config_loader.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "server/common/log.h"

namespace copilot::gateway {
namespace {

absl::Status PathError(absl::string_view path, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
}

std::string Join(absl::string_view parent, absl::string_view key) {
  return parent.empty() ? std::string(key) : absl::StrCat(parent, ".", key);
}

// Reads one key of a map into its field; `path` is the key's full path.
using FieldReader = std::function<absl::Status(const YAML::Node& node, const std::string& path)>;

// Walks a map node: every key must have a reader.
absl::Status ReadMap(const YAML::Node& node, const std::string& path,
                     const std::map<std::string, FieldReader>& readers) {
  if (node.IsNull()) return absl::OkStatus();  // An empty section keeps the defaults.
  if (!node.IsMap()) return PathError(path.empty() ? "(top level)" : path, "expected a mapping");
  for (auto it = node.begin(); it != node.end(); ++it) {
    if (!it->first.IsScalar()) return PathError(path, "keys must be plain strings");
    const std::string key = it->first.Scalar();
    const std::string key_path = Join(path, key);
    auto reader = readers.find(key);
    if (reader == readers.end()) {
      std::vector<std::string> known;
      known.reserve(readers.size());
      for (const auto& [name, unused] : readers) known.push_back(name);
      return PathError(key_path,
                       absl::StrCat("unknown key (known: ", absl::StrJoin(known, ", "), ")"));
    }
    if (absl::Status status = reader->second(it->second, key_path); !status.ok()) return status;
  }
  return absl::OkStatus();
}

FieldReader NonEmptyString(std::string& out) {
  return [&out](const YAML::Node& node, const std::string& path) -> absl::Status {
    if (!node.IsScalar()) return PathError(path, "expected a string");
    if (absl::StripAsciiWhitespace(node.Scalar()).empty()) {
      return PathError(path, "must not be empty");
    }
    out = node.Scalar();
    return absl::OkStatus();
  };
}

FieldReader PositiveDuration(absl::Duration& out) {
  return [&out](const YAML::Node& node, const std::string& path) -> absl::Status {
    absl::Duration value;
    if (!node.IsScalar() || !absl::ParseDuration(node.Scalar(), &value)) {
      return PathError(path, R"(expected a duration such as "5s" or "300ms")");
    }
    if (value <= absl::ZeroDuration() || value == absl::InfiniteDuration()) {
      return PathError(path, "must be a positive, finite duration");
    }
    out = value;
    return absl::OkStatus();
  };
}

FieldReader NonNegativeDuration(absl::Duration& out) {
  return [&out](const YAML::Node& node, const std::string& path) -> absl::Status {
    absl::Duration value;
    if (!node.IsScalar() || !absl::ParseDuration(node.Scalar(), &value)) {
      return PathError(path, R"(expected a duration such as "5s" or "0s")");
    }
    if (value < absl::ZeroDuration() || value == absl::InfiniteDuration()) {
      return PathError(path, "must be zero or a positive, finite duration");
    }
    out = value;
    return absl::OkStatus();
  };
}

FieldReader Number(double& out, double min, double max) {
  return [&out, min, max](const YAML::Node& node, const std::string& path) -> absl::Status {
    double value = 0;
    if (!node.IsScalar() || !absl::SimpleAtod(node.Scalar(), &value) || !std::isfinite(value)) {
      return PathError(path, "expected a number");
    }
    if (value < min || value > max) {
      return PathError(path, absl::StrCat("must be between ", min, " and ", max));
    }
    out = value;
    return absl::OkStatus();
  };
}

// An integer in [min, max] into `out` (int or int64_t).
template <typename Int>
FieldReader IntegerIn(Int& out, int64_t min, int64_t max) {
  return [&out, min, max](const YAML::Node& node, const std::string& path) -> absl::Status {
    int64_t value = 0;
    if (!node.IsScalar() || !absl::SimpleAtoi(node.Scalar(), &value)) {
      return PathError(path, "expected an integer");
    }
    if (value < min || value > max) {
      return PathError(path, absl::StrCat("must be between ", min, " and ", max));
    }
    out = static_cast<Int>(value);
    return absl::OkStatus();
  };
}

FieldReader Integer(int64_t& out, int64_t min, int64_t max) { return IntegerIn(out, min, max); }

FieldReader IntInRange(int& out, int min, int max) { return IntegerIn(out, min, max); }

FieldReader Count(std::size_t& out, std::size_t min, std::size_t max) {
  return [&out, min, max](const YAML::Node& node, const std::string& path) -> absl::Status {
    uint64_t value = 0;
    if (!node.IsScalar() || !absl::SimpleAtoi(node.Scalar(), &value)) {
      return PathError(path, "expected a non-negative integer");
    }
    if (value < min || value > max) {
      return PathError(path, absl::StrCat("must be between ", min, " and ", max));
    }
    out = static_cast<std::size_t>(value);
    return absl::OkStatus();
  };
}

// A size: an integer number of bytes, optionally with a KiB/MiB/GiB suffix ("16MiB").
FieldReader Bytes(std::size_t& out, std::size_t min, std::size_t max) {
  return [&out, min, max](const YAML::Node& node, const std::string& path) -> absl::Status {
    if (!node.IsScalar()) return PathError(path, "expected a size such as 1048576 or \"16MiB\"");
    absl::string_view text = absl::StripAsciiWhitespace(node.Scalar());
    uint64_t unit = 1;
    for (const auto& [suffix, factor] : {std::pair<absl::string_view, uint64_t>{"KiB", 1024ULL},
                                         {"MiB", 1024ULL * 1024},
                                         {"GiB", 1024ULL * 1024 * 1024}}) {
      if (absl::ConsumeSuffix(&text, suffix)) {
        unit = factor;
        break;
      }
    }
    uint64_t count = 0;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &count) ||
        count > std::numeric_limits<uint64_t>::max() / unit) {
      return PathError(path, "expected a size such as 1048576 or \"16MiB\"");
    }
    const uint64_t value = count * unit;
    if (value < min || value > max) {
      return PathError(path, absl::StrCat("must be between ", min, " and ", max, " bytes"));
    }
    out = static_cast<std::size_t>(value);
    return absl::OkStatus();
  };
}

FieldReader Bool(bool& out) {
  return [&out](const YAML::Node& node, const std::string& path) -> absl::Status {
    if (node.IsScalar() && (node.Scalar() == "true" || node.Scalar() == "false")) {
      out = node.Scalar() == "true";
      return absl::OkStatus();
    }
    return PathError(path, "expected true or false");
  };
}

// One of a fixed set of names ("must be a or b" otherwise).
template <typename E>
FieldReader OneOf(E& out, std::vector<std::pair<std::string, E>> names) {
  return [&out, names = std::move(names)](const YAML::Node& node,
                                          const std::string& path) -> absl::Status {
    if (node.IsScalar()) {
      for (const auto& [name, value] : names) {
        if (node.Scalar() == name) {
          out = value;
          return absl::OkStatus();
        }
      }
    }
    std::vector<std::string> known;
    for (const auto& [name, unused] : names) known.push_back(name);
    return PathError(path, absl::StrCat("must be ", absl::StrJoin(known, " or ")));
  };
}

// A list of names of a fixed set, each at most once.
template <typename E>
FieldReader OneOfList(std::vector<E>& out, std::vector<std::pair<std::string, E>> names) {
  return [&out, names = std::move(names)](const YAML::Node& node,
                                          const std::string& path) -> absl::Status {
    if (node.IsNull()) return absl::OkStatus();
    if (!node.IsSequence()) return PathError(path, "expected a list");
    out.clear();
    for (std::size_t i = 0; i < node.size(); ++i) {
      E value{};
      const std::string item_path = absl::StrCat(path, "[", i, "]");
      if (absl::Status status = OneOf(value, names)(node[i], item_path); !status.ok()) {
        return status;
      }
      if (std::find(out.begin(), out.end(), value) != out.end()) {
        return PathError(item_path, absl::StrCat(node[i].Scalar(), " is listed twice"));
      }
      out.push_back(value);
    }
    return absl::OkStatus();
  };
}

// HOST:PORT, or `off` (none).
FieldReader AddressOrOff(std::optional<std::string>& out) {
  return [&out](const YAML::Node& node, const std::string& path) -> absl::Status {
    if (node.IsScalar() && node.Scalar() == "off") {
      out.reset();
      return absl::OkStatus();
    }
    std::string address;
    if (!NonEmptyString(address)(node, path).ok() || !absl::StrContains(address, ':')) {
      return PathError(path, "expected HOST:PORT, or off");
    }
    out = std::move(address);
    return absl::OkStatus();
  };
}

// A list of non-empty strings.
FieldReader StringList(std::vector<std::string>& out) {
  return [&out](const YAML::Node& node, const std::string& path) -> absl::Status {
    if (node.IsNull()) return absl::OkStatus();
    if (!node.IsSequence()) return PathError(path, "expected a list");
    out.clear();
    for (std::size_t i = 0; i < node.size(); ++i) {
      std::string value;
      const std::string item_path = absl::StrCat(path, "[", i, "]");
      if (absl::Status status = NonEmptyString(value)(node[i], item_path); !status.ok()) {
        return status;
      }
      out.push_back(std::move(value));
    }
    return absl::OkStatus();
  };
}

// A list of mappings; `item` gives the readers of one element.
template <typename T>
FieldReader ListOf(std::vector<T>& out,
                   std::function<std::map<std::string, FieldReader>(T&)> item) {
  return [&out, item](const YAML::Node& node, const std::string& path) -> absl::Status {
    if (node.IsNull()) return absl::OkStatus();
    if (!node.IsSequence()) return PathError(path, "expected a list");
    out.clear();
    out.reserve(node.size());
    for (std::size_t i = 0; i < node.size(); ++i) {
      T& element = out.emplace_back();
      const std::string item_path = absl::StrCat(path, "[", i, "]");
      if (!node[i].IsMap()) return PathError(item_path, "expected a mapping");
      if (absl::Status status = ReadMap(node[i], item_path, item(element)); !status.ok()) {
        return status;
      }
    }
    return absl::OkStatus();
  };
}

std::map<std::string, FieldReader> AssistantReaders(TenantAssistantConfig& assistant) {
  return {
      {"id", NonEmptyString(assistant.id)},
      {"licence", NonEmptyString(assistant.licence.value)},
      {"licence_file", NonEmptyString(assistant.licence.file)},
      {"licence_env", NonEmptyString(assistant.licence.env)},
  };
}

std::map<std::string, FieldReader> TenantReaders(TenantEntryConfig& tenant) {
  return {
      {"id", NonEmptyString(tenant.id)},
      {"bearer_token_sha256", StringList(tenant.bearer_token_sha256)},
      {"spiffe_ids", StringList(tenant.spiffe_ids)},
      {"dns_names", StringList(tenant.dns_names)},
      {"licence", NonEmptyString(tenant.licence.value)},
      {"licence_file", NonEmptyString(tenant.licence.file)},
      {"licence_env", NonEmptyString(tenant.licence.env)},
      {"api_key_file", NonEmptyString(tenant.api_key.file)},
      {"api_key_env", NonEmptyString(tenant.api_key.env)},
      {"assistants", ListOf<TenantAssistantConfig>(tenant.assistants, AssistantReaders)},
      {"weight", Number(tenant.weight, 0.001, 1000)},
      {"limits",
       [&tenant](const YAML::Node& node, const std::string& path) -> absl::Status {
         TenantLimitsConfig& limits = tenant.limits;
         return ReadMap(
             node, path,
             {
                 {"answer_per_second", Number(limits.answer_per_second, 0, 1e6)},
                 {"answer_per_minute", Number(limits.answer_per_minute, 0, 1e8)},
                 {"answer_burst", Integer(limits.answer_burst, 0, 1000000)},
                 {"other_per_second", Number(limits.other_per_second, 0, 1e6)},
                 {"other_per_minute", Number(limits.other_per_minute, 0, 1e8)},
                 {"other_burst", Integer(limits.other_burst, 0, 1000000)},
                 {"max_concurrent_answers", Integer(limits.max_concurrent_answers, 0, 1000000)},
             });
       }},
      {"quotas",
       [&tenant](const YAML::Node& node, const std::string& path) -> absl::Status {
         TenantQuotas& quotas = tenant.quotas;
         constexpr int64_t kMax = int64_t{1} << 50;
         return ReadMap(node, path,
                        {
                            {"answers_per_day", Integer(quotas.answers_per_day, 0, kMax)},
                            {"answers_per_month", Integer(quotas.answers_per_month, 0, kMax)},
                            {"characters_per_day", Integer(quotas.characters_per_day, 0, kMax)},
                            {"characters_per_month", Integer(quotas.characters_per_month, 0, kMax)},
                        });
       }},
  };
}

std::map<std::string, FieldReader> PreviousKeyReaders(SecretRef& key) {
  return {
      {"key_file", NonEmptyString(key.file)},
      {"key_env", NonEmptyString(key.env)},
  };
}

FieldReader Section(std::map<std::string, FieldReader> readers) {
  return [readers = std::move(readers)](const YAML::Node& node,
                                        const std::string& path) -> absl::Status {
    return ReadMap(node, path, readers);
  };
}

absl::Status ReadConfig(const YAML::Node& root, GatewayConfig& config) {
  ServerConfig& server = config.server;
  UpstreamConfig& upstream = config.upstream;
  LimitsConfig& limits = config.limits;
  RequestIdConfig& request_ids = config.request_ids;
  TenantConfig& tenant = config.default_tenant;
  constexpr std::size_t kGiB = 1024ULL * 1024 * 1024;
  const std::map<std::string, FieldReader> readers = {
      {"listen", NonEmptyString(server.listen)},
      {"shutdown_grace", PositiveDuration(server.shutdown_grace)},
      {"shutdown_delay", NonNegativeDuration(server.shutdown_delay)},
      {"metrics_listen", AddressOrOff(server.metrics_listen)},
      {"log_level", NonEmptyString(server.log_level)},
      {"log_buffer_bytes", Bytes(server.log_buffer_bytes, 64 * 1024, kGiB)},
      {"keepalive",
       Section({
           {"time", PositiveDuration(server.keepalive.time)},
           {"timeout", PositiveDuration(server.keepalive.timeout)},
           {"min_client_ping_interval",
            PositiveDuration(server.keepalive.min_client_ping_interval)},
           {"max_connection_idle", PositiveDuration(server.keepalive.max_connection_idle)},
           {"max_connection_age", PositiveDuration(server.keepalive.max_connection_age)},
           {"max_connection_age_grace",
            PositiveDuration(server.keepalive.max_connection_age_grace)},
       })},
      {"max_threads", IntInRange(server.max_threads, 1, 1024)},
      {"max_queued_chunks", IntInRange(server.max_queued_chunks, 1, 10000)},
      {"identity", OneOf(server.identity,
                         {{"bearer", CallerIdentity::kBearer}, {"none", CallerIdentity::kNone}})},
      {"config_reload_interval", PositiveDuration(server.config_reload_interval)},
      {"max_concurrent_streams", IntInRange(server.max_concurrent_streams, 1, 100000)},
      {"max_calls_per_connection", IntInRange(server.max_calls_per_connection, 0, 1000000)},
      {"max_connections", IntInRange(server.max_connections, 1, 1000000)},
      {"handshake_timeout", PositiveDuration(server.handshake_timeout)},
      {"max_health_watches", IntInRange(server.max_health_watches, 0, 100000)},
      {"max_grpc_memory", Bytes(server.max_grpc_memory, 16 * 1024 * 1024, 64 * kGiB)},
      {"tenants", ListOf<TenantEntryConfig>(config.tenants, TenantReaders)},
      {"tls",
       Section({
           {"listen", NonEmptyString(config.tls.listen)},
           {"cert_file", NonEmptyString(config.tls.cert_file)},
           {"key_file", NonEmptyString(config.tls.key_file)},
           {"client_ca_file", NonEmptyString(config.tls.client_ca_file)},
           {"identity", OneOfList(config.tls.identity, {{"mtls", CallerIdentity::kMtls},
                                                        {"bearer", CallerIdentity::kBearer}})},
           {"refresh_interval", PositiveDuration(config.tls.refresh_interval)},
       })},
      {"thread_signing_key_file", NonEmptyString(config.thread_signing_key.file)},
      {"thread_signing_key_env", NonEmptyString(config.thread_signing_key.env)},
      {"previous_thread_signing_keys",
       ListOf<SecretRef>(config.previous_thread_signing_keys, PreviousKeyReaders)},
      {"user_id_key_file", NonEmptyString(config.user_id_key.file)},
      {"user_id_key_env", NonEmptyString(config.user_id_key.env)},
      {"upstream",
       Section({
           {"base_url", NonEmptyString(upstream.base_url)},
           {"api_key_file", NonEmptyString(upstream.api_key_file)},
           {"api_key_env", NonEmptyString(upstream.api_key_env)},
           {"connect_timeout", PositiveDuration(upstream.connect_timeout)},
           {"stall_timeout", PositiveDuration(upstream.stall_timeout)},
           {"max_call_timeout", PositiveDuration(upstream.max_call_timeout)},
           {"max_response_bytes", Bytes(upstream.max_response_bytes, 1024, kGiB)},
           {"max_ndjson_line_bytes", Bytes(upstream.max_ndjson_line_bytes, 1024, kGiB)},
           {"http2", Bool(upstream.http2)},
           {"max_transfers", Count(upstream.max_transfers, 1, 1000000)},
           {"event_loops", IntInRange(upstream.event_loops, 0, 64)},
           {"max_cached_connections", Count(upstream.max_cached_connections, 0, 1000000)},
           {"max_connections", Count(upstream.max_connections, 0, 1000000)},
           {"max_idle_connection_age", PositiveDuration(upstream.max_idle_connection_age)},
           {"max_connection_lifetime", NonNegativeDuration(upstream.max_connection_lifetime)},
           {"ca_file", NonEmptyString(upstream.ca_file)},
           {"tls_min_version",
            OneOf(upstream.tls_min_version,
                  {{"1.2", UpstreamTlsVersion::k1_2}, {"1.3", UpstreamTlsVersion::k1_3}})},
           {"proxy", NonEmptyString(upstream.proxy)},
           {"proxy_credentials_file", NonEmptyString(upstream.proxy_credentials_file)},
           {"no_proxy", NonEmptyString(upstream.no_proxy)},
           {"max_buffered_bytes", Bytes(upstream.max_buffered_bytes, 1024 * 1024, 64 * kGiB)},
           {"allow_insecure_http", Bool(upstream.allow_insecure_http)},
           {"decode_threads", IntInRange(upstream.decode_threads, 0, 64)},
           {"inline_decode_bytes", Bytes(upstream.inline_decode_bytes, 0, kGiB)},
           {"max_read_per_turn", Bytes(upstream.max_read_per_turn, 0, kGiB)},
           {"connections_per_tenant", Bool(upstream.connections_per_tenant)},
           {"retry",
            Section({
                {"max_attempts", IntInRange(upstream.retry.max_attempts, 1, 10)},
                {"initial_backoff", PositiveDuration(upstream.retry.initial_backoff)},
                {"max_backoff", PositiveDuration(upstream.retry.max_backoff)},
                {"max_retry_after", NonNegativeDuration(upstream.retry.max_retry_after)},
                {"budget_ratio", Number(upstream.retry.budget_ratio, 0, 1)},
                {"budget_min_per_second", Number(upstream.retry.budget_min_per_second, 0, 100000)},
            })},
           {"circuit_breaker",
            Section({
                {"enabled", Bool(upstream.circuit_breaker.enabled)},
                {"consecutive_failures",
                 IntInRange(upstream.circuit_breaker.consecutive_failures, 0, 1000000)},
                {"failure_ratio", Number(upstream.circuit_breaker.failure_ratio, 0, 1)},
                {"min_requests", IntInRange(upstream.circuit_breaker.min_requests, 1, 1000000)},
                {"window", PositiveDuration(upstream.circuit_breaker.window)},
                {"cooldown", PositiveDuration(upstream.circuit_breaker.cooldown)},
                {"half_open_probes",
                 IntInRange(upstream.circuit_breaker.half_open_probes, 1, 1000)},
            })},
       })},
      {"limits", Section({
                     {"max_content_chars", IntInRange(limits.max_content_chars, 1, 30000)},
                     {"max_messages", IntInRange(limits.max_messages, 1, 100000)},
                     {"max_request_bytes", Bytes(limits.max_request_bytes, 1024, kGiB)},
                     {"max_tool_calls", IntInRange(limits.max_tool_calls, 1, 100000)},
                     {"max_tool_arguments_bytes", Bytes(limits.max_tool_arguments_bytes, 1, kGiB)},
                     {"max_tools", IntInRange(limits.max_tools, 0, 100000)},
                     {"max_tools_bytes", Bytes(limits.max_tools_bytes, 0, kGiB)},
                     {"max_title_chars", IntInRange(limits.max_title_chars, 1, 1000000)},
                 })},
      {"upstream_budget",
       Section({
           {"answer_per_second", Integer(config.upstream_budget.answer_per_second, 0, 1000000)},
           {"answer_per_minute", Integer(config.upstream_budget.answer_per_minute, 0, 100000000)},
           {"other_per_second", Integer(config.upstream_budget.other_per_second, 0, 1000000)},
           {"other_per_minute", Integer(config.upstream_budget.other_per_minute, 0, 100000000)},
           {"max_wait", NonNegativeDuration(config.upstream_budget.max_wait)},
           {"window_margin", NonNegativeDuration(config.upstream_budget.window_margin)},
           {"max_retry_after", PositiveDuration(config.upstream_budget.max_retry_after)},
       })},
      {"redis", Section({
                    {"url", NonEmptyString(config.redis.url)},
                    {"ca_file", NonEmptyString(config.redis.ca_file)},
                    {"cert_file", NonEmptyString(config.redis.cert_file)},
                    {"key_file", NonEmptyString(config.redis.key_file)},
                    {"password_file", NonEmptyString(config.redis.password_file)},
                    {"password_env", NonEmptyString(config.redis.password_env)},
                    {"on_failure", OneOf(config.redis.on_failure,
                                         {{"fail_open", RedisFailureMode::kFailOpen},
                                          {"fail_closed", RedisFailureMode::kFailClosed}})},
                    {"replicas", Integer(config.redis.replicas, 1, 10000)},
                    {"connect_timeout", PositiveDuration(config.redis.connect_timeout)},
                    {"command_timeout", PositiveDuration(config.redis.command_timeout)},
                })},
      {"usage", Section({
                    {"time_zone", NonEmptyString(config.usage.time_zone)},
                    {"audit_log", NonEmptyString(config.usage.audit_log)},
                })},
      {"request_ids",
       Section({
           {"ttl", PositiveDuration(request_ids.ttl)},
           {"max_entries", Count(request_ids.max_entries, 0, 100000000)},
           {"max_bytes", Bytes(request_ids.max_bytes, 0, 64 * kGiB)},
           {"max_tenant_share", Number(request_ids.max_tenant_share, 0.001, 1)},
           {"max_waiters_per_request", IntInRange(request_ids.max_waiters_per_request, 0, 10000)},
           {"max_waiters_per_tenant", IntInRange(request_ids.max_waiters_per_tenant, 0, 1000000)},
       })},
      {"default_tenant", Section({
                             {"id", NonEmptyString(tenant.id)},
                             {"licence", NonEmptyString(tenant.licence)},
                             {"licence_file", NonEmptyString(tenant.licence_file)},
                             {"licence_env", NonEmptyString(tenant.licence_env)},
                         })},
  };
  return ReadMap(root, "", readers);
}

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::ostringstream contents;
  contents << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("cannot read ", path));
  return contents.str();
}

// Reads a secret from the file or variable named by `file_key` / `env_key`.
absl::StatusOr<std::string> ReadSecret(absl::string_view file_key, const std::string& file,
                                       absl::string_view env_key, const std::string& env_name,
                                       const EnvLookup& env) {
  std::string value;
  if (!file.empty()) {
    absl::StatusOr<std::string> contents = ReadWholeFile(file);
    if (!contents.ok()) {
      return PathError(file_key, std::string(contents.status().message()));
    }
    value = std::string(absl::StripAsciiWhitespace(*contents));
    if (value.empty()) return PathError(file_key, absl::StrCat(file, " is empty"));
  } else {
    std::optional<std::string> found = env(env_name);
    if (!found.has_value()) {
      return PathError(env_key, absl::StrCat("environment variable ", env_name, " is not set"));
    }
    value = std::string(absl::StripAsciiWhitespace(*found));
    if (value.empty()) {
      return PathError(env_key, absl::StrCat("environment variable ", env_name, " is empty"));
    }
  }
  return value;
}

// A key (thread signing, user ID) from the file or variable `ref` names: at least 32 bytes.
absl::StatusOr<std::string> ReadKey(absl::string_view file_key, absl::string_view env_key,
                                    const SecretRef& ref, const EnvLookup& env) {
  absl::StatusOr<std::string> key = ReadSecret(file_key, ref.file, env_key, ref.env, env);
  if (!key.ok()) return key.status();
  if (key->size() < 32) {
    return PathError(ref.file.empty() ? env_key : file_key,
                     "the key must be at least 32 bytes (e.g. openssl rand -base64 48)");
  }
  return key;
}

// The canonical 8-4-4-4-12 hexadecimal form.
bool IsUuidText(absl::string_view text) {
  if (text.size() != 36) return false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? text[i] != '-' : !absl::ascii_isxdigit(static_cast<unsigned char>(text[i]))) {
      return false;
    }
  }
  return true;
}

// The host of "scheme://[userinfo@]host[:port][/path]", lower-case, IPv6 without brackets.
std::string UrlHost(absl::string_view url) {
  const std::size_t scheme = url.find("://");
  if (scheme != absl::string_view::npos) url.remove_prefix(scheme + 3);
  url = url.substr(0, url.find_first_of("/?#"));
  if (const std::size_t at = url.rfind('@'); at != absl::string_view::npos) {
    url.remove_prefix(at + 1);
  }
  if (absl::StartsWith(url, "[")) {
    const std::size_t close = url.find(']');
    return absl::AsciiStrToLower(
        url.substr(1, close == absl::string_view::npos ? url.size() - 1 : close - 1));
  }
  return absl::AsciiStrToLower(url.substr(0, url.find(':')));
}

// upstream.proxy: "http://host:port" or "https://host:port", no credentials in it.
absl::Status ValidateProxyUrl(absl::string_view url) {
  absl::string_view rest = url;
  if (!absl::ConsumePrefix(&rest, "http://") && !absl::ConsumePrefix(&rest, "https://")) {
    return PathError("upstream.proxy", "must start with http:// or https:// (or be none)");
  }
  const absl::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
  if (absl::StrContains(authority, '@')) {
    return PathError("upstream.proxy",
                     "must not hold credentials: put user:password in "
                     "upstream.proxy_credentials_file");
  }
  if (UrlHost(url).empty()) return PathError("upstream.proxy", "names no host");
  const absl::string_view path = rest.substr(authority.size());
  if (!path.empty() && path != "/") {
    return PathError("upstream.proxy", "expected scheme://host:port without a path");
  }
  return absl::OkStatus();
}

// The connection policy and the proxy settings of upstream.
absl::Status ValidateUpstreamConnection(const UpstreamConfig& upstream) {
  // libcurl counts connection ages in whole seconds (CurlTransportOptions).
  if (upstream.max_idle_connection_age < absl::Seconds(1)) {
    return PathError("upstream.max_idle_connection_age", "must be at least 1s (whole seconds)");
  }
  if (upstream.max_connection_lifetime != absl::ZeroDuration() &&
      upstream.max_connection_lifetime < absl::Seconds(2)) {
    return PathError("upstream.max_connection_lifetime",
                     "must be 0 (no bound) or at least 2s (whole seconds)");
  }
  if (upstream.retry.max_backoff < upstream.retry.initial_backoff) {
    return PathError("upstream.retry.max_backoff", "must not be below initial_backoff");
  }
  if (upstream.circuit_breaker.enabled && upstream.circuit_breaker.consecutive_failures == 0 &&
      upstream.circuit_breaker.failure_ratio == 0) {
    return PathError("upstream.circuit_breaker",
                     "consecutive_failures and failure_ratio are both 0: nothing opens it (set "
                     "enabled: false instead)");
  }
  const bool proxy = !upstream.proxy.empty() && upstream.proxy != "none";
  if (proxy) {
    if (absl::Status status = ValidateProxyUrl(upstream.proxy); !status.ok()) return status;
  }
  if (!proxy && !upstream.proxy_credentials_file.empty()) {
    return PathError("upstream.proxy_credentials_file", "needs upstream.proxy");
  }
  if (!proxy && !upstream.no_proxy.empty()) {
    return PathError("upstream.no_proxy", "needs upstream.proxy");
  }
  return absl::OkStatus();
}

// localhost, 127.0.0.0/8 and ::1: traffic that never leaves the machine (or the pod).
bool IsLoopbackHost(absl::string_view host) {
  if (host == "localhost" || absl::EndsWith(host, ".localhost") || host == "::1") return true;
  std::vector<absl::string_view> octets = absl::StrSplit(host, '.');
  if (octets.size() != 4 || octets[0] != "127") return false;
  for (absl::string_view octet : octets) {
    int value = 0;
    if (!absl::SimpleAtoi(octet, &value) || value < 0 || value > 255) return false;
  }
  return true;
}

int Sources(const SecretRef& ref) {
  return !ref.value.empty() + !ref.file.empty() + !ref.env.empty();
}

absl::Status ValidateTenants(const std::vector<TenantEntryConfig>& tenants) {
  absl::flat_hash_set<std::string> ids;
  absl::flat_hash_set<std::string> tokens;
  absl::flat_hash_set<std::string> identities;
  for (std::size_t i = 0; i < tenants.size(); ++i) {
    const TenantEntryConfig& tenant = tenants[i];
    const std::string path = absl::StrCat("tenants[", i, "]");
    if (tenant.id.empty()) return PathError(absl::StrCat(path, ".id"), "required");
    if (!ids.insert(tenant.id).second) {
      return PathError(absl::StrCat(path, ".id"), absl::StrCat("duplicate tenant id ", tenant.id));
    }
    if (tenant.limits.answer_per_second > 0 && tenant.limits.answer_per_minute > 0) {
      return PathError(absl::StrCat(path, ".limits"),
                       "answer_per_second and answer_per_minute exclude each other");
    }
    if (tenant.limits.other_per_second > 0 && tenant.limits.other_per_minute > 0) {
      return PathError(absl::StrCat(path, ".limits"),
                       "other_per_second and other_per_minute exclude each other");
    }
    for (std::size_t j = 0; j < tenant.bearer_token_sha256.size(); ++j) {
      const std::string& hash = tenant.bearer_token_sha256[j];
      const std::string hash_path = absl::StrCat(path, ".bearer_token_sha256[", j, "]");
      if (hash.size() != 64 || !std::all_of(hash.begin(), hash.end(), [](char c) {
            return absl::ascii_isxdigit(static_cast<unsigned char>(c));
          })) {
        return PathError(hash_path,
                         "expected 64 hex digits (sha256sum of the token), not the token itself");
      }
      if (!tokens.insert(absl::AsciiStrToLower(hash)).second) {
        return PathError(hash_path, "the same token is configured twice");
      }
    }
    for (const auto* list : {&tenant.spiffe_ids, &tenant.dns_names}) {
      for (const std::string& identity : *list) {
        const std::string key = list == &tenant.dns_names ? "dns:" + identity : identity;
        if (list == &tenant.spiffe_ids && !absl::StartsWith(identity, "spiffe://")) {
          return PathError(absl::StrCat(path, ".spiffe_ids"),
                           absl::StrCat(identity, " is not a spiffe:// ID"));
        }
        if (!identities.insert(key).second) {
          return PathError(path, absl::StrCat("client identity ", identity,
                                              " is mapped to more than one tenant"));
        }
      }
    }
    if (Sources(tenant.licence) > 1) {
      return PathError(path, "at most one of licence, licence_file and licence_env may be set");
    }
    if (!tenant.api_key.file.empty() && !tenant.api_key.env.empty()) {
      return PathError(path, "at most one of api_key_file and api_key_env may be set");
    }
    if (tenant.assistants.empty()) {
      return PathError(absl::StrCat(path, ".assistants"),
                       "required: the assistants this tenant may use (\"*\" for all)");
    }
    for (std::size_t j = 0; j < tenant.assistants.size(); ++j) {
      const TenantAssistantConfig& assistant = tenant.assistants[j];
      const std::string assistant_path = absl::StrCat(path, ".assistants[", j, "]");
      if (assistant.id != "*" && !IsUuidText(assistant.id)) {
        return PathError(absl::StrCat(assistant_path, ".id"), "must be an assistant UUID or \"*\"");
      }
      if (Sources(assistant.licence) > 1) {
        return PathError(assistant_path,
                         "at most one of licence, licence_file and licence_env may be set");
      }
    }
  }
  return absl::OkStatus();
}

// The url's scheme, and the TLS files that go with rediss://.
absl::Status ValidateRedis(const RedisConfig& redis) {
  const bool tls = absl::StartsWith(redis.url, "rediss://");
  if (!redis.url.empty() && !tls && !absl::StartsWith(redis.url, "redis://")) {
    return PathError("redis.url", "must start with redis:// or rediss:// (TLS)");
  }
  for (const auto& [key, value] :
       {std::pair<absl::string_view, const std::string&>{"redis.ca_file", redis.ca_file},
        {"redis.cert_file", redis.cert_file},
        {"redis.key_file", redis.key_file}}) {
    // Without TLS the files would be ignored and the connection unencrypted.
    if (!value.empty() && !tls) return PathError(key, "needs a rediss:// url (TLS)");
  }
  if (redis.cert_file.empty() != redis.key_file.empty()) {
    return PathError("redis", "cert_file and key_file go together (a client certificate)");
  }
  return absl::OkStatus();
}

// The thread signing keys and the user-ID key: where each comes from.
absl::Status ValidateSigningKeys(const GatewayConfig& config) {
  const SecretRef& current = config.thread_signing_key;
  if (!current.file.empty() && !current.env.empty()) {
    return PathError("thread_signing_key_file",
                     "at most one of thread_signing_key_file and thread_signing_key_env");
  }
  if (!config.previous_thread_signing_keys.empty() && current.empty()) {
    return PathError("previous_thread_signing_keys",
                     "needs thread_signing_key_file or thread_signing_key_env (the key that "
                     "signs new thread IDs)");
  }
  for (std::size_t i = 0; i < config.previous_thread_signing_keys.size(); ++i) {
    const SecretRef& previous = config.previous_thread_signing_keys[i];
    const std::string path = absl::StrCat("previous_thread_signing_keys[", i, "]");
    if (previous.file.empty() == previous.env.empty()) {
      return PathError(path, "exactly one of key_file and key_env");
    }
    if ((!previous.file.empty() && previous.file == current.file) ||
        (!previous.env.empty() && previous.env == current.env)) {
      return PathError(path,
                       "names the current key (thread_signing_key_file/_env): a previous key is "
                       "the one the current key replaced");
    }
  }
  if (!config.user_id_key.file.empty() && !config.user_id_key.env.empty()) {
    return PathError("user_id_key_file", "at most one of user_id_key_file and user_id_key_env");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<GatewayConfig> ParseConfigYaml(absl::string_view yaml) {
  GatewayConfig config;
  try {
    const YAML::Node root = YAML::Load(std::string(yaml));
    if (absl::Status status = ReadConfig(root, config); !status.ok()) return status;
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("invalid YAML at line ", e.mark.line + 1,
                                                   ", column ", e.mark.column + 1, ": ", e.msg));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("invalid config: ", e.what()));
  }
  return config;
}

absl::StatusOr<GatewayConfig> LoadConfigFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadWholeFile(path);
  if (!text.ok()) return text.status();
  absl::StatusOr<GatewayConfig> config = ParseConfigYaml(*text);
  if (!config.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", config.status().message()));
  }
  return config;
}

void ApplyOverrides(const ConfigOverrides& overrides, GatewayConfig& config) {
  if (overrides.listen.has_value()) config.server.listen = *overrides.listen;
  if (overrides.upstream_url.has_value()) config.upstream.base_url = *overrides.upstream_url;
  if (overrides.api_key_file.has_value()) {
    config.upstream.api_key_file = *overrides.api_key_file;
    config.upstream.api_key_env.clear();
  }
}

absl::Status ValidateConfig(const GatewayConfig& config) {
  if (config.server.listen.empty() || !absl::StrContains(config.server.listen, ':')) {
    return PathError("listen", "expected HOST:PORT");
  }
  const std::string& url = config.upstream.base_url;
  if (url.empty()) return PathError("upstream.base_url", "required (or --upstream-url)");
  if (!absl::StartsWith(url, "http://") && !absl::StartsWith(url, "https://")) {
    return PathError("upstream.base_url", "must start with http:// or https://");
  }
  if (absl::StartsWith(url, "http://") && !config.upstream.allow_insecure_http &&
      !IsLoopbackHost(UrlHost(url))) {
    return PathError("upstream.base_url",
                     "http:// to a host that is not loopback would send the API key in clear "
                     "text; use https://, or set upstream.allow_insecure_http: true");
  }
  const bool key_file = !config.upstream.api_key_file.empty();
  const bool key_env = !config.upstream.api_key_env.empty();
  if (key_file == key_env) {
    return PathError("upstream",
                     "exactly one of api_key_file and api_key_env is required (or --api-key-file)");
  }
  const TenantConfig& tenant = config.default_tenant;
  const int licence_sources =
      !tenant.licence.empty() + !tenant.licence_file.empty() + !tenant.licence_env.empty();
  if (licence_sources > 1) {
    return PathError("default_tenant",
                     "at most one of licence, licence_file and licence_env may be set");
  }
  if (absl::StatusOr<LogLevel> level = ParseLogLevel(config.server.log_level); !level.ok()) {
    return PathError("log_level", "expected debug, info, warning or error");
  }
  if (absl::Status status = ValidateRedis(config.redis); !status.ok()) return status;
  if (absl::TimeZone zone; !absl::LoadTimeZone(config.usage.time_zone, &zone)) {
    return PathError("usage.time_zone",
                     absl::StrCat("unknown time zone \"", config.usage.time_zone,
                                  "\" (UTC, or an IANA name such as Europe/Berlin)"));
  }
  if (!config.redis.password_file.empty() && !config.redis.password_env.empty()) {
    return PathError("redis", "at most one of password_file and password_env");
  }
  if (absl::Status status = ValidateSigningKeys(config); !status.ok()) return status;
  if (absl::Status status = ValidateTenants(config.tenants); !status.ok()) return status;
  for (std::size_t i = 0; i < config.tenants.size(); ++i) {
    if (config.tenants[i].id == config.default_tenant.id) {
      return PathError("default_tenant.id",
                       absl::StrCat("\"", config.default_tenant.id, "\" is also tenants[", i,
                                    "].id: anonymous callers would share that tenant's threads, "
                                    "limits and usage"));
    }
  }
  if (const TlsListenerConfig& tls = config.tls; !tls.listen.empty()) {
    if (!absl::StrContains(tls.listen, ':')) return PathError("tls.listen", "expected HOST:PORT");
    if (tls.cert_file.empty() || tls.key_file.empty()) {
      return PathError("tls", "cert_file and key_file are required with listen");
    }
    if (tls.identity.empty()) return PathError("tls.identity", "name at least one of mtls, bearer");
    for (const CallerIdentity method : tls.identity) {
      if (method == CallerIdentity::kMtls && tls.client_ca_file.empty()) {
        return PathError("tls.identity", "mtls needs tls.client_ca_file");
      }
    }
  }
  if (absl::Status status = ValidateUpstreamConnection(config.upstream); !status.ok()) {
    return status;
  }
  if (config.upstream.connect_timeout > config.upstream.max_call_timeout) {
    return PathError("upstream.connect_timeout", "must not exceed upstream.max_call_timeout");
  }
  return absl::OkStatus();
}

absl::StatusOr<GatewayConfig> BuildConfig(const std::optional<std::string>& path,
                                          const ConfigOverrides& overrides) {
  GatewayConfig config;
  if (path.has_value()) {
    absl::StatusOr<GatewayConfig> loaded = LoadConfigFile(*path);
    if (!loaded.ok()) return loaded.status();
    config = *std::move(loaded);
  }
  ApplyOverrides(overrides, config);
  if (absl::Status status = ValidateConfig(config); !status.ok()) return status;
  return config;
}

absl::StatusOr<std::string> ReadConfigFile(const std::string& path) { return ReadWholeFile(path); }

absl::StatusOr<GatewayConfig> BuildConfigFromText(const std::string& path, absl::string_view text,
                                                  const ConfigOverrides& overrides) {
  absl::StatusOr<GatewayConfig> config = ParseConfigYaml(text);
  if (!config.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", config.status().message()));
  }
  ApplyOverrides(overrides, *config);
  if (absl::Status status = ValidateConfig(*config); !status.ok()) return status;
  return config;
}

EnvLookup ProcessEnvironment() {
  return [](const std::string& name) -> std::optional<std::string> {
    // The gateway never changes its environment, so reading it from any thread is safe.
    const char* value = std::getenv(name.c_str());  // NOLINT(concurrency-mt-unsafe)
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
}

absl::StatusOr<ResolvedProxy> ResolveUpstreamProxy(const UpstreamConfig& upstream,
                                                   const EnvLookup& env) {
  ResolvedProxy proxy;
  if (upstream.proxy == "none") return proxy;
  if (!upstream.proxy.empty()) {
    proxy.url = upstream.proxy;
    proxy.no_proxy = upstream.no_proxy;
    proxy.source = "upstream.proxy";
    if (!upstream.proxy_credentials_file.empty()) {
      absl::StatusOr<std::string> credentials = ReadSecret(
          "upstream.proxy_credentials_file", upstream.proxy_credentials_file, "", "", env);
      if (!credentials.ok()) return credentials.status();
      const std::size_t colon = credentials->find(':');
      if (colon == std::string::npos || colon == 0) {
        return PathError(
            "upstream.proxy_credentials_file",
            absl::StrCat(upstream.proxy_credentials_file, " must hold user:password on one line"));
      }
      proxy.username = credentials->substr(0, colon);
      proxy.password = credentials->substr(colon + 1);
    }
    return proxy;
  }
  // As curl reads them: http_proxy only in lower case (HTTP_PROXY can be set by a CGI request
  // header), then all_proxy.
  const bool https = absl::StartsWith(upstream.base_url, "https://");
  std::vector<std::string> names;
  if (https) {
    names = {"https_proxy", "HTTPS_PROXY"};
  } else {
    names = {"http_proxy"};
  }
  names.insert(names.end(), {"all_proxy", "ALL_PROXY"});
  for (const std::string& name : names) {
    std::optional<std::string> value = env(name);
    if (!value.has_value() || absl::StripAsciiWhitespace(*value).empty()) continue;
    proxy.url = std::string(absl::StripAsciiWhitespace(*value));
    proxy.source = name;
    for (const char* no_proxy_name : {"no_proxy", "NO_PROXY"}) {
      if (std::optional<std::string> hosts = env(no_proxy_name); hosts.has_value()) {
        proxy.no_proxy = *hosts;
        break;
      }
    }
    break;
  }
  return proxy;
}

std::string ProxyForLog(absl::string_view url) {
  const std::size_t scheme = url.find("://");
  const std::size_t start = scheme == absl::string_view::npos ? 0 : scheme + 3;
  const std::size_t end = url.find_first_of("/?#", start);
  const std::size_t at =
      url.substr(0, end == absl::string_view::npos ? url.size() : end).rfind('@');
  if (at == absl::string_view::npos || at < start) return std::string(url);
  return absl::StrCat(url.substr(0, start), "***@", url.substr(at + 1));
}

absl::StatusOr<GatewaySecrets> ResolveSecrets(const GatewayConfig& config, const EnvLookup& env) {
  GatewaySecrets secrets;
  absl::StatusOr<ResolvedProxy> proxy = ResolveUpstreamProxy(config.upstream, env);
  if (!proxy.ok()) return proxy.status();
  secrets.proxy = *std::move(proxy);
  absl::StatusOr<std::string> key =
      ReadSecret("upstream.api_key_file", config.upstream.api_key_file, "upstream.api_key_env",
                 config.upstream.api_key_env, env);
  if (!key.ok()) return key.status();
  secrets.api_key = *std::move(key);
  if (!config.thread_signing_key.empty()) {
    absl::StatusOr<std::string> signing = ReadKey(
        "thread_signing_key_file", "thread_signing_key_env", config.thread_signing_key, env);
    if (!signing.ok()) return signing.status();
    secrets.thread_signing_key = *std::move(signing);
  }
  for (std::size_t i = 0; i < config.previous_thread_signing_keys.size(); ++i) {
    const std::string path = absl::StrCat("previous_thread_signing_keys[", i, "]");
    absl::StatusOr<std::string> previous =
        ReadKey(absl::StrCat(path, ".key_file"), absl::StrCat(path, ".key_env"),
                config.previous_thread_signing_keys[i], env);
    if (!previous.ok()) return previous.status();
    secrets.previous_thread_signing_keys.push_back(*std::move(previous));
  }
  if (!config.user_id_key.empty()) {
    absl::StatusOr<std::string> user_id_key =
        ReadKey("user_id_key_file", "user_id_key_env", config.user_id_key, env);
    if (!user_id_key.ok()) return user_id_key.status();
    secrets.user_id_key = *std::move(user_id_key);
  }
  if (!config.redis.password_file.empty() || !config.redis.password_env.empty()) {
    absl::StatusOr<std::string> password =
        ReadSecret("redis.password_file", config.redis.password_file, "redis.password_env",
                   config.redis.password_env, env);
    if (!password.ok()) return password.status();
    secrets.redis_password = *std::move(password);
  }
  absl::StatusOr<std::vector<ResolvedTenant>> tenants = ResolveTenants(config, env);
  if (!tenants.ok()) return tenants.status();
  secrets.tenants = *std::move(tenants);
  const TenantConfig& tenant = config.default_tenant;
  if (!tenant.licence.empty()) {
    secrets.licence = tenant.licence;
  } else if (!tenant.licence_file.empty() || !tenant.licence_env.empty()) {
    absl::StatusOr<std::string> licence =
        ReadSecret("default_tenant.licence_file", tenant.licence_file, "default_tenant.licence_env",
                   tenant.licence_env, env);
    if (!licence.ok()) return licence.status();
    secrets.licence = *std::move(licence);
  }
  return secrets;
}

namespace {

// The secret `ref` names (the value itself, a file or a variable); empty when it names none.
absl::StatusOr<std::string> ReadRef(const std::string& path, const SecretRef& ref,
                                    const EnvLookup& env) {
  if (!ref.value.empty()) return ref.value;
  if (ref.file.empty() && ref.env.empty()) return std::string();
  return ReadSecret(absl::StrCat(path, "_file"), ref.file, absl::StrCat(path, "_env"), ref.env,
                    env);
}

// A rate per second from a per-second or per-minute setting, with its burst (default: the rate
// per second, at least 1).
RateLimit RateOf(double per_second, double per_minute, int64_t burst) {
  RateLimit rate;
  rate.per_second = per_second > 0 ? per_second : per_minute / 60;
  rate.burst = burst > 0 ? burst : std::max<int64_t>(1, static_cast<int64_t>(rate.per_second));
  return rate;
}

TenantLimits TenantLimitsOf(const TenantEntryConfig& entry) {
  const TenantLimitsConfig& config = entry.limits;
  TenantLimits limits;
  limits.answer_rate =
      RateOf(config.answer_per_second, config.answer_per_minute, config.answer_burst);
  limits.other_rate = RateOf(config.other_per_second, config.other_per_minute, config.other_burst);
  limits.max_concurrent_answers = config.max_concurrent_answers;
  limits.weight = entry.weight;
  limits.quotas = entry.quotas;
  return limits;
}

}  // namespace

absl::StatusOr<std::vector<ResolvedTenant>> ResolveTenants(const GatewayConfig& config,
                                                           const EnvLookup& env) {
  std::vector<ResolvedTenant> resolved;
  for (std::size_t i = 0; i < config.tenants.size(); ++i) {
    const TenantEntryConfig& entry = config.tenants[i];
    const std::string path = absl::StrCat("tenants[", i, "]");
    ResolvedTenant out;
    out.tenant.id = entry.id;
    absl::StatusOr<std::string> licence =
        ReadRef(absl::StrCat(path, ".licence"), entry.licence, env);
    if (!licence.ok()) return licence.status();
    out.tenant.licence = *std::move(licence);
    absl::StatusOr<std::string> key = ReadRef(absl::StrCat(path, ".api_key"), entry.api_key, env);
    if (!key.ok()) return key.status();
    out.tenant.api_key = *std::move(key);
    out.tenant.all_assistants = false;
    for (std::size_t j = 0; j < entry.assistants.size(); ++j) {
      const TenantAssistantConfig& assistant = entry.assistants[j];
      if (assistant.id == "*") {
        out.tenant.all_assistants = true;
        continue;
      }
      const std::string id = absl::AsciiStrToLower(assistant.id);
      out.tenant.allowed_assistants.insert(id);
      absl::StatusOr<std::string> own =
          ReadRef(absl::StrCat(path, ".assistants[", j, "].licence"), assistant.licence, env);
      if (!own.ok()) return own.status();
      if (!own->empty()) out.tenant.assistant_licences[id] = *std::move(own);
    }
    for (const std::string& hex : entry.bearer_token_sha256) {
      out.token_sha256.push_back(absl::HexStringToBytes(absl::AsciiStrToLower(hex)));
    }
    out.tenant.limits = TenantLimitsOf(entry);
    out.identities = entry.spiffe_ids;
    for (const std::string& name : entry.dns_names) out.identities.push_back("dns:" + name);
    resolved.push_back(std::move(out));
  }
  return resolved;
}

}  // namespace copilot::gateway
