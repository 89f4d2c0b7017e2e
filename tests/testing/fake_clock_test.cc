#include "tests/testing/fake_clock.h"

#include <atomic>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace copilot::gateway::testing {
namespace {

TEST(FakeClockTest, StandsStillUntilMoved) {
  FakeClock clock;
  const absl::Time start = clock.Now();
  EXPECT_EQ(start, absl::FromUnixSeconds(1'800'000'000));
  EXPECT_EQ(clock.Now(), start);
  clock.Advance(absl::Seconds(90));
  EXPECT_EQ(clock.Now(), start + absl::Seconds(90));
  EXPECT_EQ(clock.Monotonic(), start + absl::Seconds(90));
  clock.Advance(absl::Seconds(-30));  // Monotonic time never goes back: ignored.
  EXPECT_EQ(clock.Monotonic(), start + absl::Seconds(90));
}

TEST(FakeClockTest, StepWallMovesTheWallClockAloneEitherWay) {
  FakeClock clock;
  const absl::Time start = clock.Now();
  clock.StepWall(absl::Hours(-1));  // NTP stepped it back.
  EXPECT_EQ(clock.Now(), start - absl::Hours(1));
  EXPECT_EQ(clock.Monotonic(), start);
  clock.StepWall(absl::Hours(3));
  EXPECT_EQ(clock.Now(), start + absl::Hours(2));
  EXPECT_EQ(clock.Monotonic(), start);
}

TEST(FakeClockTest, AwaitUntilWakesWhenTheFakeTimeArrivesNotTheRealOne) {
  FakeClock clock;
  absl::Mutex mu;
  bool flag = false;
  std::atomic<int> woke{-1};
  std::thread waiter([&] {
    absl::MutexLock lock(&mu);
    const bool held =
        clock.AwaitUntil(mu, absl::Condition(&flag), clock.Monotonic() + absl::Seconds(5));
    woke = held ? 1 : 0;
  });
  // 50 ms of real time is nothing to the fake clock.
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(woke.load(), -1);
  clock.Advance(absl::Seconds(4));
  absl::SleepFor(absl::Milliseconds(20));
  EXPECT_EQ(woke.load(), -1);
  clock.Advance(absl::Seconds(1));
  waiter.join();
  EXPECT_EQ(woke.load(), 0);  // Timed out: the condition never held.
}

TEST(FakeClockTest, AwaitUntilWakesForTheConditionBeforeTheTime) {
  FakeClock clock;
  absl::Mutex mu;
  bool flag = false;
  bool held = false;
  std::thread waiter([&] {
    absl::MutexLock lock(&mu);
    held = clock.AwaitUntil(mu, absl::Condition(&flag), absl::InfiniteFuture());
  });
  {
    absl::MutexLock lock(&mu);
    flag = true;
  }
  waiter.join();
  EXPECT_TRUE(held);
}

TEST(FakeClockTest, StartsWhereToldAndSetMovesTheWallClockAnywhere) {
  FakeClock clock(absl::FromUnixSeconds(100));
  EXPECT_EQ(clock.Now(), absl::FromUnixSeconds(100));
  clock.Set(absl::FromUnixSeconds(50));
  EXPECT_EQ(clock.Now(), absl::FromUnixSeconds(50));
  EXPECT_EQ(clock.Monotonic(), absl::FromUnixSeconds(100));
  clock.Set(absl::FromUnixSeconds(1000));
  EXPECT_EQ(clock.Now(), absl::FromUnixSeconds(1000));
}

TEST(FakeClockTest, ReadersOnOtherThreadsSeeItMoveForward) {
  FakeClock clock(absl::FromUnixSeconds(0));
  std::thread reader([&clock] {
    absl::Time last = absl::InfinitePast();
    for (int i = 0; i < 10000; ++i) {
      const absl::Time now = clock.Now();
      EXPECT_GE(now, last);
      last = now;
    }
  });
  for (int i = 0; i < 10000; ++i) clock.Advance(absl::Milliseconds(1));
  reader.join();
  EXPECT_EQ(clock.Now(), absl::FromUnixSeconds(10));
}

}  // namespace
}  // namespace copilot::gateway::testing
