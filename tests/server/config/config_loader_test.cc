#include "server/config/config_loader.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace copilot::gateway {
namespace {

using ::testing::HasSubstr;

// A temporary file removed at the end of the test.
class TempFile {
 public:
  explicit TempFile(const std::string& contents) {
    char name[] = "/tmp/gateway_config_test_XXXXXX";
    const int fd = mkstemp(name);
    EXPECT_GE(fd, 0);
    close(fd);
    path_ = name;
    std::ofstream(path_) << contents;
  }
  ~TempFile() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// "valid", or why `yaml` does not parse or validate.
std::string ValidationOf(const std::string& yaml) {
  absl::StatusOr<GatewayConfig> config = ParseConfigYaml(yaml);
  if (!config.ok()) return std::string(config.status().message());
  absl::Status status = ValidateConfig(*config);
  return status.ok() ? std::string("valid") : std::string(status.message());
}

EnvLookup FakeEnv(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

TEST(ConfigLoaderTest, ExampleFileParsesAndValidates) {
  absl::StatusOr<GatewayConfig> config = LoadConfigFile(COPILOT_EXAMPLE_CONFIG);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(ValidateConfig(*config).ok()) << ValidateConfig(*config);
  EXPECT_EQ(config->server.listen, "0.0.0.0:50051");
  EXPECT_EQ(config->upstream.base_url, "https://api.haufe.ai/agents");
  EXPECT_EQ(config->upstream.connect_timeout, absl::Seconds(5));
  EXPECT_EQ(config->upstream.max_call_timeout, absl::Minutes(5));
  EXPECT_EQ(config->upstream.max_response_bytes, 16u * 1024 * 1024);
  EXPECT_EQ(config->limits.max_content_chars, 30000);
  EXPECT_EQ(config->default_tenant.licence_env, "HAUFE_LICENCE");
}

TEST(ConfigLoaderTest, ParsesEveryKey) {
  absl::StatusOr<GatewayConfig> config = ParseConfigYaml(R"(
listen: "127.0.0.1:0"
shutdown_grace: 3s
max_threads: 4
max_queued_chunks: 3
upstream:
  base_url: http://127.0.0.1:8080/agents
  api_key_env: KEY
  connect_timeout: 300ms
  stall_timeout: 2s
  max_call_timeout: 1m
  max_response_bytes: 64KiB
  max_ndjson_line_bytes: 2KiB
  http2: false
  max_transfers: 500
  event_loops: 3
  max_cached_connections: 7
  max_connections: 120
limits:
  max_content_chars: 100
  max_messages: 7
  max_request_bytes: 2048
request_ids:
  ttl: 30s
  max_entries: 10
  max_bytes: 1MiB
default_tenant:
  id: acme
  licence: LIC
)");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->server.listen, "127.0.0.1:0");
  EXPECT_EQ(config->server.shutdown_grace, absl::Seconds(3));
  EXPECT_EQ(config->server.max_threads, 4);
  EXPECT_EQ(config->server.max_queued_chunks, 3);
  EXPECT_EQ(config->upstream.max_ndjson_line_bytes, 2u * 1024);
  EXPECT_FALSE(config->upstream.http2);
  EXPECT_EQ(config->upstream.max_transfers, 500u);
  EXPECT_EQ(config->upstream.event_loops, 3);
  EXPECT_EQ(config->upstream.max_cached_connections, 7u);
  EXPECT_EQ(config->upstream.max_connections, 120u);
  EXPECT_EQ(config->request_ids.max_bytes, 1024u * 1024);
  EXPECT_EQ(config->upstream.api_key_env, "KEY");
  EXPECT_EQ(config->upstream.connect_timeout, absl::Milliseconds(300));
  EXPECT_EQ(config->upstream.stall_timeout, absl::Seconds(2));
  EXPECT_EQ(config->upstream.max_call_timeout, absl::Minutes(1));
  EXPECT_EQ(config->upstream.max_response_bytes, 64u * 1024);
  EXPECT_EQ(config->limits.max_content_chars, 100);
  EXPECT_EQ(config->limits.max_messages, 7);
  EXPECT_EQ(config->limits.max_request_bytes, 2048u);
  EXPECT_EQ(config->request_ids.ttl, absl::Seconds(30));
  EXPECT_EQ(config->request_ids.max_entries, 10u);
  EXPECT_EQ(config->default_tenant.id, "acme");
  EXPECT_EQ(config->default_tenant.licence, "LIC");
  EXPECT_TRUE(ValidateConfig(*config).ok());
}

TEST(ConfigLoaderTest, EmptyDocumentKeepsDefaults) {
  absl::StatusOr<GatewayConfig> config = ParseConfigYaml("");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->upstream.stall_timeout, absl::Seconds(60));
}

void ExpectError(absl::string_view yaml, absl::string_view expected) {
  absl::StatusOr<GatewayConfig> config = ParseConfigYaml(yaml);
  ASSERT_FALSE(config.ok()) << yaml;
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(config.status().message()), HasSubstr(std::string(expected))) << yaml;
}

TEST(ConfigLoaderTest, UnknownKeysAreRejectedWithTheirPath) {
  ExpectError("upstream:\n  timeout_ms: 5\n", "upstream.timeout_ms: unknown key");
  ExpectError("colour: red\n", "colour: unknown key");
  ExpectError("default_tenant:\n  licence_id: x\n", "default_tenant.licence_id: unknown key");
}

TEST(ConfigLoaderTest, WrongTypesAndValuesNameThePath) {
  ExpectError("upstream: 5\n", "upstream: expected a mapping");
  ExpectError("upstream:\n  connect_timeout: 5\n", "upstream.connect_timeout: expected a duration");
  ExpectError("upstream:\n  connect_timeout: -1s\n",
              "upstream.connect_timeout: must be a positive");
  ExpectError("upstream:\n  base_url: [a, b]\n", "upstream.base_url: expected a string");
  ExpectError("upstream:\n  max_response_bytes: lots\n",
              "upstream.max_response_bytes: expected a size");
  ExpectError("limits:\n  max_content_chars: 30001\n", "limits.max_content_chars: must be between");
  ExpectError("limits:\n  max_messages: many\n", "limits.max_messages: expected an integer");
  ExpectError("listen: \"\"\n", "listen: must not be empty");
  ExpectError("upstream:\n  http2: yes please\n", "upstream.http2: expected true or false");
  ExpectError("upstream:\n  max_transfers: 0\n", "upstream.max_transfers: must be between");
  ExpectError("upstream:\n  event_loops: 65\n", "upstream.event_loops: must be between");
  ExpectError("max_queued_chunks: 0\n", "max_queued_chunks: must be between");
  ExpectError("[1, 2]\n", "(top level): expected a mapping");
}

TEST(ConfigLoaderTest, TenantsAndTlsAreValidatedWithTheirPaths) {
  const std::string base = "upstream:\n  base_url: https://x/agents\n  api_key_env: K\n";
  auto invalid = [&](const std::string& yaml) { return ValidationOf(base + yaml); };
  const std::string hash(64, 'a');
  EXPECT_EQ(invalid("tenants:\n  - id: a\n    bearer_token_sha256: [\"" + hash +
                    "\"]\n    assistants: [{id: \"*\"}]\n"),
            "valid");
  EXPECT_THAT(invalid("tenants:\n  - id: a\n    bearer_token_sha256: [secret]\n"
                      "    assistants: [{id: \"*\"}]\n"),
              HasSubstr("tenants[0].bearer_token_sha256[0]: expected 64 hex digits"));
  EXPECT_THAT(invalid("tenants:\n  - id: a\n"), HasSubstr("tenants[0].assistants: required"));
  EXPECT_THAT(invalid("tenants:\n  - id: a\n    assistants: [{id: x}]\n"),
              HasSubstr("tenants[0].assistants[0].id: must be an assistant UUID"));
  EXPECT_THAT(invalid("tenants:\n  - {id: a, assistants: [{id: \"*\"}]}\n"
                      "  - {id: a, assistants: [{id: \"*\"}]}\n"),
              HasSubstr("duplicate tenant id a"));
  EXPECT_THAT(invalid("tenants:\n  - {id: a, spiffe_ids: [\"x\"], assistants: [{id: \"*\"}]}\n"),
              HasSubstr("not a spiffe:// ID"));
  EXPECT_THAT(invalid("identity: maybe\n"), HasSubstr("identity: must be bearer or none"));
  EXPECT_THAT(invalid("tls:\n  listen: \"0.0.0.0:1\"\n"),
              HasSubstr("cert_file and key_file are required"));
  EXPECT_THAT(invalid("tls:\n  listen: \"0.0.0.0:1\"\n  cert_file: c\n  key_file: k\n"),
              HasSubstr("mtls needs tls.client_ca_file"));
  EXPECT_EQ(invalid("tls:\n  listen: \"0.0.0.0:1\"\n  cert_file: c\n  key_file: k\n"
                    "  identity: [bearer]\n  refresh_interval: 10s\n"),
            "valid");
  EXPECT_THAT(invalid("tls:\n  colour: red\n"), HasSubstr("tls.colour: unknown key"));
}

// Fixed-value settings become enums (or none for `off`) when read; anything else is refused
// with the values it may take.
TEST(ConfigLoaderTest, FixedValueSettingsAreReadAsEnums) {
  const std::string base = "upstream:\n  base_url: https://x/agents\n  api_key_env: K\n";
  absl::StatusOr<GatewayConfig> defaults = ParseConfigYaml(base);
  ASSERT_TRUE(defaults.ok()) << defaults.status();
  EXPECT_EQ(defaults->server.identity, CallerIdentity::kBearer);
  EXPECT_EQ(defaults->redis.on_failure, RedisFailureMode::kFailOpen);
  EXPECT_EQ(defaults->server.metrics_listen, "0.0.0.0:9464");
  EXPECT_THAT(defaults->tls.identity,
              testing::ElementsAre(CallerIdentity::kMtls, CallerIdentity::kBearer));
  absl::StatusOr<GatewayConfig> config =
      ParseConfigYaml(base +
                      "identity: none\nmetrics_listen: \"off\"\n"
                      "redis:\n  on_failure: fail_closed\ntls:\n  identity: [bearer]\n");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->server.identity, CallerIdentity::kNone);
  EXPECT_FALSE(config->server.metrics_listen.has_value());
  EXPECT_EQ(config->redis.on_failure, RedisFailureMode::kFailClosed);
  EXPECT_THAT(config->tls.identity, testing::ElementsAre(CallerIdentity::kBearer));
  auto refused = [&](const std::string& yaml) {
    absl::StatusOr<GatewayConfig> parsed = ParseConfigYaml(base + yaml);
    return parsed.ok() ? std::string("accepted") : std::string(parsed.status().message());
  };
  EXPECT_THAT(refused("redis:\n  on_failure: open\n"),
              HasSubstr("redis.on_failure: must be fail_open or fail_closed"));
  EXPECT_THAT(refused("identity: mtls\n"), HasSubstr("identity: must be bearer or none"));
  EXPECT_THAT(refused("tls:\n  identity: [mtls, none]\n"),
              HasSubstr("tls.identity[1]: must be mtls or bearer"));
  EXPECT_THAT(refused("tls:\n  identity: [bearer, bearer]\n"),
              HasSubstr("tls.identity[1]: bearer is listed twice"));
  EXPECT_THAT(refused("metrics_listen: 9464\n"), HasSubstr("metrics_listen: expected HOST:PORT"));
  EXPECT_THAT(refused("metrics_listen: \"\"\n"), HasSubstr("metrics_listen: expected HOST:PORT"));
}

