// The limit algorithms with a clock moved by hand: GCRA (burst, steady rate, exact retry-after),
// sliding windows (exact counts, refused calls record nothing) and concurrency leases.
#include "server/limits/local_limit_store.h"

#include <deque>
#include <optional>

#include "gtest/gtest.h"
#include "tests/testing/fake_clock.h"

namespace copilot::gateway {
namespace {

using ::copilot::gateway::testing::FakeClock;

const absl::Time kStart = absl::FromUnixSeconds(1'800'000'000);

TEST(GcraTest, BurstThenExactRetryAfterThenSteadyRate) {
  absl::Time tat = absl::InfinitePast();
  const RateLimit limit{.per_second = 2, .burst = 3};
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(LocalLimitStore::GcraStep(kStart, limit, tat).allowed);
  StepResult refused = LocalLimitStore::GcraStep(kStart, limit, tat);
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.retry_after, absl::Milliseconds(500));
  // Refused calls take nothing: the same answer again.
  EXPECT_EQ(LocalLimitStore::GcraStep(kStart, limit, tat).retry_after, absl::Milliseconds(500));
  EXPECT_FALSE(LocalLimitStore::GcraStep(kStart + absl::Milliseconds(499), limit, tat).allowed);
  EXPECT_TRUE(LocalLimitStore::GcraStep(kStart + absl::Milliseconds(500), limit, tat).allowed);
  // Then exactly one call per 500 ms.
  int allowed = 0;
  for (int ms = 501; ms <= 10500; ms += 10) {
    allowed += LocalLimitStore::GcraStep(kStart + absl::Milliseconds(ms), limit, tat).allowed;
  }
  EXPECT_EQ(allowed, 19);  // From 1.0 s (the burst paid back) to 10.5 s at 2 per second.
}

TEST(GcraTest, NoRateIsNoLimit) {
  absl::Time tat = absl::InfinitePast();
  for (int i = 0; i < 1000; ++i) {
    EXPECT_TRUE(LocalLimitStore::GcraStep(kStart, RateLimit{}, tat).allowed);
  }
}

TEST(SlidingWindowTest, ExactCountsAndRetryAfter) {
  std::deque<absl::Time> log;
  const std::vector<WindowLimit> windows = {{2, absl::Seconds(1)}};
  EXPECT_TRUE(LocalLimitStore::WindowStep(kStart, windows, log).allowed);
  EXPECT_TRUE(LocalLimitStore::WindowStep(kStart + absl::Milliseconds(100), windows, log).allowed);
  StepResult refused = LocalLimitStore::WindowStep(kStart + absl::Milliseconds(200), windows, log);
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.retry_after, absl::Milliseconds(800));  // When the call at kStart leaves.
  EXPECT_EQ(log.size(), 2u);                                // Refused: not recorded.
  EXPECT_FALSE(LocalLimitStore::WindowStep(kStart + absl::Milliseconds(999), windows, log).allowed);
  EXPECT_TRUE(LocalLimitStore::WindowStep(kStart + absl::Seconds(1), windows, log).allowed);
}

TEST(SlidingWindowTest, TierWindowsNeverAdmitMoreThanEitherAllows) {
  // 15 per second and 60 per minute, offered 100 calls per second for two minutes.
  std::deque<absl::Time> log;
  const std::vector<WindowLimit> windows = {{15, absl::Seconds(1)}, {60, absl::Seconds(60)}};
  std::vector<absl::Time> admitted;
  for (int ms = 0; ms < 120000; ms += 10) {
    const absl::Time now = kStart + absl::Milliseconds(ms);
    if (LocalLimitStore::WindowStep(now, windows, log).allowed) admitted.push_back(now);
  }
  EXPECT_EQ(admitted.size(), 120u);
  for (std::size_t i = 0; i < admitted.size(); ++i) {
    int in_second = 0, in_minute = 0;
    for (std::size_t j = 0; j <= i; ++j) {
      in_second += admitted[j] > admitted[i] - absl::Seconds(1);
      in_minute += admitted[j] > admitted[i] - absl::Seconds(60);
    }
    ASSERT_LE(in_second, 15);
    ASSERT_LE(in_minute, 60);
  }
}

TEST(LocalLimitStoreTest, ConcurrencySlotsReleaseAndExpire) {
  FakeClock clock(kStart);
  LocalLimitStore store(clock);
  std::vector<std::string> leases;
  for (int i = 0; i < 3; ++i) {
    store.AcquireSlot("t", 2, absl::Seconds(10), [&](absl::StatusOr<SlotResult> result) {
      ASSERT_TRUE(result.ok());
      if (result->acquired) leases.push_back(result->lease_id);
    });
  }
  ASSERT_EQ(leases.size(), 2u);
  store.ReleaseSlot("t", leases[0]);
  bool acquired = false;
  store.AcquireSlot("t", 2, absl::Seconds(10),
                    [&](absl::StatusOr<SlotResult> result) { acquired = result->acquired; });
  EXPECT_TRUE(acquired);
  // Both holders "die": their leases expire.
  clock.Advance(absl::Seconds(10));
  int more = 0;
  for (int i = 0; i < 3; ++i) {
    store.AcquireSlot("t", 2, absl::Seconds(10),
                      [&](absl::StatusOr<SlotResult> result) { more += result->acquired; });
  }
  EXPECT_EQ(more, 2);
}

TEST(LocalLimitStoreTest, KeysAreIndependent) {
  FakeClock clock(kStart);
  LocalLimitStore store(clock);
  const RateLimit limit{.per_second = 1, .burst = 1};
  std::optional<bool> a1, a2, b1;
  store.TakeRate("a", limit, [&](absl::StatusOr<StepResult> r) { a1 = r->allowed; });
  store.TakeRate("a", limit, [&](absl::StatusOr<StepResult> r) { a2 = r->allowed; });
  store.TakeRate("b", limit, [&](absl::StatusOr<StepResult> r) { b1 = r->allowed; });
  EXPECT_TRUE(*a1);
  EXPECT_FALSE(*a2);
  EXPECT_TRUE(*b1);
}

}  // namespace
}  // namespace copilot::gateway
