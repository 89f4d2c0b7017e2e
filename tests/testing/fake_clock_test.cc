#include "tests/testing/fake_clock.h"

#include <thread>

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
  clock.Advance(absl::Seconds(-30));  // A clock stepped back.
  EXPECT_EQ(clock.Now(), start + absl::Seconds(60));
}

TEST(FakeClockTest, StartsWhereToldAndSetMovesItAnywhere) {
  FakeClock clock(absl::FromUnixSeconds(100));
  EXPECT_EQ(clock.Now(), absl::FromUnixSeconds(100));
  clock.Set(absl::FromUnixSeconds(50));
  EXPECT_EQ(clock.Now(), absl::FromUnixSeconds(50));
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