TEST(ConfigLoaderTest, RedisUrlsAndTlsFilesAreReadAndValidatedWithTheirPaths) {
  const std::string base = "upstream:\n  base_url: https://x/agents\n  api_key_env: K\n";
  auto invalid = [&](const std::string& yaml) { return ValidationOf(base + yaml); };
  absl::StatusOr<GatewayConfig> config = ParseConfigYaml(base + R"(
redis:
  url: "rediss://redis.example.com:6380/0"
  ca_file: /etc/redis/ca.pem
  cert_file: /etc/redis/client.pem
  key_file: /etc/redis/client.key
)");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->redis.url, "rediss://redis.example.com:6380/0");
  EXPECT_EQ(config->redis.ca_file, "/etc/redis/ca.pem");
  EXPECT_EQ(config->redis.cert_file, "/etc/redis/client.pem");
  EXPECT_EQ(config->redis.key_file, "/etc/redis/client.key");
  EXPECT_TRUE(ValidateConfig(*config).ok()) << ValidateConfig(*config);

  EXPECT_EQ(invalid("redis:\n  url: \"redis://r:6379\"\n"), "valid");
  EXPECT_EQ(invalid("redis:\n  url: \"rediss://r:6379\"\n"), "valid");  // System CAs.
  EXPECT_EQ(invalid("redis:\n  url: \"rediss://r\"\n  ca_file: ca.pem\n"), "valid");
  EXPECT_EQ(invalid("redis:\n  url: \"http://r:6379\"\n"),
            "redis.url: must start with redis:// or rediss:// (TLS)");
  // TLS files with a plain url: the connection would not be encrypted.
  EXPECT_EQ(invalid("redis:\n  url: \"redis://r\"\n  ca_file: ca.pem\n"),
            "redis.ca_file: needs a rediss:// url (TLS)");
  EXPECT_EQ(invalid("redis:\n  url: \"redis://r\"\n  cert_file: c.pem\n  key_file: c.key\n"),
            "redis.cert_file: needs a rediss:// url (TLS)");
  EXPECT_EQ(invalid("redis:\n  key_file: c.key\n"), "redis.key_file: needs a rediss:// url (TLS)");
  EXPECT_EQ(invalid("redis:\n  url: \"rediss://r\"\n  cert_file: c.pem\n"),
            "redis: cert_file and key_file go together (a client certificate)");
  EXPECT_EQ(invalid("redis:\n  url: \"rediss://r\"\n  key_file: c.key\n"),
            "redis: cert_file and key_file go together (a client certificate)");
  EXPECT_EQ(invalid("redis:\n  url: \"rediss://r\"\n  ca_file: \"\"\n"),
            "redis.ca_file: must not be empty");
  EXPECT_THAT(invalid("redis:\n  tls: true\n"), HasSubstr("redis.tls: unknown key"));
}

