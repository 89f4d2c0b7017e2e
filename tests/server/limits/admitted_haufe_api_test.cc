// AdmittedHaufeApi over a FakeHaufeApi and a real AdmissionController on a LocalLimitStore, with
// a FakeClock: admission decides inline, so most tests are single-threaded.
#include "server/limits/admitted_haufe_api.h"

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/common/errors.h"
#include "server/limits/admission_controller.h"
#include "server/limits/local_limit_store.h"
#include "server/upstream/http_status_table.h"
#include "tests/server/core/fake_haufe_api.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/recorders.h"
#include "tests/testing/status_matchers.h"

namespace copilot::gateway {
namespace {

namespace v1 = ::copilot::v1;
using ::copilot::gateway::testing::FakeClock;
using ::copilot::gateway::testing::FakeHaufeApi;
using ::copilot::gateway::testing::FakeUpstreamCall;
using ::copilot::gateway::testing::RecordingSink;
using ::copilot::gateway::testing::Result;
using ::copilot::gateway::testing::StatusIs;

constexpr char kTenant[] = "acme";
constexpr char kApiKey[] = "upstream-key-a";

// The RetryInfo delay of `status`, or nullopt without one.
std::optional<absl::Duration> RetryDelay(const absl::Status& status) {
  std::optional<google::rpc::RetryInfo> retry = GetRetryInfo(status);
  if (!retry.has_value()) return std::nullopt;
  return absl::Seconds(retry->retry_delay().seconds()) +
         absl::Nanoseconds(retry->retry_delay().nanos());
}

// What the upstream answers when it rate-limits a call: 429 with Retry-After.
absl::Status Upstream429(absl::string_view retry_after, absl::Time now) {
  return StatusFromHttpError(429, R"({"message":"Rate limit exceeded!"})", retry_after, now);
}

BudgetConfig NoBudget() {
  BudgetConfig budget;
  budget.answer = {};  // No upstream windows: only the tenant's limits and 429 holds apply.
  budget.other = {};
  return budget;
}

class AdmittedHaufeApiTest : public ::testing::Test {
 protected:
  // Options of a call for kTenant with `limits_`, using `api_key`, that may wait for admission
  // until `deadline` (default: 30 s from now).
  UpstreamCallOptions Options(std::optional<absl::Time> deadline = std::nullopt,
                              std::string api_key = kApiKey) {
    UpstreamCallOptions options;
    options.tenant_id = kTenant;
    options.limits = limits_;
    options.api_key = std::move(api_key);
    options.deadline = deadline.value_or(clock_.Now() + absl::Seconds(30));
    return options;
  }
  // Starts a Run; its upstream call (when it got one) is upstream_.WaitForCall(index).
  std::shared_ptr<UpstreamCall> StartRun(Result<v1::Message>& result,
                                         std::optional<absl::Time> deadline = std::nullopt) {
    return api_.Run(Options(deadline), {.thread_id = "t1", .tools = {}}, result.Callback());
  }
  std::shared_ptr<FakeUpstreamCall> Call(int index) {
    return upstream_.WaitForCall(index, absl::ZeroDuration());
  }

