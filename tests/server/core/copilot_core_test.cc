#include "server/core/copilot_core.h"

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/common/errors.h"
#include "server/core/shared_request_ids.h"
#include "server/core/signed_thread_handles.h"
#include "tests/server/core/fake_haufe_api.h"
#include "tests/testing/recorders.h"

namespace copilot::gateway {
namespace {

namespace v1 = ::copilot::v1;
using ::copilot::gateway::testing::FakeClock;
using ::copilot::gateway::testing::FakeHaufeApi;
using ::copilot::gateway::testing::FakeUpstreamCall;
using ::copilot::gateway::testing::RecordingSink;
using ::copilot::gateway::testing::Result;

constexpr char kAssistant[] = "7c0e5d3a-4c1b-4f57-9a51-1f1f3e0a0001";
// Callers see upper-case handles; the upstream lower-case IDs (CaseHandles below).
constexpr char kCallerThread[] = "0B8E5F0E-9A4C-4B7A-8F43-2F6F0E1C2D3E";
constexpr char kUpstreamThread[] = "0b8e5f0e-9a4c-4b7a-8f43-2f6f0e1c2d3e";
constexpr char kRequestId[] = "11111111-2222-4333-8444-555555555555";

// A visible, reversible mapping, to prove every thread ID passes through ThreadHandles.
class CaseHandles final : public ThreadHandles {
 public:
  absl::StatusOr<ThreadRef> ToUpstream(const Tenant& tenant, absl::string_view handle,
                                       absl::string_view field) const override {
    return ThreadRef{absl::AsciiStrToLower(handle), ""};
  }
  std::string ToCaller(const Tenant& tenant, const ThreadRef& thread) const override {
    return absl::AsciiStrToUpper(thread.upstream_id);
  }
  std::string UserToUpstream(const Tenant&, absl::string_view user_id) const override {
    return std::string(user_id);
  }
  std::string UserToCaller(const Tenant&, absl::string_view user_id) const override {
    return std::string(user_id);
  }
};

class CopilotCoreTest : public ::testing::Test {
 protected:
  CopilotCoreTest() : core_(api_, clock_, handles_, Options()) {}

  static CoreOptions Options() {
    CoreOptions options;
    options.api_key = "KEY";
    options.default_tenant = Tenant{"acme", "LICENCE-1"};
    options.max_call_timeout = absl::Seconds(30);
    options.request_ids.ttl = absl::Minutes(1);
    options.request_ids.max_entries = 3;
    options.request_ids.max_tenant_share = 1;
    return options;
  }

  static v1::Message Answer(std::string id) {
    v1::Message m;
    m.set_id(std::move(id));
    m.set_thread_id(kUpstreamThread);
    m.set_role(v1::ROLE_ASSISTANT);
    m.set_content("answer");
    return m;
  }

  static v1::RunRequest RunRequest(std::string request_id = "") {
    v1::RunRequest r;
    r.set_thread_id(kCallerThread);
    r.set_request_id(std::move(request_id));
    return r;
  }