TEST(ConfigLoaderTest, YamlSyntaxErrorsNameTheLine) {
  ExpectError("upstream: {base_url: x\n", "invalid YAML at line");
}

TEST(ConfigLoaderTest, MissingFileIsNotFound) {
  absl::StatusOr<GatewayConfig> config = LoadConfigFile("/nonexistent/gateway.yaml");
  EXPECT_EQ(config.status().code(), absl::StatusCode::kNotFound);
}

TEST(ConfigLoaderTest, FileErrorsNameTheFile) {
  TempFile file("upstream:\n  bogus: 1\n");
  absl::StatusOr<GatewayConfig> config = LoadConfigFile(file.path());
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(std::string(config.status().message()), HasSubstr(file.path()));
  EXPECT_THAT(std::string(config.status().message()), HasSubstr("upstream.bogus: unknown key"));
}

TEST(ConfigLoaderTest, ValidateRequiresUpstreamAndExactlyOneKeySource) {
  GatewayConfig config;
  EXPECT_THAT(std::string(ValidateConfig(config).message()), HasSubstr("upstream.base_url"));
  config.upstream.base_url = "ftp://x";
  EXPECT_THAT(std::string(ValidateConfig(config).message()), HasSubstr("http://"));
  config.upstream.base_url = "http://127.0.0.1:1/agents";
  EXPECT_THAT(std::string(ValidateConfig(config).message()), HasSubstr("exactly one of"));
  config.upstream.api_key_env = "K";
  config.upstream.api_key_file = "/f";
  EXPECT_THAT(std::string(ValidateConfig(config).message()), HasSubstr("exactly one of"));
  config.upstream.api_key_file.clear();
  EXPECT_TRUE(ValidateConfig(config).ok());
  config.default_tenant.licence = "L";
  config.default_tenant.licence_env = "E";
  EXPECT_THAT(std::string(ValidateConfig(config).message()), HasSubstr("at most one"));
}