  TenantLimits limits_;
  FakeClock clock_;
  LocalLimitStore store_{clock_};
  AdmissionController admission_{store_, clock_, NoBudget()};
  FakeHaufeApi upstream_;
  AdmittedHaufeApi api_{upstream_, admission_, /*max_retry_after=*/absl::Seconds(30)};
};

TEST_F(AdmittedHaufeApiTest, AnAdmittedCallPassesThroughUnchanged) {
  Result<v1::Thread> result;
  UpstreamCallOptions options = Options();
  options.request_id = "req-1";
  api_.GetThread(options, "t1", result.Callback());
  ASSERT_EQ(upstream_.call_count(), 1);
  std::shared_ptr<FakeUpstreamCall> call = Call(0);
  EXPECT_EQ(call->method, "GetThread");
  EXPECT_EQ(call->id, "t1");
  EXPECT_EQ(call->options.request_id, "req-1");
  EXPECT_EQ(call->options.api_key, kApiKey);
  EXPECT_FALSE(result.value.has_value());
  v1::Thread thread;
  thread.set_id("t1");
  call->FinishThread(thread);
  ASSERT_TRUE(result.value.has_value());
  ASSERT_TRUE(result.value->ok()) << result.value->status();
  EXPECT_EQ((*result.value)->id(), "t1");
}

TEST_F(AdmittedHaufeApiTest, ARefusedAdmissionNeverReachesTheUpstream) {
  limits_.other_rate = {.per_second = 1, .burst = 1};
  Result<v1::Thread> first, second;
  api_.GetThread(Options(), "t1", first.Callback());
  api_.GetThread(Options(), "t2", second.Callback());
  EXPECT_EQ(upstream_.call_count(), 1);
  ASSERT_TRUE(second.value.has_value());
  EXPECT_THAT(*second.value,
              StatusIs(absl::StatusCode::kResourceExhausted, "tenant_rate_exceeded"));
  EXPECT_TRUE(RetryDelay(second.value->status()).has_value());
  // Answer calls have a rate of their own.
  Result<v1::Message> run;
  StartRun(run);
  EXPECT_EQ(upstream_.call_count(), 2);
}

// An open circuit refuses calls below without sending them: they must not spend the upstream
// budget, or the first calls after the upstream came back would find it spent.
TEST_F(AdmittedHaufeApiTest, CallsTheUpstreamPathRefusesSpendNoUpstreamBudget) {
  BudgetConfig budget;
  budget.answer = {{1, absl::Seconds(60)}};  // One answer a minute.
  budget.other = {};
  budget.max_wait = absl::ZeroDuration();
  AdmissionController admission(store_, clock_, budget);
  bool refusing = true;
  AdmittedHaufeApi api(upstream_, admission, absl::Seconds(30), [&refusing] { return refusing; });
  limits_.answer_rate = {.per_second = 100, .burst = 100};
  // While refusing: every call passes to the upstream path (which refuses it: circuit open).
  for (int i = 0; i < 5; ++i) {
    Result<v1::Message> result;
    api.Run(Options(), {.thread_id = "t1", .tools = {}}, result.Callback());
    ASSERT_EQ(upstream_.call_count(), i + 1);
    Call(i)->Fail(
        MakeError(absl::StatusCode::kUnavailable, "circuit open", "upstream_circuit_open"));
    ASSERT_TRUE(result.value.has_value());
    EXPECT_THAT(*result.value, StatusIs(absl::StatusCode::kUnavailable, "upstream_circuit_open"));
  }
  // The upstream is back: the budget's one answer of this minute is still there, then spent.
  refusing = false;
  Result<v1::Message> first, second;
  api.Run(Options(), {.thread_id = "t1", .tools = {}}, first.Callback());
  ASSERT_EQ(upstream_.call_count(), 6);
  EXPECT_FALSE(first.value.has_value());
  api.Run(Options(), {.thread_id = "t1", .tools = {}}, second.Callback());
  EXPECT_EQ(upstream_.call_count(), 6);
  ASSERT_TRUE(second.value.has_value());
  EXPECT_THAT(*second.value,
              StatusIs(absl::StatusCode::kResourceExhausted, "upstream_budget_exceeded"));
  // The tenant's own limits still count the refused calls: its answer slot is held while one runs.
  limits_.max_concurrent_answers = 1;
  refusing = true;
  Result<v1::Message> held, over;
  api.Run(Options(), {.thread_id = "t1", .tools = {}}, held.Callback());
  api.Run(Options(), {.thread_id = "t1", .tools = {}}, over.Callback());
  ASSERT_EQ(upstream_.call_count(), 7);
  ASSERT_TRUE(over.value.has_value());
  EXPECT_THAT(*over.value,
              StatusIs(absl::StatusCode::kResourceExhausted, "tenant_concurrency_exceeded"));
  // The calls in flight end before `admission`, whose permits they hold.
  Call(5)->FinishMessage(v1::Message());
  Call(6)->Fail(MakeError(absl::StatusCode::kUnavailable, "circuit open", "upstream_circuit_open"));
  EXPECT_TRUE(first.value.has_value());
  EXPECT_TRUE(held.value.has_value());
}

TEST_F(AdmittedHaufeApiTest, ThePermitIsHeldUntilTheUpstreamCallCompletes) {
  limits_.max_concurrent_answers = 1;
  Result<v1::Message> first, second, third;
  StartRun(first);
  ASSERT_EQ(upstream_.call_count(), 1);
  StartRun(second);  // The first still runs: its slot is taken.
  EXPECT_EQ(upstream_.call_count(), 1);
  ASSERT_TRUE(second.value.has_value());
  EXPECT_THAT(*second.value,
              StatusIs(absl::StatusCode::kResourceExhausted, "tenant_concurrency_exceeded"));
  // Other calls are not answer generations: not bound by the slot.
  Result<v1::Thread> thread;
  api_.GetThread(Options(), "t1", thread.Callback());
  EXPECT_EQ(upstream_.call_count(), 2);

  v1::Message answer;
  answer.set_id("m1");
  Call(0)->FinishMessage(answer);
  ASSERT_TRUE(first.value.has_value());
  ASSERT_TRUE(first.value->ok()) << first.value->status();
  EXPECT_EQ((*first.value)->id(), "m1");
  StartRun(third);  // The slot is free again.
  EXPECT_EQ(upstream_.call_count(), 3);
  EXPECT_FALSE(third.value.has_value());
}

TEST_F(AdmittedHaufeApiTest, ThePermitIsReleasedWhenTheUpstreamFails) {
  limits_.max_concurrent_answers = 1;
  Result<v1::Message> first, second;
  StartRun(first);
  Call(0)->Fail(
      MakeError(absl::StatusCode::kUnavailable, "connect failed", "upstream_unreachable"));
  ASSERT_TRUE(first.value.has_value());
  EXPECT_THAT(*first.value, StatusIs(absl::StatusCode::kUnavailable, "upstream_unreachable"));
  StartRun(second);
  EXPECT_EQ(upstream_.call_count(), 2);
  EXPECT_FALSE(second.value.has_value());
}

TEST_F(AdmittedHaufeApiTest, CancelReachesTheUpstreamCallAndReleasesThePermit) {
  limits_.max_concurrent_answers = 1;
  Result<v1::Message> first, second;
  std::shared_ptr<UpstreamCall> call = StartRun(first);
  call->Cancel();
  EXPECT_EQ(Call(0)->cancels.load(), 1);
  ASSERT_TRUE(first.value.has_value());
  EXPECT_THAT(*first.value, StatusIs(absl::StatusCode::kCancelled));
  StartRun(second);
  EXPECT_EQ(upstream_.call_count(), 2);
}

TEST_F(AdmittedHaufeApiTest, ResumeReachesTheUpstreamCall) {
  Result<v1::Message> result;
  std::shared_ptr<UpstreamCall> call = StartRun(result);
  call->Resume();
  EXPECT_EQ(Call(0)->resumes.load(), 1);
}

TEST_F(AdmittedHaufeApiTest, Upstream429HoldsTheBudgetForItsRetryAfter) {
  Result<v1::Message> limited, refused, other_key, later;
  StartRun(limited);
  Call(0)->Fail(Upstream429("5", clock_.Now()));
  ASSERT_TRUE(limited.value.has_value());
  EXPECT_THAT(*limited.value, StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(RetryDelay(limited.value->status()), absl::Seconds(5));  // Under the cap: as sent.

  // The next answer call with the same key may not wait past now: refused, never sent.
  StartRun(refused, /*deadline=*/clock_.Now());
  EXPECT_EQ(upstream_.call_count(), 1);
  ASSERT_TRUE(refused.value.has_value());
  EXPECT_THAT(*refused.value,
              StatusIs(absl::StatusCode::kResourceExhausted, "upstream_budget_exceeded"));
  EXPECT_EQ(RetryDelay(refused.value->status()), absl::Seconds(5));
  // A tenant with an upstream key of its own is not held.
  api_.Run(Options(clock_.Now(), "upstream-key-b"), {.thread_id = "t1", .tools = {}},
           other_key.Callback());
  EXPECT_EQ(upstream_.call_count(), 2);

  clock_.Advance(absl::Seconds(5));
  StartRun(later, clock_.Now());
  EXPECT_EQ(upstream_.call_count(), 3);
  EXPECT_FALSE(later.value.has_value());
}

// The decorator remembers the key IDs of at most 256 keys, then starts over: a hold on a key
// still holds its calls, and only its calls, after 300 other keys were seen.
TEST_F(AdmittedHaufeApiTest, AHoldFollowsItsKeyPastTheKeysRemembered) {
  admission_.HoldBudget(CallClass::kAnswer, absl::Seconds(5), UpstreamKeyId(kApiKey));
  Result<v1::Message> before, after;
  StartRun(before, /*deadline=*/clock_.Now());
  ASSERT_TRUE(before.value.has_value());
  EXPECT_THAT(*before.value, StatusIs(absl::StatusCode::kResourceExhausted));
  std::vector<Result<v1::Message>> others(300);
  for (int i = 0; i < 300; ++i) {
    api_.Run(Options(clock_.Now(), absl::StrCat("upstream-key-", i)),
             {.thread_id = "t1", .tools = {}}, others[i].Callback());
  }
  EXPECT_EQ(upstream_.call_count(), 300);
  StartRun(after, /*deadline=*/clock_.Now());
  ASSERT_TRUE(after.value.has_value());
  EXPECT_THAT(*after.value,
              StatusIs(absl::StatusCode::kResourceExhausted, "upstream_budget_exceeded"));
  EXPECT_EQ(upstream_.call_count(), 300);
}

TEST_F(AdmittedHaufeApiTest, AHeldCallWaitsAndGoesWhenTheHoldEnds) {
  Result<v1::Message> limited, waiting;
  StartRun(limited);
  Call(0)->Fail(Upstream429("5", clock_.Now()));
  StartRun(waiting);  // May wait up to max_wait (10 s).
  EXPECT_EQ(upstream_.call_count(), 1);
  EXPECT_FALSE(waiting.value.has_value());
  clock_.Advance(absl::Seconds(5));
  // The controller's scheduler sees the hold end within a second of real time.
  ASSERT_NE(upstream_.WaitForCall(1, absl::Seconds(10)), nullptr);
  EXPECT_EQ(upstream_.WaitForCall(1)->method, "Run");
}

TEST_F(AdmittedHaufeApiTest, CancelWhileWaitingForAdmissionNeverReachesTheUpstream) {
  admission_.HoldBudget(CallClass::kAnswer, absl::Seconds(5), UpstreamKeyId(kApiKey));
  Result<v1::Message> waiting;
  std::shared_ptr<UpstreamCall> call = StartRun(waiting);
  EXPECT_FALSE(waiting.value.has_value());
  call->Cancel();
  ASSERT_TRUE(waiting.value.has_value());
  EXPECT_THAT(*waiting.value, StatusIs(absl::StatusCode::kCancelled));
  clock_.Advance(absl::Seconds(5));
  EXPECT_EQ(upstream_.WaitForCall(0, absl::Milliseconds(1500)), nullptr);
}

TEST_F(AdmittedHaufeApiTest, Upstream429RetryAfterIsCappedAtMaxRetryAfter) {
  // As the gateway wires them: the controller's cap on holds is the decorator's.
  BudgetConfig budget = NoBudget();
  budget.max_retry_after = absl::Seconds(2);
  AdmissionController admission(store_, clock_, budget);
  AdmittedHaufeApi capped(upstream_, admission, /*max_retry_after=*/absl::Seconds(2));
  Result<v1::Message> limited, refused, later;
  capped.Run(Options(), {.thread_id = "t1", .tools = {}}, limited.Callback());
  Call(0)->Fail(Upstream429("5", clock_.Now()));
  ASSERT_TRUE(limited.value.has_value());
  EXPECT_THAT(*limited.value, StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(RetryDelay(limited.value->status()), absl::Seconds(2));  // Not the 5 s asked.

  // The budget is held for the capped time, not the 5 s asked.
  capped.Run(Options(clock_.Now()), {.thread_id = "t1", .tools = {}}, refused.Callback());
  ASSERT_TRUE(refused.value.has_value());
  EXPECT_THAT(*refused.value,
              StatusIs(absl::StatusCode::kResourceExhausted, "upstream_budget_exceeded"));
  EXPECT_EQ(RetryDelay(refused.value->status()), absl::Seconds(2));
  EXPECT_EQ(upstream_.call_count(), 1);
  clock_.Advance(absl::Seconds(2));
  capped.Run(Options(clock_.Now()), {.thread_id = "t1", .tools = {}}, later.Callback());
  EXPECT_EQ(upstream_.call_count(), 2);
  EXPECT_FALSE(later.value.has_value());
}

TEST_F(AdmittedHaufeApiTest, AStreamHoldsThePermitUntilOnDone) {
  limits_.max_concurrent_answers = 1;
  auto sink = std::make_shared<RecordingSink>();
  api_.StreamRun(Options(), {.thread_id = "t1", .tools = {}}, sink);
  ASSERT_EQ(upstream_.call_count(), 1);
  std::shared_ptr<FakeUpstreamCall> stream = Call(0);
  EXPECT_EQ(stream->method, "StreamRun");
  v1::MessageChunk chunk;
  chunk.set_message_id("m1");
  EXPECT_TRUE(stream->Chunk(chunk));
  ASSERT_EQ(sink->chunks.size(), 1u);
  EXPECT_EQ(sink->chunks[0].message_id(), "m1");

  // While it streams, another answer is refused and never sent.
  auto refused = std::make_shared<RecordingSink>();
  api_.StreamRun(Options(), {.thread_id = "t2", .tools = {}}, refused);
  EXPECT_EQ(upstream_.call_count(), 1);
  ASSERT_TRUE(refused->done.has_value());
  EXPECT_THAT(*refused->done,
              StatusIs(absl::StatusCode::kResourceExhausted, "tenant_concurrency_exceeded"));
  EXPECT_TRUE(refused->chunks.empty());

  stream->EndStream(absl::OkStatus());
  ASSERT_TRUE(sink->done.has_value());
  EXPECT_TRUE(sink->done->ok()) << *sink->done;
  auto next = std::make_shared<RecordingSink>();
  CompletionParams completion;
  completion.assistant_id = "a1";
  api_.StreamComplete(Options(), completion, next);
  EXPECT_EQ(upstream_.call_count(), 2);
  EXPECT_EQ(Call(1)->method, "StreamComplete");
  EXPECT_FALSE(next->done.has_value());
}

TEST_F(AdmittedHaufeApiTest, AStreamEndingIn429HoldsTheBudgetAndReleasesThePermit) {
  limits_.max_concurrent_answers = 1;
  BudgetConfig budget = NoBudget();
  budget.max_retry_after = absl::Seconds(2);
  AdmissionController admission(store_, clock_, budget);
  AdmittedHaufeApi capped(upstream_, admission, /*max_retry_after=*/absl::Seconds(2));
  auto sink = std::make_shared<RecordingSink>();
  capped.StreamRun(Options(), {.thread_id = "t1", .tools = {}}, sink);
  Call(0)->EndStream(Upstream429("5", clock_.Now()));
  ASSERT_TRUE(sink->done.has_value());
  EXPECT_EQ(RetryDelay(*sink->done), absl::Seconds(2));
  // The permit is back (no tenant_concurrency refusal), but the budget is held.
  auto refused = std::make_shared<RecordingSink>();
  capped.StreamRun(Options(clock_.Now()), {.thread_id = "t1", .tools = {}}, refused);
  ASSERT_TRUE(refused->done.has_value());
  EXPECT_THAT(*refused->done,
              StatusIs(absl::StatusCode::kResourceExhausted, "upstream_budget_exceeded"));
  EXPECT_EQ(upstream_.call_count(), 1);
}

}  // namespace
}  // namespace copilot::gateway