  FakeHaufeApi api_;
  FakeClock clock_;
  CaseHandles handles_;
  CopilotCore core_;
};

TEST_F(CopilotCoreTest, UpstreamOptionsCarryKeyLicenceTraceAndBoundedDeadline) {
  Result<v1::RunResponse> result;
  CallContext context;  // No caller deadline: max_call_timeout applies.
  context.trace = std::make_shared<CallTrace>(
      "corr-7", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
  core_.Run(context, RunRequest(kRequestId), result.Callback());
  auto call = api_.WaitForCall(0);
  ASSERT_NE(call, nullptr);
  EXPECT_EQ(call->method, "Run");
  EXPECT_EQ(call->options.api_key, "KEY");
  EXPECT_EQ(call->options.licence, "LICENCE-1");
  // The call's correlation ID goes upstream; the request_id stays the gateway's idempotency key.
  EXPECT_EQ(call->options.request_id, "corr-7");
  EXPECT_EQ(call->options.traceparent, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
  EXPECT_EQ(call->options.trace, context.trace);
  EXPECT_EQ(context.trace->tenant(), "acme");
  EXPECT_EQ(call->options.deadline, clock_.Now() + absl::Seconds(30));
  EXPECT_EQ(call->run.thread_id, kUpstreamThread);
}

TEST_F(CopilotCoreTest, CallerDeadlineWinsWhenSooner) {
  CallContext soon{clock_.Now() + absl::Seconds(2)};
  EXPECT_EQ(core_.BuildUpstreamOptions(soon, Tenant{"t", ""}, "").deadline,
            clock_.Now() + absl::Seconds(2));
  CallContext late{clock_.Now() + absl::Hours(2)};
  EXPECT_EQ(core_.BuildUpstreamOptions(late, Tenant{"t", ""}, "").deadline,
            clock_.Now() + absl::Seconds(30));
}

// Issue #13, item 8: a call sends one licence, but an answer may echo another of the tenant's
// (ListAssistants sends the default licence; a thread may hold what another assistant's run
// sent): every one of them is redacted from what the call returns.
TEST_F(CopilotCoreTest, AnswersMayEchoNoneOfTheTenantsLicences) {
  Tenant tenant{"t", "LIC-DEFAULT"};
  tenant.assistant_licences["a1"] = "LIC-A1";
  tenant.assistant_licences["a2"] = "LIC-A2";
  const UpstreamCallOptions on_a1 = core_.BuildUpstreamOptions(CallContext{}, tenant, "A1");
  EXPECT_EQ(on_a1.licence, "LIC-A1");
  EXPECT_THAT(on_a1.also_redact, ::testing::UnorderedElementsAre("LIC-DEFAULT", "LIC-A2"));
  const UpstreamCallOptions listing = core_.BuildUpstreamOptions(CallContext{}, tenant, "");
  EXPECT_EQ(listing.licence, "LIC-DEFAULT");
  EXPECT_THAT(listing.also_redact, ::testing::UnorderedElementsAre("LIC-A1", "LIC-A2"));
}

TEST_F(CopilotCoreTest, InvalidRequestFailsInlineWithoutUpstreamCall) {
  Result<v1::RunResponse> result;
  auto call = core_.Run(CallContext{}, v1::RunRequest(), result.Callback());
  ASSERT_NE(call, nullptr);
  call->Cancel();  // Harmless.
  ASSERT_TRUE(result.value.has_value());
  EXPECT_EQ(result.value->status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(GetErrorInfo(result.value->status())->reason(), "INVALID_REQUEST");
  EXPECT_EQ(api_.call_count(), 0);

  RecordingSink* sink_ptr = new RecordingSink;
  std::shared_ptr<RecordingSink> sink(sink_ptr);
  core_.StreamComplete(CallContext{}, v1::StreamCompleteRequest(), sink);
  ASSERT_TRUE(sink->done.has_value());
  EXPECT_EQ(sink->done->code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(api_.call_count(), 0);
}

TEST_F(CopilotCoreTest, ThreadIdsAreMappedBothWays) {
  Result<v1::CreateThreadResponse> created;
  v1::CreateThreadRequest create;
  create.set_assistant_id(kAssistant);
  create.set_title("t");
  core_.CreateThread(CallContext{}, create, created.Callback());
  auto call = api_.WaitForCall(0);
  EXPECT_EQ(call->create.assistant_id, kAssistant);
  EXPECT_EQ(call->create.title, "t");
  v1::Thread thread;
  thread.set_id(kUpstreamThread);
  call->FinishThread(thread);
  ASSERT_TRUE(created.value.has_value() && created.value->ok());
  EXPECT_EQ((*created.value)->thread().id(), kCallerThread);

  Result<v1::ListMessagesResponse> listed;
  v1::ListMessagesRequest list;
  list.set_thread_id(kCallerThread);
  list.set_page_size(7);
  list.set_page_token("cursor-1");
  core_.ListMessages(CallContext{}, list, listed.Callback());
  call = api_.WaitForCall(1);
  EXPECT_EQ(call->id, kUpstreamThread);
  EXPECT_EQ(call->page_size, 7);
  EXPECT_EQ(call->cursor, "cursor-1");
  call->FinishPage(MessagePage{{Answer("m1"), Answer("m2")}, "cursor-2"});
  ASSERT_TRUE(listed.value->ok());
  EXPECT_EQ((*listed.value)->messages_size(), 2);
  EXPECT_EQ((*listed.value)->messages(1).thread_id(), kCallerThread);
  EXPECT_EQ((*listed.value)->next_page_token(), "cursor-2");

  auto sink = std::make_shared<RecordingSink>();
  v1::StreamRunRequest stream;
  stream.set_thread_id(kCallerThread);
  core_.StreamRun(CallContext{}, stream, sink);
  call = api_.WaitForCall(2);
  EXPECT_EQ(call->run.thread_id, kUpstreamThread);
  v1::MessageChunk chunk;
  chunk.set_thread_id(kUpstreamThread);
  EXPECT_TRUE(call->Chunk(chunk));
  call->EndStream(absl::OkStatus());
  ASSERT_EQ(sink->chunks.size(), 1u);
  EXPECT_EQ(sink->chunks[0].thread_id(), kCallerThread);
  EXPECT_TRUE(sink->done->ok());
}

TEST_F(CopilotCoreTest, CompletePassesConversationAndMapsThread) {
  v1::CompleteRequest request;
  request.set_assistant_id(kAssistant);
  request.set_thread_id(kCallerThread);
  auto* m = request.add_messages();
  m->set_role(v1::ROLE_USER);
  m->set_content("q");
  request.add_tools()->mutable_fields()->operator[]("type").set_string_value("function");
  Result<v1::CompleteResponse> result;
  core_.Complete(CallContext{}, request, result.Callback());
  auto call = api_.WaitForCall(0);
  EXPECT_EQ(call->completion.thread_id, kUpstreamThread);
  ASSERT_EQ(call->completion.messages.size(), 1u);
  EXPECT_EQ(call->completion.tools.size(), 1u);
  EXPECT_EQ(call->options.licence, "LICENCE-1");
  call->FinishMessage(Answer("m"));
  EXPECT_EQ((*result.value)->message().thread_id(), kCallerThread);
}

TEST_F(CopilotCoreTest, UpstreamErrorsPassThroughUnchanged) {
  Result<v1::GetThreadResponse> result;
  v1::GetThreadRequest request;
  request.set_thread_id(kCallerThread);
  core_.GetThread(CallContext{}, request, result.Callback());
  absl::Status error = MakeError(absl::StatusCode::kFailedPrecondition, "gone",
                                 "thread_is_deactivated", {{"http_status", "400"}});
  api_.WaitForCall(0)->Fail(error);
  EXPECT_EQ(result.value->status(), error);
}

TEST_F(CopilotCoreTest, UpstreamThreadNotFoundIsTheSameAsAHandleThatIsNotTheCallers) {
  Result<v1::GetThreadResponse> result;
  v1::GetThreadRequest request;
  request.set_thread_id(kCallerThread);
  core_.GetThread(CallContext{}, request, result.Callback());
  api_.WaitForCall(0)->Fail(MakeError(absl::StatusCode::kNotFound, "The thread does not exist",
                                      "thread_not_found", {{"http_status", "404"}}));
  EXPECT_EQ(result.value->status(), ThreadNotFound());
}

TEST_F(CopilotCoreTest, SameRequestIdReturnsFirstResultWithoutSecondUpstreamCall) {
  Result<v1::RunResponse> first, second;
  core_.Run(CallContext{}, RunRequest(kRequestId), first.Callback());
  api_.WaitForCall(0)->FinishMessage(Answer("m1"));
  core_.Run(CallContext{}, RunRequest(kRequestId), second.Callback());
  EXPECT_EQ(api_.call_count(), 1);
  ASSERT_TRUE(second.value.has_value() && second.value->ok());
  EXPECT_EQ((*second.value)->message().id(), "m1");
}

TEST_F(CopilotCoreTest, RetryWhileInFlightWaitsForTheFirstAttempt) {
  Result<v1::RunResponse> first, second;
  core_.Run(CallContext{}, RunRequest(kRequestId), first.Callback());
  core_.Run(CallContext{}, RunRequest(kRequestId), second.Callback());
  EXPECT_EQ(api_.call_count(), 1);
  EXPECT_FALSE(second.value.has_value());
  api_.WaitForCall(0)->FinishMessage(Answer("m1"));
  EXPECT_EQ((*first.value)->message().id(), "m1");
  EXPECT_EQ((*second.value)->message().id(), "m1");
}

TEST_F(CopilotCoreTest, CancelledWaiterGetsCancelledAndFirstAttemptGoesOn) {
  Result<v1::RunResponse> first, second;
  core_.Run(CallContext{}, RunRequest(kRequestId), first.Callback());
  auto waiter = core_.Run(CallContext{}, RunRequest(kRequestId), second.Callback());
  waiter->Cancel();
  EXPECT_EQ(second.value->status().code(), absl::StatusCode::kCancelled);
  auto call = api_.WaitForCall(0);
  EXPECT_EQ(call->cancels, 0);
  call->FinishMessage(Answer("m1"));
  EXPECT_TRUE(first.value->ok());
}

// Issue #16: a request run under its request_id runs to its end when its caller goes away, so
// that the caller's retry gets its result instead of sending it again.
TEST_F(CopilotCoreTest, ACancelledFirstAttemptRunsOnAndItsRetriesGetItsResult) {
  Result<v1::RunResponse> first, second;
  auto upstream = core_.Run(CallContext{}, RunRequest(kRequestId), first.Callback());
  core_.Run(CallContext{}, RunRequest(kRequestId), second.Callback());
  upstream->Cancel();
  ASSERT_TRUE(first.value.has_value());
  EXPECT_EQ(first.value->status().code(), absl::StatusCode::kCancelled);
  EXPECT_FALSE(second.value.has_value());  // Still waiting: the upstream call goes on.
  EXPECT_EQ(core_.outliving_calls(), 1);   // And the drain waits for it.
  auto call = api_.WaitForCall(0);
  EXPECT_EQ(call->cancels, 0);
  call->FinishMessage(Answer("m1"));
  EXPECT_EQ(core_.outliving_calls(), 0);
  ASSERT_TRUE(second.value.has_value());
  EXPECT_EQ((*second.value)->message().id(), "m1");
  Result<v1::RunResponse> third;
  core_.Run(CallContext{}, RunRequest(kRequestId), third.Callback());
  EXPECT_EQ((*third.value)->message().id(), "m1");
  EXPECT_EQ(api_.call_count(), 1);
}

TEST_F(CopilotCoreTest, ACallWithARequestIdOutlivesItsCallersDeadline) {
  Result<v1::RunResponse> with_id, without_id;
  CallContext soon{clock_.Now() + absl::Seconds(2)};
  core_.Run(soon, RunRequest(kRequestId), with_id.Callback());
  core_.Run(soon, RunRequest(), without_id.Callback());
  EXPECT_EQ(api_.WaitForCall(0)->options.deadline, clock_.Now() + absl::Seconds(30));
  EXPECT_EQ(api_.WaitForCall(1)->options.deadline, clock_.Now() + absl::Seconds(2));
}

TEST_F(CopilotCoreTest, ACallWithoutARequestIdIsCancelledUpstream) {
  Result<v1::RunResponse> first;
  auto upstream = core_.Run(CallContext{}, RunRequest(), first.Callback());
  upstream->Cancel();
  EXPECT_EQ(api_.WaitForCall(0)->cancels, 1);
}

TEST_F(CopilotCoreTest, AFailureAfterTheRequestMayHaveReachedTheUpstreamIsRemembered) {
  Result<v1::RunResponse> first, second;
  core_.Run(CallContext{}, RunRequest(kRequestId), first.Callback());
  api_.WaitForCall(0)->Fail(MakeError(absl::StatusCode::kInternal, "reset after headers",
                                      "upstream_reset", {{"request_sent", "true"}}));
  EXPECT_EQ(first.value->status().code(), absl::StatusCode::kInternal);
  core_.Run(CallContext{}, RunRequest(kRequestId), second.Callback());
  ASSERT_TRUE(second.value.has_value());
  EXPECT_EQ(second.value->status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(GetErrorInfo(second.value->status())->reason(), "request_outcome_unknown");
  EXPECT_EQ(api_.call_count(), 1);  // Never sent twice.
}

TEST_F(CopilotCoreTest, AFailureBeforeAnyByteWasSentIsForgotten) {
  Result<v1::RunResponse> first, second;
  core_.Run(CallContext{}, RunRequest(kRequestId), first.Callback());
  api_.WaitForCall(0)->Fail(MakeError(absl::StatusCode::kUnavailable, "refused",
                                      "upstream_unreachable", {{"request_sent", "false"}}));
  core_.Run(CallContext{}, RunRequest(kRequestId), second.Callback());
  EXPECT_EQ(api_.call_count(), 2);
}

TEST_F(CopilotCoreTest, WaitersOfAFirstAttemptPastItsDeadlineGetAborted) {
  // The first caller's deadline is not the waiter's: the waiter is told to retry.
  Result<v1::RunResponse> first, second;
  core_.Run(CallContext{}, RunRequest(kRequestId), first.Callback());
  core_.Run(CallContext{}, RunRequest(kRequestId), second.Callback());
  api_.WaitForCall(0)->Fail(absl::DeadlineExceededError("upstream timeout"));
  EXPECT_EQ(first.value->status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(second.value->status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(GetErrorInfo(second.value->status())->reason(), "REQUEST_ABORTED");
}

TEST_F(CopilotCoreTest, FailuresAreNotRememberedSoRetriesRunAgain) {
  Result<v1::RunResponse> first, second;
  core_.Run(CallContext{}, RunRequest(kRequestId), first.Callback());
  api_.WaitForCall(0)->Fail(absl::UnavailableError("down"));
  core_.Run(CallContext{}, RunRequest(kRequestId), second.Callback());
  EXPECT_EQ(api_.call_count(), 2);
}

TEST_F(CopilotCoreTest, ReusedRequestIdWithDifferentBodyIsInvalid) {
  Result<v1::RunResponse> first, second;
  core_.Run(CallContext{}, RunRequest(kRequestId), first.Callback());
  v1::RunRequest other = RunRequest(kRequestId);
  other.add_tools();
  core_.Run(CallContext{}, other, second.Callback());
  EXPECT_EQ(second.value->status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(GetErrorInfo(second.value->status())->reason(), "REQUEST_ID_REUSED");
  EXPECT_EQ(GetBadRequest(second.value->status())->field_violations(0).field(), "request_id");
  EXPECT_EQ(api_.call_count(), 1);
}

TEST_F(CopilotCoreTest, RememberedResultsExpireAfterTheTtl) {
  Result<v1::RunResponse> first, second;
  core_.Run(CallContext{}, RunRequest(kRequestId), first.Callback());
  api_.WaitForCall(0)->FinishMessage(Answer("m1"));
  clock_.Advance(absl::Minutes(1));
  core_.Run(CallContext{}, RunRequest(kRequestId), second.Callback());
  EXPECT_EQ(api_.call_count(), 2);
}

TEST_F(CopilotCoreTest, KeysAreScopedByMethod) {
  Result<v1::RunResponse> run;
  Result<v1::CompleteResponse> complete;
  core_.Run(CallContext{}, RunRequest(kRequestId), run.Callback());
  api_.WaitForCall(0)->FinishMessage(Answer("m1"));
  v1::CompleteRequest request;
  request.set_assistant_id(kAssistant);
  request.set_request_id(kRequestId);
  auto* m = request.add_messages();
  m->set_role(v1::ROLE_USER);
  m->set_content("q");
  core_.Complete(CallContext{}, request, complete.Callback());
  EXPECT_EQ(api_.call_count(), 2);
}

TEST_F(CopilotCoreTest, FingerprintIsADigestNotTheRequest) {
  // A request_id reused with a different body is still caught, though only 32 bytes are kept.
  Result<v1::RunResponse> first;
  Result<v1::RunResponse> second;
  core_.Run(CallContext{}, RunRequest(kRequestId), first.Callback());
  api_.WaitForCall(0)->FinishMessage(Answer("m1"));
  v1::RunRequest other = RunRequest(kRequestId);
  other.add_tools();
  core_.Run(CallContext{}, other, second.Callback());
  ASSERT_TRUE(second.value.has_value());
  EXPECT_EQ(second.value->status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(api_.call_count(), 1);
}

// Admits waiting retries as the limits would: grants or refuses, and tracks the leases held.
class FakeWaiterAdmission final : public WaiterAdmission {
 public:
  class Lease final : public AdmissionLease {
   public:
    explicit Lease(int& held) : held_(held) { ++held_; }
    ~Lease() override { --held_; }

   private:
    int& held_;
  };
  std::shared_ptr<UpstreamCall> Admit(const Tenant& tenant, bool answer, absl::Time deadline,
                                      Done done) override {
    admitted.emplace_back(tenant.id, answer);
    if (!refusal.ok()) {
      std::move(done)(refusal);
    } else {
      std::move(done)(std::make_unique<Lease>(held));
    }
    return std::make_shared<FinishedCall>();
  }
  absl::Status refusal;
  int held = 0;
  std::vector<std::pair<std::string, bool>> admitted;
};

class CopilotCoreWaiterTest : public CopilotCoreTest {
 protected:
  CopilotCoreWaiterTest()
      : waiting_core_(api_, clock_, handles_, WaiterOptions(), nullptr, &admission_) {}
  static CoreOptions WaiterOptions() {
    CoreOptions options = Options();
    options.request_ids.max_waiters_per_request = 2;
    return options;
  }
  FakeWaiterAdmission admission_;
  CopilotCore waiting_core_;
};

// Issue #13: a retry waiting on an in-flight request_id counts against the tenant's limits.
TEST_F(CopilotCoreWaiterTest, AWaitingRetryIsAdmittedAgainstTheTenantsLimits) {
  Result<v1::RunResponse> first, second;
  waiting_core_.Run(CallContext{}, RunRequest(kRequestId), first.Callback());
  waiting_core_.Run(CallContext{}, RunRequest(kRequestId), second.Callback());
  ASSERT_EQ(admission_.admitted.size(), 1u);
  EXPECT_EQ(admission_.admitted[0], std::make_pair(std::string("acme"), true));
  EXPECT_EQ(admission_.held, 1);  // The waiter holds its slot while it waits...
  api_.WaitForCall(0)->FinishMessage(Answer("m1"));
  EXPECT_EQ((*second.value)->message().id(), "m1");
  EXPECT_EQ(admission_.held, 0);  // ...and frees it when answered.
  EXPECT_EQ(api_.call_count(), 1);
}

TEST_F(CopilotCoreWaiterTest, ARetryTheLimitsRefuseGetsTheRefusalAndTheFirstGoesOn) {
  absl::Status refusal =
      MakeError(absl::StatusCode::kResourceExhausted, "too many", "tenant_concurrency_exceeded");
  admission_.refusal = refusal;
  Result<v1::RunResponse> first, second;
  waiting_core_.Run(CallContext{}, RunRequest(kRequestId), first.Callback());
  waiting_core_.Run(CallContext{}, RunRequest(kRequestId), second.Callback());
  ASSERT_TRUE(second.value.has_value());
  EXPECT_EQ(second.value->status(), refusal);
  api_.WaitForCall(0)->FinishMessage(Answer("m1"));
  EXPECT_TRUE(first.value->ok());
  EXPECT_EQ(waiting_core_.request_ids().waiters(), 0);
}

TEST_F(CopilotCoreWaiterTest, WaitersPerRequestAreBounded) {
  Result<v1::RunResponse> first, second, third, fourth;
  waiting_core_.Run(CallContext{}, RunRequest(kRequestId), first.Callback());
  waiting_core_.Run(CallContext{}, RunRequest(kRequestId), second.Callback());
  waiting_core_.Run(CallContext{}, RunRequest(kRequestId), third.Callback());
  waiting_core_.Run(CallContext{}, RunRequest(kRequestId), fourth.Callback());
  EXPECT_FALSE(second.value.has_value());
  EXPECT_FALSE(third.value.has_value());
  ASSERT_TRUE(fourth.value.has_value());
  EXPECT_EQ(fourth.value->status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(GetErrorInfo(fourth.value->status())->reason(), "request_id_waiters_exceeded");
  EXPECT_TRUE(GetRetryInfo(fourth.value->status()).has_value());
  EXPECT_EQ(admission_.admitted.size(), 2u);  // The refused one took nothing.
  api_.WaitForCall(0)->FinishMessage(Answer("m1"));
  EXPECT_TRUE(second.value->ok());
  EXPECT_TRUE(third.value->ok());
  EXPECT_EQ(api_.call_count(), 1);
}

TEST_F(CopilotCoreWaiterTest, CreateThreadAndAddMessageWaitersAreOtherCalls) {
  v1::CreateThreadRequest request;
  request.set_assistant_id(kAssistant);
  request.set_request_id(kRequestId);
  Result<v1::CreateThreadResponse> first, second;
  waiting_core_.CreateThread(CallContext{}, request, first.Callback());
  waiting_core_.CreateThread(CallContext{}, request, second.Callback());
  ASSERT_EQ(admission_.admitted.size(), 1u);
  EXPECT_FALSE(admission_.admitted[0].second);
}

// A SharedRequestIds the test answers by hand.
class FakeSharedRequestIds final : public SharedRequestIds {
 public:
  struct Claimed {
    std::string key;
    std::string fingerprint;
    absl::Duration lease;
    absl::Duration delay;
    ClaimCallback done;
  };
  struct Finished {
    std::string key;
    std::string token;
    absl::StatusOr<std::string> result;
    bool outcome_unknown;
  };
  void Claim(const std::string& key, const std::string& fingerprint, absl::Duration lease,
             absl::Duration delay, ClaimCallback done) override {
    claims.push_back({key, fingerprint, lease, delay, std::move(done)});
  }
  void Finish(const std::string& key, const std::string& token,
              const absl::StatusOr<std::string>& result, bool outcome_unknown) override {
    finishes.push_back({key, token, result, outcome_unknown});
  }
  bool fail_open() const override { return open; }
  // Answers the oldest claim not answered yet.
  void Answer(absl::StatusOr<Lookup> lookup) {
    ASSERT_LT(answered, claims.size());
    std::move(claims[answered++].done)(std::move(lookup));
  }
  static Lookup Of(Lookup::Kind kind, std::string result = "", std::string token = "") {
    Lookup lookup;
    lookup.kind = kind;
    lookup.result = std::move(result);
    lookup.token = std::move(token);
    return lookup;
  }
  bool open = true;
  std::vector<Claimed> claims;
  std::size_t answered = 0;
  std::vector<Finished> finishes;
};

class CopilotCoreSharedTest : public CopilotCoreTest {
 protected:
  CopilotCoreSharedTest()
      : shared_core_(api_, clock_, handles_, Options(), nullptr, &admission_, nullptr, &shared_) {}
  using Kind = SharedRequestIds::Lookup::Kind;
  // What another replica recorded for a Run that answered message `id`.
  static std::string RecordedRun(const std::string& id) {
    v1::RunResponse response;
    response.mutable_message()->set_id(id);
    return response.SerializeAsString();
  }
  FakeWaiterAdmission admission_;
  FakeSharedRequestIds shared_;
  CopilotCore shared_core_;
};

TEST_F(CopilotCoreSharedTest, AClaimedRequestRunsAndItsResultIsRecordedForTheReplicas) {
  Result<v1::RunResponse> first;
  shared_core_.Run(CallContext{}, RunRequest(kRequestId), first.Callback());
  ASSERT_EQ(shared_.claims.size(), 1u);
  EXPECT_EQ(shared_.claims[0].fingerprint.size(), 32u);
  EXPECT_EQ(shared_.claims[0].lease, absl::Seconds(32));  // max_call_timeout and a margin.
  EXPECT_EQ(shared_.claims[0].delay, absl::ZeroDuration());
  EXPECT_EQ(api_.call_count(), 0);  // Not before the claim.
  shared_.Answer(FakeSharedRequestIds::Of(Kind::kStart, "", "token-1"));
  api_.WaitForCall(0)->FinishMessage(Answer("m1"));
  ASSERT_TRUE(first.value->ok());
  ASSERT_EQ(shared_.finishes.size(), 1u);
  EXPECT_EQ(shared_.finishes[0].token, "token-1");
  EXPECT_EQ(shared_.finishes[0].key, shared_.claims[0].key);
  v1::RunResponse recorded;
  ASSERT_TRUE(recorded.ParseFromString(*shared_.finishes[0].result));
  EXPECT_EQ(recorded.message().id(), "m1");
  // The next retry on this replica is answered from its own memory.
  Result<v1::RunResponse> second;
  shared_core_.Run(CallContext{}, RunRequest(kRequestId), second.Callback());
  EXPECT_EQ((*second.value)->message().id(), "m1");
  EXPECT_EQ(shared_.claims.size(), 1u);
}

TEST_F(CopilotCoreSharedTest, AResultAnotherReplicaRecordedIsReturnedWithoutAnUpstreamCall) {
  Result<v1::RunResponse> retry;
  shared_core_.Run(CallContext{}, RunRequest(kRequestId), retry.Callback());
  shared_.Answer(FakeSharedRequestIds::Of(Kind::kDone, RecordedRun("M9")));
  EXPECT_EQ((*retry.value)->message().id(), "M9");
  EXPECT_EQ(api_.call_count(), 0);
  EXPECT_TRUE(shared_.finishes.empty());
}

TEST_F(CopilotCoreSharedTest, ARetryWaitsAdmittedAndPollingForTheReplicaRunningIt) {
  Result<v1::RunResponse> retry;
  shared_core_.Run(CallContext{}, RunRequest(kRequestId), retry.Callback());
  shared_.Answer(FakeSharedRequestIds::Of(Kind::kInFlight));
  EXPECT_EQ(admission_.admitted.size(), 1u);
  EXPECT_EQ(admission_.held, 1);
  ASSERT_EQ(shared_.claims.size(), 2u);
  EXPECT_EQ(shared_.claims[1].delay, absl::Milliseconds(50));
  shared_.Answer(FakeSharedRequestIds::Of(Kind::kInFlight));
  ASSERT_EQ(shared_.claims.size(), 3u);
  EXPECT_EQ(shared_.claims[2].delay, absl::Milliseconds(100));  // Backing off.
  EXPECT_EQ(admission_.admitted.size(), 1u);                    // Admitted once.
  EXPECT_EQ(shared_core_.shared_waiters(), 1);                  // Counted while it waits.
  shared_.Answer(FakeSharedRequestIds::Of(Kind::kDone, RecordedRun("M9")));
  EXPECT_EQ((*retry.value)->message().id(), "M9");
  EXPECT_EQ(admission_.held, 0);
  EXPECT_EQ(shared_core_.shared_waiters(), 0);
  EXPECT_EQ(api_.call_count(), 0);
}

// Redis not answering a poll says nothing new about the attempt another replica runs: the retry
// keeps waiting instead of running the request a second time (even failing open).
TEST_F(CopilotCoreSharedTest, AWaitingRetryKeepsWaitingWhenAPollFails) {
  Result<v1::RunResponse> retry;
  shared_core_.Run(CallContext{}, RunRequest(kRequestId), retry.Callback());
  shared_.Answer(FakeSharedRequestIds::Of(Kind::kInFlight));
  shared_.Answer(absl::UnavailableError("redis blip"));
  EXPECT_FALSE(retry.value.has_value());
  ASSERT_EQ(shared_.claims.size(), 3u);  // Polling on.
  EXPECT_EQ(api_.call_count(), 0);
  shared_.Answer(FakeSharedRequestIds::Of(Kind::kDone, RecordedRun("m9")));
  EXPECT_EQ((*retry.value)->message().id(), "m9");
  EXPECT_EQ(admission_.held, 0);
}

TEST_F(CopilotCoreSharedTest, AWaitingRetryTakesOverWhenTheAttemptItWaitedForFailed) {
  Result<v1::RunResponse> retry;
  shared_core_.Run(CallContext{}, RunRequest(kRequestId), retry.Callback());
  shared_.Answer(FakeSharedRequestIds::Of(Kind::kInFlight));
  shared_.Answer(FakeSharedRequestIds::Of(Kind::kStart, "", "token-2"));
  EXPECT_EQ(admission_.held, 0);  // Runs as a call of its own, not as a waiter.
  EXPECT_EQ(shared_core_.shared_waiters(), 0);
  api_.WaitForCall(0)->FinishMessage(Answer("m2"));
  EXPECT_EQ((*retry.value)->message().id(), "m2");
  EXPECT_EQ(shared_.finishes.size(), 1u);
}

TEST_F(CopilotCoreSharedTest, AWaitingRetryGivesUpAtItsDeadline) {
  Result<v1::RunResponse> retry;
  CallContext soon{clock_.Now() + absl::Milliseconds(120)};
  shared_core_.Run(soon, RunRequest(kRequestId), retry.Callback());
  shared_.Answer(FakeSharedRequestIds::Of(Kind::kInFlight));  // Polls after 50 ms.
  clock_.Advance(absl::Milliseconds(50));
  shared_.Answer(FakeSharedRequestIds::Of(Kind::kInFlight));  // 100 ms more would pass it.
  ASSERT_TRUE(retry.value.has_value());
  EXPECT_EQ(retry.value->status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(admission_.held, 0);
  EXPECT_EQ(api_.call_count(), 0);
}

TEST_F(CopilotCoreSharedTest, AnUnknownOutcomeIsAbortedAndNeverSentAgain) {
  Result<v1::RunResponse> retry;
  shared_core_.Run(CallContext{}, RunRequest(kRequestId), retry.Callback());
  shared_.Answer(FakeSharedRequestIds::Of(Kind::kUnknown));
  EXPECT_EQ(retry.value->status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(GetErrorInfo(retry.value->status())->reason(), "request_outcome_unknown");
  EXPECT_EQ(api_.call_count(), 0);
}

TEST_F(CopilotCoreSharedTest, ARequestIdReusedOnAnotherReplicaIsInvalid) {
  Result<v1::RunResponse> retry;
  shared_core_.Run(CallContext{}, RunRequest(kRequestId), retry.Callback());
  shared_.Answer(FakeSharedRequestIds::Of(Kind::kReused));
  EXPECT_EQ(retry.value->status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(GetErrorInfo(retry.value->status())->reason(), "REQUEST_ID_REUSED");
}

TEST_F(CopilotCoreSharedTest, UnreachableStoreFailsOpenToThisReplicasMemory) {
  Result<v1::RunResponse> first;
  shared_core_.Run(CallContext{}, RunRequest(kRequestId), first.Callback());
  shared_.Answer(absl::UnavailableError("redis down"));
  api_.WaitForCall(0)->FinishMessage(Answer("m1"));
  EXPECT_TRUE(first.value->ok());
  EXPECT_TRUE(shared_.finishes.empty());  // Nothing claimed, nothing to finish.
}

TEST_F(CopilotCoreSharedTest, UnreachableStoreFailsClosedWithUnavailable) {
  shared_.open = false;
  Result<v1::RunResponse> first;
  shared_core_.Run(CallContext{}, RunRequest(kRequestId), first.Callback());
  shared_.Answer(absl::UnavailableError("redis down"));
  ASSERT_TRUE(first.value.has_value());
  EXPECT_EQ(first.value->status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(GetErrorInfo(first.value->status())->reason(), "request_id_store_unavailable");
  EXPECT_THAT(std::string(first.value->status().message()),
              ::testing::Not(::testing::HasSubstr("redis down")));
  EXPECT_TRUE(GetRetryInfo(first.value->status()).has_value());
  EXPECT_EQ(api_.call_count(), 0);
}

TEST_F(CopilotCoreSharedTest, AFailureThatMayHaveReachedTheUpstreamIsRecordedAsUnknown) {
  Result<v1::RunResponse> first;
  shared_core_.Run(CallContext{}, RunRequest(kRequestId), first.Callback());
  shared_.Answer(FakeSharedRequestIds::Of(Kind::kStart, "", "token-1"));
  api_.WaitForCall(0)->Fail(MakeError(absl::StatusCode::kUnavailable, "shutting down",
                                      "transport_shutdown", {{"request_sent", "true"}}));
  ASSERT_EQ(shared_.finishes.size(), 1u);
  EXPECT_TRUE(shared_.finishes[0].outcome_unknown);
  // A retry on this replica learns it from its own memory.
  Result<v1::RunResponse> second;
  shared_core_.Run(CallContext{}, RunRequest(kRequestId), second.Callback());
  EXPECT_EQ(GetErrorInfo(second.value->status())->reason(), "request_outcome_unknown");
  EXPECT_EQ(shared_.claims.size(), 1u);
  // An answer of the upstream (no request_sent metadata) is forgotten.
  Result<v1::RunResponse> other;
  shared_core_.Run(CallContext{}, RunRequest("22222222-2222-4333-8444-555555555555"),
                   other.Callback());
  shared_.Answer(FakeSharedRequestIds::Of(Kind::kStart, "", "token-2"));
  api_.WaitForCall(1)->Fail(absl::UnavailableError("down"));
  ASSERT_EQ(shared_.finishes.size(), 2u);
  EXPECT_FALSE(shared_.finishes[1].outcome_unknown);
}

TEST_F(CopilotCoreSharedTest, ACallerCancellingBeforeTheClaimIsAnsweredReleasesIt) {
  Result<v1::RunResponse> first;
  auto call = shared_core_.Run(CallContext{}, RunRequest(kRequestId), first.Callback());
  call->Cancel();
  EXPECT_EQ(first.value->status().code(), absl::StatusCode::kCancelled);
  shared_.Answer(FakeSharedRequestIds::Of(Kind::kStart, "", "token-1"));
  EXPECT_EQ(api_.call_count(), 0);
  ASSERT_EQ(shared_.finishes.size(), 1u);
  EXPECT_FALSE(shared_.finishes[0].result.ok());
  EXPECT_FALSE(shared_.finishes[0].outcome_unknown);
}

}  // namespace
}  // namespace copilot::gateway