TEST(ConfigLoaderTest, FlagsOverrideTheFileAndSufficeAlone) {
  ConfigOverrides flags;
  flags.listen = "127.0.0.1:0";
  flags.upstream_url = "http://127.0.0.1:9/agents";
  flags.api_key_file = "/key";
  absl::StatusOr<GatewayConfig> alone = BuildConfig(std::nullopt, flags);
  ASSERT_TRUE(alone.ok()) << alone.status();
  EXPECT_EQ(alone->server.listen, "127.0.0.1:0");

  TempFile file("listen: 0.0.0.0:1\nupstream:\n  base_url: http://a/agents\n  api_key_env: K\n");
  absl::StatusOr<GatewayConfig> merged = BuildConfig(file.path(), flags);
  ASSERT_TRUE(merged.ok()) << merged.status();
  EXPECT_EQ(merged->server.listen, "127.0.0.1:0");
  EXPECT_EQ(merged->upstream.base_url, "http://127.0.0.1:9/agents");
  EXPECT_EQ(merged->upstream.api_key_file, "/key");
  EXPECT_EQ(merged->upstream.api_key_env, "");
}

TEST(ConfigLoaderTest, SecretsComeFromFileOrEnvironment) {
  TempFile key("  secret-key\n");
  GatewayConfig config;
  config.upstream.api_key_file = key.path();
  config.default_tenant.licence_env = "LIC";
  absl::StatusOr<GatewaySecrets> secrets = ResolveSecrets(config, FakeEnv({{"LIC", "L-1"}}));
  ASSERT_TRUE(secrets.ok()) << secrets.status();
  EXPECT_EQ(secrets->api_key, "secret-key");
  EXPECT_EQ(secrets->licence, "L-1");

  config.upstream.api_key_file.clear();
  config.upstream.api_key_env = "KEY";
  config.default_tenant.licence_env.clear();
  secrets = ResolveSecrets(config, FakeEnv({{"KEY", "k2"}}));
  ASSERT_TRUE(secrets.ok()) << secrets.status();
  EXPECT_EQ(secrets->api_key, "k2");
  EXPECT_EQ(secrets->licence, "");
}

TEST(ConfigLoaderTest, MissingSecretsNameTheKeyButNotTheValue) {
  GatewayConfig config;
  config.upstream.api_key_env = "KEY";
  absl::StatusOr<GatewaySecrets> secrets = ResolveSecrets(config, FakeEnv({}));
  ASSERT_FALSE(secrets.ok());
  EXPECT_THAT(std::string(secrets.status().message()),
              HasSubstr("upstream.api_key_env: environment variable KEY is not set"));

  config.upstream.api_key_env.clear();
  config.upstream.api_key_file = "/nonexistent/key";
  secrets = ResolveSecrets(config, FakeEnv({}));
  ASSERT_FALSE(secrets.ok());
  EXPECT_THAT(std::string(secrets.status().message()), HasSubstr("upstream.api_key_file"));

  TempFile key("top-secret");
  config.upstream.api_key_file = key.path();
  config.default_tenant.licence_file = "/nonexistent/licence";
  secrets = ResolveSecrets(config, FakeEnv({}));
  ASSERT_FALSE(secrets.ok());
  EXPECT_THAT(std::string(secrets.status().message()), HasSubstr("default_tenant.licence_file"));
  EXPECT_FALSE(absl::StrContains(secrets.status().message(), "top-secret"));
}

// Issue #13, item 14: configurations that silently weakened the gateway are refused.
TEST(ConfigLoaderTest, DefaultTenantMayNotShareATenantsId) {
  absl::StatusOr<GatewayConfig> config = ParseConfigYaml(
      "upstream:\n  base_url: https://api.example/agents\n  api_key_env: K\n"
      "tenants:\n  - {id: payroll, assistants: [{id: \"*\"}]}\n"
      "default_tenant:\n  id: payroll\n");
  ASSERT_TRUE(config.ok()) << config.status();
  absl::Status status = ValidateConfig(*config);
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("default_tenant.id: \"payroll\" is also tenants[0].id"));
}

