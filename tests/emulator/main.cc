// haufe-emulator: the Haufe Copilot REST API emulator (docs/emulator.md). Wires the pieces
// together; everything else lives in emulator_lib.
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tests/emulator/clock.h"
#include "tests/emulator/emulator_app.h"
#include "tests/emulator/emulator_options.h"
#include "tests/emulator/event_loop.h"
#include "tests/emulator/http_server.h"
#include "tests/emulator/uuid.h"

namespace {

// Raises the soft descriptor limit to the hard one: 10,000+ concurrent connections need it.
void RaiseFileLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &limit) != 0) std::perror("haufe-emulator: setrlimit");
  }
}

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "haufe-emulator: %s\n", std::string(status.message()).c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  using copilot::emulator::EmulatorApp;
  using copilot::emulator::EmulatorOptions;
  using copilot::emulator::EventLoop;
  using copilot::emulator::HttpServer;
  using copilot::emulator::ParseCommandLine;
  using copilot::emulator::ServerStats;
  using copilot::emulator::SystemClock;
  using copilot::emulator::Usage;
  using copilot::emulator::UuidGenerator;
  std::vector<std::string> args(argv + 1, argv + argc);
  for (const std::string& arg : args) {
    if (arg == "--help" || arg == "-h") {
      std::fputs(Usage().c_str(), stdout);
      return 0;
    }
  }
  absl::StatusOr<EmulatorOptions> options = ParseCommandLine(args);
  if (!options.ok()) {
    std::fprintf(stderr, "haufe-emulator: %s\n%s", std::string(options.status().message()).c_str(),
                 Usage().c_str());
    return 2;
  }
  RaiseFileLimit();
  signal(SIGPIPE, SIG_IGN);

  // SIGTERM/SIGINT arrive through a signalfd in the loop, so shutdown is orderly.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  sigprocmask(SIG_BLOCK, &stop_signals, nullptr);
  int signal_fd = signalfd(-1, &stop_signals, SFD_NONBLOCK | SFD_CLOEXEC);
  if (signal_fd < 0) return Fail(absl::InternalError("signalfd failed"));

  SystemClock clock;
  uint64_t seed = options->seed.value_or(std::random_device{}());
  UuidGenerator uuids(seed);
  EventLoop loop(clock);
  if (absl::Status s = loop.Init(); !s.ok()) return Fail(s);

  // The plain listener, and the HTTPS one when asked for: the same API, records and faults.
  std::vector<HttpServer*> servers;
  EmulatorApp app(*options, clock, uuids, [&servers] {
    ServerStats sum;
    for (const HttpServer* server : servers) sum += server->stats();
    return sum;
  });
  HttpServer::Options server_options;
  server_options.keep_alive_timeout = absl::Milliseconds(options->keep_alive_timeout_ms);
  HttpServer server(loop, app, server_options);
  if (absl::Status s = server.Listen(options->listen_host, options->listen_port); !s.ok()) {
    return Fail(s);
  }
  servers.push_back(&server);
  HttpServer::Options tls_options = server_options;
  tls_options.tls_cert_file = options->tls_cert_file;
  tls_options.tls_key_file = options->tls_key_file;
  tls_options.http2 = options->tls_http2;
  tls_options.h2.max_concurrent_streams = static_cast<uint32_t>(options->h2_max_concurrent_streams);
  tls_options.h2.goaway_after_requests = options->h2_goaway_after;
  tls_options.h2.refuse_every = options->h2_refuse_every;
  HttpServer tls_server(loop, app, tls_options);
  if (options->tls_listen_port >= 0) {
    if (absl::Status s = tls_server.Listen(options->tls_listen_host, options->tls_listen_port);
        !s.ok()) {
      return Fail(s);
    }
    servers.push_back(&tls_server);
  }
  absl::Time give_up = absl::InfiniteFuture();
  std::function<void()> drain = [&] {
    size_t active = 0;
    for (const HttpServer* server : servers) active += server->active_requests();
    if (active == 0 || absl::Now() >= give_up) {
      loop.Stop();
      return;
    }
    loop.AddTimer(absl::Milliseconds(20), drain);
  };
  absl::StatusOr<EventLoop::WatchId> signal_watch = loop.Watch(signal_fd, EPOLLIN, [&](uint32_t) {
    signalfd_siginfo info{};
    while (read(signal_fd, &info, sizeof(info)) == sizeof(info)) {
    }
    // GOAWAY first, as servers do, then wait (bounded) for what is in progress.
    for (HttpServer* server : servers) server->GoAway();
    give_up = absl::Now() + absl::Milliseconds(options->shutdown_grace_ms);
    drain();
  });
  if (!signal_watch.ok()) return Fail(signal_watch.status());

  if (options->tls_listen_port >= 0) {
    std::printf("haufe-emulator tls listening on %s:%d\n", options->tls_listen_host.c_str(),
                tls_server.port());
  }
  // Last: a reader that sees this line has every line before it.
  std::printf("haufe-emulator listening on %s:%d\n", options->listen_host.c_str(), server.port());
  std::fflush(stdout);
  loop.Run();
  close(signal_fd);
  return 0;
}
