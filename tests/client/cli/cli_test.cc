#include "client/cli/cli.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "client/cli/arg_parser.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "google/protobuf/util/time_util.h"
#include "google/rpc/error_details.pb.h"
#include "gtest/gtest.h"
#include "tests/client/fake_copilot_service.h"
#include "tests/client/test_certs.h"

namespace copilot::client::cli {
namespace {

using ::copilot::client::testing::ClientCerts;
using ::copilot::client::testing::DeadTarget;
using ::copilot::client::testing::FakeCopilotService;
using ::copilot::client::testing::MakeStatus;
using ::copilot::client::testing::RecordedCall;
using ::copilot::client::testing::TestCertPath;
using ::copilot::client::testing::TestServerCredentials;
using ::google::protobuf::util::MessageDifferencer;
using ::google::protobuf::util::TimeUtil;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

// gRPC sends the deadline as a `grpc-timeout` header rounded up to a coarser
// unit, so the server may see up to a second more than the client set.
constexpr absl::Duration kWireRounding = absl::Seconds(1);

struct CliResult {
  int code;
  std::string out;
  std::string err;
};

// A stream buffer that remembers what had been written at each flush.
// Thread-safe: a fake's server thread may wait for flushes made by the CLI.
class FlushRecorder : public std::stringbuf {
 public:
  std::vector<std::string> flushes() const {
    absl::MutexLock lock(&mu_);
    return flushes_;
  }
  // Waits until `text` has been flushed; false after `timeout`.
  bool WaitForFlushed(const std::string& text, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto flushed = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !flushes_.empty() && flushes_.back().find(text) != std::string::npos;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&flushed), timeout);
  }

 protected:
  int sync() override {
    absl::MutexLock lock(&mu_);
    flushes_.push_back(str());
    return 0;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<std::string> flushes_ ABSL_GUARDED_BY(mu_);
};

google::rpc::ErrorInfo ErrorInfo(const std::string& reason, const std::string& http_status) {
  google::rpc::ErrorInfo info;
  info.set_reason(reason);
  info.set_domain("copilot-gateway");
  if (!http_status.empty()) (*info.mutable_metadata())["http_status"] = http_status;
  return info;
}

v1::MessageChunk Chunk(const std::string& content) {
  v1::MessageChunk chunk;
  chunk.set_message_id("m-answer");
  chunk.set_thread_id("t1");
  chunk.mutable_delta()->set_role(v1::ROLE_ASSISTANT);
  chunk.mutable_delta()->set_content(content);
  return chunk;
}

v1::Source SourceTitled(const std::string& title, const std::string& section) {
  v1::Source source;
  source.set_content("Aufwendungen des Arbeitnehmers ...");
  (*source.mutable_meta_data()->mutable_fields())["document_title"].set_string_value(title);
  (*source.mutable_meta_data()->mutable_fields())["section"].set_string_value(section);
  return source;
}

// Three chunks "Die ", "Pauschale ", "gilt."; the last carries a source.
std::vector<v1::MessageChunk> AnswerChunks() {
  std::vector<v1::MessageChunk> chunks = {Chunk("Die "), Chunk("Pauschale "), Chunk("gilt.")};
  *chunks[2].mutable_delta()->add_sources() = SourceTitled("EStG § 9", "Abs. 1");
  return chunks;
}

v1::Message Answer() {
  v1::Message m;
  m.set_id("m-answer");
  m.set_thread_id("t1");
  m.set_role(v1::ROLE_ASSISTANT);
  m.set_content("Die Pauschale gilt.");
  *m.add_sources() = SourceTitled("EStG § 9", "Abs. 1");
  return m;
}

class CliTest : public ::testing::Test {
 protected:
  CliTest() : fake_(FakeCopilotService::Start()) {}

  // Runs the CLI against the fake with a token.
  CliResult Run(const std::vector<std::string>& args) {
    std::vector<std::string> full = {"--target", fake_->target(), "--token", "tok-acme"};
    full.insert(full.end(), args.begin(), args.end());
    return RunRaw(full);
  }

  static CliResult RunRaw(const std::vector<std::string>& args, const CliEnvironment& env = {}) {
    std::ostringstream out;
    std::ostringstream err;
    int code = RunCli(args, out, err, env);
    return {code, out.str(), err.str()};
  }

  RecordedCall OnlyCall(const std::string& method) {
    std::vector<RecordedCall> calls = fake_->calls();
    EXPECT_EQ(calls.size(), 1u);
    if (calls.empty()) return {};
    EXPECT_EQ(calls[0].method, method);
    return calls[0];
  }

  static void ExpectTokenAndDeadline(const RecordedCall& call) {
    EXPECT_EQ(call.Metadata("authorization"), "Bearer tok-acme");
    ASSERT_TRUE(call.time_left.has_value()) << call.method << " arrived without a deadline";
    // The default --timeout is 120 s.
    EXPECT_LE(*call.time_left, absl::Seconds(120) + kWireRounding);
    EXPECT_GT(*call.time_left, absl::Seconds(100));
  }