TEST(ConfigLoaderTest, PlainHttpUpstreamOnlyOnLoopbackUnlessAllowed) {
  auto validate = [](const std::string& url, bool allow) {
    GatewayConfig config;
    config.upstream.base_url = url;
    config.upstream.api_key_env = "K";
    config.upstream.allow_insecure_http = allow;
    return ValidateConfig(config);
  };
  for (const std::string url :
       {"http://127.0.0.1:8080/agents", "http://localhost/agents", "http://[::1]:80/agents",
        "http://127.1.2.3/agents", "https://api.haufe.ai/agents", "http://user:pw@127.0.0.1/a"}) {
    EXPECT_TRUE(validate(url, false).ok()) << url;
  }
  for (const std::string url :
       {"http://api.haufe.ai/agents", "http://10.0.0.7:8080/agents",
        "http://127.0.0.1.evil.example/agents", "http://localhost@10.0.0.7/agents"}) {
    absl::Status status = validate(url, false);
    EXPECT_THAT(std::string(status.message()),
                HasSubstr("upstream.base_url: http:// to a host that is not loopback"))
        << url;
    EXPECT_TRUE(validate(url, true).ok()) << url;
  }
}

TEST(ConfigLoaderTest, HardeningBoundsAreRead) {
  absl::StatusOr<GatewayConfig> config = ParseConfigYaml(
      "max_concurrent_streams: 50\nmax_grpc_memory: 96MiB\n"
      "max_connections: 200\nhandshake_timeout: 3s\n"
      "upstream:\n  max_buffered_bytes: 32MiB\n  allow_insecure_http: true\n"
      "  max_read_per_turn: 32KiB\n  connections_per_tenant: false\n"
      "limits:\n  max_tool_calls: 8\n  max_tool_arguments_bytes: 1KiB\n  max_tools: 4\n"
      "  max_tools_bytes: 2KiB\n  max_title_chars: 80\n"
      "upstream_budget:\n  max_retry_after: 5s\n"
      "request_ids:\n  max_tenant_share: 0.5\n  max_waiters_per_request: 2\n"
      "  max_waiters_per_tenant: 10\n");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->server.max_concurrent_streams, 50);
  EXPECT_EQ(config->server.max_grpc_memory, 96u * 1024 * 1024);
  EXPECT_EQ(config->server.max_connections, 200);
  EXPECT_EQ(config->server.handshake_timeout, absl::Seconds(3));
  EXPECT_EQ(config->upstream.max_buffered_bytes, 32u * 1024 * 1024);
  EXPECT_TRUE(config->upstream.allow_insecure_http);
  EXPECT_EQ(config->upstream.max_read_per_turn, 32u * 1024);
  EXPECT_EQ(GatewayConfig{}.upstream.max_read_per_turn, 64u * 1024);  // The default.
  EXPECT_FALSE(config->upstream.connections_per_tenant);
  EXPECT_TRUE(GatewayConfig{}.upstream.connections_per_tenant);  // The default.
  EXPECT_EQ(config->limits.max_tool_calls, 8);
  EXPECT_EQ(config->limits.max_tool_arguments_bytes, 1024u);
  EXPECT_EQ(config->limits.max_tools, 4);
  EXPECT_EQ(config->limits.max_tools_bytes, 2048u);
  EXPECT_EQ(config->limits.max_title_chars, 80);
  EXPECT_EQ(config->upstream_budget.max_retry_after, absl::Seconds(5));
  EXPECT_DOUBLE_EQ(config->request_ids.max_tenant_share, 0.5);
  EXPECT_EQ(config->request_ids.max_waiters_per_request, 2);
  EXPECT_EQ(config->request_ids.max_waiters_per_tenant, 10);
  ExpectError("request_ids:\n  max_tenant_share: 0\n", "request_ids.max_tenant_share");
  ExpectError("max_grpc_memory: 1KiB\n", "max_grpc_memory: must be between");
  ExpectError("max_connections: 0\n", "max_connections: must be between");
  ExpectError("handshake_timeout: 0s\n", "handshake_timeout");
  // The defaults: the bound and a handshake deadline well under gRPC's own 120 s.
  const GatewayConfig defaults;
  EXPECT_EQ(defaults.server.max_connections, 10000);
  EXPECT_EQ(defaults.server.handshake_timeout, absl::Seconds(10));
}

SecretRef FromFile(const std::string& path) {
  SecretRef ref;
  ref.file = path;
  return ref;
}

SecretRef FromEnv(const std::string& name) {
  SecretRef ref;
  ref.env = name;
  return ref;
}

