#include "tests/emulator/rate_limiter.h"

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/emulator/clock.h"

namespace copilot::emulator {
namespace {

constexpr absl::string_view kKey = "key-a";

RateLimitConfig Enforced(WindowLimits answer, WindowLimits other = kTier0Other) {
  RateLimitConfig config;
  config.enforced = true;
  config.answer = answer;
  config.other = other;
  return config;
}

TEST(RateLimiterTest, AnswerGenerationRoutesShareOneClass) {
  for (absl::string_view route :
       {"run", "run_stream", "chat_completions", "chat_completions_stream"}) {
    EXPECT_EQ(ClassOfRoute(route), RouteClass::kAnswer) << route;
  }
  for (absl::string_view route :
       {"list_assistants", "get_assistant", "list_threads", "create_thread", "get_thread",
        "delete_thread", "list_messages", "create_message", "delete_message"}) {
    EXPECT_EQ(ClassOfRoute(route), RouteClass::kOther) << route;
  }
  EXPECT_EQ(RouteClassName(RouteClass::kAnswer), "answer");
  EXPECT_EQ(RouteClassName(RouteClass::kOther), "other");
}

TEST(RateLimiterTest, OffAdmitsEverythingAndStillCounts) {
  FakeClock clock;
  RateLimiter limiter(clock, RateLimitConfig{});
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(limiter.Admit(kKey, RouteClass::kAnswer).admitted);
  RateLimitCounters c = limiter.Counters(kKey, RouteClass::kAnswer);
  EXPECT_EQ(c.admitted, 100);
  EXPECT_EQ(c.refused, 0);
  EXPECT_EQ(c.max_admitted_1s, 100);
  EXPECT_EQ(c.max_admitted_60s, 100);
}

TEST(RateLimiterTest, BurstWindowLooksBackOneSecondFromNow) {
  FakeClock clock;
  RateLimiter limiter(clock, Enforced({5, 100}));
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(limiter.Admit(kKey, RouteClass::kAnswer).admitted);
  RateLimitDecision sixth = limiter.Admit(kKey, RouteClass::kAnswer);
  EXPECT_FALSE(sixth.admitted);
  EXPECT_EQ(sixth.retry_after_seconds, 1);
  // Still inside the window 999 ms later: the window covers (now - 1 s, now].
  clock.Advance(absl::Milliseconds(999));
  RateLimitDecision late = limiter.Admit(kKey, RouteClass::kAnswer);
  EXPECT_FALSE(late.admitted);
  EXPECT_EQ(late.retry_after_seconds, 1);  // 1 ms, rounded up
  // Exactly 1 s after the first five they have left the window.
  clock.Advance(absl::Milliseconds(1));
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(limiter.Admit(kKey, RouteClass::kAnswer).admitted);
  EXPECT_FALSE(limiter.Admit(kKey, RouteClass::kAnswer).admitted);
  RateLimitCounters c = limiter.Counters(kKey, RouteClass::kAnswer);
  EXPECT_EQ(c.admitted, 10);
  EXPECT_EQ(c.refused, 3);
  EXPECT_EQ(c.max_admitted_1s, 5);
  EXPECT_EQ(c.max_admitted_60s, 10);
}

TEST(RateLimiterTest, RefusedRequestsAreNotCounted) {
  FakeClock clock;
  RateLimiter limiter(clock, Enforced({5, 100}));
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(limiter.Admit(kKey, RouteClass::kAnswer).admitted);
  clock.Advance(absl::Milliseconds(500));
  for (int i = 0; i < 20; ++i) EXPECT_FALSE(limiter.Admit(kKey, RouteClass::kAnswer).admitted);
  // Had the refusals at 0.5 s counted, they would still fill the window at 1.0 s.
  clock.Advance(absl::Milliseconds(500));
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(limiter.Admit(kKey, RouteClass::kAnswer).admitted);
  EXPECT_EQ(limiter.Counters(kKey, RouteClass::kAnswer).refused, 20);
}

TEST(RateLimiterTest, SustainedWindowLooksBackSixtySeconds) {
  FakeClock clock;
  RateLimiter limiter(clock, Enforced({100, 8}));
  for (int i = 0; i < 8; ++i) {
    EXPECT_TRUE(limiter.Admit(kKey, RouteClass::kAnswer).admitted) << i;
    clock.Advance(absl::Seconds(1));
  }
  clock.Advance(absl::Milliseconds(500) - absl::Seconds(1));  // now 7.5 s
  RateLimitDecision refused = limiter.Admit(kKey, RouteClass::kAnswer);
  EXPECT_FALSE(refused.admitted);
  EXPECT_EQ(refused.retry_after_seconds, 53);  // the first (at 0 s) leaves at 60 s: 52.5 s
  clock.Advance(absl::Milliseconds(52500) - absl::Nanoseconds(1));
  EXPECT_FALSE(limiter.Admit(kKey, RouteClass::kAnswer).admitted);
  clock.Advance(absl::Nanoseconds(1));  // now 60 s
  EXPECT_TRUE(limiter.Admit(kKey, RouteClass::kAnswer).admitted);
  RateLimitDecision next = limiter.Admit(kKey, RouteClass::kAnswer);
  EXPECT_FALSE(next.admitted);
  EXPECT_EQ(next.retry_after_seconds, 1);  // the one at 1 s leaves at 61 s
  RateLimitCounters c = limiter.Counters(kKey, RouteClass::kAnswer);
  EXPECT_EQ(c.max_admitted_1s, 1);
  EXPECT_EQ(c.max_admitted_60s, 8);
}

TEST(RateLimiterTest, RetryAfterWaitsForTheLaterOfBothWindows) {
  FakeClock clock;
  RateLimiter limiter(clock, Enforced({2, 2}));
  ASSERT_TRUE(limiter.Admit(kKey, RouteClass::kAnswer).admitted);
  clock.Advance(absl::Milliseconds(500));
  ASSERT_TRUE(limiter.Admit(kKey, RouteClass::kAnswer).admitted);
  clock.Advance(absl::Milliseconds(100));
  // Burst: fits at 1.0 s (0.4 s away); sustained: at 60 s (59.4 s away).
  RateLimitDecision d = limiter.Admit(kKey, RouteClass::kAnswer);
  EXPECT_FALSE(d.admitted);
  EXPECT_EQ(d.retry_after_seconds, 60);
}

TEST(RateLimiterTest, KeysAndClassesCountSeparately) {
  FakeClock clock;
  RateLimiter limiter(clock, Enforced({2, 10}, {3, 10}));
  EXPECT_TRUE(limiter.Admit("a", RouteClass::kAnswer).admitted);
  EXPECT_TRUE(limiter.Admit("a", RouteClass::kAnswer).admitted);
  EXPECT_FALSE(limiter.Admit("a", RouteClass::kAnswer).admitted);
  // The other class of the same key, and the same class of another key, are unaffected.
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.Admit("a", RouteClass::kOther).admitted);
  EXPECT_FALSE(limiter.Admit("a", RouteClass::kOther).admitted);
  EXPECT_TRUE(limiter.Admit("b", RouteClass::kAnswer).admitted);
  RateLimitCounters total = limiter.Counters(RouteClass::kAnswer);
  EXPECT_EQ(total.admitted, 3);
  EXPECT_EQ(total.refused, 1);
  EXPECT_EQ(total.max_admitted_1s, 2);  // the largest of any key, not the sum
  EXPECT_EQ(limiter.Counters("b", RouteClass::kAnswer).admitted, 1);
  EXPECT_EQ(limiter.Counters("nobody", RouteClass::kAnswer).admitted, 0);