  std::unique_ptr<FakeCopilotService> fake_;
};

// ---- assistants -------------------------------------------------------------

v1::ListAssistantsResponse TwoAssistants() {
  v1::ListAssistantsResponse response;
  auto* tax = response.add_assistants();
  tax->set_id("a-tax");
  tax->set_name("Haufe Copilot Tax");
  tax->set_streaming(true);
  auto* hr = response.add_assistants();
  hr->set_id("a-hr");
  hr->set_name("Haufe Copilot HR");
  return response;
}

TEST_F(CliTest, AssistantsPrintsOneLinePerAssistant) {
  fake_->SetResponse("ListAssistants", TwoAssistants());
  CliResult r = Run({"assistants"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "a-tax  Haufe Copilot Tax  (streaming)\n"
            "a-hr  Haufe Copilot HR\n");
  EXPECT_EQ(r.err, "");
  ExpectTokenAndDeadline(OnlyCall("ListAssistants"));
}

TEST_F(CliTest, AssistantsJsonAcceptsGlobalFlagsAfterTheCommand) {
  fake_->SetResponse("ListAssistants", TwoAssistants());
  CliResult r = RunRaw({"assistants", "--json", "--target", fake_->target(), "--token=tok-acme"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, R"({"assistants":[{"id":"a-tax","name":"Haufe Copilot Tax","streaming":true},)"
                   R"({"id":"a-hr","name":"Haufe Copilot HR"}]})"
                   "\n");
  ExpectTokenAndDeadline(OnlyCall("ListAssistants"));
}

// ---- usage ------------------------------------------------------------------

TEST_F(CliTest, UsagePrintsEachPeriodWithItsQuotasAndWhatIsLeft) {
  v1::GetUsageResponse response;
  response.set_tenant_id("payroll");
  v1::UsagePeriod* day = response.mutable_day();
  day->mutable_start_time()->set_seconds(1796169600);  // 2026-12-02T00:00:00Z
  day->mutable_end_time()->set_seconds(1796256000);
  day->set_answers(2);
  day->set_answers_quota(2);
  day->set_characters(221);
  v1::UsagePeriod* month = response.mutable_month();
  month->mutable_start_time()->set_seconds(1796083200);  // 2026-12-01T00:00:00Z
  month->mutable_end_time()->set_seconds(1798761600);
  month->set_answers(2);
  month->set_answers_quota(40000);
  month->set_answers_remaining(39998);
  month->set_characters(221);
  month->set_characters_quota(20000000);
  month->set_characters_remaining(19999779);
  fake_->SetResponse("GetUsage", response);
  CliResult r = Run({"usage"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "tenant: payroll\n"
            "day 2026-12-02T00:00:00Z .. 2026-12-03T00:00:00Z\n"
            "  answers: 2 of 2 (0 left)\n"
            "  characters: 221 (no quota)\n"
            "month 2026-12-01T00:00:00Z .. 2027-01-01T00:00:00Z\n"
            "  answers: 2 of 40000 (39998 left)\n"
            "  characters: 221 of 20000000 (19999779 left)\n");
  ExpectTokenAndDeadline(OnlyCall("GetUsage"));
}

// ---- thread -----------------------------------------------------------------

TEST_F(CliTest, ThreadCreatePrintsTheIdAlone) {
  v1::CreateThreadResponse response;
  response.mutable_thread()->set_id("t1");
  response.mutable_thread()->set_assistant_id("a-tax");
  fake_->SetResponse("CreateThread", response);

  CliResult r = Run({"thread", "create", "--assistant", "a-tax", "--user", "u-1", "--title",
                     "Pendlerpauschale", "--request-id", "r-1"});

  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "t1\n");
  RecordedCall call = OnlyCall("CreateThread");
  ExpectTokenAndDeadline(call);
  v1::CreateThreadRequest expected;
  expected.set_assistant_id("a-tax");
  expected.set_user_id("u-1");
  expected.set_title("Pendlerpauschale");
  expected.set_request_id("r-1");
  EXPECT_TRUE(MessageDifferencer::Equals(call.RequestAs<v1::CreateThreadRequest>(), expected));
}

TEST_F(CliTest, ThreadCreateJson) {
  v1::CreateThreadResponse response;
  response.mutable_thread()->set_id("t1");
  response.mutable_thread()->set_assistant_id("a-tax");
  fake_->SetResponse("CreateThread", response);
  CliResult r = Run({"--json", "thread", "create", "--assistant=a-tax"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, R"({"thread":{"id":"t1","assistantId":"a-tax"}})"
                   "\n");
}

TEST_F(CliTest, ThreadCreateWithoutAssistantIsUsageError) {
  CliResult r = Run({"thread", "create", "--title", "x"});
  EXPECT_EQ(r.code, 64);
  EXPECT_THAT(r.err,
              StartsWith("copilot: missing --assistant ID\nUsage:\n  copilot thread create"));
  EXPECT_TRUE(fake_->calls().empty());
}

v1::GetThreadResponse SomeThread() {
  v1::GetThreadResponse response;
  v1::Thread& t = *response.mutable_thread();
  t.set_id("t1");
  t.set_assistant_id("a-tax");
  t.set_user_id("u-1");
  t.set_title("Pendlerpauschale");
  *t.mutable_create_time() = TimeUtil::SecondsToTimestamp(1795766400);  // 2026-11-27T08:00:00Z
  *t.mutable_update_time() = TimeUtil::SecondsToTimestamp(1795766460);
  return response;
}

TEST_F(CliTest, ThreadGetPrintsItsFields) {
  fake_->SetResponse("GetThread", SomeThread());
  CliResult r = Run({"thread", "get", "t1"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "id: t1\n"
            "assistant: a-tax\n"
            "user: u-1\n"
            "title: Pendlerpauschale\n"
            "created: 2026-11-27T08:00:00Z\n"
            "updated: 2026-11-27T08:01:00Z\n");
  RecordedCall call = OnlyCall("GetThread");
  ExpectTokenAndDeadline(call);
  EXPECT_EQ(call.RequestAs<v1::GetThreadRequest>().thread_id(), "t1");
}

TEST_F(CliTest, ThreadGetJson) {
  fake_->SetResponse("GetThread", SomeThread());
  CliResult r = Run({"--json", "thread", "get", "t1"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(
      r.out,
      R"({"thread":{"id":"t1","assistantId":"a-tax","userId":"u-1","title":"Pendlerpauschale",)"
      R"("createTime":"2026-11-27T08:00:00Z","updateTime":"2026-11-27T08:01:00Z"}})"
      "\n");
}

TEST_F(CliTest, ThreadGetNotFoundExitsFiveWithReadableError) {
  fake_->SetError("GetThread", MakeStatus(grpc::StatusCode::NOT_FOUND, "Thread not found",
                                          ErrorInfo("thread_not_found", "404")));
  CliResult r = Run({"thread", "get", "t-missing"});
  EXPECT_EQ(r.code, 5);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err,
            "error: NOT_FOUND: Thread not found [reason: thread_not_found; upstream HTTP 404]\n");
}

TEST_F(CliTest, ErrorWithJsonIsAJsonObjectOnStderr) {
  fake_->SetError("GetThread", MakeStatus(grpc::StatusCode::NOT_FOUND, "Thread not found",
                                          ErrorInfo("thread_not_found", "404")));
  CliResult r = Run({"--json", "thread", "get", "t-missing"});
  EXPECT_EQ(r.code, 5);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err,
            R"({"error":{"code":5,"status":"NOT_FOUND","message":"Thread not found","details":[)"
            R"({"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"thread_not_found",)"
            R"("domain":"copilot-gateway","metadata":{"http_status":"404"}}]}})"
            "\n");
}

TEST_F(CliTest, ThreadGetWithoutThreadIsUsageError) {
  CliResult r = Run({"thread", "get"});
  EXPECT_EQ(r.code, 64);
  EXPECT_THAT(r.err, StartsWith("copilot: missing THREAD\n"));
  CliResult extra = Run({"thread", "get", "t1", "t2"});
  EXPECT_EQ(extra.code, 64);
  EXPECT_THAT(extra.err, StartsWith("copilot: unexpected argument 't2'\n"));
  EXPECT_TRUE(fake_->calls().empty());
}

TEST_F(CliTest, ThreadDelete) {
  fake_->SetResponse("DeleteThread", v1::DeleteThreadResponse());
  CliResult r = Run({"thread", "delete", "t1"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "deleted t1\n");
  RecordedCall call = OnlyCall("DeleteThread");
  ExpectTokenAndDeadline(call);
  EXPECT_EQ(call.RequestAs<v1::DeleteThreadRequest>().thread_id(), "t1");

  CliResult json = Run({"--json", "thread", "delete", "t1"});
  EXPECT_EQ(json.code, 0);
  EXPECT_EQ(json.out, "{}\n");
}

TEST_F(CliTest, ThreadDeleteUnauthenticatedExitsSixteen) {
  fake_->SetError("DeleteThread", MakeStatus(grpc::StatusCode::UNAUTHENTICATED, "Unknown token",
                                             ErrorInfo("invalid_token", "")));
  CliResult r = Run({"thread", "delete", "t1"});
  EXPECT_EQ(r.code, 16);
  EXPECT_EQ(r.err, "error: UNAUTHENTICATED: Unknown token [reason: invalid_token]\n");
}

// ---- message add / messages list ---------------------------------------------

TEST_F(CliTest, MessageAddJoinsTheTextAndDefaultsToUser) {
  v1::AddMessageResponse response;
  response.mutable_message()->set_id("m1");
  fake_->SetResponse("AddMessage", response);

  CliResult r = Run({"message", "add", "--thread", "t1", "Wie", "hoch", "ist", "die",
                     "Pendlerpauschale?", "--request-id", "r-9"});

  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "m1\n");
  RecordedCall call = OnlyCall("AddMessage");
  ExpectTokenAndDeadline(call);
  v1::AddMessageRequest expected;
  expected.set_thread_id("t1");
  expected.set_request_id("r-9");
  expected.mutable_message()->set_role(v1::ROLE_USER);
  expected.mutable_message()->set_content("Wie hoch ist die Pendlerpauschale?");
  EXPECT_TRUE(MessageDifferencer::Equals(call.RequestAs<v1::AddMessageRequest>(), expected));
}

TEST_F(CliTest, MessageAddToolMessage) {
  v1::AddMessageResponse response;
  response.mutable_message()->set_id("m2");
  fake_->SetResponse("AddMessage", response);
  CliResult r = Run({"message", "add", "--thread", "t1", "--role", "tool", "--tool-call-id",
                     "call-1", "--", "-42 EUR"});
  EXPECT_EQ(r.code, 0) << r.err;
  auto request = OnlyCall("AddMessage").RequestAs<v1::AddMessageRequest>();
  EXPECT_EQ(request.message().role(), v1::ROLE_TOOL);
  EXPECT_EQ(request.message().tool_call_id(), "call-1");
  EXPECT_EQ(request.message().content(), "-42 EUR");
}

TEST_F(CliTest, MessageAddJson) {
  v1::AddMessageResponse response;
  response.mutable_message()->set_id("m1");
  response.mutable_message()->set_role(v1::ROLE_USER);
  fake_->SetResponse("AddMessage", response);
  CliResult r = Run({"--json", "message", "add", "--thread", "t1", "Hallo"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, R"({"message":{"id":"m1","role":"ROLE_USER"}})"
                   "\n");
}

TEST_F(CliTest, MessageAddBadRoleOrNoTextIsUsageError) {
  CliResult bad_role = Run({"message", "add", "--thread", "t1", "--role", "robot", "Hallo"});
  EXPECT_EQ(bad_role.code, 64);
  EXPECT_THAT(bad_role.err,
              StartsWith("copilot: --role must be user, system, assistant or tool, not 'robot'\n"));
  CliResult no_text = Run({"message", "add", "--thread", "t1"});
  EXPECT_EQ(no_text.code, 64);
  EXPECT_THAT(no_text.err, StartsWith("copilot: missing TEXT\n"));
  CliResult no_thread = Run({"message", "add", "Hallo"});
  EXPECT_EQ(no_thread.code, 64);
  EXPECT_THAT(no_thread.err, StartsWith("copilot: missing --thread THREAD\n"));
  EXPECT_TRUE(fake_->calls().empty());
}

TEST_F(CliTest, MessageAddInvalidArgumentExitsThreeWithFieldViolation) {
  google::rpc::BadRequest bad;
  auto* v = bad.add_field_violations();
  v->set_field("thread_id");
  v->set_description("must be a UUID");
  fake_->SetError("AddMessage",
                  MakeStatus(grpc::StatusCode::INVALID_ARGUMENT, "Invalid request", bad));
  CliResult r = Run({"message", "add", "--thread", "nope", "Hallo"});
  EXPECT_EQ(r.code, 3);
  EXPECT_EQ(r.err, "error: INVALID_ARGUMENT: Invalid request [field thread_id: must be a UUID]\n");
}

v1::ListMessagesResponse TwoMessages() {
  v1::ListMessagesResponse response;
  v1::Message* answer = response.add_messages();
  answer->set_id("m2");
  answer->set_role(v1::ROLE_ASSISTANT);
  answer->set_content("Die Pauschale\ngilt.");
  *answer->mutable_create_time() = TimeUtil::SecondsToTimestamp(1795766460);
  v1::Message* question = response.add_messages();
  question->set_id("m1");
  question->set_role(v1::ROLE_USER);
  question->set_content("Wie hoch?");
  *question->mutable_create_time() = TimeUtil::SecondsToTimestamp(1795766400);
  response.set_next_page_token("p2");
  return response;
}

TEST_F(CliTest, MessagesListPrintsNewestFirstAndTheNextPageToken) {
  fake_->SetResponse("ListMessages", TwoMessages());
  CliResult r =
      Run({"messages", "list", "--thread", "t1", "--page-size", "2", "--page-token", "p1"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "assistant m2 2026-11-27T08:01:00Z\n"
            "  Die Pauschale\n"
            "  gilt.\n"
            "user m1 2026-11-27T08:00:00Z\n"
            "  Wie hoch?\n"
            "next page token: p2\n");
  RecordedCall call = OnlyCall("ListMessages");
  ExpectTokenAndDeadline(call);
  v1::ListMessagesRequest expected;
  expected.set_thread_id("t1");
  expected.set_page_size(2);
  expected.set_page_token("p1");
  EXPECT_TRUE(MessageDifferencer::Equals(call.RequestAs<v1::ListMessagesRequest>(), expected));
}

TEST_F(CliTest, MessagesListJson) {
  v1::ListMessagesResponse response;
  response.add_messages()->set_id("m1");
  response.set_next_page_token("p2");
  fake_->SetResponse("ListMessages", response);
  CliResult r = Run({"--json", "messages", "list", "--thread", "t1"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, R"({"messages":[{"id":"m1"}],"nextPageToken":"p2"})"
                   "\n");
}

TEST_F(CliTest, MessagesListBadPageSizeIsUsageError) {
  CliResult r = Run({"messages", "list", "--thread", "t1", "--page-size", "ten"});
  EXPECT_EQ(r.code, 64);
  EXPECT_THAT(r.err,
              StartsWith("copilot: --page-size must be a non-negative integer, not 'ten'\n"));
  EXPECT_TRUE(fake_->calls().empty());
}

// ---- run --------------------------------------------------------------------

TEST_F(CliTest, RunStreamsTokensAsTheyArrive) {
  // The fake sends chunk i only once the CLI has printed and flushed chunk
  // i-1, so this passes only if output is written as the chunks arrive.
  FlushRecorder recorder;
  std::ostream out(&recorder);
  std::vector<std::string> texts = {"Die ", "Die Pauschale "};
  std::atomic<int> timeouts{0};
  fake_->SetStream("StreamRun", AnswerChunks(), grpc::Status::OK, [&](int index) {
    if (index > 0 && !recorder.WaitForFlushed(texts[index - 1], absl::Seconds(5))) ++timeouts;
  });

  std::ostringstream err;
  int code = RunCli({"--target", fake_->target(), "--token", "tok-acme", "run", "--thread", "t1"},
                    out, err);

  EXPECT_EQ(code, 0) << err.str();
  EXPECT_EQ(timeouts.load(), 0);
  EXPECT_EQ(recorder.str(),
            "Die Pauschale gilt.\n"
            "Sources:\n"
            "  [1] EStG § 9 (Abs. 1)\n");
  std::vector<std::string> flushes = recorder.flushes();
  ASSERT_GE(flushes.size(), 3u);
  EXPECT_EQ(flushes[0], "Die ");
  EXPECT_EQ(flushes[1], "Die Pauschale ");
  EXPECT_EQ(flushes[2], "Die Pauschale gilt.");
  RecordedCall call = OnlyCall("StreamRun");
  ExpectTokenAndDeadline(call);
  EXPECT_EQ(call.RequestAs<v1::StreamRunRequest>().thread_id(), "t1");
}

TEST_F(CliTest, RunJsonPrintsOneChunkPerLine) {
  fake_->SetStream("StreamRun", {Chunk("Die "), Chunk("Pauschale")});
  CliResult r = Run({"--json", "run", "--thread", "t1"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(
      r.out,
      R"({"messageId":"m-answer","threadId":"t1","delta":{"role":"ROLE_ASSISTANT","content":"Die "}})"
      "\n"
      R"({"messageId":"m-answer","threadId":"t1","delta":{"role":"ROLE_ASSISTANT","content":"Pauschale"}})"
      "\n");
}

TEST_F(CliTest, RunStreamBrokenMidWayKeepsThePrintedTextAndExitsFourteen) {
  google::rpc::RetryInfo retry;
  retry.mutable_retry_delay()->set_seconds(2);
  fake_->SetStream("StreamRun", {Chunk("Die "), Chunk("Pausch")},
                   MakeStatus(grpc::StatusCode::UNAVAILABLE, "Upstream stream broke",
                              ErrorInfo("upstream_unavailable", "503"), retry));
  CliResult r = Run({"run", "--thread", "t1"});
  EXPECT_EQ(r.code, 14);
  EXPECT_EQ(r.out, "Die Pausch\n");
  EXPECT_EQ(r.err,
            "error: UNAVAILABLE: Upstream stream broke [reason: upstream_unavailable; "
            "upstream HTTP 503; retry after 2s]\n");
}

TEST_F(CliTest, RunNoStreamUsesTheUnaryCall) {
  v1::RunResponse response;
  *response.mutable_message() = Answer();
  fake_->SetResponse("Run", response);
  CliResult r = Run({"run", "--thread", "t1", "--no-stream", "--request-id", "r-3"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "Die Pauschale gilt.\n"
            "Sources:\n"
            "  [1] EStG § 9 (Abs. 1)\n");
  RecordedCall call = OnlyCall("Run");
  ExpectTokenAndDeadline(call);
  v1::RunRequest expected;
  expected.set_thread_id("t1");
  expected.set_request_id("r-3");
  EXPECT_TRUE(MessageDifferencer::Equals(call.RequestAs<v1::RunRequest>(), expected));
}

TEST_F(CliTest, RunNoStreamPrintsToolCalls) {
  v1::RunResponse response;
  v1::ToolCall* call = response.mutable_message()->add_tool_calls();
  call->set_id("call-1");
  call->set_type("function");
  call->mutable_function()->set_name("lookup_salary");
  call->mutable_function()->set_arguments(R"({"employee":"42"})");
  fake_->SetResponse("Run", response);
  CliResult r = Run({"run", "--thread", "t1", "--no-stream"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "tool call call-1: lookup_salary {\"employee\":\"42\"}\n");
}

TEST_F(CliTest, RunNoStreamJson) {
  v1::RunResponse response;
  response.mutable_message()->set_id("m-answer");
  response.mutable_message()->set_content("Ja.");
  fake_->SetResponse("Run", response);
  CliResult r = Run({"--json", "run", "--thread", "t1", "--no-stream"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, R"({"message":{"id":"m-answer","content":"Ja."}})"
                   "\n");
}

TEST_F(CliTest, RunResourceExhaustedExitsEightWithRetryAndQuota) {
  google::rpc::RetryInfo retry;
  retry.mutable_retry_delay()->set_seconds(2);
  google::rpc::QuotaFailure quota;
  auto* v = quota.add_violations();
  v->set_subject("tenant:acme");
  v->set_description("answer-generation rate");
  fake_->SetError("StreamRun",
                  MakeStatus(grpc::StatusCode::RESOURCE_EXHAUSTED, "Tenant rate limit reached",
                             ErrorInfo("tenant_rate_limited", ""), retry, quota));
  CliResult r = Run({"run", "--thread", "t1"});
  EXPECT_EQ(r.code, 8);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err,
            "error: RESOURCE_EXHAUSTED: Tenant rate limit reached [reason: tenant_rate_limited; "
            "retry after 2s; quota: tenant:acme: answer-generation rate]\n");
}

TEST_F(CliTest, RunWithoutThreadOrWithStreamedRequestIdIsUsageError) {
  CliResult no_thread = Run({"run"});
  EXPECT_EQ(no_thread.code, 64);
  EXPECT_THAT(no_thread.err, StartsWith("copilot: missing --thread THREAD\n"));
  CliResult request_id = Run({"run", "--thread", "t1", "--request-id", "r"});
  EXPECT_EQ(request_id.code, 64);
  EXPECT_THAT(request_id.err, StartsWith("copilot: --request-id needs --no-stream"));
  EXPECT_TRUE(fake_->calls().empty());
}

TEST_F(CliTest, ShortTimeoutAgainstAHeldCallExitsFour) {
  fake_->SetStream("StreamRun", AnswerChunks());
  fake_->SetHold("StreamRun", absl::Seconds(10));
  const absl::Time start = absl::Now();
  CliResult r = Run({"--timeout", "0.2", "run", "--thread", "t1"});
  EXPECT_EQ(r.code, 4);
  EXPECT_THAT(r.err, StartsWith("error: DEADLINE_EXCEEDED: "));
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  RecordedCall call = OnlyCall("StreamRun");
  ASSERT_TRUE(call.time_left.has_value());
  // Short timeouts travel in milliseconds: no rounding to speak of.
  EXPECT_LE(*call.time_left, absl::Milliseconds(250));
}

TEST_F(CliTest, TimeoutAcceptsDurations) {
  fake_->SetResponse("ListAssistants", v1::ListAssistantsResponse());
  CliResult r = Run({"--timeout", "7s", "assistants"});
  EXPECT_EQ(r.code, 0) << r.err;
  RecordedCall call = OnlyCall("ListAssistants");
  ASSERT_TRUE(call.time_left.has_value());
  EXPECT_LE(*call.time_left, absl::Seconds(7) + kWireRounding);
  EXPECT_GT(*call.time_left, absl::Seconds(5));
}

// ---- complete ---------------------------------------------------------------

TEST_F(CliTest, CompleteStreamsWithTheSystemMessageFirst) {
  fake_->SetStream("StreamComplete", AnswerChunks());
  CliResult r = Run({"complete", "--assistant", "a-tax", "--user", "u-1", "--system",
                     "Antworte kurz.", "Wie", "hoch?"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "Die Pauschale gilt.\n"
            "Sources:\n"
            "  [1] EStG § 9 (Abs. 1)\n");
  EXPECT_EQ(r.err, "thread: t1\n");
  RecordedCall call = OnlyCall("StreamComplete");
  ExpectTokenAndDeadline(call);
  v1::StreamCompleteRequest expected;
  expected.set_assistant_id("a-tax");
  expected.set_user_id("u-1");
  v1::MessageInput* system = expected.add_messages();
  system->set_role(v1::ROLE_SYSTEM);
  system->set_content("Antworte kurz.");
  v1::MessageInput* user = expected.add_messages();
  user->set_role(v1::ROLE_USER);
  user->set_content("Wie hoch?");
  EXPECT_TRUE(MessageDifferencer::Equals(call.RequestAs<v1::StreamCompleteRequest>(), expected));
}

TEST_F(CliTest, CompleteNoStreamContinuesAThread) {
  v1::CompleteResponse response;
  *response.mutable_message() = Answer();
  response.mutable_message()->set_thread_id("up-7");
  fake_->SetResponse("Complete", response);
  CliResult r = Run({"complete", "--assistant", "a-tax", "--thread", "up-6", "--no-stream",
                     "--request-id", "r-5", "Und", "2027?"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "Die Pauschale gilt.\n"
            "Sources:\n"
            "  [1] EStG § 9 (Abs. 1)\n");
  EXPECT_EQ(r.err, "thread: up-7\n");
  RecordedCall call = OnlyCall("Complete");
  ExpectTokenAndDeadline(call);
  v1::CompleteRequest expected;
  expected.set_assistant_id("a-tax");
  expected.set_thread_id("up-6");
  expected.set_request_id("r-5");
  v1::MessageInput* user = expected.add_messages();
  user->set_role(v1::ROLE_USER);
  user->set_content("Und 2027?");
  EXPECT_TRUE(MessageDifferencer::Equals(call.RequestAs<v1::CompleteRequest>(), expected));
}

TEST_F(CliTest, CompleteJsonStreamsChunkLines) {
  fake_->SetStream("StreamComplete", {Chunk("Ja.")});
  CliResult r = Run({"--json", "complete", "--assistant", "a-tax", "Gilt das?"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(
      r.out,
      R"({"messageId":"m-answer","threadId":"t1","delta":{"role":"ROLE_ASSISTANT","content":"Ja."}})"
      "\n");
  EXPECT_EQ(r.err, "");
}

TEST_F(CliTest, CompleteNoStreamJson) {
  v1::CompleteResponse response;
  response.mutable_message()->set_id("m-answer");
  response.mutable_message()->set_thread_id("up-7");
  response.mutable_message()->set_content("Ja.");
  fake_->SetResponse("Complete", response);
  CliResult r = Run({"--json", "complete", "--assistant", "a-tax", "--no-stream", "Gilt das?"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, R"({"message":{"id":"m-answer","threadId":"up-7","content":"Ja."}})"
                   "\n");
  EXPECT_EQ(r.err, "");
}

TEST_F(CliTest, CompletePermissionDeniedExitsSeven) {
  fake_->SetError("StreamComplete",
                  MakeStatus(grpc::StatusCode::PERMISSION_DENIED, "Assistant not allowed",
                             ErrorInfo("assistant_not_allowed", "")));
  CliResult r = Run({"complete", "--assistant", "a-hr", "Hallo"});
  EXPECT_EQ(r.code, 7);
  EXPECT_EQ(r.err,
            "error: PERMISSION_DENIED: Assistant not allowed [reason: assistant_not_allowed]\n");
}

TEST_F(CliTest, CompleteWithoutQuestionIsUsageError) {
  CliResult r = Run({"complete", "--assistant", "a-tax"});
  EXPECT_EQ(r.code, 64);
  EXPECT_THAT(r.err, StartsWith("copilot: missing QUESTION\n"));
  EXPECT_TRUE(fake_->calls().empty());
}

// ---- ask --------------------------------------------------------------------

TEST_F(CliTest, AskCreatesAThreadAddsTheQuestionAndStreamsTheAnswer) {
  v1::CreateThreadResponse created;
  created.mutable_thread()->set_id("t1");
  fake_->SetResponse("CreateThread", created);
  v1::AddMessageResponse added;
  added.mutable_message()->set_id("m1");
  fake_->SetResponse("AddMessage", added);
  fake_->SetStream("StreamRun", AnswerChunks());

  CliResult r = Run({"ask", "--assistant", "a-tax", "--user", "u-1", "Wie", "hoch?"});

  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "Die Pauschale gilt.\n"
            "Sources:\n"
            "  [1] EStG § 9 (Abs. 1)\n");
  EXPECT_EQ(r.err, "thread: t1\n");
  std::vector<RecordedCall> calls = fake_->calls();
  ASSERT_EQ(calls.size(), 3u);
  EXPECT_EQ(calls[0].method, "CreateThread");
  EXPECT_EQ(calls[0].RequestAs<v1::CreateThreadRequest>().assistant_id(), "a-tax");
  EXPECT_EQ(calls[0].RequestAs<v1::CreateThreadRequest>().user_id(), "u-1");
  EXPECT_EQ(calls[1].method, "AddMessage");
  auto add = calls[1].RequestAs<v1::AddMessageRequest>();
  EXPECT_EQ(add.thread_id(), "t1");
  EXPECT_EQ(add.message().role(), v1::ROLE_USER);
  EXPECT_EQ(add.message().content(), "Wie hoch?");
  EXPECT_EQ(calls[2].method, "StreamRun");
  EXPECT_EQ(calls[2].RequestAs<v1::StreamRunRequest>().thread_id(), "t1");
  for (const RecordedCall& call : calls) {
    SCOPED_TRACE(call.method);
    ExpectTokenAndDeadline(call);
  }
}

TEST_F(CliTest, AskJsonPrintsOnlyTheChunks) {
  v1::CreateThreadResponse created;
  created.mutable_thread()->set_id("t1");
  fake_->SetResponse("CreateThread", created);
  fake_->SetResponse("AddMessage", v1::AddMessageResponse());
  fake_->SetStream("StreamRun", {Chunk("Ja.")});
  CliResult r = Run({"--json", "ask", "--assistant", "a-tax", "Gilt das?"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(
      r.out,
      R"({"messageId":"m-answer","threadId":"t1","delta":{"role":"ROLE_ASSISTANT","content":"Ja."}})"
      "\n");
  EXPECT_EQ(r.err, "");
}

TEST_F(CliTest, AskNoStreamUsesRun) {
  v1::CreateThreadResponse created;
  created.mutable_thread()->set_id("t1");
  fake_->SetResponse("CreateThread", created);
  fake_->SetResponse("AddMessage", v1::AddMessageResponse());
  v1::RunResponse ran;
  *ran.mutable_message() = Answer();
  fake_->SetResponse("Run", ran);
  CliResult r = Run({"ask", "--assistant", "a-tax", "--no-stream", "Wie hoch?"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, StartsWith("Die Pauschale gilt.\n"));
  std::vector<RecordedCall> calls = fake_->calls();
  ASSERT_EQ(calls.size(), 3u);
  EXPECT_EQ(calls[2].method, "Run");
  EXPECT_EQ(calls[2].RequestAs<v1::RunRequest>().thread_id(), "t1");
}

TEST_F(CliTest, AskStopsAtTheFirstFailedCall) {
  fake_->SetError("CreateThread",
                  MakeStatus(grpc::StatusCode::PERMISSION_DENIED, "Assistant not allowed",
                             ErrorInfo("assistant_not_allowed", "")));
  CliResult r = Run({"ask", "--assistant", "a-hr", "Hallo"});
  EXPECT_EQ(r.code, 7);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(fake_->calls().size(), 1u);
}

// ---- connection, environment, usage -------------------------------------------

TEST(CliUnreachableTest, DeadTargetExitsFourteen) {
  std::ostringstream out;
  std::ostringstream err;
  int code = RunCli({"--target", DeadTarget(), "--timeout", "10", "assistants"}, out, err);
  EXPECT_EQ(code, 14);
  EXPECT_THAT(err.str(), StartsWith("error: UNAVAILABLE: "));
  EXPECT_EQ(out.str(), "");
}

TEST_F(CliTest, TargetAndTokenDefaultToTheEnvironment) {
  fake_->SetResponse("ListAssistants", v1::ListAssistantsResponse());
  CliResult r = RunRaw({"assistants"}, CliEnvironment{fake_->target(), "tok-env"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(OnlyCall("ListAssistants").Metadata("authorization"), "Bearer tok-env");
}

TEST_F(CliTest, FlagsOverrideTheEnvironment) {
  fake_->SetResponse("ListAssistants", v1::ListAssistantsResponse());
  CliResult r = RunRaw({"--target", fake_->target(), "--token", "tok-flag", "assistants"},
                       CliEnvironment{DeadTarget(), "tok-env"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(OnlyCall("ListAssistants").Metadata("authorization"), "Bearer tok-flag");
}

TEST_F(CliTest, NoTokenSendsNoAuthorization) {
  fake_->SetResponse("ListAssistants", v1::ListAssistantsResponse());
  CliResult r = RunRaw({"--target", fake_->target(), "assistants"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(OnlyCall("ListAssistants").metadata.count("authorization"), 0u);
}

TEST(CliUsageTest, HelpPrintsCommandsFlagsAndExitCodes) {
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"--help"}, {"-h"}, {"help"}}) {
    std::ostringstream out;
    std::ostringstream err;
    EXPECT_EQ(RunCli(args, out, err), 0);
    EXPECT_THAT(out.str(), StartsWith("Usage: copilot [global flags] <command>"));
    EXPECT_THAT(out.str(), HasSubstr("  copilot thread create --assistant ID"));
    EXPECT_THAT(out.str(), HasSubstr("  copilot ask --assistant ID"));
    EXPECT_THAT(out.str(), HasSubstr("--target HOST:PORT"));
    EXPECT_THAT(out.str(), HasSubstr("--token-file FILE"));
    EXPECT_THAT(out.str(), HasSubstr("--tls-ca FILE"));
    EXPECT_THAT(out.str(), HasSubstr("--tls-cert FILE"));
    EXPECT_THAT(out.str(), HasSubstr("--tls-key FILE"));
    EXPECT_THAT(out.str(), HasSubstr("--tls-server-name NAME"));
    EXPECT_THAT(out.str(), HasSubstr("5 NOT_FOUND"));
    EXPECT_THAT(out.str(), HasSubstr("16 UNAUTHENTICATED"));
    EXPECT_THAT(out.str(), HasSubstr("  64      usage error"));
    EXPECT_EQ(err.str(), "");
  }
}

TEST(CliUsageTest, CommandHelpPrintsThatCommand) {
  std::ostringstream out;
  std::ostringstream err;
  EXPECT_EQ(RunCli({"thread", "create", "--help"}, out, err), 0);
  EXPECT_EQ(out.str(),
            "Usage:\n"
            "  copilot thread create --assistant ID [--user UUID] [--title T] [--request-id ID]\n"
            "      Create a thread; prints its ID alone on a line (T=$(copilot thread create "
            "...)).\n");
  std::ostringstream group_out;
  EXPECT_EQ(RunCli({"thread", "--help"}, group_out, err), 0);
  EXPECT_THAT(group_out.str(), HasSubstr("copilot thread delete THREAD"));
}

struct UsageRow {
  std::string name;
  std::vector<std::string> args;
  std::string err_prefix;
};

class CliUsageErrorTest : public ::testing::TestWithParam<UsageRow> {};

TEST_P(CliUsageErrorTest, ExitsSixtyFourWithAMessage) {
  std::ostringstream out;
  std::ostringstream err;
  EXPECT_EQ(RunCli(GetParam().args, out, err), 64);
  EXPECT_THAT(err.str(), StartsWith(GetParam().err_prefix));
  EXPECT_EQ(out.str(), "");
}

INSTANTIATE_TEST_SUITE_P(
    Rows, CliUsageErrorTest,
    ::testing::Values(
        UsageRow{"NoCommand", {}, "copilot: no command given\n"},
        UsageRow{"UnknownCommand", {"bogus"}, "copilot: unknown command 'bogus'\n"},
        UsageRow{"UnknownGlobalFlag", {"--bogus", "assistants"}, "copilot: unknown flag --bogus\n"},
        UsageRow{
            "UnknownCommandFlag", {"assistants", "--bogus"}, "copilot: unknown flag --bogus\n"},
        UsageRow{
            "ExtraArgument", {"assistants", "extra"}, "copilot: unexpected argument 'extra'\n"},
        UsageRow{"MissingFlagValue", {"--target"}, "copilot: flag --target needs a value\n"},
        UsageRow{"GroupWithoutSubcommand", {"thread"}, "copilot: 'thread' needs a subcommand\n"},
        UsageRow{"UnknownSubcommand",
                 {"thread", "rename"},
                 "copilot: unknown command 'thread rename'\n"},
        UsageRow{"TimeoutNotANumber",
                 {"--timeout", "soon", "assistants"},
                 "copilot: --timeout must be a positive"},
        UsageRow{"NegativeTimeout",
                 {"--timeout", "-1", "assistants"},
                 "copilot: --timeout must be a positive"},
        UsageRow{"ZeroTimeout",
                 {"--timeout", "0", "assistants"},
                 "copilot: --timeout must be a positive"},
        UsageRow{"SwitchWithValue",
                 {"--json=1", "assistants"},
                 "copilot: flag --json takes no value\n"}),
    [](const ::testing::TestParamInfo<UsageRow>& info) { return info.param.name; });

// ---- token file ---------------------------------------------------------------

// A file holding `contents` in the test's temporary directory, removed with
// the object.
class TempFile {
 public:
  explicit TempFile(const std::string& contents)
      : path_(absl::StrCat(::testing::TempDir(), "/cli_test.", getpid(), ".",
                           ::testing::UnitTest::GetInstance()->current_test_info()->name())) {
    std::ofstream(path_, std::ios::binary) << contents;
  }
  ~TempFile() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST_F(CliTest, TokenFileIsSentTrimmedAsBearerMetadata) {
  fake_->SetResponse("ListAssistants", v1::ListAssistantsResponse());
  TempFile token("  tok-from-file\n\n");
  CliResult r = RunRaw({"--target", fake_->target(), "--token-file", token.path(), "assistants"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(OnlyCall("ListAssistants").Metadata("authorization"), "Bearer tok-from-file");
}

TEST_F(CliTest, TokenFileOverridesTheEnvironmentAndWorksAfterTheCommand) {
  fake_->SetResponse("ListAssistants", v1::ListAssistantsResponse());
  TempFile token("tok-from-file");
  CliResult r = RunRaw({"assistants", "--token-file=" + token.path()},
                       CliEnvironment{fake_->target(), "tok-env"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(OnlyCall("ListAssistants").Metadata("authorization"), "Bearer tok-from-file");
}

TEST_F(CliTest, EnvironmentTokenIsTrimmed) {
  fake_->SetResponse("ListAssistants", v1::ListAssistantsResponse());
  CliResult r = RunRaw({"assistants"}, CliEnvironment{fake_->target(), "tok-env\n"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(OnlyCall("ListAssistants").Metadata("authorization"), "Bearer tok-env");
}

TEST(CliTokenFileTest, MissingTokenFileExitsSixtySixNamingTheFlag) {
  std::ostringstream out;
  std::ostringstream err;
  EXPECT_EQ(RunCli({"--token-file", "/nonexistent/token", "assistants"}, out, err), 66);
  EXPECT_EQ(err.str(),
            "copilot: cannot read --token-file /nonexistent/token: No such file or directory\n");
  EXPECT_EQ(out.str(), "");
}

TEST(CliTokenFileTest, EmptyTokenFileIsAUsageError) {
  TempFile token(" \n");
  std::ostringstream out;
  std::ostringstream err;
  EXPECT_EQ(RunCli({"--token-file", token.path(), "assistants"}, out, err), 64);
  EXPECT_THAT(err.str(),
              StartsWith(absl::StrCat("copilot: --token-file ", token.path(), " is empty\n")));
}

TEST(CliTokenFileTest, TokenAndTokenFileTogetherAreAUsageError) {
  TempFile token("tok-from-file");
  std::ostringstream out;
  std::ostringstream err;
  EXPECT_EQ(RunCli({"--token", "tok-flag", "--token-file", token.path(), "assistants"}, out, err),
            64);
  EXPECT_THAT(err.str(), StartsWith("copilot: give --token or --token-file, not both\n"));
}

TEST(CliTokenFileTest, BadTokenIsRefusedWithoutPrintingIt) {
  TempFile token("sekrit-one sekrit-two\n");
  for (const CliEnvironment& env : {CliEnvironment{"127.0.0.1:1", ""},
                                    CliEnvironment{"127.0.0.1:1", "sekrit-one sekrit-two"}}) {
    std::vector<std::string> args = {"--json", "assistants"};
    if (env.token.empty()) args = {"--json", "--token-file", token.path(), "assistants"};
    std::ostringstream out;
    std::ostringstream err;
    EXPECT_EQ(RunCli(args, out, err, env), 64);
    EXPECT_THAT(err.str(), HasSubstr("token may hold only printable ASCII without spaces; byte 11 "
                                     "of 21 is not"));
    EXPECT_THAT(err.str(), Not(HasSubstr("sekrit")));
    EXPECT_EQ(out.str(), "");
  }
}

TEST(CliTokenFileTest, TokenNeverAppearsInCallErrors) {
  std::unique_ptr<FakeCopilotService> fake = FakeCopilotService::Start();
  fake->SetError("ListAssistants", MakeStatus(grpc::StatusCode::UNAUTHENTICATED, "Unknown token",
                                              ErrorInfo("invalid_token", "")));
  TempFile token("sekrit-token");
  for (bool json : {false, true}) {
    std::vector<std::string> args = {"--target", fake->target(), "--token-file", token.path(),
                                     "assistants"};
    if (json) args.push_back("--json");
    std::ostringstream out;
    std::ostringstream err;
    EXPECT_EQ(RunCli(args, out, err), 16);
    EXPECT_THAT(err.str(), HasSubstr("Unknown token"));
    EXPECT_THAT(err.str() + out.str(), Not(HasSubstr("sekrit")));
  }
  std::ostringstream out;
  std::ostringstream err;
  EXPECT_EQ(RunCli({"--timeout", "5", "--target", DeadTarget(), "--token-file", token.path(),
                    "assistants"},
                   out, err),
            14);
  EXPECT_THAT(err.str() + out.str(), Not(HasSubstr("sekrit")));
}

// ---- TLS ----------------------------------------------------------------------

TEST(CliTlsTest, UnreadableRootCertificatesExitSixtySix) {
  for (const char* flag : {"--tls-ca", "--tls-roots"}) {
    std::ostringstream out;
    std::ostringstream err;
    EXPECT_EQ(RunCli({flag, "/nonexistent/roots.pem", "assistants"}, out, err), 66);
    EXPECT_EQ(err.str(),
              "copilot: cannot read TLS root certificates /nonexistent/roots.pem: No such file or "
              "directory\n");
  }
}

TEST(CliTlsTest, UnreadableClientCertificateOrKeyExitsSixtySix) {
  std::ostringstream out;
  std::ostringstream err;
  EXPECT_EQ(RunCli({"--tls-cert", "/nonexistent/tenant.pem", "--tls-key",
                    TestCertPath("tenant-a.key"), "assistants"},
                   out, err),
            66);
  EXPECT_EQ(err.str(),
            "copilot: cannot read TLS client certificate /nonexistent/tenant.pem: No such file or "
            "directory\n");
  std::ostringstream key_err;
  EXPECT_EQ(RunCli({"--tls-cert", TestCertPath("tenant-a.pem"), "--tls-key",
                    "/nonexistent/tenant.key", "assistants"},
                   out, key_err),
            66);
  EXPECT_EQ(key_err.str(),
            "copilot: cannot read TLS client private key /nonexistent/tenant.key: No such file or "
            "directory\n");
}

TEST(CliTlsTest, ClientCertificateAndKeyGoTogether) {
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"--tls-cert", TestCertPath("tenant-a.pem"), "assistants"},
        {"--tls-key", TestCertPath("tenant-a.key"), "assistants"}}) {
    std::ostringstream out;
    std::ostringstream err;
    EXPECT_EQ(RunCli(args, out, err), 64);
    EXPECT_THAT(err.str(), StartsWith("copilot: --tls-cert and --tls-key go together"));
  }
}

TEST(CliTlsTest, CaUnderBothNamesIsAUsageError) {
  std::ostringstream out;
  std::ostringstream err;
  EXPECT_EQ(RunCli({"--tls-ca", TestCertPath("ca.pem"), "--tls-roots", TestCertPath("ca.pem"),
                    "assistants"},
                   out, err),
            64);
  EXPECT_THAT(err.str(), StartsWith("copilot: give --tls-ca or --tls-roots, not both"));
}

TEST(CliTlsTest, MutualTlsPresentsTheClientCertificateAndTheToken) {
  std::unique_ptr<FakeCopilotService> fake =
      FakeCopilotService::Start(TestServerCredentials(ClientCerts::kRequireAndVerify));
  v1::ListAssistantsResponse response;
  response.add_assistants()->set_id("a-tax");
  fake->SetResponse("ListAssistants", response);
  TempFile token("tok-a\n");
  std::ostringstream out;
  std::ostringstream err;
  int code = RunCli(
      {"--target", fake->target(), "--token-file", token.path(), "--tls-ca", TestCertPath("ca.pem"),
       "--tls-cert", TestCertPath("tenant-a.pem"), "--tls-key", TestCertPath("tenant-a.key"),
       "--tls-server-name", "localhost", "--json", "assistants"},
      out, err);
  EXPECT_EQ(code, 0) << err.str();
  EXPECT_EQ(out.str(), "{\"assistants\":[{\"id\":\"a-tax\"}]}\n");
  ASSERT_EQ(fake->calls().size(), 1u);
  const RecordedCall call = fake->calls()[0];
  EXPECT_EQ(call.Metadata("authorization"), "Bearer tok-a");
  EXPECT_THAT(call.AuthProperty("peer_spiffe_id"),
              ::testing::ElementsAre("spiffe://example.org/ns/a/sa/app"));
}

TEST(CliTlsTest, ServerNameMustMatchTheCertificate) {
  std::unique_ptr<FakeCopilotService> fake =
      FakeCopilotService::Start(TestServerCredentials(ClientCerts::kNone));
  fake->SetResponse("ListAssistants", v1::ListAssistantsResponse());
  std::ostringstream out;
  std::ostringstream err;
  EXPECT_EQ(RunCli({"--target", fake->target(), "--tls-ca", TestCertPath("ca.pem"),
                    "--tls-server-name", "gateway.example", "--timeout", "10", "assistants"},
                   out, err),
            14);
  EXPECT_THAT(err.str(), StartsWith("error: UNAVAILABLE: "));
  EXPECT_TRUE(fake->calls().empty());
}

TEST(CliTlsTest, ServerNameAloneImpliesTlsWithTheSystemRoots) {
  // A plaintext client would get its answer from this plaintext fake; a TLS
  // client fails the handshake.
  std::unique_ptr<FakeCopilotService> plaintext = FakeCopilotService::Start();
  plaintext->SetResponse("ListAssistants", v1::ListAssistantsResponse());
  std::ostringstream out;
  std::ostringstream err;
  EXPECT_EQ(RunCli({"--target", plaintext->target(), "--tls-server-name", "localhost", "--timeout",
                    "10", "assistants"},
                   out, err),
            14);
  EXPECT_TRUE(plaintext->calls().empty());
}

}  // namespace
}  // namespace copilot::client::cli