TEST(ConfigLoaderTest, ParsesTheSigningKeysOfARotationAndTheUserIdKey) {
  absl::StatusOr<GatewayConfig> config = ParseConfigYaml(R"(
upstream:
  base_url: http://127.0.0.1:8080/agents
  api_key_env: KEY
thread_signing_key_file: /keys/new
previous_thread_signing_keys:
  - key_file: /keys/old
  - key_env: OLDER_KEY
user_id_key_env: USER_ID_KEY
)");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->thread_signing_key.file, "/keys/new");
  ASSERT_EQ(config->previous_thread_signing_keys.size(), 2u);
  EXPECT_EQ(config->previous_thread_signing_keys[0].file, "/keys/old");
  EXPECT_EQ(config->previous_thread_signing_keys[0].env, "");
  EXPECT_EQ(config->previous_thread_signing_keys[1].env, "OLDER_KEY");
  EXPECT_EQ(config->user_id_key.env, "USER_ID_KEY");
  EXPECT_TRUE(ValidateConfig(*config).ok()) << ValidateConfig(*config);
}

TEST(ConfigLoaderTest, SigningKeysAreValidatedWithTheirPaths) {
  const std::string base = "upstream:\n  base_url: https://x/agents\n  api_key_env: K\n";
  auto invalid = [&](const std::string& yaml) { return ValidationOf(base + yaml); };
  EXPECT_EQ(invalid("thread_signing_key_env: NEW\nprevious_thread_signing_keys: []\n"), "valid");
  EXPECT_EQ(invalid("user_id_key_file: /keys/user-id\n"), "valid");  // Without a signing key too.
  EXPECT_EQ(invalid("previous_thread_signing_keys:\n  - key_file: /keys/old\n"),
            "previous_thread_signing_keys: needs thread_signing_key_file or "
            "thread_signing_key_env (the key that signs new thread IDs)");
  EXPECT_EQ(invalid("thread_signing_key_env: NEW\nprevious_thread_signing_keys:\n"
                    "  - {key_file: /keys/old, key_env: OLD}\n"),
            "previous_thread_signing_keys[0]: exactly one of key_file and key_env");
  EXPECT_EQ(invalid("thread_signing_key_env: NEW\nprevious_thread_signing_keys:\n"
                    "  - key_env: OLD\n  - {}\n"),
            "previous_thread_signing_keys[1]: exactly one of key_file and key_env");
  EXPECT_THAT(invalid("thread_signing_key_file: /keys/k\nprevious_thread_signing_keys:\n"
                      "  - key_file: /keys/k\n"),
              HasSubstr("previous_thread_signing_keys[0]: names the current key"));
  EXPECT_THAT(invalid("thread_signing_key_env: NEW\nprevious_thread_signing_keys:\n"
                      "  - file: /keys/old\n"),
              HasSubstr("previous_thread_signing_keys[0].file: unknown key (known: key_env, "
                        "key_file)"));
  EXPECT_THAT(invalid("previous_thread_signing_keys: /keys/old\n"),
              HasSubstr("previous_thread_signing_keys: expected a list"));
  EXPECT_THAT(invalid("previous_thread_signing_keys: [/keys/old]\n"),
              HasSubstr("previous_thread_signing_keys[0]: expected a mapping"));
  EXPECT_EQ(invalid("user_id_key_file: /keys/u\nuser_id_key_env: U\n"),
            "user_id_key_file: at most one of user_id_key_file and user_id_key_env");
  EXPECT_THAT(invalid("user_id_key_file: \"\"\n"),
              HasSubstr("user_id_key_file: must not be empty"));
}

TEST(ConfigLoaderTest, SigningKeysAndTheUserIdKeyAreRead) {
  const std::string new_key(40, 'n');
  const std::string old_key(32, 'o');
  const std::string user_id_key(48, 'u');
  TempFile api_key("api-key");
  TempFile new_file(new_key + "\n");
  TempFile old_file(old_key);
  GatewayConfig config;
  config.upstream.api_key_file = api_key.path();
  config.thread_signing_key.file = new_file.path();
  config.previous_thread_signing_keys = {FromFile(old_file.path()), FromEnv("OLDER_KEY")};
  config.user_id_key.env = "USER_ID_KEY";
  absl::StatusOr<GatewaySecrets> secrets = ResolveSecrets(
      config, FakeEnv({{"OLDER_KEY", std::string(33, 'p')}, {"USER_ID_KEY", user_id_key}}));
  ASSERT_TRUE(secrets.ok()) << secrets.status();
  EXPECT_EQ(secrets->thread_signing_key, new_key);
  EXPECT_EQ(secrets->previous_thread_signing_keys,
            (std::vector<std::string>{old_key, std::string(33, 'p')}));
  EXPECT_EQ(secrets->user_id_key, user_id_key);

  // None configured: empty.
  GatewayConfig bare;
  bare.upstream.api_key_file = api_key.path();
  secrets = ResolveSecrets(bare, FakeEnv({}));
  ASSERT_TRUE(secrets.ok()) << secrets.status();
  EXPECT_TRUE(secrets->previous_thread_signing_keys.empty());
  EXPECT_EQ(secrets->user_id_key, "");
}