  nlohmann::json stats = limiter.StatsJson();
  EXPECT_EQ(stats["answer"],
            nlohmann::json::parse(
                R"({"admitted":3,"refused":1,"max_admitted_1s":2,"max_admitted_60s":2})"));
  EXPECT_EQ(stats["other"]["refused"], 1);
  EXPECT_EQ(stats["by_key"]["a"]["answer"]["admitted"], 2);
  EXPECT_EQ(stats["by_key"]["b"]["answer"]["admitted"], 1);
  EXPECT_EQ(stats["by_key"]["b"]["other"]["admitted"], 0);
}

TEST(RateLimiterTest, ConfigChangesKeepTheWindowsAndClearForgetsThem) {
  FakeClock clock;
  RateLimiter limiter(clock, RateLimitConfig{});
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(limiter.Admit(kKey, RouteClass::kAnswer).admitted);
  limiter.set_config(Enforced({5, 100}));
  EXPECT_FALSE(limiter.Admit(kKey, RouteClass::kAnswer).admitted);
  limiter.Clear();
  EXPECT_EQ(limiter.Counters(kKey, RouteClass::kAnswer).admitted, 0);
  EXPECT_TRUE(limiter.Admit(kKey, RouteClass::kAnswer).admitted);
  EXPECT_EQ(limiter.config().answer.rps, 5);
}

// Compares every decision, Retry-After and window maximum with a brute-force model over a long
// irregular sequence of arrivals.
TEST(RateLimiterTest, MatchesABruteForceModel) {
  constexpr WindowLimits kLimits = {4, 20};
  FakeClock clock;
  RateLimiter limiter(clock, Enforced(kLimits));
  std::vector<absl::Duration> admitted;  // every admitted arrival
  auto count_in = [&admitted](absl::Duration end, absl::Duration window) {
    return std::count_if(admitted.begin(), admitted.end(),
                         [&](absl::Duration t) { return t > end - window && t <= end; });
  };
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> step_ms(0, 400);
  int64_t max_1s = 0;
  int64_t max_60s = 0;
  int refusals = 0;
  for (int i = 0; i < 3000; ++i) {
    clock.Advance(absl::Milliseconds(step_ms(rng)));
    const absl::Duration now = clock.MonotonicNow();
    const bool fits = count_in(now, absl::Seconds(1)) < kLimits.rps &&
                      count_in(now, absl::Seconds(60)) < kLimits.rpm;
    RateLimitDecision d = limiter.Admit(kKey, RouteClass::kAnswer);
    ASSERT_EQ(d.admitted, fits) << "request " << i;
    if (d.admitted) {
      admitted.push_back(now);
      max_1s = std::max<int64_t>(max_1s, count_in(now, absl::Seconds(1)));
      max_60s = std::max<int64_t>(max_60s, count_in(now, absl::Seconds(60)));
      continue;
    }
    ++refusals;
    // The smallest whole number of seconds after which the request would fit.
    int64_t expected = 1;
    while (count_in(now + absl::Seconds(expected), absl::Seconds(1)) >= kLimits.rps ||
           count_in(now + absl::Seconds(expected), absl::Seconds(60)) >= kLimits.rpm) {
      ++expected;
    }
    ASSERT_EQ(d.retry_after_seconds, expected) << "request " << i;
  }
  RateLimitCounters c = limiter.Counters(kKey, RouteClass::kAnswer);
  EXPECT_EQ(c.admitted, static_cast<int64_t>(admitted.size()));
  EXPECT_EQ(c.refused, refusals);
  EXPECT_EQ(c.max_admitted_1s, max_1s);
  EXPECT_EQ(c.max_admitted_60s, max_60s);
  EXPECT_EQ(max_1s, kLimits.rps);
  EXPECT_EQ(max_60s, kLimits.rpm);
  EXPECT_GT(refusals, 100);  // the sequence exercises both windows
}

TEST(RateLimitConfigTest, UpdatesFollowTheModeRules) {
  RateLimitConfig config;
  EXPECT_FALSE(config.enforced);
  EXPECT_EQ(config.answer, kTier0Answer);
  EXPECT_EQ(config.other, kTier0Other);
  EXPECT_EQ(config.ModeName(), "off");

  ApplyRateLimitUpdate({.mode = "tier0"}, config);
  EXPECT_TRUE(config.enforced);
  EXPECT_EQ(config.ModeName(), "tier0");

  // A limit alone turns enforcement on and leaves the others as they are.
  config = RateLimitConfig{};
  ApplyRateLimitUpdate({.answer_rps = 5}, config);
  EXPECT_TRUE(config.enforced);
  EXPECT_EQ(config.answer, (WindowLimits{5, 60}));
  EXPECT_EQ(config.other, kTier0Other);
  EXPECT_EQ(config.ModeName(), "custom");

  // off keeps the values; custom turns them back on; tier0 restores the tier-0 values first.
  ApplyRateLimitUpdate({.mode = "off"}, config);
  EXPECT_FALSE(config.enforced);
  EXPECT_EQ(config.answer.rps, 5);
  ApplyRateLimitUpdate({.mode = "custom", .other_rpm = 7}, config);
  EXPECT_TRUE(config.enforced);
  EXPECT_EQ(config.answer.rps, 5);
  EXPECT_EQ(config.other, (WindowLimits{60, 7}));
  ApplyRateLimitUpdate({.mode = "tier0", .answer_rpm = 9}, config);
  EXPECT_EQ(config.answer, (WindowLimits{15, 9}));
  EXPECT_EQ(config.other, kTier0Other);

  EXPECT_TRUE((RateLimitUpdate{.mode = "off", .answer_rps = 1}).Contradicts());
  EXPECT_FALSE((RateLimitUpdate{.mode = "tier0", .answer_rps = 1}).Contradicts());
  EXPECT_FALSE((RateLimitUpdate{.mode = "off"}).Contradicts());
}

}  // namespace
}  // namespace copilot::emulator
