// AdmissionController over the in-process store, in real time with short windows: the tenant's
// rate and concurrency limits (RESOURCE_EXHAUSTED + QuotaFailure + RetryInfo), waiting for the
// upstream budget within max_wait and the deadline, weighted fairness between waiting tenants,
// the hold after an upstream 429, and cancellation.
#include "server/limits/admission_controller.h"

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "server/common/errors.h"
#include "server/limits/local_limit_store.h"
#include "tests/server/limits/unreachable_store.h"
#include "tests/testing/first_wake.h"

namespace copilot::gateway {
namespace {

using ::copilot::gateway::testing::UnreachableStore;

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

absl::Time Far() { return absl::Now() + absl::Minutes(1); }

class AdmissionControllerTest : public ::testing::Test {
 protected:
  SystemClock clock_;
  LocalLimitStore store_{clock_};
};

TEST_F(AdmissionControllerTest, TenantRateRefusalNamesTheLimitAndWhenToRetry) {
  AdmissionController admission(store_, clock_, Budget(0, absl::Seconds(1), absl::Seconds(1)));
  TenantLimits limits;
  limits.answer_rate = RateLimit{.per_second = 2, .burst = 1};
  Outcomes outcomes;
  admission.Admit("acme", limits, CallClass::kAnswer, Far(), outcomes.For("acme"));
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
  const double delay = retry->retry_delay().seconds() + retry->retry_delay().nanos() / 1e9;
  EXPECT_GT(delay, 0.4);
  EXPECT_LE(delay, 0.5);
  EXPECT_EQ(GetErrorInfo(refused)->reason(), "tenant_rate_exceeded");
  // The other class has its own limit (none here).
  admission.Admit("acme", limits, CallClass::kOther, Far(), outcomes.For("acme"));
  ASSERT_TRUE(outcomes.WaitFor(3));
  EXPECT_EQ(outcomes.admitted().size(), 2u);
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
  const absl::Time start = absl::Now();
  for (int i = 0; i < 6; ++i) {
    admission.Admit("acme", TenantLimits{}, CallClass::kAnswer, Far(), outcomes.For("acme"));
  }
  ASSERT_TRUE(outcomes.WaitFor(6));
  EXPECT_EQ(outcomes.admitted().size(), 6u);
  // Two per 300 ms window: the last two go in the third window.
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(600));
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
}

TEST_F(AdmissionControllerTest, ACallThatCannotWaitIsRefusedWithRetryInfo) {
  AdmissionController admission(store_, clock_, Budget(1, absl::Seconds(2), absl::Seconds(5)));
  Outcomes outcomes;
  admission.Admit("acme", TenantLimits{}, CallClass::kAnswer, Far(), outcomes.For("acme"));
  // Its deadline comes before the budget has room.
  admission.Admit("acme", TenantLimits{}, CallClass::kAnswer, absl::Now() + absl::Milliseconds(200),
                  outcomes.For("acme"));
  ASSERT_TRUE(outcomes.WaitFor(2));
  ASSERT_EQ(outcomes.refused().size(), 1u);
  const absl::Status refused = outcomes.refused()[0];
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(GetQuotaFailure(refused)->violations(0).subject(), "upstream");
  auto retry = GetRetryInfo(refused);
  ASSERT_TRUE(retry.has_value());
  EXPECT_GE(retry->retry_delay().seconds(), 1);  // About 2 s minus the time already passed.
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
  ASSERT_TRUE(outcomes.WaitFor(70, absl::Seconds(20)));
  const std::vector<std::string> order = outcomes.admitted();
  ASSERT_EQ(order.size(), 70u);
  // B does not wait for A's backlog: its 10 calls are among the first 30 admitted (A's first
  // window of 5 went before B arrived; then the two alternate).
  int b_in_first_30 = 0;
  for (std::size_t i = 0; i < 30; ++i) b_in_first_30 += order[i] == "b";
  EXPECT_EQ(b_in_first_30, 10);
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
  ASSERT_TRUE(outcomes.WaitFor(80, absl::Seconds(20)));
  const std::vector<std::string> order = outcomes.admitted();
  int heavy_in_first_40 = 0;
  for (std::size_t i = 0; i < 40; ++i) heavy_in_first_40 += order[i] == "heavy";
  EXPECT_GE(heavy_in_first_40, 28);  // 3:1 is 30 of 40.
  EXPECT_LE(heavy_in_first_40, 32);
}

TEST_F(AdmissionControllerTest, An429HoldsTheBudgetUntilRetryAfter) {
  AdmissionController admission(store_, clock_, Budget(100, absl::Seconds(1), absl::Seconds(5)));
  // Measured from before the hold: the held call may not go before it ends, however slowly this
  // thread gets from here to Admit (under TSan the scheduler thread's first wake-up alone can
  // take longer than the hold, so a clock started after it saw the call "admitted at once").
  const absl::Time held_from = absl::Now();
  admission.HoldBudget(CallClass::kAnswer, absl::Milliseconds(400));
  Outcomes outcomes;
  admission.Admit("acme", TenantLimits{}, CallClass::kAnswer, Far(), outcomes.For("acme"));
  const absl::Time other_start = absl::Now();
  admission.Admit("acme", TenantLimits{}, CallClass::kOther, Far(), outcomes.For("acme"));
  ASSERT_TRUE(outcomes.WaitFor(1));
  // The other class is not held.
  EXPECT_LT(absl::Now() - other_start, absl::Milliseconds(300));
  ASSERT_TRUE(outcomes.WaitFor(2));
  EXPECT_GE(absl::Now() - held_from, absl::Milliseconds(390));
  EXPECT_EQ(outcomes.admitted().size(), 2u);
}

TEST_F(AdmissionControllerTest, CancelWhileWaitingEndsTheCallAndTakesNoBudget) {
  AdmissionController admission(store_, clock_,
                                Budget(1, absl::Milliseconds(500), absl::Seconds(5)));
  Outcomes outcomes;
  admission.Admit("acme", TenantLimits{}, CallClass::kAnswer, Far(), outcomes.For("acme"));
  std::shared_ptr<AdmissionTicket> waiting =
      admission.Admit("acme", TenantLimits{}, CallClass::kAnswer, Far(), outcomes.For("acme"));
  waiting->Cancel();
  ASSERT_TRUE(outcomes.WaitFor(2));
  ASSERT_EQ(outcomes.refused().size(), 1u);
  EXPECT_EQ(outcomes.refused()[0].code(), absl::StatusCode::kCancelled);
  // The next window's one slot is still there for a new call.
  std::this_thread::sleep_for(std::chrono::milliseconds(550));
  admission.Admit("acme", TenantLimits{}, CallClass::kAnswer, Far(), outcomes.For("acme"));
  ASSERT_TRUE(outcomes.WaitFor(3));
  EXPECT_EQ(outcomes.admitted().size(), 2u);
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
  EXPECT_EQ(outcomes.refused()[0].code(), absl::StatusCode::kUnavailable);
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
