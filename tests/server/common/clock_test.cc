// SystemClock: the wall clock is absl::Now(), the monotonic one moves forward at real time's rate,
// and AwaitUntil waits until a monotonic time or a condition.
#include "server/common/clock.h"

#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace copilot::gateway {
namespace {

TEST(SystemClockTest, WallClockIsTheSystems) {
  SystemClock clock;
  const absl::Time before = absl::Now();
  const absl::Time now = clock.Now();
  EXPECT_GE(now, before);
  EXPECT_LE(now, absl::Now());
}

TEST(SystemClockTest, MonotonicMovesForwardAtRealTimesRateAndInstancesAgree) {
  SystemClock one;
  SystemClock two;
  const absl::Time start = one.Monotonic();
  absl::SleepFor(absl::Milliseconds(20));
  const absl::Time later = two.Monotonic();
  EXPECT_GE(later - start, absl::Milliseconds(20));
  EXPECT_LT(later - start, absl::Seconds(10));
  absl::Time last = one.Monotonic();
  for (int i = 0; i < 1000; ++i) {
    const absl::Time now = i % 2 == 0 ? one.Monotonic() : two.Monotonic();
    EXPECT_GE(now, last);
    last = now;
  }
}

TEST(SystemClockTest, AwaitUntilTimesOutAtTheMonotonicTime) {
  SystemClock clock;
  absl::Mutex mu;
  bool flag = false;
  absl::MutexLock lock(&mu);
  const absl::Time until = clock.Monotonic() + absl::Milliseconds(30);
  EXPECT_FALSE(clock.AwaitUntil(mu, absl::Condition(&flag), until));
  EXPECT_GE(clock.Monotonic(), until);
}

TEST(SystemClockTest, AwaitUntilReturnsWhenTheConditionHolds) {
  SystemClock clock;
  absl::Mutex mu;
  bool flag = false;
  std::thread setter([&] {
    absl::SleepFor(absl::Milliseconds(10));
    absl::MutexLock lock(&mu);
    flag = true;
  });
  {
    absl::MutexLock lock(&mu);
    EXPECT_TRUE(clock.AwaitUntil(mu, absl::Condition(&flag), absl::InfiniteFuture()));
  }
  setter.join();
}

}  // namespace
}  // namespace copilot::gateway
