// AdmissionController over the in-process store, in simulated time (a FakeClock drives the store
// and the scheduler's waits): the tenant's rate and concurrency limits (RESOURCE_EXHAUSTED +
// QuotaFailure + RetryInfo), waiting for the upstream budget within max_wait and the deadline,
// weighted fairness between waiting tenants, the hold after an upstream 429, wall-clock steps,
// and cancellation.
#include "server/limits/admission_controller.h"

#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/common/errors.h"
#include "server/limits/local_limit_store.h"
#include "tests/server/limits/deferred_store.h"
#include "tests/server/limits/unreachable_store.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/status_matchers.h"

namespace copilot::gateway {
namespace {

using ::copilot::gateway::testing::DeferredStore;
using ::copilot::gateway::testing::FakeClock;
using ::copilot::gateway::testing::StatusIs;
using ::copilot::gateway::testing::UnreachableStore;
using ::testing::HasSubstr;
using ::testing::Not;

// Collects the outcomes of many admissions, in the order they arrive.
class Outcomes {
 public:
  AdmitCallback For(std::string tenant) {
    return [this, tenant](absl::StatusOr<std::unique_ptr<Permit>> result) {
      absl::MutexLock lock(&mu_);
      if (result.ok()) {
        admitted_.push_back(tenant);
        permits_.push_back(*std::move(result));
      } else {
        refused_.push_back(result.status());
      }
    };
  }
  bool WaitFor(std::size_t total, absl::Duration timeout = absl::Seconds(10)) {
    absl::MutexLock lock(&mu_);
    auto done = [this, total]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return admitted_.size() + refused_.size() >= total;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
  }
  std::vector<std::string> admitted() {
    absl::MutexLock lock(&mu_);
    return admitted_;
  }
  std::vector<absl::Status> refused() {
    absl::MutexLock lock(&mu_);
    return refused_;
  }
  void ReleasePermits() {
    absl::MutexLock lock(&mu_);
    permits_.clear();
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> admitted_ ABSL_GUARDED_BY(mu_);
  std::vector<absl::Status> refused_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<Permit>> permits_ ABSL_GUARDED_BY(mu_);
};

BudgetConfig Budget(int64_t per_window, absl::Duration window, absl::Duration max_wait) {
  BudgetConfig budget;
  budget.answer = {{per_window, window}};
  budget.other = {{0, absl::Seconds(1)}};
  budget.max_wait = max_wait;
  return budget;
}

double Seconds(const google::rpc::RetryInfo& retry) {
  return static_cast<double>(retry.retry_delay().seconds()) + retry.retry_delay().nanos() / 1e9;
}

// Simulated time: the store and the controller's scheduler run on one FakeClock, which moves only
// when a test advances it. Real time only bounds how long a test waits for the scheduler thread to
// act on a move (Settled checks that nothing more happens without one).
class AdmissionControllerTest : public ::testing::Test {
 protected:
  absl::Time Far() { return clock_.Now() + absl::Minutes(1); }
  // Outcomes are `total` and stay there while the fake time stands still.
  static bool Settled(Outcomes& outcomes, std::size_t total) {
    if (!outcomes.WaitFor(total)) return false;
    absl::SleepFor(absl::Milliseconds(30));  // Thirty polls of the scheduler's fake-time wait.
    return outcomes.admitted().size() + outcomes.refused().size() == total;
  }

