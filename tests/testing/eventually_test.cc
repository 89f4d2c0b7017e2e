#include "tests/testing/eventually.h"

#include <atomic>
#include <thread>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace copilot::gateway::testing {
namespace {

TEST(EventuallyTest, AConditionThatHoldsAnswersAtOnce) {
  int asked = 0;
  const absl::Time start = absl::Now();
  EXPECT_TRUE(Eventually([&asked] {
    ++asked;
    return true;
  }));
  EXPECT_EQ(asked, 1);
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
}

TEST(EventuallyTest, WaitsForAnotherThread) {
  std::atomic<bool> done{false};
  std::thread worker([&done] {
    absl::SleepFor(absl::Milliseconds(50));
    done = true;
  });
  EXPECT_TRUE(Eventually([&done] { return done.load(); }, absl::Seconds(10)));
  worker.join();
}

TEST(EventuallyTest, GivesUpAfterTheTimeoutHavingAskedAtTheEnd) {
  int asked = 0;
  const absl::Time start = absl::Now();
  EXPECT_FALSE(Eventually(
      [&asked] {
        ++asked;
        return false;
      },
      absl::Milliseconds(100), absl::Milliseconds(30)));
  const absl::Duration took = absl::Now() - start;
  EXPECT_GE(took, absl::Milliseconds(100));
  EXPECT_LT(took, absl::Seconds(5));
  // At 0, 30, 60, 90 and at the timeout (more on a slow machine is fine, fewer is not).
  EXPECT_GE(asked, 2);
  EXPECT_LE(asked, 6);
}

TEST(EventuallyTest, AZeroTimeoutAsksOnce) {
  int asked = 0;
  EXPECT_FALSE(Eventually(
      [&asked] {
        ++asked;
        return false;
      },
      absl::ZeroDuration()));
  EXPECT_EQ(asked, 1);
}

}  // namespace
}  // namespace copilot::gateway::testing
