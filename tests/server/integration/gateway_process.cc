#include "tests/server/integration/gateway_process.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "tests/testing/eventually.h"

namespace copilot::gateway::testing {
namespace {

// The file's contents; empty when it cannot be read.
std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

absl::StatusOr<std::string> WriteTempFile(const std::string& contents) {
  char name[] = "/tmp/copilot_gateway_test_XXXXXX";
  const int fd = mkstemp(name);
  if (fd < 0) return absl::InternalError(absl::StrCat("mkstemp: ", std::strerror(errno)));
  const ssize_t written = write(fd, contents.data(), contents.size());
  close(fd);
  if (written != static_cast<ssize_t>(contents.size())) {
    return absl::InternalError("short write of a temp file");
  }
  return std::string(name);
}

}  // namespace

std::string GatewayLogDir() { return COPILOT_GATEWAY_LOG_DIR; }

absl::StatusOr<std::unique_ptr<GatewayProcess>> GatewayProcess::Start(
    GatewayProcessOptions options) {
  std::unique_ptr<GatewayProcess> process(new GatewayProcess());
  absl::StatusOr<std::string> key = WriteTempFile(options.api_key + "\n");
  if (!key.ok()) return key.status();
  process->key_path_ = *key;
  std::string yaml = absl::StrCat(
      "listen: \"127.0.0.1:0\"\nmetrics_listen: \"127.0.0.1:0\"\nshutdown_grace: ",
      options.shutdown_grace, "\nshutdown_delay: ", options.shutdown_delay, "\nupstream:\n",
      "  base_url: \"", options.upstream_url, "\"\n", "  api_key_file: \"", *key, "\"\n");
  for (const auto& [name, value] : options.upstream) {
    if (absl::StartsWith(value, "{")) {
      absl::StrAppend(&yaml, "  ", name, ": ", value, "\n");  // A section, as a flow mapping.
    } else {
      absl::StrAppend(&yaml, "  ", name, ": \"", value, "\"\n");
    }
  }
  absl::StrAppend(&yaml, "identity: ", options.identity, "\n");
  if (options.unlimited_budget) {
    absl::StrAppend(&yaml,
                    "upstream_budget:\n  answer_per_second: 0\n  answer_per_minute: 0\n"
                    "  other_per_second: 0\n  other_per_minute: 0\n");
  }
  // A key in a new file; its path.
  auto key_file = [&process](const std::string& key) -> absl::StatusOr<std::string> {
    absl::StatusOr<std::string> path = WriteTempFile(key);
    if (path.ok()) process->key_paths_.push_back(*path);
    return path;
  };
  if (!options.signing_key.empty()) {
    absl::StatusOr<std::string> signing_key = key_file(options.signing_key);
    if (!signing_key.ok()) return signing_key.status();
    absl::StrAppend(&yaml, "thread_signing_key_file: \"", *signing_key, "\"\n");
  }
  if (!options.previous_signing_keys.empty()) {
    absl::StrAppend(&yaml, "previous_thread_signing_keys:\n");
    for (const std::string& key : options.previous_signing_keys) {
      absl::StatusOr<std::string> previous = key_file(key);
      if (!previous.ok()) return previous.status();
      absl::StrAppend(&yaml, "  - key_file: \"", *previous, "\"\n");
    }
  }
  if (!options.user_id_key.empty()) {
    absl::StatusOr<std::string> user_id_key = key_file(options.user_id_key);
    if (!user_id_key.ok()) return user_id_key.status();
    absl::StrAppend(&yaml, "user_id_key_file: \"", *user_id_key, "\"\n");
  }
  absl::StrAppend(&yaml, "default_tenant:\n  id: \"test\"\n  licence: \"", options.licence, "\"\n",
                  options.extra_yaml);
  absl::StatusOr<std::string> config = WriteTempFile(yaml);
  if (!config.ok()) return config.status();
  process->config_path_ = *config;

  std::vector<std::string> args = {options.binary, "--config", *config};
  args.insert(args.end(), options.args.begin(), options.args.end());
  // Also when the caller names the file in it: the gateway_logs fixture empties it first.
  mkdir(GatewayLogDir().c_str(), 0700);
  if (options.stderr_path.empty()) {
    static std::atomic<int> next{0};
    options.stderr_path = absl::StrCat(GatewayLogDir(), "/gateway-", getpid(), "-", next++, ".log");
  }
  process->log_path_ = options.stderr_path;
  absl::StatusOr<std::string> stdout_path = WriteTempFile("");
  if (!stdout_path.ok()) return stdout_path.status();
  process->stdout_path_ = *stdout_path;
  absl::StatusOr<std::unique_ptr<ChildProcess>> child =
      ChildProcess::Start({.argv = std::move(args),
                           .env = std::move(options.env),
                           .stdout_path = *stdout_path,
                           .stderr_path = options.stderr_path});
  if (!child.ok()) return child.status();
  process->process_ = *std::move(child);

  // Startup lines: "copilot-gateway tls listening on ADDR" (with a TLS listener),
  // "copilot-gateway metrics listening on ADDR", then "copilot-gateway listening on ADDR".
  constexpr absl::string_view kPrefix = "copilot-gateway listening on ";
  constexpr absl::string_view kTlsPrefix = "copilot-gateway tls listening on ";
  constexpr absl::string_view kMetricsPrefix = "copilot-gateway metrics listening on ";
  std::string line;
  auto has_main_line = [&line, kPrefix] {
    const std::size_t at = absl::string_view(line).find(kPrefix);
    return at != std::string::npos && line.find('\n', at) != std::string::npos;
  };
  // Until the main line is there or the gateway exited (read once more after it did).
  Eventually(
      [&] {
        const bool exited = !process->process_->Running();
        line = ReadFile(*stdout_path);
        return has_main_line() || exited;
      },
      options.startup_timeout, absl::Milliseconds(5));
  // Lines before the main one name the other listeners.
  while (absl::StartsWith(line, kTlsPrefix) || absl::StartsWith(line, kMetricsPrefix)) {
    const absl::string_view other = absl::string_view(line).substr(0, line.find('\n'));
    int& port = absl::StartsWith(line, kTlsPrefix) ? process->tls_port_ : process->metrics_port_;
    if (!absl::SimpleAtoi(other.substr(other.rfind(':') + 1), &port)) {
      return absl::UnavailableError(absl::StrCat("unexpected startup line: ", other));
    }
    line = line.substr(line.find('\n') + 1);
  }
  const size_t newline = line.find('\n');
  const absl::string_view first = absl::string_view(line).substr(0, newline);
  const size_t colon = first.rfind(':');
  if (newline == std::string::npos || !absl::StartsWith(first, kPrefix) ||
      colon == absl::string_view::npos ||
      !absl::SimpleAtoi(first.substr(colon + 1), &process->port_)) {
    return absl::UnavailableError(absl::StrCat("copilot-gateway (", options.binary,
                                               ") did not start; stdout: '", line,
                                               "' (see its stderr)"));
  }
  process->channel_ = process->NewChannel();
  return process;
}

std::shared_ptr<grpc::Channel> GatewayProcess::NewChannel() const {
  grpc::ChannelArguments arguments;
  arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // A connection of its own.
  return grpc::CreateCustomChannel(address(), grpc::InsecureChannelCredentials(), arguments);
}

GatewayProcess::~GatewayProcess() {
  if (process_ != nullptr) (void)Stop();
  if (!stdout_path_.empty()) std::remove(stdout_path_.c_str());
  if (!config_path_.empty()) std::remove(config_path_.c_str());
  for (const std::string& path : key_paths_) std::remove(path.c_str());
  if (!key_path_.empty()) std::remove(key_path_.c_str());
}

absl::StatusOr<int> GatewayProcess::Stop(absl::Duration grace) {
  if (process_ == nullptr) return absl::FailedPreconditionError("not running");
  channel_.reset();
  absl::StatusOr<int> exit_code = process_->Terminate(grace);
  process_.reset();
  return exit_code;
}

absl::StatusOr<ProcessSample> SampleProcess(pid_t pid) {
  ProcessSample sample;
  std::ifstream status_file(absl::StrCat("/proc/", pid, "/status"));
  if (!status_file) return absl::NotFoundError(absl::StrCat("no process ", pid));
  std::string line;
  while (std::getline(status_file, line)) {
    std::vector<absl::string_view> parts =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (parts.size() < 2) continue;
    if (parts[0] == "Threads:") (void)absl::SimpleAtoi(parts[1], &sample.threads);
    if (parts[0] == "VmRSS:") (void)absl::SimpleAtoi(parts[1], &sample.rss_kib);
    if (parts[0] == "VmHWM:") (void)absl::SimpleAtoi(parts[1], &sample.hwm_kib);
  }
  std::ifstream stat_file(absl::StrCat("/proc/", pid, "/stat"));
  std::stringstream contents;
  contents << stat_file.rdbuf();
  const std::string stat = contents.str();
  // Fields after the ")" closing the command name: state is field 3; utime 14, stime 15.
  const size_t close = stat.rfind(')');
  if (close != std::string::npos) {
    std::vector<std::string> fields = absl::StrSplit(stat.substr(close + 2), ' ');
    long utime = 0, stime = 0;
    if (fields.size() > 12 && absl::SimpleAtoi(fields[11], &utime) &&
        absl::SimpleAtoi(fields[12], &stime)) {
      sample.cpu_seconds = static_cast<double>(utime + stime) / sysconf(_SC_CLK_TCK);
    }
  }
  return sample;
}

}  // namespace copilot::gateway::testing
