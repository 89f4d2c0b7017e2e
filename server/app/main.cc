// copilot-gateway: the gRPC gateway in front of the Haufe Copilot REST API.
//
//   copilot-gateway --config FILE [--listen ADDR] [--upstream-url URL] [--api-key-file FILE]
//   copilot-gateway --listen ADDR --upstream-url URL --api-key-file FILE
//   copilot-gateway --check-config FILE
//
// Prints "copilot-gateway listening on HOST:PORT" to stdout once serving (after the "tls" and
// "metrics" listener lines); logs JSON lines to stderr.
// SIGTERM/SIGINT: graceful shutdown (readiness NOT_SERVING, `shutdown_delay`, then calls in
// flight get `shutdown_grace`), exit 0. SIGHUP: reload the tenants and the log level.
#include <curl/curl.h>
#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/app/config_reloader.h"
#include "server/app/gateway_server.h"
#include "server/app/log.h"
#include "server/config/config_loader.h"

namespace copilot::gateway {
namespace {

constexpr char kUsage[] = R"(usage:
  copilot-gateway [--config FILE] [--listen ADDR] [--upstream-url URL] [--api-key-file FILE]
  copilot-gateway --check-config FILE
  copilot-gateway --help

  --config FILE        YAML config (see deploy/gateway.example.yaml); flags below override it
  --listen ADDR        gRPC listen address HOST:PORT (port 0 picks a free one)
  --upstream-url URL   upstream base URL without /v1, e.g. https://api.haufe.ai/agents
  --api-key-file FILE  file holding the upstream API key
  --check-config FILE  validate FILE and exit (0 when valid)
)";

struct Flags {
  std::optional<std::string> config;
  std::optional<std::string> check_config;
  ConfigOverrides overrides;
  bool help = false;
};

// Parses "--name VALUE" and "--name=VALUE".
absl::StatusOr<Flags> ParseFlags(int argc, char** argv) {
  Flags flags;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      flags.help = true;
      continue;
    }
    std::string value;
    const std::size_t eq = arg.find('=');
    if (absl::StartsWith(arg, "--") && eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
    } else {
      if (i + 1 >= argc) return absl::InvalidArgumentError(absl::StrCat(arg, " needs a value"));
      value = argv[++i];
    }
    if (arg == "--config") {
      flags.config = value;
    } else if (arg == "--check-config") {
      flags.check_config = value;
    } else if (arg == "--listen") {
      flags.overrides.listen = value;
    } else if (arg == "--upstream-url") {
      flags.overrides.upstream_url = value;
    } else if (arg == "--api-key-file") {
      flags.overrides.api_key_file = value;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag ", arg));
    }
  }
  return flags;
}

// Lets the process hold one descriptor per upstream connection and client connection.
void RaiseFileLimit() {
  rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &limit) != 0) {
      LogLine("could not raise the open-file limit");
      return;
    }
  }
  LogLine(absl::StrCat("open-file limit ", limit.rlim_cur));
}

// --check-config FILE: 0 when the file parses and validates, 1 otherwise (the reason on stderr).
int CheckConfig(const std::string& path) {
  absl::StatusOr<GatewayConfig> config = LoadConfigFile(path);
  absl::Status status = config.ok() ? ValidateConfig(*config) : config.status();
  if (!status.ok()) {
    std::cerr << "copilot-gateway: " << status.message() << "\n";
    return 1;
  }
  std::cout << path << ": OK\n";
  return 0;
}

// Blocks SIGTERM, SIGINT and SIGHUP in this thread and every thread started after it (the main
// thread takes them with sigwait), and ignores SIGPIPE.
sigset_t BlockSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  if (signal(SIGPIPE, SIG_IGN) == SIG_ERR) LogLine("cannot ignore SIGPIPE");
  return signals;
}

