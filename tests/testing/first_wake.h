// ThreadSanitizer's first thread wake-up, paid once per test process before any test starts.
//
// The first time a thread blocked in abseil's synchronization is woken in a new process costs
// TSan hundreds of milliseconds (it symbolizes abseil's suppressed futex report,
// tests/server/integration/tsan.supp). ctest runs each test in a process of its own, so a test
// that times its first steps (a rate window, a hold, a store's first call) would measure that
// instead. Including this header registers a gtest environment that blocks a thread on an
// absl::Mutex and wakes it; in a plain build it costs about 20 ms per process.
#ifndef COPILOT_GATEWAY_TESTS_TESTING_FIRST_WAKE_H_
#define COPILOT_GATEWAY_TESTS_TESTING_FIRST_WAKE_H_

#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace copilot::gateway::testing {

class FirstWakeEnvironment final : public ::testing::Environment {
 public:
  void SetUp() override {
    absl::Mutex mu;
    bool woken = false;
    std::thread waiter([&] {
      absl::MutexLock lock(&mu);
      mu.Await(absl::Condition(&woken));
    });
    absl::SleepFor(absl::Milliseconds(20));  // Let it block.
    {
      absl::MutexLock lock(&mu);
      woken = true;
    }
    waiter.join();
  }
};

// One registration per test binary that includes this header.
[[maybe_unused]] inline ::testing::Environment* const kFirstWake =
    ::testing::AddGlobalTestEnvironment(new FirstWakeEnvironment);

}  // namespace copilot::gateway::testing

#endif  // COPILOT_GATEWAY_TESTS_TESTING_FIRST_WAKE_H_
