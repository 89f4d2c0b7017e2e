// Loads, overrides and validates the gateway's configuration, and reads the secrets it names.
//
// This is the only code below main() that reads files or environment variables. Errors name the
// offending key by its path, e.g. "upstream.timeout_ms: unknown key". yaml-cpp throws; every
// exception is caught here and returned as an absl::Status.
#ifndef COPILOT_GATEWAY_SERVER_CONFIG_CONFIG_LOADER_H_
#define COPILOT_GATEWAY_SERVER_CONFIG_CONFIG_LOADER_H_

#include <functional>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/config/gateway_config.h"

namespace copilot::gateway {

// Command-line flags for the common case; each one set replaces the file's value.
struct ConfigOverrides {
  std::optional<std::string> listen;        // --listen ADDR
  std::optional<std::string> upstream_url;  // --upstream-url URL
  std::optional<std::string> api_key_file;  // --api-key-file FILE (replaces api_key_env too)
};

// Parses YAML text onto the defaults. Rejects unknown keys, wrong types and out-of-range values
// by path; does not check that required keys are present (flags may still supply them).
absl::StatusOr<GatewayConfig> ParseConfigYaml(absl::string_view yaml);

// Reads `path` and parses it with ParseConfigYaml.
absl::StatusOr<GatewayConfig> LoadConfigFile(const std::string& path);

// Applies the flags that are set.
void ApplyOverrides(const ConfigOverrides& overrides, GatewayConfig& config);

// Checks what a complete configuration needs: an upstream URL, exactly one API key source, at
// most one licence source, sane listen address.
absl::Status ValidateConfig(const GatewayConfig& config);

// The whole startup path: the file when given (else the defaults), then the flags, then
// ValidateConfig.
absl::StatusOr<GatewayConfig> BuildConfig(const std::optional<std::string>& path,
                                          const ConfigOverrides& overrides);

// The bytes of a config file.
absl::StatusOr<std::string> ReadConfigFile(const std::string& path);

// BuildConfig for a file's bytes already read (`path` only names it in errors).
absl::StatusOr<GatewayConfig> BuildConfigFromText(const std::string& path, absl::string_view text,
                                                  const ConfigOverrides& overrides);

// Looks up an environment variable; nullopt when unset.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;

// The process environment (getenv).
EnvLookup ProcessEnvironment();

// Reads the API key and licence from the file or environment variable the config names.
// Errors name the config key and the file or variable, never the value.
absl::StatusOr<GatewaySecrets> ResolveSecrets(const GatewayConfig& config, const EnvLookup& env);

// The proxy for the upstream: upstream.proxy with its credentials file ("none": direct);
// when absent, the environment's as curl reads it (https_proxy or HTTPS_PROXY for an https://
// base_url, http_proxy for http://, then all_proxy or ALL_PROXY; no_proxy or NO_PROXY), else
// direct.
absl::StatusOr<ResolvedProxy> ResolveUpstreamProxy(const UpstreamConfig& upstream,
                                                   const EnvLookup& env);

// `url` with any user:password@ replaced by ***@, for logs.
std::string ProxyForLog(absl::string_view url);

// Reads every tenant's licences and API key (errors name the config key, never the value).
absl::StatusOr<std::vector<ResolvedTenant>> ResolveTenants(const GatewayConfig& config,
                                                           const EnvLookup& env);

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_CONFIG_CONFIG_LOADER_H_
