// Latency of one limit decision (TakeRate) through LocalLimitStore and RedisLimitStore:
// sequential (one call in flight) and with 32 in flight. Not a test: prints p50/p99.
//
//   limit_store_bench [calls] [redis-url]
//
// Without a URL it starts its own redis-server on a free loopback port.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/time/clock.h"
#include "server/common/clock.h"
#include "server/limits/local_limit_store.h"
#include "server/limits/redis_limit_store.h"
#include "tests/server/limits/redis_server.h"

namespace copilot::gateway {
namespace {

using SteadyClock = std::chrono::steady_clock;

struct Run {
  std::vector<double> latencies_us;
  double seconds = 0;
  int errors = 0;
  int allowed = 0;
};

// Runs `calls` TakeRate calls with at most `in_flight` outstanding; each latency is from the
// call to its callback.
Run Measure(LimitStore& store, int calls, int in_flight) {
  // Generous enough that most calls are allowed: the step's cost, not the refusal path.
  const RateLimit limit{.per_second = 1e6, .burst = 1'000'000};
  Run run;
  run.latencies_us.resize(calls);
  std::mutex mu;
  std::condition_variable changed;
  int outstanding = 0;
  int completed = 0;
  std::atomic<int> errors{0};
  std::atomic<int> allowed{0};
  const SteadyClock::time_point start = SteadyClock::now();
  for (int i = 0; i < calls; ++i) {
    {
      std::unique_lock lock(mu);
      changed.wait(lock, [&] { return outstanding < in_flight; });
      ++outstanding;
    }
    const SteadyClock::time_point sent = SteadyClock::now();
    store.TakeRate("bench:answer", limit, [&, i, sent](absl::StatusOr<StepResult> result) {
      run.latencies_us[i] =
          std::chrono::duration<double, std::micro>(SteadyClock::now() - sent).count();
      if (!result.ok()) {
        errors.fetch_add(1);
      } else if (result->allowed) {
        allowed.fetch_add(1);
      }
      std::lock_guard lock(mu);
      --outstanding;
      ++completed;
      changed.notify_all();
    });
  }
  {
    std::unique_lock lock(mu);
    changed.wait(lock, [&] { return completed == calls; });
  }
  run.seconds = std::chrono::duration<double>(SteadyClock::now() - start).count();
  run.errors = errors.load();
  run.allowed = allowed.load();
  return run;
}

void Print(const char* store, int in_flight, Run run) {
  std::sort(run.latencies_us.begin(), run.latencies_us.end());
  auto at = [&](double q) {
    return run.latencies_us[static_cast<size_t>(q * (run.latencies_us.size() - 1))];
  };
  std::printf(
      "%-6s in_flight=%-3d calls=%zu p50=%8.1fus p99=%8.1fus max=%8.1fus %9.0f/s errors=%d\n",
      store, in_flight, run.latencies_us.size(), at(0.50), at(0.99), run.latencies_us.back(),
      run.latencies_us.size() / run.seconds, run.errors);
}

int Main(int argc, char** argv) {
  int calls = 10'000;
  if (argc > 1 && (!absl::SimpleAtoi(argv[1], &calls) || calls < 1)) {
    std::fprintf(stderr, "usage: %s [calls] [redis-url]\n", argv[0]);
    return 2;
  }
  std::unique_ptr<testing::RedisServer> server;
  RedisLimitStoreOptions options;
  if (argc > 2) {
    absl::StatusOr<RedisLimitStoreOptions> parsed = ParseRedisUrl(argv[2]);
    if (!parsed.ok()) {
      std::fprintf(stderr, "%s\n", parsed.status().ToString().c_str());
      return 2;
    }
    options = *parsed;
  } else {
    absl::StatusOr<std::unique_ptr<testing::RedisServer>> started = testing::RedisServer::Start();
    if (!started.ok()) {
      std::fprintf(stderr, "%s\n", started.status().ToString().c_str());
      return 1;
    }
    server = *std::move(started);
    options.port = server->port();
  }
  options.key_prefix = "bench";

  SystemClock clock;
  LocalLimitStore local(clock);
  absl::StatusOr<std::unique_ptr<RedisLimitStore>> redis = RedisLimitStore::Create(options);
  if (!redis.ok()) {
    std::fprintf(stderr, "%s\n", redis.status().ToString().c_str());
    return 1;
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (!(*redis)->healthy() && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
  if (!(*redis)->healthy()) {
    std::fprintf(stderr, "redis at %s:%d not reachable\n", options.host.c_str(), options.port);
    return 1;
  }

  std::printf("TakeRate latency, %d calls per run (warm-up run not shown)\n", calls);
  for (int in_flight : {1, 32}) {
    Measure(local, std::min(calls, 1000), in_flight);
    Print("local", in_flight, Measure(local, calls, in_flight));
    Measure(**redis, std::min(calls, 1000), in_flight);
    Print("redis", in_flight, Measure(**redis, calls, in_flight));
  }
  return 0;
}

}  // namespace
}  // namespace copilot::gateway

int main(int argc, char** argv) { return copilot::gateway::Main(argc, argv); }