TEST(ConfigLoaderTest, BadSigningKeysNameTheKeyButNotTheValue) {
  TempFile api_key("api-key");
  TempFile good(std::string(32, 'g'));
  TempFile short_key("short-secret-31-bytes-long-1234");
  GatewayConfig config;
  config.upstream.api_key_file = api_key.path();
  config.thread_signing_key.file = good.path();
  auto error = [&config](const EnvLookup& env) {
    absl::StatusOr<GatewaySecrets> secrets = ResolveSecrets(config, env);
    EXPECT_FALSE(secrets.ok());
    const std::string message(secrets.status().message());
    EXPECT_FALSE(absl::StrContains(message, "short-secret")) << message;
    return message;
  };
  config.previous_thread_signing_keys = {FromFile(short_key.path())};
  EXPECT_THAT(error(FakeEnv({})),
              HasSubstr("previous_thread_signing_keys[0].key_file: the key must be at least 32 "
                        "bytes"));
  config.previous_thread_signing_keys = {FromFile(good.path()), FromEnv("OLD")};
  EXPECT_THAT(error(FakeEnv({})),
              HasSubstr("previous_thread_signing_keys[1].key_env: environment variable OLD is "
                        "not set"));
  EXPECT_THAT(error(FakeEnv({{"OLD", "short-secret"}})),
              HasSubstr("previous_thread_signing_keys[1].key_env: the key must be at least 32"));
  config.previous_thread_signing_keys.clear();
  config.user_id_key.file = "/nonexistent/user-id-key";
  EXPECT_THAT(error(FakeEnv({})), HasSubstr("user_id_key_file: cannot open"));
  config.user_id_key.file = short_key.path();
  EXPECT_THAT(error(FakeEnv({})), HasSubstr("user_id_key_file: the key must be at least 32 bytes"));
  config.user_id_key = FromEnv("USER_ID_KEY");
  EXPECT_THAT(error(FakeEnv({{"USER_ID_KEY", "short-secret"}})),
              HasSubstr("user_id_key_env: the key must be at least 32 bytes"));
}

}  // namespace
}  // namespace copilot::gateway

