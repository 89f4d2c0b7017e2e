// Test support: runs the copilot-gateway binary as a child process against an upstream URL.
//
//   auto gateway = GatewayProcess::Start({.upstream_url = emulator->base_url() + "/agents"});
//   ASSERT_TRUE(gateway.ok()) << gateway.status();
//   auto stub = copilot::v1::CopilotService::NewStub((*gateway)->channel());
//
// The gateway gets a generated config file (listen and metrics_listen 127.0.0.1:0, the API key
// in a file, a licence for the default tenant, plus `upstream` settings) and is stopped with
// SIGTERM when the object is destroyed. The binary path defaults to COPILOT_GATEWAY_PATH.
#ifndef COPILOT_GATEWAY_TESTS_SERVER_INTEGRATION_GATEWAY_PROCESS_H_
#define COPILOT_GATEWAY_TESTS_SERVER_INTEGRATION_GATEWAY_PROCESS_H_

#include <grpcpp/grpcpp.h>
#include <sys/types.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tests/testing/child_process.h"

namespace copilot::gateway::testing {

struct GatewayProcessOptions {
  std::string upstream_url;  // e.g. "http://127.0.0.1:PORT/agents"
  std::string api_key = "test-api-key";
  std::string licence = "LIC-TEST-0001";  // default_tenant's
  // `identity` of the plaintext listener: "none" (every caller is default_tenant "test") or
  // "bearer" (tenants from extra_yaml).
  std::string identity = "none";
  // Written to a file named by thread_signing_key_file; empty configures none.
  std::string signing_key = "test-signing-key-0123456789abcdef0123456789";
  // Each written to a file named in previous_thread_signing_keys (key_file).
  std::vector<std::string> previous_signing_keys;
  // Written to a file named by user_id_key_file; empty configures none.
  std::string user_id_key;
  // Extra keys of the `upstream` section, e.g. {"stall_timeout", "1s"}; a value starting with
  // "{" is a section, written as a YAML flow mapping: {"retry", "{max_attempts: 1}"}.
  std::map<std::string, std::string> upstream;
  // Extra top-level YAML appended to the config (e.g. "limits:\n  max_messages: 5\n").
  std::string extra_yaml;
  // Tests call the emulator far faster than the upstream tier allows: by default the config
  // disables the upstream budget (0 = no window). False leaves it to extra_yaml / the defaults.
  bool unlimited_budget = true;
  // Graceful shutdown settings (config shutdown_grace and shutdown_delay).
  std::string shutdown_grace = "2s";
  std::string shutdown_delay = "0s";
  std::vector<std::string> args;
  // Set in the gateway's environment, e.g. {"https_proxy", "http://127.0.0.1:3128"}.
  std::vector<std::pair<std::string, std::string>> env;
  // Where the gateway's stderr (its log) goes; empty: a new file in GatewayLogDir(), which
  // the suite's last test scans for secrets (log_secret_scan_test.cc).
  std::string stderr_path;
  std::string binary = COPILOT_GATEWAY_PATH;
  absl::Duration startup_timeout = absl::Seconds(30);
};

// A running copilot-gateway child process. Thread-safe for concurrent calls over channel();
// Stop() and destruction must not race with them.
class GatewayProcess {
 public:
  static absl::StatusOr<std::unique_ptr<GatewayProcess>> Start(GatewayProcessOptions options);
  ~GatewayProcess();
  GatewayProcess(const GatewayProcess&) = delete;
  GatewayProcess& operator=(const GatewayProcess&) = delete;

  // The gateway's process ID; -1 after Stop().
  pid_t pid() const { return process_ != nullptr ? process_->pid() : -1; }
  // The file the gateway logs to.
  const std::string& log_path() const { return log_path_; }
  // The generated config file (tests may rewrite it to exercise reloads).
  const std::string& config_path() const { return config_path_; }
  int port() const { return port_; }
  // The TLS listener's port (extra_yaml with a `tls:` section); 0 without one.
  int tls_port() const { return tls_port_; }
  // The /metrics /healthz /readyz port.
  int metrics_port() const { return metrics_port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  // A new channel to the gateway (each has its own connection).
  std::shared_ptr<grpc::Channel> NewChannel() const;
  // A shared channel for the test.
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }

  // SIGTERM, wait up to `grace`, then SIGKILL. Returns the exit code (128+signal if killed).
  absl::StatusOr<int> Stop(absl::Duration grace = absl::Seconds(15));

 private:
  GatewayProcess() = default;

  std::unique_ptr<ChildProcess> process_;  // Null after Stop().
  int port_ = 0;
  int tls_port_ = 0;
  int metrics_port_ = 0;
  std::string config_path_;
  std::string key_path_;
  std::vector<std::string> key_paths_;  // Signing and user-ID keys.
  std::string log_path_;
  std::string stdout_path_;  // The startup lines.
  std::shared_ptr<grpc::Channel> channel_;
};

// The directory gateway logs go to by default (COPILOT_GATEWAY_LOG_DIR, set by CMake).
std::string GatewayLogDir();

// Values of /proc/PID/status and /proc/PID/stat for `pid`.
struct ProcessSample {
  int threads = 0;
  long rss_kib = 0;        // VmRSS
  long hwm_kib = 0;        // VmHWM (peak RSS)
  double cpu_seconds = 0;  // utime + stime
};
absl::StatusOr<ProcessSample> SampleProcess(pid_t pid);

}  // namespace copilot::gateway::testing

#endif  // COPILOT_GATEWAY_TESTS_SERVER_INTEGRATION_GATEWAY_PROCESS_H_
