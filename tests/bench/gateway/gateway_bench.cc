// gateway_bench: N concurrent Run calls through copilot-gateway while haufe-emulator holds each
// upstream run for S seconds. Prints successes, failures by code, the gateway's idle and peak
// thread count, peak RSS, CPU time, wall time and when the first and last calls finished.
//
//   gateway_bench [--calls N] [--hold-seconds S] [--channels C] [--upstream http|tls|h2]
//                 [--request-ids off|local|redis] [--resilience on|off|retry|breaker]
//                 [--max-connections N] [--max-grpc-memory-mib M]
//
// --request-ids: each Run carries its own request_id, de-duplicated in process (local) or also
// claimed and recorded in a redis-server the bench starts (redis): what exactly-once costs.
// --channels: client connections (default: at least 8, and enough that every call is in flight
// at once under the gateway's 1,000 calls per connection; fewer are refused).
//
// The client uses gRPC's callback API (no thread per call). The gateway is sampled from
// /proc/PID/status (Threads, VmRSS, VmHWM) and /proc/PID/stat (utime + stime) every 50 ms.
#include <dirent.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "copilot/v1/copilot_service.grpc.pb.h"
#include "server/config/gateway_config.h"
#include "tests/emulator/testing/emulator_process.h"
#include "tests/server/integration/gateway_process.h"
#include "tests/server/limits/redis_server.h"

namespace {

namespace v1 = ::copilot::v1;
using ::copilot::gateway::testing::GatewayProcess;
using ::copilot::gateway::testing::GatewayProcessOptions;
using ::copilot::gateway::testing::ProcessSample;
using ::copilot::gateway::testing::SampleProcess;

constexpr char kHrAssistant[] = "7c0e5d3a-4c1b-4f57-9a51-1f1f3e0a0002";
// The gateway's default server.max_concurrent_streams: calls one client connection may have open.
// Calls past channels x this wait in the client's HTTP/2 queue, not in the gateway, so the bench
// opens enough channels for every call to be in flight at once.
const int kStreamsPerChannel = copilot::gateway::ServerConfig{}.max_concurrent_streams;

struct Options {
  int calls = 10000;
  int hold_seconds = 10;
  int channels = 0;  // --channels; 0: at least 8, and enough for every call (kStreamsPerChannel)
  // --upstream http (plain HTTP/1.1), tls (HTTPS, HTTP/1.1) or h2 (HTTPS, HTTP/2).
  std::string upstream = "http";
  int max_connections = 0;      // --max-connections: upstream.max_connections (0: no bound)
  int max_grpc_memory_mib = 0;  // --max-grpc-memory-mib: max_grpc_memory (0: the default)
  // --resilience on (default), off (upstream.retry.max_attempts 1 and no circuit breaker: the
  // decorators left out, to measure what they cost), retry or breaker (only that one).
  std::string resilience = "on";
  // --request-ids off (default), local or redis (see above).
  std::string request_ids = "off";
};

bool ParseOptions(int argc, char** argv, Options& options) {
  for (int i = 1; i < argc; i += 2) {
    const std::string arg = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr, "missing value for %s\n", arg.c_str());
      return false;
    }
    if (arg == "--upstream") {
      options.upstream = argv[i + 1];
      if (options.upstream != "http" && options.upstream != "tls" && options.upstream != "h2") {
        std::fprintf(stderr, "--upstream: expected http, tls or h2\n");
        return false;
      }
      continue;
    }
    if (arg == "--resilience") {
      options.resilience = argv[i + 1];
      continue;
    }
    if (arg == "--request-ids") {
      options.request_ids = argv[i + 1];
      if (options.request_ids != "off" && options.request_ids != "local" &&
          options.request_ids != "redis") {
        std::fprintf(stderr, "--request-ids: expected off, local or redis\n");
        return false;
      }
      continue;
    }
    int value = 0;
    if (!absl::SimpleAtoi(argv[i + 1], &value) || value <= 0) {
      std::fprintf(stderr, "bad value for %s\n", arg.c_str());
      return false;
    }
    if (arg == "--calls") {
      options.calls = value;
    } else if (arg == "--hold-seconds") {
      options.hold_seconds = value;
    } else if (arg == "--channels") {
      options.channels = value;
    } else if (arg == "--max-connections") {
      options.max_connections = value;
    } else if (arg == "--max-grpc-memory-mib") {
      options.max_grpc_memory_mib = value;
    } else {
      std::fprintf(stderr, "unknown flag %s\n", arg.c_str());
      return false;
    }
  }
  const int needed = (options.calls + kStreamsPerChannel - 1) / kStreamsPerChannel;
  if (options.channels == 0) options.channels = std::max(8, needed);
  if (options.channels < needed) {
    std::fprintf(stderr,
                 "--channels %d: %d calls need at least %d (the gateway takes %d calls at once on "
                 "one connection; the rest would wait in the client, not be in flight)\n",
                 options.channels, options.calls, needed, kStreamsPerChannel);
    return false;
  }
  return true;
}