namespace copilot::gateway {
namespace {

// Issue #15: the production upstream path's settings.
TEST(UpstreamConnectionConfigTest, SettingsAreReadWithTheirDefaults) {
  absl::StatusOr<GatewayConfig> defaults = ParseConfigYaml("");
  ASSERT_TRUE(defaults.ok()) << defaults.status();
  EXPECT_EQ(defaults->upstream.max_idle_connection_age, absl::Seconds(4));
  EXPECT_EQ(defaults->upstream.max_connection_lifetime, absl::Minutes(5));
  EXPECT_EQ(defaults->upstream.tls_min_version, UpstreamTlsVersion::k1_2);
  EXPECT_EQ(defaults->upstream.max_cached_connections, 0u);
  EXPECT_EQ(defaults->upstream.max_connections, 0u);
  EXPECT_EQ(defaults->upstream.proxy, "");

  absl::StatusOr<GatewayConfig> config = ParseConfigYaml(R"(
upstream:
  base_url: https://api.haufe.ai/agents
  api_key_env: K
  ca_file: /etc/ssl/corporate.pem
  tls_min_version: 1.3
  proxy: http://proxy.corp:3128
  proxy_credentials_file: /var/run/secrets/proxy
  no_proxy: "localhost,.svc.cluster.local"
  max_idle_connection_age: 20s
  max_connection_lifetime: 0s
)");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->upstream.ca_file, "/etc/ssl/corporate.pem");
  EXPECT_EQ(config->upstream.tls_min_version, UpstreamTlsVersion::k1_3);
  EXPECT_EQ(config->upstream.proxy, "http://proxy.corp:3128");
  EXPECT_EQ(config->upstream.proxy_credentials_file, "/var/run/secrets/proxy");
  EXPECT_EQ(config->upstream.no_proxy, "localhost,.svc.cluster.local");
  EXPECT_EQ(config->upstream.max_idle_connection_age, absl::Seconds(20));
  EXPECT_EQ(config->upstream.max_connection_lifetime, absl::ZeroDuration());
  EXPECT_TRUE(ValidateConfig(*config).ok()) << ValidateConfig(*config);
}

TEST(UpstreamConnectionConfigTest, BadSettingsNameTheirPath) {
  const std::string base = "upstream:\n  base_url: https://x/agents\n  api_key_env: K\n";
  auto invalid = [&](const std::string& yaml) { return ValidationOf(base + yaml); };
  EXPECT_EQ(invalid("  proxy: none\n"), "valid");
  EXPECT_EQ(invalid("  proxy: https://proxy:8443/\n"), "valid");
  EXPECT_EQ(invalid("  tls_min_version: 1.1\n"), "upstream.tls_min_version: must be 1.2 or 1.3");
  EXPECT_EQ(invalid("  proxy: socks5://proxy:1080\n"),
            "upstream.proxy: must start with http:// or https:// (or be none)");
  EXPECT_EQ(invalid("  proxy: http://user:secret@proxy:3128\n"),
            "upstream.proxy: must not hold credentials: put user:password in "
            "upstream.proxy_credentials_file");
  EXPECT_EQ(invalid("  proxy: http://:3128\n"), "upstream.proxy: names no host");
  EXPECT_EQ(invalid("  proxy: http://proxy:3128/path\n"),
            "upstream.proxy: expected scheme://host:port without a path");
  EXPECT_EQ(invalid("  proxy_credentials_file: /p\n"),
            "upstream.proxy_credentials_file: needs upstream.proxy");
  EXPECT_EQ(invalid("  proxy: none\n  no_proxy: localhost\n"),
            "upstream.no_proxy: needs upstream.proxy");
  EXPECT_EQ(invalid("  max_idle_connection_age: 500ms\n"),
            "upstream.max_idle_connection_age: must be at least 1s (whole seconds)");
  EXPECT_EQ(invalid("  max_connection_lifetime: 1s\n"),
            "upstream.max_connection_lifetime: must be 0 (no bound) or at least 2s (whole "
            "seconds)");
  EXPECT_EQ(invalid("  ca_file: \"\"\n"), "upstream.ca_file: must not be empty");
}

TEST(UpstreamConnectionConfigTest, TheSettingWinsOverTheEnvironmentAndNoneMeansDirect) {
  const EnvLookup env = FakeEnv({{"https_proxy", "http://env-proxy:3128"},
                                 {"http_proxy", "http://plain-proxy:3128"},
                                 {"no_proxy", "internal"}});
  UpstreamConfig upstream;
  upstream.base_url = "https://api.haufe.ai/agents";
  absl::StatusOr<ResolvedProxy> proxy = ResolveUpstreamProxy(upstream, env);
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  EXPECT_EQ(proxy->url, "http://env-proxy:3128");
  EXPECT_EQ(proxy->source, "https_proxy");
  EXPECT_EQ(proxy->no_proxy, "internal");

  upstream.base_url = "http://127.0.0.1:8080/agents";  // http_proxy for http:// upstreams.
  proxy = ResolveUpstreamProxy(upstream, env);
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  EXPECT_EQ(proxy->url, "http://plain-proxy:3128");
  EXPECT_EQ(proxy->source, "http_proxy");

  // HTTP_PROXY in upper case is not read (a CGI request header can set it); ALL_PROXY is.
  proxy = ResolveUpstreamProxy(upstream, FakeEnv({{"HTTP_PROXY", "http://x:1"}}));
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  EXPECT_EQ(proxy->url, "");
  proxy = ResolveUpstreamProxy(upstream, FakeEnv({{"ALL_PROXY", "http://all:1"}}));
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  EXPECT_EQ(proxy->url, "http://all:1");
  EXPECT_EQ(proxy->source, "ALL_PROXY");

  upstream.base_url = "https://api.haufe.ai/agents";
  upstream.proxy = "http://configured:3128";
  upstream.no_proxy = "localhost";
  proxy = ResolveUpstreamProxy(upstream, env);
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  EXPECT_EQ(proxy->url, "http://configured:3128");
  EXPECT_EQ(proxy->source, "upstream.proxy");
  EXPECT_EQ(proxy->no_proxy, "localhost");  // Not the environment's.

  upstream.proxy = "none";
  upstream.no_proxy.clear();
  proxy = ResolveUpstreamProxy(upstream, env);
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  EXPECT_EQ(proxy->url, "");
  EXPECT_EQ(proxy->source, "");
}

TEST(UpstreamConnectionConfigTest, ProxyCredentialsComeFromTheirFileAndNeverAppearInErrors) {
  TempFile credentials("gateway:s3cr:et\n");
  UpstreamConfig upstream;
  upstream.base_url = "https://api.haufe.ai/agents";
  upstream.proxy = "http://proxy:3128";
  upstream.proxy_credentials_file = credentials.path();
  absl::StatusOr<ResolvedProxy> proxy = ResolveUpstreamProxy(upstream, FakeEnv({}));
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  EXPECT_EQ(proxy->username, "gateway");
  EXPECT_EQ(proxy->password, "s3cr:et");  // Split at the first colon only.

  TempFile no_colon("justatoken\n");
  upstream.proxy_credentials_file = no_colon.path();
  proxy = ResolveUpstreamProxy(upstream, FakeEnv({}));
  ASSERT_FALSE(proxy.ok());
  EXPECT_THAT(std::string(proxy.status().message()),
              HasSubstr("upstream.proxy_credentials_file: "));
  EXPECT_THAT(std::string(proxy.status().message()), HasSubstr("must hold user:password"));
  EXPECT_FALSE(absl::StrContains(proxy.status().message(), "justatoken"));

  upstream.proxy_credentials_file = "/nonexistent/proxy-credentials";
  proxy = ResolveUpstreamProxy(upstream, FakeEnv({}));
  ASSERT_FALSE(proxy.ok());
  EXPECT_THAT(std::string(proxy.status().message()), HasSubstr("upstream.proxy_credentials_file"));
}

TEST(UpstreamConnectionConfigTest, ProxyForLogHidesCredentials) {
  EXPECT_EQ(ProxyForLog("http://proxy:3128"), "http://proxy:3128");
  EXPECT_EQ(ProxyForLog("http://user:pw@proxy:3128"), "http://***@proxy:3128");
  EXPECT_EQ(ProxyForLog("user:pw@proxy:3128"), "***@proxy:3128");
  EXPECT_EQ(ProxyForLog("http://proxy:3128/a@b"), "http://proxy:3128/a@b");
}

}  // namespace
}  // namespace copilot::gateway
