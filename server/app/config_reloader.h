// Reloads the tenants (tenants, default_tenant and their secrets) and the log level from the
// config file while the gateway runs: when the file's bytes change (polled, so a Kubernetes
// ConfigMap update, which swaps a symlink, is seen like an edit) and on demand (SIGHUP). Calls in
// flight keep the tenant they resolved; new calls see the new directory. An invalid new file is
// refused with a warning and a metric (copilot_gateway_config_reloads_total{result="failed"},
// copilot_gateway_config_last_reload_successful 0), and the directory in force stays; it is
// tried again at every poll (a secret it names may come later), reported again only when the
// reason changes. Other
// settings (listen address, upstream, limits, the thread signing key) take effect only after a
// restart.
#ifndef COPILOT_GATEWAY_SERVER_APP_CONFIG_RELOADER_H_
#define COPILOT_GATEWAY_SERVER_APP_CONFIG_RELOADER_H_

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/config/config_loader.h"
#include "server/core/tenant_directory.h"
#include "server/ops/gateway_metrics.h"

namespace copilot::gateway {

// The hex SHA-256 of config file bytes (copilot_gateway_config_info).
std::string ConfigHash(absl::string_view bytes);

class ConfigReloader {
 public:
  // Watches `path` (re-applying `overrides`, like at start-up) every `interval`; `resolver` must
  // outlive this object. `loaded_bytes` is the file content the running config came from.
  // `metrics` (may be null; must outlive this object) counts reloads and shows the config hash.
  ConfigReloader(std::string path, ConfigOverrides overrides, EnvLookup env,
                 TenantResolver& resolver, std::string loaded_bytes, absl::Duration interval,
                 GatewayMetrics* metrics = nullptr);
  // Stops the watcher thread.
  ~ConfigReloader();
  ConfigReloader(const ConfigReloader&) = delete;
  ConfigReloader& operator=(const ConfigReloader&) = delete;

  // Reloads now, whether or not the file changed (SIGHUP). Thread-safe; returns at once.
  void RequestReload();

  // Reloads that succeeded / were refused so far.
  int64_t reloads_ok() const { return ok_.load(); }
  int64_t reloads_failed() const { return failed_.load(); }

 private:
  void Run();
  // Reads the file; applies it when `force` or its bytes changed.
  void Check(bool force);
  void Failed();

  const std::string path_;
  const ConfigOverrides overrides_;
  const EnvLookup env_;
  TenantResolver& resolver_;
  const absl::Duration interval_;
  // Watcher thread only: the bytes in force, and the last ones refused (and why) while the file
  // holds them.
  std::string loaded_bytes_;
  std::optional<std::string> refused_bytes_;
  std::string refused_reason_;
  GatewayMetrics* const metrics_;
  std::atomic<int64_t> ok_{0};
  std::atomic<int64_t> failed_{0};
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool reload_requested_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_APP_CONFIG_RELOADER_H_