void RaiseFileLimit() {
  rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

// Thread names (/proc/PID/task/*/comm) and how many threads carry each.
std::map<std::string, int> ThreadNames(pid_t pid) {
  std::map<std::string, int> names;
  const std::string dir = absl::StrCat("/proc/", pid, "/task");
  DIR* tasks = opendir(dir.c_str());
  if (tasks == nullptr) return names;
  while (dirent* entry = readdir(tasks)) {
    if (entry->d_name[0] == '.') continue;
    std::ifstream comm(absl::StrCat(dir, "/", entry->d_name, "/comm"));
    std::string name;
    std::getline(comm, name);
    ++names[name];
  }
  closedir(tasks);
  return names;
}

// One call's storage; lives until its callback ran.
struct Call {
  grpc::ClientContext context;
  v1::RunRequest request;
  v1::RunResponse response;
};

int Main(int argc, char** argv) {
  Options options;
  if (!ParseOptions(argc, argv, options)) return 2;
  RaiseFileLimit();

  copilot::emulator::testing::EmulatorProcessOptions emulator_options{
      .args = {"--max-record", "100"}};
  const std::string certs = COPILOT_TEST_CERTS_DIR;
  if (options.upstream != "http") {
    emulator_options.tls_cert_file = certs + "/server.pem";
    emulator_options.tls_key_file = certs + "/server.key";
  }
  if (options.upstream == "h2") {
    emulator_options.args.insert(emulator_options.args.end(), {"--tls-http2", "on"});
  }
  auto emulator = copilot::emulator::testing::EmulatorProcess::Start(emulator_options);
  if (!emulator.ok()) {
    std::fprintf(stderr, "emulator: %s\n", std::string(emulator.status().message()).c_str());
    return 1;
  }
  GatewayProcessOptions gateway_options;
  gateway_options.upstream_url =
      options.upstream == "http"
          ? (*emulator)->base_url() + "/agents"
          : absl::StrCat("https://127.0.0.1:", (*emulator)->tls_port(), "/agents");
  gateway_options.upstream = {{"stall_timeout", absl::StrCat(options.hold_seconds + 30, "s")},
                              {"max_call_timeout", absl::StrCat(options.hold_seconds + 60, "s")}};
  if (options.upstream != "http") gateway_options.upstream["ca_file"] = certs + "/ca.pem";
  if (options.max_connections > 0) {
    gateway_options.upstream["max_connections"] = std::to_string(options.max_connections);
  }
  if (options.resilience == "off" || options.resilience == "breaker") {
    gateway_options.upstream["retry"] = "{max_attempts: 1}";
  }
  if (options.resilience == "off" || options.resilience == "retry") {
    gateway_options.upstream["circuit_breaker"] = "{enabled: false}";
  }
  std::unique_ptr<copilot::gateway::testing::RedisServer> redis;
  if (options.request_ids == "redis") {
    auto started = copilot::gateway::testing::RedisServer::Start();
    if (!started.ok()) {
      std::fprintf(stderr, "redis: %s\n", std::string(started.status().message()).c_str());
      return 1;
    }
    redis = *std::move(started);
    gateway_options.extra_yaml = absl::StrCat("redis:\n  url: \"", redis->url(), "\"\n");
  }
  if (options.request_ids != "off") {
    // Room for every call's request_id and answer in the process's own store.
    absl::StrAppend(&gateway_options.extra_yaml, "request_ids:\n  max_entries: ", options.calls * 2,
                    "\n  max_bytes: 512MiB\n  max_tenant_share: 1\n");
  }
  if (options.max_grpc_memory_mib > 0) {
    absl::StrAppend(&gateway_options.extra_yaml, "max_grpc_memory: ", options.max_grpc_memory_mib,
                    "MiB\n");
  }
  auto gateway = GatewayProcess::Start(gateway_options);
  if (!gateway.ok()) {
    std::fprintf(stderr, "gateway: %s\n", std::string(gateway.status().message()).c_str());
    return 1;
  }
  const pid_t pid = (*gateway)->pid();
  const absl::StatusOr<ProcessSample> fresh = SampleProcess(pid);

  std::vector<std::unique_ptr<v1::CopilotService::Stub>> stubs;
  for (int i = 0; i < options.channels; ++i) {
    stubs.push_back(v1::CopilotService::NewStub((*gateway)->NewChannel()));
  }

  // One thread per call (a Run stores its answer, after which the thread's last message is the
  // assistant's), created ahead with a bounded number of calls in flight.
  std::vector<std::string> thread_ids(options.calls);
  {
    absl::Mutex setup_mu;
    int in_flight = 0;
    int failures = 0;
    struct Setup {
      grpc::ClientContext create_context;
      v1::CreateThreadRequest create;
      v1::CreateThreadResponse created;
      grpc::ClientContext add_context;
      v1::AddMessageRequest add;
      v1::AddMessageResponse added;
    };
    std::vector<std::unique_ptr<Setup>> setups(options.calls);
    for (int i = 0; i < options.calls; ++i) {
      {
        absl::MutexLock lock(&setup_mu);
        auto room = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(setup_mu) { return in_flight < 200; };
        setup_mu.Await(absl::Condition(&room));
        ++in_flight;
      }
      setups[i] = std::make_unique<Setup>();
      Setup* setup = setups[i].get();
      v1::CopilotService::Stub* stub = stubs[i % stubs.size()].get();
      setup->create.set_assistant_id(kHrAssistant);
      stub->async()->CreateThread(
          &setup->create_context, &setup->create, &setup->created,
          [&, setup, stub, i](grpc::Status status) {
            if (!status.ok()) {
              absl::MutexLock lock(&setup_mu);
              ++failures;
              --in_flight;
              return;
            }
            thread_ids[i] = setup->created.thread().id();
            setup->add.set_thread_id(thread_ids[i]);
            setup->add.mutable_message()->set_role(v1::ROLE_USER);
            setup->add.mutable_message()->set_content("How many days of leave do I have?");
            stub->async()->AddMessage(&setup->add_context, &setup->add, &setup->added,
                                      [&](grpc::Status status) {
                                        absl::MutexLock lock(&setup_mu);
                                        if (!status.ok()) ++failures;
                                        --in_flight;
                                      });
          });
    }
    absl::MutexLock lock(&setup_mu);
    auto idle = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(setup_mu) { return in_flight == 0; };
    setup_mu.Await(absl::Condition(&idle));
    if (failures > 0) {
      std::fprintf(stderr, "setup: %d thread creations failed\n", failures);
      return 1;
    }
  }
  // Warm up every channel's connection so that idle figures include them.
  for (auto& stub : stubs) {
    grpc::ClientContext context;
    v1::ListAssistantsResponse response;
    stub->ListAssistants(&context, {}, &response);
  }
  auto fault = (*emulator)->AddFault(
      {{"endpoint", "run"}, {"type", "latency"}, {"delay_ms", options.hold_seconds * 1000}});
  if (!fault.ok()) {
    std::fprintf(stderr, "fault: %s\n", std::string(fault.status().message()).c_str());
    return 1;
  }

  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  absl::StatusOr<ProcessSample> idle = SampleProcess(pid);
  if (!idle.ok()) return 1;

  std::atomic<bool> sampling{true};
  int peak_threads = idle->threads;
  const std::map<std::string, int> idle_names = ThreadNames(pid);
  std::map<std::string, int> peak_names = idle_names;
  long peak_rss = idle->rss_kib;
  std::thread sampler([&] {
    while (sampling.load()) {
      absl::StatusOr<ProcessSample> sample = SampleProcess(pid);
      if (sample.ok()) {
        if (sample->threads > peak_threads) peak_names = ThreadNames(pid);
        peak_threads = std::max(peak_threads, sample->threads);
        peak_rss = std::max(peak_rss, sample->rss_kib);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  });

  absl::Mutex mu;
  int remaining = options.calls;
  // When the first and the last call finished: the spread is the time the gateway took to bring
  // every call to the upstream and every answer back, beyond the hold itself.
  absl::Time first_done = absl::InfiniteFuture();
  absl::Time last_done = absl::InfinitePast();
  std::map<std::string, int> outcomes;
  std::vector<std::unique_ptr<Call>> calls(options.calls);
  const absl::Time start = absl::Now();
  for (int i = 0; i < options.calls; ++i) {
    calls[i] = std::make_unique<Call>();
    Call& call = *calls[i];
    call.context.set_deadline(std::chrono::system_clock::now() +
                              std::chrono::seconds(options.hold_seconds + 60));
    call.request.set_thread_id(thread_ids[i]);
    if (options.request_ids != "off") {
      call.request.set_request_id(absl::StrFormat("%08x-0000-4000-8000-000000000000", i));
    }
    stubs[i % stubs.size()]->async()->Run(
        &call.context, &call.request, &call.response, [&](grpc::Status status) {
          absl::MutexLock lock(&mu);
          ++outcomes[status.ok() ? "OK"
                                 : absl::StrCat("code ", status.error_code(), " (",
                                                status.error_message(), ")")];
          --remaining;
          const absl::Time now = absl::Now();
          first_done = std::min(first_done, now);
          last_done = std::max(last_done, now);
        });
  }
  const absl::Duration fire_time = absl::Now() - start;
  {
    absl::MutexLock lock(&mu);
    auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return remaining == 0; };
    mu.AwaitWithTimeout(absl::Condition(&done), absl::Seconds(options.hold_seconds + 120));
  }
  const absl::Duration wall = absl::Now() - start;
  sampling = false;
  sampler.join();
  absl::StatusOr<ProcessSample> after = SampleProcess(pid);
  auto stats = (*emulator)->Stats();

  int successes = 0;
  {
    absl::MutexLock lock(&mu);
    successes = outcomes["OK"];
    std::printf(
        "gateway_bench: %d concurrent Run calls, upstream (%s) holds each %d s, %d channels, "
        "request_ids %s\n",
        options.calls,
        options.upstream == "http"  ? "HTTP/1.1"
        : options.upstream == "tls" ? "HTTPS, HTTP/1.1"
                                    : "HTTPS, HTTP/2",
        options.hold_seconds, options.channels, options.request_ids.c_str());
    std::printf("  successes:          %d / %d%s\n", successes, options.calls,
                remaining > 0 ? absl::StrCat(" (", remaining, " never finished)").c_str() : "");
    for (const auto& [outcome, count] : outcomes) {
      if (outcome != "OK") std::printf("  failure %s: %d\n", outcome.c_str(), count);
    }
    std::printf("  gateway threads:    at start %d, idle after warm-up %d, peak under load %d\n",
                fresh.ok() ? fresh->threads : 0, idle->threads, peak_threads);
    std::string idle_list, peak_list;
    for (const auto& [name, count] : idle_names) absl::StrAppend(&idle_list, " ", name, "x", count);
    for (const auto& [name, count] : peak_names) absl::StrAppend(&peak_list, " ", name, "x", count);
    std::printf("  threads at idle:   %s\n  threads at peak:   %s\n", idle_list.c_str(),
                peak_list.c_str());
    std::printf("  gateway RSS:        idle %.1f MiB, peak %.1f MiB (VmHWM %.1f MiB)\n",
                idle->rss_kib / 1024.0, peak_rss / 1024.0,
                after.ok() ? after->hwm_kib / 1024.0 : 0.0);
    std::printf("  gateway CPU time:   %.2f s during the run (%.2f s total)\n",
                after.ok() ? after->cpu_seconds - idle->cpu_seconds : 0.0,
                after.ok() ? after->cpu_seconds : 0.0);
    std::printf("  wall time:          %.2f s (all calls started in %.2f s)\n",
                absl::ToDoubleSeconds(wall), absl::ToDoubleSeconds(fire_time));
    if (last_done != absl::InfinitePast()) {
      std::printf("  calls finished:     the first at %.2f s, the last at %.2f s (hold %d s)\n",
                  absl::ToDoubleSeconds(first_done - start),
                  absl::ToDoubleSeconds(last_done - start), options.hold_seconds);
    }
    if (stats.ok()) std::printf("  emulator stats:     %s\n", stats->dump().c_str());
  }
  std::fflush(stdout);
  if (remaining > 0) {
    // Calls still pending cannot be destroyed safely; let the process exit take them.
    std::_Exit(1);
  }
  calls.clear();
  stubs.clear();
  absl::StatusOr<int> exit_code = (*gateway)->Stop();
  std::printf("  gateway exit code:  %d\n", exit_code.value_or(-1));
  return successes == options.calls ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) { return Main(argc, argv); }