// Prints the addresses (tests and scripts read them), then serves until SIGTERM or SIGINT,
// reloading the tenants on SIGHUP and when the file changes, and drains.
void Serve(GatewayServer& server, const Flags& flags, const GatewayConfig& config,
           const sigset_t& signals) {
  if (!server.tls_address().empty()) {
    std::printf("copilot-gateway tls listening on %s\n", server.tls_address().c_str());
  }
  if (!server.metrics_address().empty()) {
    std::printf("copilot-gateway metrics listening on %s\n", server.metrics_address().c_str());
  }
  std::printf("copilot-gateway listening on %s\n", server.address().c_str());
  if (std::fflush(stdout) != 0) LogLine("cannot write the listening addresses to stdout");
  std::unique_ptr<ConfigReloader> reloader;
  if (flags.config.has_value()) {
    absl::StatusOr<std::string> bytes = ReadConfigFile(*flags.config);
    reloader = std::make_unique<ConfigReloader>(
        *flags.config, flags.overrides, ProcessEnvironment(), server.tenants(), bytes.value_or(""),
        config.server.config_reload_interval, &server.metrics());
  }
  int signal_number = 0;
  while (true) {
    sigwait(&signals, &signal_number);
    if (signal_number != SIGHUP) break;
    LogLine("received SIGHUP: reloading the tenants");
    if (reloader != nullptr) reloader->RequestReload();
  }
  LogLine(absl::StrCat("received ", signal_number == SIGTERM ? "SIGTERM" : "SIGINT"));
  reloader.reset();
  server.Drain(config.server.shutdown_delay, config.server.shutdown_grace);
}

// How long the log lines still buffered at exit may take to be written.
constexpr absl::Duration kLogFlushOnExit = absl::Seconds(2);

int Main(int argc, char** argv) {
  RouteProtobufLogs();
#ifdef NDEBUG
  // Debian builds abseil without NDEBUG, which turns on its lock-order (deadlock) detection:
  // a graph update on every Mutex lock, 5-7% of the gateway's CPU under load (perf, README
  // "Performance"). Our release builds turn it off; unit tests (their own mains) keep it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
#endif
  absl::StatusOr<Flags> flags = ParseFlags(argc, argv);
  if (!flags.ok()) {
    std::cerr << "copilot-gateway: " << flags.status().message() << "\n" << kUsage;
    return 2;
  }
  if (flags->help) {
    std::cout << kUsage;
    return 0;
  }
  if (flags->check_config.has_value()) return CheckConfig(*flags->check_config);
  absl::StatusOr<GatewayConfig> config = BuildConfig(flags->config, flags->overrides);
  if (!config.ok()) {
    LogLine(absl::StrCat("invalid configuration: ", config.status().message()));
    return 1;
  }
  if (absl::StatusOr<LogLevel> level = ParseLogLevel(config->server.log_level); level.ok()) {
    SetLogLevel(*level);
  }
  absl::StatusOr<GatewaySecrets> secrets = ResolveSecrets(*config, ProcessEnvironment());
  if (!secrets.ok()) {
    LogLine(absl::StrCat("cannot read secrets: ", secrets.status().message()));
    return 1;
  }
  const sigset_t signals = BlockSignals();
  // From here on log lines are written by a thread of their own (no call waits for stderr). It
  // starts after BlockSignals, as every thread must: one with SIGTERM unblocked would take it
  // and end the process. On every way out of Main the guard gives what is buffered
  // kLogFlushOnExit to be written, then leaves the writer installed and alive for the exit: a
  // thread still logging must never find it destroyed, and a stderr that takes nothing must
  // not hold the exit up.
  struct LogWriterGuard {
    explicit LogWriterGuard(std::size_t max_buffered_bytes)
        : writer(std::make_unique<LogWriter>(STDERR_FILENO, max_buffered_bytes)) {
      SetLogWriter(writer.get());
    }
    ~LogWriterGuard() {
      (void)writer->Flush(kLogFlushOnExit);
      (void)writer.release();  // Reachable through SetLogWriter's pointer until the exit.
    }
    std::unique_ptr<LogWriter> writer;
  } log_writer(config->server.log_buffer_bytes);
  RaiseFileLimit();
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    LogLine("curl_global_init failed");
    return 1;
  }
  int exit_code = 0;
  if (absl::StatusOr<std::unique_ptr<GatewayServer>> server =
          GatewayServer::Start(*config, *secrets);
      server.ok()) {
    Serve(**server, *flags, *config, signals);
  } else {
    LogLine(absl::StrCat("cannot start: ", server.status().message()));
    exit_code = 1;
  }
  curl_global_cleanup();
  return exit_code;
}

}  // namespace
}  // namespace copilot::gateway

int main(int argc, char** argv) { return copilot::gateway::Main(argc, argv); }