  FakeClock clock_;
  LocalLimitStore store_{clock_};
};

TEST_F(AdmissionControllerTest, TenantRateRefusalNamesTheLimitAndWhenToRetry) {
  AdmissionController admission(store_, clock_, Budget(0, absl::Seconds(1), absl::Seconds(1)));
  TenantLimits limits;
  limits.answer_rate = RateLimit{.per_second = 2, .burst = 1};
  Outcomes outcomes;
  admission.Admit("acme", limits, CallClass::kAnswer, Far(), outcomes.For("acme"));
  clock_.Advance(absl::Milliseconds(100));
  admission.Admit("acme", limits, CallClass::kAnswer, Far(), outcomes.For("acme"));
  ASSERT_TRUE(outcomes.WaitFor(2));
  ASSERT_EQ(outcomes.admitted().size(), 1u);
  const absl::Status refused = outcomes.refused().at(0);
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  auto quota = GetQuotaFailure(refused);
  ASSERT_TRUE(quota.has_value());
  EXPECT_EQ(quota->violations(0).subject(), "tenant:acme");
  auto retry = GetRetryInfo(refused);
  ASSERT_TRUE(retry.has_value());
  EXPECT_DOUBLE_EQ(Seconds(*retry), 0.4);  // One interval (500 ms) after the first call.
  EXPECT_EQ(GetErrorInfo(refused)->reason(), "tenant_rate_exceeded");
  // The other class has its own limit (none here).
  admission.Admit("acme", limits, CallClass::kOther, Far(), outcomes.For("acme"));
  ASSERT_TRUE(outcomes.WaitFor(3));
  EXPECT_EQ(outcomes.admitted().size(), 2u);
  // When the interval has passed, the next one goes.
  clock_.Advance(absl::Milliseconds(400));
  admission.Admit("acme", limits, CallClass::kAnswer, Far(), outcomes.For("acme"));
  ASSERT_TRUE(outcomes.WaitFor(4));
  EXPECT_EQ(outcomes.admitted().size(), 3u);
}

TEST_F(AdmissionControllerTest, ConcurrencySlotsAreHeldByPermitsAndFreedWithThem) {
  AdmissionController admission(store_, clock_, Budget(0, absl::Seconds(1), absl::Seconds(1)));
  TenantLimits limits;
  limits.max_concurrent_answers = 2;
  Outcomes outcomes;
  for (int i = 0; i < 3; ++i) {
    admission.Admit("acme", limits, CallClass::kAnswer, Far(), outcomes.For("acme"));
  }
  ASSERT_TRUE(outcomes.WaitFor(3));
  EXPECT_EQ(outcomes.admitted().size(), 2u);
  ASSERT_EQ(outcomes.refused().size(), 1u);
  EXPECT_EQ(GetErrorInfo(outcomes.refused()[0])->reason(), "tenant_concurrency_exceeded");
  outcomes.ReleasePermits();
  admission.Admit("acme", limits, CallClass::kAnswer, Far(), outcomes.For("acme"));
  ASSERT_TRUE(outcomes.WaitFor(4));
  EXPECT_EQ(outcomes.admitted().size(), 3u);
  // Other calls hold no answer slot.
  admission.Admit("acme", limits, CallClass::kOther, Far(), outcomes.For("acme"));
  ASSERT_TRUE(outcomes.WaitFor(5));
  EXPECT_EQ(outcomes.admitted().size(), 4u);
}

TEST_F(AdmissionControllerTest, CallsWaitForTheBudgetInsteadOfFailing) {
  AdmissionController admission(store_, clock_,
                                Budget(2, absl::Milliseconds(300), absl::Seconds(5)));
  Outcomes outcomes;
  for (int i = 0; i < 6; ++i) {
    admission.Admit("acme", TenantLimits{}, CallClass::kAnswer, Far(), outcomes.For("acme"));
  }
  // Two per 300 ms window: two now, and the others wait (none is refused) for the fake clock.
  EXPECT_TRUE(Settled(outcomes, 2));
  clock_.Advance(absl::Milliseconds(299));
  EXPECT_TRUE(Settled(outcomes, 2));
  clock_.Advance(absl::Milliseconds(1));
  EXPECT_TRUE(Settled(outcomes, 4));
  clock_.Advance(absl::Milliseconds(300));
  EXPECT_TRUE(Settled(outcomes, 6));
  EXPECT_EQ(outcomes.admitted().size(), 6u);
}

TEST_F(AdmissionControllerTest, ACallThatCannotWaitIsRefusedWithRetryInfo) {
  AdmissionController admission(store_, clock_, Budget(1, absl::Seconds(2), absl::Seconds(5)));
  Outcomes outcomes;
  admission.Admit("acme", TenantLimits{}, CallClass::kAnswer, Far(), outcomes.For("acme"));
  clock_.Advance(absl::Milliseconds(500));
  // Its deadline comes before the budget has room: refused at once, not when the deadline passes.
  admission.Admit("acme", TenantLimits{}, CallClass::kAnswer,
                  clock_.Now() + absl::Milliseconds(200), outcomes.For("acme"));
  ASSERT_TRUE(Settled(outcomes, 2));
  ASSERT_EQ(outcomes.refused().size(), 1u);
  const absl::Status refused = outcomes.refused()[0];
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(GetQuotaFailure(refused)->violations(0).subject(), "upstream");
  auto retry = GetRetryInfo(refused);
  ASSERT_TRUE(retry.has_value());
  EXPECT_DOUBLE_EQ(Seconds(*retry), 1.5);  // The window's 2 s minus the 500 ms passed.
}

TEST_F(AdmissionControllerTest, AWaitingCallIsRefusedAtItsMaxWaitWithTheHoldsRemainder) {
  AdmissionController admission(store_, clock_,
                                Budget(1, absl::Seconds(1), absl::Milliseconds(1500)));
  Outcomes outcomes;
  admission.Admit("acme", TenantLimits{}, CallClass::kAnswer, Far(), outcomes.For("acme"));
  // Room in 1 s, within its 1.5 s of max_wait: it waits.
  admission.Admit("acme", TenantLimits{}, CallClass::kAnswer, Far(), outcomes.For("acme"));
  ASSERT_TRUE(Settled(outcomes, 1));
  // Then the upstream answers 429 with Retry-After: 10 s.
  admission.HoldBudget(CallClass::kAnswer, absl::Seconds(10));
  clock_.Advance(absl::Seconds(1));
  EXPECT_TRUE(Settled(outcomes, 1));  // The window has room, but the hold is on.
  clock_.Advance(absl::Milliseconds(500));
  ASSERT_TRUE(Settled(outcomes, 2));
  ASSERT_EQ(outcomes.refused().size(), 1u);
  auto retry = GetRetryInfo(outcomes.refused()[0]);
  ASSERT_TRUE(retry.has_value());
  EXPECT_DOUBLE_EQ(Seconds(*retry), 8.5);  // The hold ends 10 s after it began.
}

TEST_F(AdmissionControllerTest, WaitingTenantsAreServedFairlyWhenOneFloods) {
  // 5 answers per 100 ms. Tenant A queues 60 calls at once; B then queues 10.
  AdmissionController admission(store_, clock_,
                                Budget(5, absl::Milliseconds(100), absl::Seconds(10)));
  Outcomes outcomes;
  for (int i = 0; i < 60; ++i) {
    admission.Admit("a", TenantLimits{}, CallClass::kAnswer, Far(), outcomes.For("a"));
  }
  for (int i = 0; i < 10; ++i) {
    admission.Admit("b", TenantLimits{}, CallClass::kAnswer, Far(), outcomes.For("b"));
  }
  for (std::size_t admitted = 5; admitted <= 70; admitted += 5) {
    ASSERT_TRUE(Settled(outcomes, admitted)) << admitted;
    clock_.Advance(absl::Milliseconds(100));
  }
  const std::vector<std::string> order = outcomes.admitted();
  ASSERT_EQ(order.size(), 70u);
  // B does not wait for A's backlog: A's first window of 5 went before B arrived; then the two
  // alternate (A first: both joined at the same virtual time), so B's 10 calls are the 7th,
  // 9th, ... 25th admitted.
  std::vector<std::size_t> b_positions;
  for (std::size_t i = 0; i < order.size(); ++i) {
    if (order[i] == "b") b_positions.push_back(i + 1);
  }
  EXPECT_EQ(b_positions, (std::vector<std::size_t>{7, 9, 11, 13, 15, 17, 19, 21, 23, 25}));
}

TEST_F(AdmissionControllerTest, WeightsShareTheBudget) {
  AdmissionController admission(store_, clock_,
                                Budget(4, absl::Milliseconds(100), absl::Seconds(10)));
  // Fill the first window so that every later call waits in the queue.
  Outcomes warmup;
  for (int i = 0; i < 4; ++i) {
    admission.Admit("w", TenantLimits{}, CallClass::kAnswer, Far(), warmup.For("w"));
  }
  ASSERT_TRUE(warmup.WaitFor(4));
  TenantLimits heavy;
  heavy.weight = 3;
  Outcomes outcomes;
  for (int i = 0; i < 40; ++i) {
    admission.Admit("heavy", heavy, CallClass::kAnswer, Far(), outcomes.For("heavy"));
    admission.Admit("light", TenantLimits{}, CallClass::kAnswer, Far(), outcomes.For("light"));
  }
  for (std::size_t admitted = 0; admitted <= 80; admitted += 4) {
    ASSERT_TRUE(Settled(outcomes, admitted)) << admitted;
    clock_.Advance(absl::Milliseconds(100));
  }
  const std::vector<std::string> order = outcomes.admitted();
  int heavy_in_first_40 = 0;
  for (std::size_t i = 0; i < 40; ++i) heavy_in_first_40 += order[i] == "heavy";
  EXPECT_EQ(heavy_in_first_40, 30);  // 3:1.
}

TEST_F(AdmissionControllerTest, An429HoldsTheBudgetUntilRetryAfter) {
  AdmissionController admission(store_, clock_, Budget(100, absl::Seconds(1), absl::Seconds(5)));
  EXPECT_EQ(admission.holds(), 0);
  admission.HoldBudget(CallClass::kAnswer, absl::Milliseconds(400));
  EXPECT_EQ(admission.holds(), 1);  // copilot_gateway_upstream_holds.
  Outcomes outcomes;
  admission.Admit("acme", TenantLimits{}, CallClass::kAnswer, Far(), outcomes.For("answer"));
  admission.Admit("acme", TenantLimits{}, CallClass::kOther, Far(), outcomes.For("other"));
  // The other class is not held.
  ASSERT_TRUE(Settled(outcomes, 1));
  EXPECT_EQ(outcomes.admitted(), std::vector<std::string>{"other"});
  clock_.Advance(absl::Milliseconds(399));
  EXPECT_TRUE(Settled(outcomes, 1));
  EXPECT_EQ(admission.holds(), 1);
  clock_.Advance(absl::Milliseconds(1));
  ASSERT_TRUE(Settled(outcomes, 2));
  EXPECT_EQ(outcomes.admitted(), (std::vector<std::string>{"other", "answer"}));
  EXPECT_EQ(admission.holds(), 0);
}

TEST_F(AdmissionControllerTest, WallClockStepsMoveNoLimit) {
  AdmissionController admission(store_, clock_, Budget(100, absl::Seconds(1), absl::Seconds(10)));
  TenantLimits limits;
  limits.answer_rate = RateLimit{.per_second = 0.1, .burst = 1};  // One per 10 s.
  Outcomes outcomes;
  admission.Admit("acme", limits, CallClass::kAnswer, Far(), outcomes.For("acme"));
  ASSERT_TRUE(Settled(outcomes, 1));
  admission.HoldBudget(CallClass::kOther, absl::Seconds(5));
  // NTP steps the wall clock an hour forward: neither the rate nor the hold is over.
  clock_.StepWall(absl::Hours(1));
  admission.Admit("acme", limits, CallClass::kAnswer, Far(), outcomes.For("acme"));
  admission.Admit("acme", TenantLimits{}, CallClass::kOther, Far(), outcomes.For("other"));
  ASSERT_TRUE(Settled(outcomes, 2));
  ASSERT_EQ(outcomes.refused().size(), 1u);
  EXPECT_EQ(GetErrorInfo(outcomes.refused()[0])->reason(), "tenant_rate_exceeded");
  EXPECT_DOUBLE_EQ(Seconds(*GetRetryInfo(outcomes.refused()[0])), 10);
  // Two hours back: the hold still ends 5 s after it began, the rate 10 s after the first call.
  clock_.StepWall(absl::Hours(-2));
  clock_.Advance(absl::Seconds(5));
  ASSERT_TRUE(Settled(outcomes, 3));
  EXPECT_EQ(outcomes.admitted().back(), "other");
  clock_.Advance(absl::Seconds(5));
  admission.Admit("acme", limits, CallClass::kAnswer, Far(), outcomes.For("acme"));
  ASSERT_TRUE(Settled(outcomes, 4));
  EXPECT_EQ(outcomes.admitted().size(), 3u);
}

TEST_F(AdmissionControllerTest, CancelWhileWaitingEndsTheCallAndTakesNoBudget) {
  AdmissionController admission(store_, clock_,
                                Budget(1, absl::Milliseconds(500), absl::Seconds(5)));
  Outcomes outcomes;
  admission.Admit("acme", TenantLimits{}, CallClass::kAnswer, Far(), outcomes.For("acme"));
  std::shared_ptr<AdmissionTicket> waiting =
      admission.Admit("acme", TenantLimits{}, CallClass::kAnswer, Far(), outcomes.For("acme"));
  waiting->Cancel();
  ASSERT_TRUE(Settled(outcomes, 2));
  ASSERT_EQ(outcomes.refused().size(), 1u);
  EXPECT_THAT(outcomes.refused()[0], StatusIs(absl::StatusCode::kCancelled, "cancelled_by_caller"));
  // The next window's one slot is still there for a new call.
  clock_.Advance(absl::Milliseconds(500));
  admission.Admit("acme", TenantLimits{}, CallClass::kAnswer, Far(), outcomes.For("acme"));
  ASSERT_TRUE(Settled(outcomes, 3));
  EXPECT_EQ(outcomes.admitted().size(), 2u);
}

// A call cancelled while its concurrency slot is being acquired gets the slot back at once when
// the store answers, whatever the budget then says: before, the slot was recorded on the ended
// admission, and when the budget refused (or queued) it nobody released it, so the tenant lost
// the slot until its lease expired (6 minutes in Redis, on every replica).
TEST_F(AdmissionControllerTest, ASlotAcquiredAfterTheCallWasCancelledIsReleasedAtOnce) {
  DeferredStore deferred(store_, DeferredStore::kRate | DeferredStore::kSlot);
  // One answer a minute upstream, and no waiting for the next.
  AdmissionController admission(deferred, clock_, Budget(1, absl::Minutes(1), absl::Seconds(0)));
  TenantLimits limits;
  limits.max_concurrent_answers = 1;
  Outcomes outcomes;
  // Another tenant, with no concurrency limit, spends the minute's budget.
  admission.Admit("other", TenantLimits{}, CallClass::kAnswer, Far(), outcomes.For("other"));
  ASSERT_TRUE(outcomes.WaitFor(1));
  ASSERT_EQ(outcomes.admitted().size(), 1u);
  std::shared_ptr<AdmissionTicket> cancelled =
      admission.Admit("acme", limits, CallClass::kAnswer, Far(), outcomes.For("acme"));
  cancelled->Cancel();
  ASSERT_TRUE(outcomes.WaitFor(2));
  EXPECT_THAT(outcomes.refused().at(0),
              StatusIs(absl::StatusCode::kCancelled, "cancelled_by_caller"));
  deferred.RunPending();  // The slot is granted now, to a call that has ended.
  ASSERT_TRUE(Settled(outcomes, 2));
  // acme's one slot is free: the store grants it to the next taker.
  std::optional<absl::StatusOr<SlotResult>> slot;
  store_.AcquireSlot("tenant:acme:answer", 1, absl::Minutes(6),
                     [&slot](absl::StatusOr<SlotResult> result) { slot = std::move(result); });
  ASSERT_TRUE(slot.has_value());
  ASSERT_TRUE(slot->ok()) << slot->status();
  EXPECT_TRUE((*slot)->acquired);
}

// Nor does a call cancelled while the store decides its rate spend the upstream budget: the steps
// after the store's answer are not taken for a call that has ended.
TEST_F(AdmissionControllerTest, ACallCancelledWhileItsRateIsDecidedTakesNoBudget) {
  DeferredStore deferred(store_, DeferredStore::kRate | DeferredStore::kSlot);
  AdmissionController admission(deferred, clock_, Budget(1, absl::Minutes(1), absl::Seconds(0)));
  TenantLimits limits;
  limits.answer_rate = RateLimit{.per_second = 100, .burst = 10};
  Outcomes outcomes;
  admission.Admit("acme", limits, CallClass::kAnswer, Far(), outcomes.For("acme"))->Cancel();
  ASSERT_TRUE(outcomes.WaitFor(1));
  deferred.RunPending();
  ASSERT_TRUE(Settled(outcomes, 1));
  // The minute's one answer is still there.
  admission.Admit("other", TenantLimits{}, CallClass::kAnswer, Far(), outcomes.For("other"));
  ASSERT_TRUE(outcomes.WaitFor(2));
  EXPECT_EQ(outcomes.admitted(), std::vector<std::string>{"other"});
}

// A shared store that cannot be reached (Redis down).
// Counts decisions by (limit, decision).
class CountingEvents final : public AdmissionEvents {
 public:
  void Decided(const std::string&, absl::string_view limit, absl::string_view decision) override {
    absl::MutexLock lock(&mu_);
    ++counts_[absl::StrCat(limit, "/", decision)];
  }
  void Waited(CallClass, absl::Duration) override {}
  void InFlight(CallClass, int) override {}
  int Count(const std::string& key) {
    absl::MutexLock lock(&mu_);
    return counts_[key];
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, int> counts_ ABSL_GUARDED_BY(mu_);
};

TEST_F(AdmissionControllerTest, UnreachableSharedStoreFailsClosedWithoutAFallback) {
  UnreachableStore redis;
  AdmissionController admission(redis, clock_, Budget(10, absl::Seconds(1), absl::Seconds(1)));
  Outcomes outcomes;
  admission.Admit("acme", TenantLimits{}, CallClass::kAnswer, Far(), outcomes.For("acme"));
  ASSERT_TRUE(outcomes.WaitFor(1));
  ASSERT_EQ(outcomes.refused().size(), 1u);
  EXPECT_THAT(outcomes.refused()[0],
              StatusIs(absl::StatusCode::kUnavailable, "limit_store_unavailable"));
  EXPECT_EQ(GetErrorInfo(outcomes.refused()[0])->metadata().at("limit"), "upstream_budget");
  // The store's own text (an address, a socket error) is for the log, not the caller.
  EXPECT_THAT(std::string(outcomes.refused()[0].message()), Not(HasSubstr("connection refused")));
  EXPECT_EQ(GetInternalDetail(outcomes.refused()[0]), "redis: connection refused");
}

TEST_F(AdmissionControllerTest, UnreachableSharedStoreFailsOpenToThisReplicasShare) {
  UnreachableStore redis;
  CountingEvents events;
  // Three replicas: each may admit a third of every limit alone.
  AdmissionController admission(redis, clock_, Budget(9, absl::Seconds(10), absl::Seconds(0)),
                                &events, &store_, 1.0 / 3);
  TenantLimits limits;
  limits.answer_rate = RateLimit{.per_second = 0.1, .burst = 6};  // A third: burst 2.
  limits.max_concurrent_answers = 30;                             // A third: 10.
  Outcomes outcomes;
  for (int i = 0; i < 5; ++i) {
    admission.Admit("acme", limits, CallClass::kAnswer, Far(), outcomes.For("acme"));
  }
  ASSERT_TRUE(outcomes.WaitFor(5));
  EXPECT_EQ(outcomes.admitted().size(), 2u);  // The tenant's burst, shared.
  EXPECT_EQ(events.Count("tenant_rate/degraded"), 2);
  EXPECT_EQ(events.Count("tenant_concurrency/degraded"), 2);
  EXPECT_EQ(events.Count("upstream_budget/degraded"), 2);
  EXPECT_EQ(events.Count("tenant_rate/limited"), 3);
  // The budget's share: 3 of 9 in the window.
  Outcomes other;
  for (int i = 0; i < 5; ++i) {
    admission.Admit("b", TenantLimits{}, CallClass::kAnswer, Far(), other.For("b"));
  }
  ASSERT_TRUE(other.WaitFor(5));
  EXPECT_EQ(other.admitted().size(), 1u);  // 2 of the 3 went to acme.
}

}  // namespace
}  // namespace copilot::gateway
