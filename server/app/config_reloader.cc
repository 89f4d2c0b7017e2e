#include "server/app/config_reloader.h"

#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "server/app/gateway_server.h"
#include "server/app/log.h"
#include "server/common/crypto.h"

namespace copilot::gateway {

std::string ConfigHash(absl::string_view bytes) { return absl::BytesToHexString(Sha256(bytes)); }

ConfigReloader::ConfigReloader(std::string path, ConfigOverrides overrides, EnvLookup env,
                               TenantResolver& resolver, std::string loaded_bytes,
                               absl::Duration interval, GatewayMetrics* metrics)
    : path_(std::move(path)),
      overrides_(std::move(overrides)),
      env_(std::move(env)),
      resolver_(resolver),
      interval_(interval),
      loaded_bytes_(std::move(loaded_bytes)),
      metrics_(metrics) {
  if (metrics_ != nullptr) metrics_->SetConfigHash(ConfigHash(loaded_bytes_));
  thread_ = std::thread([this] { Run(); });
}

ConfigReloader::~ConfigReloader() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
}

void ConfigReloader::RequestReload() {
  absl::MutexLock lock(&mu_);
  reload_requested_ = true;
}

void ConfigReloader::Run() {
  while (true) {
    bool force = false;
    {
      absl::MutexLock lock(&mu_);
      auto wake = [this]()
                      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_ || reload_requested_; };
      mu_.AwaitWithTimeout(absl::Condition(&wake), interval_);
      if (stop_) return;
      force = reload_requested_;
      reload_requested_ = false;
    }
    Check(force);
  }
}

void ConfigReloader::Check(bool force) {
  absl::StatusOr<std::string> bytes = ReadConfigFile(path_);
  if (!bytes.ok()) {
    // A ConfigMap swap can leave the path missing for an instant: only a forced reload counts it.
    if (force) {
      Failed();
      LogLine(absl::StrCat("warning: config reload failed: ", bytes.status().message(),
                           "; the tenants in force stay"));
    }
    return;
  }
  if (!force && *bytes == loaded_bytes_) {
    refused_bytes_.reset();  // Back to the file in force.
    return;
  }
  absl::StatusOr<GatewayConfig> config = BuildConfigFromText(path_, *bytes, overrides_);
  absl::StatusOr<GatewaySecrets> secrets =
      config.ok() ? ResolveSecrets(*config, env_) : absl::StatusOr<GatewaySecrets>(config.status());
  if (!secrets.ok()) {
    // Refused bytes are tried again at every poll, since what they name may come later (in
    // Kubernetes a Secret's file often lands after the ConfigMap that names it), but reported
    // once, until they or the reason change.
    const std::string reason(secrets.status().message());
    const bool reported = !force && refused_bytes_ == *bytes && refused_reason_ == reason;
    refused_bytes_ = *std::move(bytes);
    refused_reason_ = reason;
    if (reported) return;
    Failed();
    LogLine(absl::StrCat("warning: config reload failed: ", reason, "; the tenants in force stay"));
    return;
  }
  refused_bytes_.reset();
  loaded_bytes_ = *bytes;
  resolver_.Replace(BuildTenantDirectory(*config, *secrets));
  if (absl::StatusOr<LogLevel> level = ParseLogLevel(config->server.log_level); level.ok()) {
    SetLogLevel(*level);
  }
  ++ok_;
  if (metrics_ != nullptr) {
    metrics_->RecordReload(true);
    metrics_->SetConfigHash(ConfigHash(*bytes));
  }
  LogLine(absl::StrCat("config reloaded: ", secrets->tenants.size(), " tenant(s), log_level ",
                       config->server.log_level,
                       "; settings other than tenants, default_tenant and log_level apply after "
                       "a restart"));
}

void ConfigReloader::Failed() {
  ++failed_;
  if (metrics_ != nullptr) metrics_->RecordReload(false);
}

}  // namespace copilot::gateway
