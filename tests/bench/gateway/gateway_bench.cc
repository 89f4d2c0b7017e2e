// gateway_bench: N concurrent Run calls through copilot-gateway while haufe-emulator holds each
// upstream run for S seconds. Prints successes, failures by code, the gateway's idle and peak
// thread count, peak RSS, CPU time and wall time.
//
//   gateway_bench [--calls N] [--hold-seconds S] [--channels C]
//
// The client uses gRPC's callback API (no thread per call). The gateway is sampled from
// /proc/PID/status (Threads, VmRSS, VmHWM) and /proc/PID/stat (utime + stime) every 50 ms.
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "copilot/v1/copilot_service.grpc.pb.h"
#include "tests/emulator/testing/emulator_process.h"
#include "tests/server/integration/gateway_process.h"

namespace {

namespace v1 = ::copilot::v1;
using ::copilot::gateway::testing::GatewayProcess;
using ::copilot::gateway::testing::GatewayProcessOptions;
using ::copilot::gateway::testing::ProcessSample;
using ::copilot::gateway::testing::SampleProcess;

constexpr char kHrAssistant[] = "7c0e5d3a-4c1b-4f57-9a51-1f1f3e0a0002";

struct Options {
  int calls = 10000;
  int hold_seconds = 10;
  int channels = 8;
};

bool ParseOptions(int argc, char** argv, Options& options) {
  for (int i = 1; i < argc; i += 2) {
    const std::string arg = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr, "missing value for %s\n", arg.c_str());
      return false;
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
    } else {
      std::fprintf(stderr, "unknown flag %s\n", arg.c_str());
      return false;
    }
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

  auto emulator = copilot::emulator::testing::EmulatorProcess::Start(
      {.args = {"--max-record", "100"}});
  if (!emulator.ok()) {
    std::fprintf(stderr, "emulator: %s\n", std::string(emulator.status().message()).c_str());
    return 1;
  }
  GatewayProcessOptions gateway_options;
  gateway_options.upstream_url = (*emulator)->base_url() + "/agents";
  gateway_options.upstream = {{"stall_timeout", absl::StrCat(options.hold_seconds + 30, "s")},
                              {"max_call_timeout", absl::StrCat(options.hold_seconds + 60, "s")}};
  auto gateway = GatewayProcess::Start(gateway_options);
  if (!gateway.ok()) {
    std::fprintf(stderr, "gateway: %s\n", std::string(gateway.status().message()).c_str());
    return 1;
  }
  const pid_t pid = (*gateway)->pid();

  std::vector<std::unique_ptr<v1::CopilotService::Stub>> stubs;
  for (int i = 0; i < options.channels; ++i) {
    stubs.push_back(v1::CopilotService::NewStub((*gateway)->NewChannel()));
  }

  // One thread with a question; every call runs it.
  std::string thread_id;
  {
    grpc::ClientContext context;
    v1::CreateThreadRequest create;
    create.set_assistant_id(kHrAssistant);
    v1::CreateThreadResponse created;
    grpc::Status status = stubs[0]->CreateThread(&context, create, &created);
    if (!status.ok()) {
      std::fprintf(stderr, "CreateThread: %s\n", status.error_message().c_str());
      return 1;
    }
    thread_id = created.thread().id();
    grpc::ClientContext add_context;
    v1::AddMessageRequest add;
    add.set_thread_id(thread_id);
    add.mutable_message()->set_role(v1::ROLE_USER);
    add.mutable_message()->set_content("How many days of leave do I have?");
    v1::AddMessageResponse added;
    status = stubs[0]->AddMessage(&add_context, add, &added);
    if (!status.ok()) {
      std::fprintf(stderr, "AddMessage: %s\n", status.error_message().c_str());
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
  long peak_rss = idle->rss_kib;
  std::thread sampler([&] {
    while (sampling.load()) {
      absl::StatusOr<ProcessSample> sample = SampleProcess(pid);
      if (sample.ok()) {
        peak_threads = std::max(peak_threads, sample->threads);
        peak_rss = std::max(peak_rss, sample->rss_kib);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  });

  absl::Mutex mu;
  int remaining = options.calls;
  std::map<std::string, int> outcomes;
  std::vector<std::unique_ptr<Call>> calls(options.calls);
  const absl::Time start = absl::Now();
  for (int i = 0; i < options.calls; ++i) {
    calls[i] = std::make_unique<Call>();
    Call& call = *calls[i];
    call.context.set_deadline(std::chrono::system_clock::now() +
                              std::chrono::seconds(options.hold_seconds + 60));
    call.request.set_thread_id(thread_id);
    stubs[i % stubs.size()]->async()->Run(
        &call.context, &call.request, &call.response, [&](grpc::Status status) {
          absl::MutexLock lock(&mu);
          ++outcomes[status.ok() ? "OK" : absl::StrCat("code ", status.error_code(), " (",
                                                       status.error_message(), ")")];
          --remaining;
        });
  }
  const absl::Duration fire_time = absl::Now() - start;
  {
    absl::MutexLock lock(&mu);
    auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return remaining == 0; };
    mu.AwaitWithTimeout(absl::Condition(&done),
                        absl::Seconds(options.hold_seconds + 120));
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
    std::printf("gateway_bench: %d concurrent Run calls, upstream holds each %d s, %d channels\n",
                options.calls, options.hold_seconds, options.channels);
    std::printf("  successes:          %d / %d%s\n", successes, options.calls,
                remaining > 0 ? absl::StrCat(" (", remaining, " never finished)").c_str() : "");
    for (const auto& [outcome, count] : outcomes) {
      if (outcome != "OK") std::printf("  failure %s: %d\n", outcome.c_str(), count);
    }
    std::printf("  gateway threads:    idle %d, peak %d\n", idle->threads, peak_threads);
    std::printf("  gateway RSS:        idle %.1f MiB, peak %.1f MiB (VmHWM %.1f MiB)\n",
                idle->rss_kib / 1024.0, peak_rss / 1024.0,
                after.ok() ? after->hwm_kib / 1024.0 : 0.0);
    std::printf("  gateway CPU time:   %.2f s during the run (%.2f s total)\n",
                after.ok() ? after->cpu_seconds - idle->cpu_seconds : 0.0,
                after.ok() ? after->cpu_seconds : 0.0);
    std::printf("  wall time:          %.2f s (all calls started in %.2f s)\n",
                absl::ToDoubleSeconds(wall), absl::ToDoubleSeconds(fire_time));
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
