// TenantWaiterAdmission: a request_id retry waiting for its first attempt counts against its
// tenant's own limits (issue #13, item 2: 20 concurrent Runs sharing one request_id were all
// accepted by a tenant capped at one answer in flight and one a minute), and never against the
// upstream budget, which the first attempt already took.
#include "server/limits/tenant_waiter_admission.h"

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "server/common/errors.h"
#include "server/limits/local_limit_store.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/status_matchers.h"

namespace copilot::gateway {
namespace {

using ::copilot::gateway::testing::FakeClock;
using ::copilot::gateway::testing::StatusIs;

// One waiter's admission: the lease it holds, or why it was refused.
class Waiter {
 public:
  WaiterAdmission::Done Callback() {
    return [this](absl::StatusOr<std::unique_ptr<AdmissionLease>> result) {
      absl::MutexLock lock(&mu_);
      result_ = std::move(result);
    };
  }
  // The decision (within 10 s of real time: the controller may decide on another thread).
  absl::StatusOr<std::unique_ptr<AdmissionLease>>& Await() {
    absl::MutexLock lock(&mu_);
    auto decided = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return result_.has_value(); };
    EXPECT_TRUE(mu_.AwaitWithTimeout(absl::Condition(&decided), absl::Seconds(10)));
    if (!result_.has_value()) result_ = absl::DeadlineExceededError("not decided");
    return *result_;
  }

 private:
  absl::Mutex mu_;
  std::optional<absl::StatusOr<std::unique_ptr<AdmissionLease>>> result_ ABSL_GUARDED_BY(mu_);
};

class TenantWaiterAdmissionTest : public ::testing::Test {
 protected:
  TenantWaiterAdmissionTest() {
    // An upstream budget of one answer and one other call a minute, which a first attempt uses.
    BudgetConfig budget;
    budget.answer = {{1, absl::Minutes(1)}};
    budget.other = {{1, absl::Minutes(1)}};
    budget.max_wait = absl::ZeroDuration();
    admission_ = std::make_unique<AdmissionController>(store_, clock_, budget);
    waiters_ = std::make_unique<TenantWaiterAdmission>(*admission_);
    tenant_.id = "acme";
  }
  absl::Time Far() { return clock_.Now() + absl::Minutes(1); }

  FakeClock clock_;
  LocalLimitStore store_{clock_};
  std::unique_ptr<AdmissionController> admission_;
  std::unique_ptr<TenantWaiterAdmission> waiters_;
  Tenant tenant_;
};

TEST_F(TenantWaiterAdmissionTest, AWaiterTakesTheTenantsRateForItsClass) {
  tenant_.limits.answer_rate = RateLimit{.per_second = 1.0 / 60, .burst = 1};  // One a minute.
  Waiter first;
  Waiter second;
  Waiter other;
  waiters_->Admit(tenant_, /*answer=*/true, Far(), first.Callback());
  waiters_->Admit(tenant_, /*answer=*/true, Far(), second.Callback());
  waiters_->Admit(tenant_, /*answer=*/false, Far(), other.Callback());
  EXPECT_TRUE(first.Await().ok()) << first.Await().status();
  EXPECT_THAT(second.Await().status(),
              StatusIs(absl::StatusCode::kResourceExhausted, "tenant_rate_exceeded"));
  EXPECT_TRUE(GetRetryInfo(second.Await().status()).has_value());
  EXPECT_TRUE(other.Await().ok()) << other.Await().status();  // Its own class's rate: none.
}

TEST_F(TenantWaiterAdmissionTest, AnAnswerWaiterHoldsAConcurrencySlotUntilItsLeaseGoes) {
  tenant_.limits.max_concurrent_answers = 1;
  Waiter first;
  waiters_->Admit(tenant_, /*answer=*/true, Far(), first.Callback());
  ASSERT_TRUE(first.Await().ok()) << first.Await().status();
  Waiter second;
  waiters_->Admit(tenant_, /*answer=*/true, Far(), second.Callback());
  EXPECT_THAT(second.Await().status(),
              StatusIs(absl::StatusCode::kResourceExhausted, "tenant_concurrency_exceeded"));
  // Other calls hold no answer slot.
  Waiter other;
  waiters_->Admit(tenant_, /*answer=*/false, Far(), other.Callback());
  EXPECT_TRUE(other.Await().ok()) << other.Await().status();
  // The first wait ends (its result arrived): the slot is free again.
  first.Await()->reset();
  Waiter third;
  waiters_->Admit(tenant_, /*answer=*/true, Far(), third.Callback());
  EXPECT_TRUE(third.Await().ok()) << third.Await().status();
}

TEST_F(TenantWaiterAdmissionTest, AWaiterNeverTakesTheUpstreamBudget) {
  // A first attempt takes the minute's one answer of the upstream budget.
  auto permit = std::make_shared<std::optional<absl::StatusOr<std::unique_ptr<Permit>>>>();
  admission_->Admit(
      "acme", tenant_.limits, CallClass::kAnswer, Far(),
      [permit](absl::StatusOr<std::unique_ptr<Permit>> result) { *permit = std::move(result); });
  // Any number of its retries still wait for it: the budget is not theirs to take.
  Waiter waiters[5];
  for (Waiter& waiter : waiters)
    waiters_->Admit(tenant_, /*answer=*/true, Far(), waiter.Callback());
  for (Waiter& waiter : waiters) EXPECT_TRUE(waiter.Await().ok()) << waiter.Await().status();
  // While a new call is refused by the budget.
  auto second = std::make_shared<std::optional<absl::StatusOr<std::unique_ptr<Permit>>>>();
  admission_->Admit(
      "acme", tenant_.limits, CallClass::kAnswer, Far(),
      [second](absl::StatusOr<std::unique_ptr<Permit>> result) { *second = std::move(result); });
  ASSERT_TRUE(permit->has_value());
  EXPECT_TRUE(permit->value().ok()) << permit->value().status();
  ASSERT_TRUE(second->has_value());
  EXPECT_THAT(second->value().status(),
              StatusIs(absl::StatusCode::kResourceExhausted, "upstream_budget_exceeded"));
}

TEST_F(TenantWaiterAdmissionTest, CancellingAPendingDecisionEndsItOnce) {
  // A store that never answers keeps the decision pending until it is cancelled.
  class SilentStore final : public LimitStore {
   public:
    void TakeRate(const std::string&, const RateLimit&, StoreCallback<StepResult> done) override {
      pending_ = std::move(done);
    }
    void TakeWindows(const std::string&, const std::vector<WindowLimit>&,
                     StoreCallback<StepResult>) override {}
    void AcquireSlot(const std::string&, int64_t, absl::Duration,
                     StoreCallback<SlotResult>) override {}
    void ReleaseSlot(const std::string&, const std::string&) override {}
    void AddToCounters(const std::string&, const std::vector<CounterStep>&,
                       StoreCallback<CounterResult>) override {}
    StoreCallback<StepResult> pending_;
  };
  SilentStore silent;
  AdmissionController admission(silent, clock_, BudgetConfig{});
  TenantWaiterAdmission waiters(admission);
  tenant_.limits.answer_rate = RateLimit{.per_second = 1, .burst = 1};
  Waiter waiter;
  std::shared_ptr<UpstreamCall> call =
      waiters.Admit(tenant_, /*answer=*/true, Far(), waiter.Callback());
  call->Cancel();
  EXPECT_EQ(waiter.Await().status().code(), absl::StatusCode::kCancelled);
  // The store answering late changes nothing.
  if (silent.pending_) std::move(silent.pending_)(StepResult{.allowed = true});
}

}  // namespace
}  // namespace copilot::gateway
