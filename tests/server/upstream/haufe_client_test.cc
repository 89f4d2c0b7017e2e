#include "server/upstream/haufe_client.h"

#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/common/errors.h"
#include "server/upstream/decode_pool.h"
#include "tests/testing/fake_transport.h"
#include "tests/testing/recorders.h"

namespace copilot::gateway {
namespace {

using ::copilot::gateway::testing::FakeTransport;
using ::copilot::gateway::testing::Head;
using ::copilot::gateway::testing::RecordingSink;
using ::copilot::gateway::testing::Result;
using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kBase[] = "https://api.haufe.ai/agents";
const absl::Time kNow = absl::FromUnixSeconds(1700000000);

std::string Reason(const absl::Status& status) {
  auto info = GetErrorInfo(status);
  return info.has_value() ? info->reason() : "<no ErrorInfo>";
}

std::string Header(const HttpRequest& request, const std::string& name) {
  std::string value = "<absent>";
  int count = 0;
  for (const auto& [key, v] : request.headers) {
    if (key == name) {
      value = v;
      ++count;
    }
  }
  EXPECT_LE(count, 1) << name;
  return value;
}

class HaufeClientTest : public ::testing::Test {
 protected:
  HaufeClientTest()
      : transport_(std::make_shared<FakeTransport>()),
        client_(HaufeClientConfig{.base_url = std::string(kBase) + "/",
                                  .connect_timeout = absl::Seconds(3),
                                  .stall_timeout = absl::Seconds(20),
                                  .max_response_bytes = 1000,
                                  .max_ndjson_line_bytes = 256,
                                  .version = "1.2.3"},
                transport_, [] { return kNow; }) {
    options_.deadline = kNow + absl::Seconds(30);
    options_.api_key = "secret-key";
    options_.licence = "PI42";
    options_.request_id = "req-1";
  }

  // Checks the headers every request carries.
  void ExpectCommonHeaders(const HttpRequest& request, bool stream) {
    EXPECT_EQ(Header(request, "api-key"), "secret-key");
    EXPECT_EQ(Header(request, "accept"),
              stream ? "application/x-ndjson, application/json" : "application/json");
    EXPECT_EQ(Header(request, "x-request-id"), "req-1");
    EXPECT_EQ(Header(request, "user-agent"), "copilot-gateway/1.2.3");
    EXPECT_EQ(request.deadline, kNow + absl::Seconds(30));
    EXPECT_EQ(request.connect_timeout, absl::Seconds(3));
    EXPECT_EQ(request.stall_timeout, absl::Seconds(20));
    EXPECT_EQ(request.max_response_bytes, 1000u);
    if (request.method == "POST") {
      EXPECT_EQ(Header(request, "content-type"), "application/json");
    } else {
      EXPECT_EQ(Header(request, "content-type"), "<absent>");
      EXPECT_EQ(request.body, "");
    }
  }

  std::shared_ptr<FakeTransport> transport_;
  HaufeClient client_;
  UpstreamCallOptions options_;
};

TEST_F(HaufeClientTest, ListAssistantsRequestAndResponse) {
  Result<std::vector<v1::Assistant>> result;
  client_.ListAssistants(options_, result.Callback());
  ASSERT_EQ(transport_->size(), 1u);
  const HttpRequest& request = transport_->last().request;
  EXPECT_EQ(request.method, "GET");
  EXPECT_EQ(request.url, "https://api.haufe.ai/agents/v1/assistants");
  ExpectCommonHeaders(request, false);
  EXPECT_FALSE(result.value.has_value());
  transport_->last().Respond(200, R"([{"id":"a1","name":"Tax","streaming":true}])");
  ASSERT_TRUE(result.value.has_value());
  ASSERT_TRUE(result.value->ok()) << result.value->status();
  ASSERT_EQ((*result.value)->size(), 1u);
  EXPECT_EQ((**result.value)[0].name(), "Tax");
}

// Each tenant's requests go over connections of their own; with connections_per_tenant off,
// every request is in the shared pool.
TEST_F(HaufeClientTest, TheTenantNamesTheConnectionPool) {
  options_.tenant_id = "team-a";
  Result<std::vector<v1::Assistant>> result;
  client_.ListAssistants(options_, result.Callback());
  ASSERT_EQ(transport_->size(), 1u);
  EXPECT_EQ(transport_->last().request.connection_pool, "team-a");

  HaufeClient shared({.connections_per_tenant = false}, transport_, [] { return kNow; });
  Result<std::vector<v1::Assistant>> other;
  shared.ListAssistants(options_, other.Callback());
  ASSERT_EQ(transport_->size(), 2u);
  EXPECT_EQ(transport_->last().request.connection_pool, "");
}

TEST_F(HaufeClientTest, OptionalHeadersAreLeftOutWhenEmpty) {
  options_.request_id.clear();
  Result<v1::Assistant> result;
  client_.GetAssistant(options_, "a/1 x", result.Callback());
  const HttpRequest& request = transport_->last().request;
  EXPECT_EQ(request.url, "https://api.haufe.ai/agents/v1/assistants/a%2F1%20x");
  EXPECT_EQ(Header(request, "x-request-id"), "<absent>");
}

TEST_F(HaufeClientTest, GetAssistantNotFoundGoesThroughTheTable) {
  Result<v1::Assistant> result;
  client_.GetAssistant(options_, "a1", result.Callback());
  transport_->last().Respond(404, R"({"error_code":"assistant_not_found","detail":"nope"})");
  ASSERT_TRUE(result.value.has_value());
  EXPECT_EQ(result.value->status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Reason(result.value->status()), "assistant_not_found");
  EXPECT_EQ(result.value->status().message(), "nope");
}

TEST_F(HaufeClientTest, CreateThreadAccepts201) {
  Result<v1::Thread> result;
  client_.CreateThread(options_, {.assistant_id = "a1", .user_id = "u1", .title = "T"},
                       result.Callback());
  const HttpRequest& request = transport_->last().request;
  EXPECT_EQ(request.method, "POST");
  EXPECT_EQ(request.url, "https://api.haufe.ai/agents/v1/threads");
  ExpectCommonHeaders(request, false);
  EXPECT_EQ(json::parse(request.body),
            json({{"assistant_id", "a1"}, {"user_id", "u1"}, {"title", "T"}}));
  transport_->last().Respond(
      201, R"({"id":"t1","assistant_id":"a1","created_at":"2025-03-15T09:12:33.456789Z"})");
  ASSERT_TRUE(result.value->ok()) << result.value->status();
  EXPECT_EQ((*result.value)->id(), "t1");
  EXPECT_EQ((*result.value)->create_time().nanos(), 456789000);
}

TEST_F(HaufeClientTest, GetThread) {
  Result<v1::Thread> result;
  client_.GetThread(options_, "t1", result.Callback());
  EXPECT_EQ(transport_->last().request.method, "GET");
  EXPECT_EQ(transport_->last().request.url, "https://api.haufe.ai/agents/v1/threads/t1");
  transport_->last().Respond(200, R"({"id":"t1"})");
  EXPECT_TRUE(result.value->ok());
}

TEST_F(HaufeClientTest, DeleteThreadAccepts204And200WithBody) {
  for (int status : {204, 200}) {
    std::optional<absl::Status> done;
    client_.DeleteThread(options_, "t1", [&](absl::Status s) { done = s; });
    const HttpRequest& request = transport_->last().request;
    EXPECT_EQ(request.method, "DELETE");
    EXPECT_EQ(request.url, "https://api.haufe.ai/agents/v1/threads/t1");
    ExpectCommonHeaders(request, false);
    transport_->last().Respond(status, status == 200 ? "{}" : "");
    ASSERT_TRUE(done.has_value());
    EXPECT_TRUE(done->ok()) << *done;
  }
}

TEST_F(HaufeClientTest, DeleteThreadDeactivated) {
  std::optional<absl::Status> done;
  client_.DeleteThread(options_, "t1", [&](absl::Status s) { done = s; });
  transport_->last().Respond(400, R"({"error_code":"thread_is_deactivated","detail":"gone"})");
  EXPECT_EQ(done->code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Reason(*done), "thread_is_deactivated");
}

TEST_F(HaufeClientTest, AddMessage) {
  v1::MessageInput message;
  message.set_role(v1::ROLE_USER);
  message.set_content("Wie hoch ist die Pendlerpauschale?");
  Result<v1::Message> result;
  client_.AddMessage(options_, "t1", message, result.Callback());
  const HttpRequest& request = transport_->last().request;
  EXPECT_EQ(request.method, "POST");
  EXPECT_EQ(request.url, "https://api.haufe.ai/agents/v1/threads/t1/messages");
  ExpectCommonHeaders(request, false);
  EXPECT_EQ(json::parse(request.body),
            json({{"role", "user"}, {"content", "Wie hoch ist die Pendlerpauschale?"}}));
  transport_->last().Respond(201, R"({"id":"m1","thread_id":"t1","role":"user","content":"x"})");
  ASSERT_TRUE(result.value->ok());
  EXPECT_EQ((*result.value)->role(), v1::ROLE_USER);
}

TEST_F(HaufeClientTest, ListMessagesQueryParameters) {
  Result<MessagePage> result;
  client_.ListMessages(options_, "t1", 0, "", result.Callback());
  EXPECT_EQ(transport_->last().request.url, "https://api.haufe.ai/agents/v1/threads/t1/messages");
  client_.ListMessages(options_, "t1", 25, "", result.Callback());
  EXPECT_EQ(transport_->last().request.url,
            "https://api.haufe.ai/agents/v1/threads/t1/messages?limit=25");
  client_.ListMessages(options_, "t1", 0, "c+/=", result.Callback());
  EXPECT_EQ(transport_->last().request.url,
            "https://api.haufe.ai/agents/v1/threads/t1/messages?cursor=c%2B%2F%3D");
  client_.ListMessages(options_, "t1", 10, "abc", result.Callback());
  EXPECT_EQ(transport_->last().request.url,
            "https://api.haufe.ai/agents/v1/threads/t1/messages?limit=10&cursor=abc");
  transport_->last().Respond(200, R"({"cursor":"next","items":[{"id":"m2"},{"id":"m1"}]})");
  ASSERT_TRUE(result.value->ok());
  EXPECT_EQ((*result.value)->next_cursor, "next");
  EXPECT_EQ((*result.value)->messages.size(), 2u);
}

TEST_F(HaufeClientTest, RunSendsLicenceAndTools) {
  google::protobuf::Struct tool;
  (*tool.mutable_fields())["type"].set_string_value("function");
  Result<v1::Message> result;
  client_.Run(options_, {.thread_id = "t1", .tools = {tool}}, result.Callback());
  const HttpRequest& request = transport_->last().request;
  EXPECT_EQ(request.method, "POST");
  EXPECT_EQ(request.url, "https://api.haufe.ai/agents/v1/threads/t1/run");
  ExpectCommonHeaders(request, false);
  EXPECT_EQ(json::parse(request.body), json::parse(R"({"meta_data":{"user_data":{"licence":"PI42"}},
                            "tools":[{"type":"function"}]})"));
  transport_->last().Respond(200,
                             R"({"id":"m9","thread_id":"t1","role":"assistant","content":"Answer",
              "meta_data":{"intent":"x"},"sources":[{"content":"s"}]})");
  ASSERT_TRUE(result.value->ok());
  EXPECT_EQ((*result.value)->content(), "Answer");
  EXPECT_EQ((*result.value)->sources_size(), 1);
}

TEST_F(HaufeClientTest, RunWithoutLicenceSendsEmptyObject) {
  options_.licence.clear();
  Result<v1::Message> result;
  client_.Run(options_, {.thread_id = "t1", .tools = {}}, result.Callback());
  EXPECT_EQ(transport_->last().request.body, "{}");
}

TEST_F(HaufeClientTest, CompleteWithAndWithoutThreadId) {
  v1::MessageInput message;
  message.set_role(v1::ROLE_USER);
  message.set_content("Q");
  Result<v1::Message> result;
  client_.Complete(
      options_,
      {.assistant_id = "a1", .messages = {message}, .user_id = "", .thread_id = "", .tools = {}},
      result.Callback());
  EXPECT_EQ(transport_->last().request.url, "https://api.haufe.ai/agents/v1/chat/completions");
  EXPECT_EQ(json::parse(transport_->last().request.body),
            json::parse(R"({"assistant_id":"a1","messages":[{"role":"user","content":"Q"}],
                            "meta_data":{"user_data":{"licence":"PI42"}}})"));
  client_.Complete(options_,
                   {.assistant_id = "a1",
                    .messages = {message},
                    .user_id = "u1",
                    .thread_id = "t 1",
                    .tools = {}},
                   result.Callback());
  const HttpRequest& request = transport_->last().request;
  EXPECT_EQ(request.url, "https://api.haufe.ai/agents/v1/chat/completions?thread_id=t%201");
  ExpectCommonHeaders(request, false);
  EXPECT_EQ(json::parse(request.body)["user_id"], "u1");
  EXPECT_FALSE(json::parse(request.body).contains("thread_id"));
}

TEST_F(HaufeClientTest, BadSuccessBodyIsInternal) {
  Result<v1::Message> result;
  client_.Run(options_, {.thread_id = "t1", .tools = {}}, result.Callback());
  transport_->last().Respond(200, "{not json");
  EXPECT_EQ(result.value->status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(Reason(result.value->status()), "upstream_bad_response");
}

TEST_F(HaufeClientTest, RateLimitCarriesRetryInfoFromHeader) {
  Result<v1::Message> result;
  client_.Run(options_, {.thread_id = "t1", .tools = {}}, result.Callback());
  transport_->last().Respond(429, R"({"message":"Rate limit exceeded!"})",
                             {{"retry-after", "Tue, 14 Nov 2023 22:13:25 GMT"}});  // kNow + 5 s.
  EXPECT_EQ(result.value->status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(GetRetryInfo(result.value->status())->retry_delay().seconds(), 5);
}

TEST_F(HaufeClientTest, TransportErrorsPassThrough) {
  Result<v1::Thread> result;
  client_.GetThread(options_, "t1", result.Callback());
  transport_->last().handler->OnComplete(
      MakeError(absl::StatusCode::kUnavailable, "refused", "upstream_unreachable"));
  EXPECT_EQ(result.value->status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(Reason(result.value->status()), "upstream_unreachable");
}

TEST_F(HaufeClientTest, CancelAndResumeReachTheTransfer) {
  Result<v1::Thread> result;
  auto call = client_.GetThread(options_, "t1", result.Callback());
  call->Cancel();
  call->Resume();
  EXPECT_EQ(transport_->last().transfer->cancels, 1);
  EXPECT_EQ(transport_->last().transfer->resumes, 1);
}

TEST_F(HaufeClientTest, EmptyIdsAreRejectedInline) {
  Result<v1::Thread> result;
  auto call = client_.GetThread(options_, "", result.Callback());
  ASSERT_TRUE(result.value.has_value());
  EXPECT_EQ(result.value->status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Reason(result.value->status()), "upstream_missing_id");
  EXPECT_TRUE(transport_->empty());
  call->Cancel();  // A no-op, and safe.
}

std::string ChunkLine(const std::string& content) {
  return R"({"message_id":"m1","thread_id":"t1","created_at":"2025-01-01T00:00:00.000000Z",)"
         R"("delta":{"role":"assistant","content":")" +
         content + R"(","sources":[]}})" + "\n";
}

TEST_F(HaufeClientTest, StreamRunForwardsEachLineAsItArrives) {
  auto sink = std::make_shared<RecordingSink>();
  client_.StreamRun(options_, {.thread_id = "t1", .tools = {}}, sink);
  auto& call = transport_->last();
  EXPECT_EQ(call.request.method, "POST");
  EXPECT_EQ(call.request.url, "https://api.haufe.ai/agents/v1/threads/t1/run/stream");
  ExpectCommonHeaders(call.request, true);
  EXPECT_EQ(json::parse(call.request.body),
            json::parse(R"({"meta_data":{"user_data":{"licence":"PI42"}}})"));
  call.handler->OnHeaders(Head(200));
  std::string first = ChunkLine("Hello ");
  EXPECT_TRUE(call.handler->OnData(first.substr(0, 10)));
  EXPECT_TRUE(sink->chunks.empty());
  EXPECT_TRUE(call.handler->OnData(first.substr(10)));
  ASSERT_EQ(sink->chunks.size(), 1u);  // Delivered at once, not at the end.
  EXPECT_EQ(sink->chunks[0].message_id(), "m1");
  EXPECT_TRUE(call.handler->OnData("\r\n" + ChunkLine("world")));
  EXPECT_EQ(sink->chunks.size(), 2u);
  EXPECT_FALSE(sink->done.has_value());
  call.handler->OnComplete(absl::OkStatus());
  ASSERT_TRUE(sink->done.has_value());
  EXPECT_TRUE(sink->done->ok()) << *sink->done;
  EXPECT_EQ(sink->Text(), "Hello world");
}

TEST_F(HaufeClientTest, StreamPausesAndDeliversHeldLinesAfterResume) {
  auto sink = std::make_shared<RecordingSink>();
  sink->pause_every = 1;  // Pause after every chunk.
  auto upstream_call = client_.StreamRun(options_, {.thread_id = "t1", .tools = {}}, sink);
  auto& call = transport_->last();
  call.handler->OnHeaders(Head(200));
  // Three lines in one piece: the sink pauses after the first.
  EXPECT_FALSE(call.handler->OnData(ChunkLine("a") + ChunkLine("b") + ChunkLine("c")));
  EXPECT_EQ(sink->chunks.size(), 1u);
  upstream_call->Resume();
  EXPECT_EQ(call.transfer->resumes, 1);
  // The transport follows Resume with an OnData call (CurlTransport: an empty piece).
  EXPECT_FALSE(call.handler->OnData(""));
  EXPECT_EQ(sink->chunks.size(), 2u);
  sink->pause_every = 0;
  EXPECT_TRUE(call.handler->OnData(""));
  EXPECT_EQ(sink->chunks.size(), 3u);
  call.handler->OnComplete(absl::OkStatus());
  EXPECT_TRUE(sink->done->ok());
  EXPECT_EQ(sink->Text(), "abc");
}

TEST_F(HaufeClientTest, StreamCompleteUsesStreamPathAndThreadQuery) {
  auto sink = std::make_shared<RecordingSink>();
  client_.StreamComplete(
      options_,
      {.assistant_id = "a1", .messages = {}, .user_id = "", .thread_id = "t1", .tools = {}}, sink);
  auto& call = transport_->last();
  EXPECT_EQ(call.request.url,
            "https://api.haufe.ai/agents/v1/chat/completions/stream?thread_id=t1");
  ExpectCommonHeaders(call.request, true);
}

TEST_F(HaufeClientTest, StreamErrorLineEndsStreamAndCancels) {
  auto sink = std::make_shared<RecordingSink>();
  client_.StreamRun(options_, {.thread_id = "t1", .tools = {}}, sink);
  auto& call = transport_->last();
  call.handler->OnHeaders(Head(200));
  call.handler->OnData(ChunkLine("a") + R"({"error_code":"api_timeout_error","detail":"slow"})" +
                       "\n" + ChunkLine("ignored"));
  ASSERT_TRUE(sink->done.has_value());
  EXPECT_EQ(sink->done->code(), absl::StatusCode::kInternal);
  EXPECT_EQ(Reason(*sink->done), "api_timeout_error");
  EXPECT_EQ(sink->done->message(), "slow");
  EXPECT_EQ(sink->chunks.size(), 1u);
  EXPECT_EQ(call.transfer->cancels, 1);
  // The transport's CANCELLED completion that follows is swallowed.
  call.handler->OnComplete(absl::CancelledError());
  EXPECT_EQ(Reason(*sink->done), "api_timeout_error");
}

TEST_F(HaufeClientTest, UpstreamErrorTextNeverEchoesTheKeyOrLicenceSent) {
  Result<v1::Message> result;
  client_.Run(options_, {.thread_id = "t1", .tools = {}}, result.Callback());
  transport_->last().Respond(
      422, R"({"error_code":"validation_error","detail":[{"loc":["body","meta_data"],)"
           R"("msg":"licence PI42 unknown for key secret-key"}]})");
  ASSERT_TRUE(result.value.has_value());
  const absl::Status& status = result.value->status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  const std::string everything = status.ToString(absl::StatusToStringMode::kWithEverything);
  EXPECT_EQ(everything.find("PI42"), std::string::npos) << everything;
  EXPECT_EQ(everything.find("secret-key"), std::string::npos) << everything;
  EXPECT_NE(GetBadRequest(status)->field_violations(0).description().find("[redacted]"),
            std::string::npos);

  auto sink = std::make_shared<RecordingSink>();
  client_.StreamRun(options_, {.thread_id = "t1", .tools = {}}, sink);
  auto& call = transport_->last();
  call.handler->OnHeaders(Head(200));
  call.handler->OnData(R"({"error_code":"api_error","detail":"licence PI42 rejected"})"
                       "\n");
  ASSERT_TRUE(sink->done.has_value());
  EXPECT_EQ(sink->done->message(), "licence [redacted] rejected");
}

// Issue #13, item 8: an echo with JSON escapes ("\u0050I42" is "PI42") reached the caller, and a
// 200 answer echoing meta_data.user_data.licence delivered the licence in Message.meta_data.
TEST_F(HaufeClientTest, EscapedAndEchoedSecretsAreRedactedAfterDecoding) {
  Result<v1::Message> failed;
  client_.Run(options_, {.thread_id = "t1", .tools = {}}, failed.Callback());
  transport_->last().Respond(
      500, R"({"error_code":"api_error","detail":"licence \u0050I42 for key secret\u002dkey"})");
  const std::string everything =
      failed.value->status().ToString(absl::StatusToStringMode::kWithEverything);
  EXPECT_EQ(everything.find("PI42"), std::string::npos) << everything;
  EXPECT_EQ(everything.find("secret-key"), std::string::npos) << everything;

  Result<v1::Message> answered;
  client_.Run(options_, {.thread_id = "t1", .tools = {}}, answered.Callback());
  transport_->last().Respond(
      200, R"({"id":"m1","role":"assistant","content":"Your licence is P\u004942.",)"
           R"("meta_data":{"user_data":{"licence":"PI42"},"list":["x PI42 y"]},)"
           R"("sources":[{"content":"c","meta_data":{"PI42":"key"}}]})");
  ASSERT_TRUE(answered.value->ok()) << answered.value->status();
  const v1::Message& message = **answered.value;
  EXPECT_EQ(message.content(), "Your licence is [redacted].");
  // The gateway's own field is removed (JsonMappingTest); the licence elsewhere is redacted.
  EXPECT_EQ(message.meta_data().fields().count("user_data"), 0u);
  EXPECT_EQ(message.meta_data().fields().at("list").list_value().values(0).string_value(),
            "x [redacted] y");
  EXPECT_EQ(message.SerializeAsString().find("PI42"), std::string::npos);

  auto sink = std::make_shared<RecordingSink>();
  client_.StreamRun(options_, {.thread_id = "t1", .tools = {}}, sink);
  auto& call = transport_->last();
  call.handler->OnHeaders(Head(200));
  call.handler->OnData(
      R"({"message_id":"m2","delta":{"content":"PI42","sources":[{"content":"PI42"}]}})"
      "\n");
  ASSERT_EQ(sink->chunks.size(), 1u);
  EXPECT_EQ(sink->chunks[0].SerializeAsString().find("PI42"), std::string::npos);
  EXPECT_EQ(sink->chunks[0].delta().content(), "[redacted]");
}

// Issue #13, item 8: a licence split across two chunks ("P" + "I42") reached the caller whole,
// since each chunk was redacted alone. The end of a chunk that begins a secret now waits for
// the next one; a beginning that no secret follows is delivered unchanged.
TEST_F(HaufeClientTest, ASecretSplitAcrossStreamChunksIsRedacted) {
  auto sink = std::make_shared<RecordingSink>();
  client_.StreamRun(options_, {.thread_id = "t1", .tools = {}}, sink);
  auto& call = transport_->last();
  call.handler->OnHeaders(Head(200));
  call.handler->OnData(ChunkLine("Your licence: P"));
  ASSERT_EQ(sink->chunks.size(), 1u);
  EXPECT_EQ(sink->chunks[0].delta().content(), "Your licence: ");  // "P" waits.
  call.handler->OnData(ChunkLine("I") + ChunkLine("42, key secr") + ChunkLine("et-key."));
  call.handler->OnData(ChunkLine("A P") + ChunkLine("IE."));
  call.handler->OnData(ChunkLine("Ends with P"));
  call.handler->OnComplete(absl::OkStatus());
  ASSERT_TRUE(sink->done.has_value());
  EXPECT_TRUE(sink->done->ok()) << *sink->done;
  std::string joined;
  for (const v1::MessageChunk& chunk : sink->chunks) {
    joined += chunk.delta().content();
    EXPECT_EQ(chunk.message_id(), "m1");
  }
  EXPECT_EQ(joined, "Your licence: [redacted], key [redacted].A PIE.Ends with P");
  // The held "P" of the last chunk came as one more chunk of the same message.
  EXPECT_EQ(sink->chunks.back().delta().content(), "P");
  EXPECT_EQ(sink->chunks.back().thread_id(), "t1");
}

// The tenant's other licences (also_redact), which this call did not send, are redacted too.
TEST_F(HaufeClientTest, TheTenantsOtherLicencesAreRedactedLikeTheOneSent) {
  options_.also_redact = {"OTHER-LIC", ""};  // An empty one redacts nothing.
  Result<std::vector<v1::Assistant>> listed;
  client_.ListAssistants(options_, listed.Callback());
  transport_->last().Respond(200,
                             R"([{"id":"a1","name":"Tax for OTHER\u002dLIC","streaming":true}])");
  ASSERT_TRUE(listed.value->ok()) << listed.value->status();
  ASSERT_EQ((*listed.value)->size(), 1u);
  EXPECT_EQ((**listed.value)[0].name(), "Tax for [redacted]");

  Result<v1::Message> failed;
  client_.Run(options_, {.thread_id = "t1", .tools = {}}, failed.Callback());
  transport_->last().Respond(422, R"({"error_code":"api_error","detail":"licence OTHER-LIC"})");
  EXPECT_THAT(std::string(failed.value->status().message()), Not(HasSubstr("OTHER-LIC")));
}

// Issue #13, item 9: answers and error bodies over inline_decode_bytes are decoded on the decode
// pool, never on the transport's loop (here: the thread that delivers the response), so a
// tenant's megabytes of either cannot stall other calls' streams; small ones stay inline.
TEST(HaufeClientDecodePoolTest, LargeAnswersAndErrorBodiesAreDecodedOffTheLoop) {
  auto transport = std::make_shared<FakeTransport>();
  DecodePool pool(1, 0);
  HaufeClient client(
      HaufeClientConfig{.base_url = std::string(kBase) + "/", .inline_decode_bytes = 100},
      transport, [] { return kNow; }, nullptr, &pool);
  UpstreamCallOptions options;
  options.deadline = kNow + absl::Seconds(30);
  options.licence = "PI42";
  struct Decoded {
    absl::Notification done;
    std::thread::id thread;
    absl::StatusOr<v1::Thread> result = absl::UnknownError("not called");
  };
  auto get = [&](int status, const std::string& body, Decoded& decoded) {
    client.GetThread(options, "t1", [&decoded](absl::StatusOr<v1::Thread> result) {
      decoded.thread = std::this_thread::get_id();
      decoded.result = std::move(result);
      decoded.done.Notify();
    });
    transport->last().Respond(status, body);
    EXPECT_TRUE(decoded.done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  };
  const std::string padding(200, ' ');
  Decoded large_answer;
  get(200, R"({"id":"t1"})" + padding, large_answer);
  ASSERT_TRUE(large_answer.result.ok()) << large_answer.result.status();
  EXPECT_EQ(large_answer.result->id(), "t1");
  EXPECT_NE(large_answer.thread, std::this_thread::get_id());

  Decoded large_error;
  get(503, "<html><body>" + padding + "licence PI42</body></html>", large_error);
  EXPECT_EQ(large_error.result.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(large_error.result.status().message()), Not(HasSubstr("PI42")));
  EXPECT_NE(large_error.thread, std::this_thread::get_id());

  Decoded small_answer;
  get(200, R"({"id":"t2"})", small_answer);
  EXPECT_EQ(small_answer.result->id(), "t2");
  EXPECT_EQ(small_answer.thread, std::this_thread::get_id());
}

// Issue #13, item 10: a 200 KB error_code became ErrorInfo.reason (and the trailers overflowed).
TEST_F(HaufeClientTest, AnOversizedErrorCodeIsNotTheReason) {
  Result<v1::Message> result;
  client_.Run(options_, {.thread_id = "t1", .tools = {}}, result.Callback());
  transport_->last().Respond(
      429, absl::StrCat(R"({"error_code":")", std::string(200000, 'x'), R"(","detail":"d"})"));
  const absl::Status& status = result.value->status();
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(Reason(status), "UPSTREAM_HTTP_429");
  const google::rpc::ErrorInfo info = *GetErrorInfo(status);
  EXPECT_EQ(info.metadata().at("upstream_error_code").size(), 64u);
  EXPECT_LT(ToRpcStatus(status).ByteSizeLong(), 2000u);
}

// Issue #13, item 9's memory side: one bound on the response bytes held over all calls.
TEST(HaufeClientMemoryTest, ResponsesPastTheSharedBoundFailAndGiveTheirBytesBack) {
  auto transport = std::make_shared<FakeTransport>();
  ResponseMemory memory(1000);
  HaufeClient client(
      HaufeClientConfig{.base_url = kBase, .max_response_bytes = 100000}, transport,
      [] { return kNow; }, &memory);
  UpstreamCallOptions options;
  Result<v1::Message> first, second;
  client.Run(options, {.thread_id = "t1", .tools = {}}, first.Callback());
  client.Run(options, {.thread_id = "t2", .tools = {}}, second.Callback());
  FakeTransport::Started& a = transport->call(0);
  FakeTransport::Started& b = transport->call(1);
  a.handler->OnHeaders(Head(200));
  b.handler->OnHeaders(Head(200));
  EXPECT_TRUE(a.handler->OnData(std::string(600, ' ')));
  EXPECT_EQ(memory.bytes(), 600u);
  b.handler->OnData(std::string(600, ' '));  // 1200 > 1000: refused, cancelled.
  EXPECT_EQ(b.transfer->cancels, 1);
  b.handler->OnComplete(absl::CancelledError());
  ASSERT_TRUE(second.value.has_value());
  EXPECT_EQ(second.value->status().code(), absl::StatusCode::kInternal);  // A POST.
  EXPECT_EQ(Reason(second.value->status()), "upstream_response_memory_exhausted");
  EXPECT_EQ(memory.bytes(), 600u);
  a.handler->OnData(R"({"id":"m1"})");
  a.handler->OnComplete(absl::OkStatus());
  EXPECT_TRUE(first.value->ok());
  EXPECT_EQ(memory.bytes(), 0u);

  // A GET past the bound is UNAVAILABLE (safe to retry); a stream's partial line counts too.
  Result<v1::Thread> thread;
  client.GetThread(options, "t1", thread.Callback());
  auto sink = std::make_shared<RecordingSink>();
  client.StreamRun(options, {.thread_id = "t1", .tools = {}}, sink);
  FakeTransport::Started& get = transport->call(2);
  FakeTransport::Started& stream = transport->call(3);
  stream.handler->OnHeaders(Head(200));
  stream.handler->OnData(std::string(900, 'x'));  // A partial line of 900 bytes, held.
  EXPECT_EQ(memory.bytes(), 900u);
  get.handler->OnHeaders(Head(200));
  get.handler->OnData(std::string(200, ' '));
  get.handler->OnComplete(absl::CancelledError());
  EXPECT_EQ(thread.value->status().code(), absl::StatusCode::kUnavailable);
  stream.handler->OnData(std::string(200, 'x'));  // The line grows past the bound.
  ASSERT_TRUE(sink->done.has_value());
  EXPECT_EQ(Reason(*sink->done), "upstream_response_memory_exhausted");
  EXPECT_EQ(memory.bytes(), 0u);
}

// A body of stated length gets its room at once (copied once on the loop thread, not through a
// doubling series of buffers): the room is charged when the headers come, and a stated length
// past the shared bound is not reserved (the body then fails as it grows past it, as before).
TEST(HaufeClientMemoryTest, AStatedContentLengthIsReservedAndChargedAtTheHeaders) {
  auto transport = std::make_shared<FakeTransport>();
  ResponseMemory memory(1000);
  HaufeClient client(
      HaufeClientConfig{.base_url = kBase, .max_response_bytes = 100000}, transport,
      [] { return kNow; }, &memory);
  UpstreamCallOptions options;
  const std::string answer = R"({"id":"m1"})";
  Result<v1::Message> first, second;
  client.Run(options, {.thread_id = "t1", .tools = {}}, first.Callback());
  client.Run(options, {.thread_id = "t2", .tools = {}}, second.Callback());
  FakeTransport::Started& a = transport->call(0);
  FakeTransport::Started& b = transport->call(1);
  a.handler->OnHeaders(Head(200, {{"content-length", "700"}}));
  EXPECT_EQ(memory.bytes(), 700u);
  b.handler->OnHeaders(Head(200, {{"content-length", "400"}}));  // 1100 > 1000: not reserved.
  EXPECT_EQ(memory.bytes(), 700u);
  EXPECT_TRUE(b.handler->OnData(answer));
  EXPECT_EQ(memory.bytes(), 700u + answer.size());
  b.handler->OnComplete(absl::OkStatus());
  EXPECT_TRUE(second.value->ok()) << second.value->status();
  EXPECT_EQ(memory.bytes(), 700u);
  // The body arrives within its room: the charge stays the stated length, then goes back.
  EXPECT_TRUE(a.handler->OnData(answer.substr(0, 5)));
  EXPECT_TRUE(a.handler->OnData(answer.substr(5)));
  EXPECT_EQ(memory.bytes(), 700u);
  a.handler->OnComplete(absl::OkStatus());
  ASSERT_TRUE(first.value->ok()) << first.value->status();
  EXPECT_EQ((*first.value)->id(), "m1");
  EXPECT_EQ(memory.bytes(), 0u);
  // A stated length that is not a number is ignored.
  Result<v1::Message> third;
  client.Run(options, {.thread_id = "t3", .tools = {}}, third.Callback());
  FakeTransport::Started& c = transport->call(2);
  c.handler->OnHeaders(Head(200, {{"content-length", "lots"}}));
  EXPECT_EQ(memory.bytes(), 0u);
  c.handler->OnComplete(absl::UnavailableError("reset"));
  EXPECT_EQ(memory.bytes(), 0u);
}

TEST_F(HaufeClientTest, StreamEndedBeforeStartReturnedStillCancels) {
  // The transport's loop runs the whole stream before Start returns (a fast loop thread).
  auto transport = std::make_shared<FakeTransport>([](FakeTransport::Started& call) {
    call.Headers(200);
    call.Data(R"({"error_code":"api_error","detail":"boom"})"
              "\n");
  });
  HaufeClient client(HaufeClientConfig{}, transport);
  auto sink = std::make_shared<RecordingSink>();
  client.StreamRun(options_, {.thread_id = "t1", .tools = {}}, sink);
  EXPECT_EQ(Reason(*sink->done), "api_error");
  EXPECT_EQ(transport->last().transfer->cancels, 1);
}

TEST_F(HaufeClientTest, StreamCutMidLineIsTruncatedNeverOk) {
  auto sink = std::make_shared<RecordingSink>();
  client_.StreamRun(options_, {.thread_id = "t1", .tools = {}}, sink);
  auto& call = transport_->last();
  call.handler->OnHeaders(Head(200));
  call.handler->OnData(ChunkLine("a") + "{\"message_id\":\"m1\",\"del");
  call.handler->OnComplete(absl::OkStatus());
  EXPECT_EQ(sink->chunks.size(), 1u);
  EXPECT_EQ(sink->done->code(), absl::StatusCode::kInternal);
  EXPECT_EQ(Reason(*sink->done), "upstream_stream_truncated");
}

TEST_F(HaufeClientTest, StreamLineOverTheLimit) {
  auto sink = std::make_shared<RecordingSink>();
  client_.StreamRun(options_, {.thread_id = "t1", .tools = {}}, sink);
  auto& call = transport_->last();
  call.handler->OnHeaders(Head(200));
  call.handler->OnData(std::string(300, 'x'));  // Limit is 256.
  EXPECT_EQ(sink->done->code(), absl::StatusCode::kInternal);
  EXPECT_EQ(Reason(*sink->done), "upstream_stream_line_too_long");
  EXPECT_EQ(call.transfer->cancels, 1);
}

TEST_F(HaufeClientTest, StreamGarbageLineIsBadResponse) {
  auto sink = std::make_shared<RecordingSink>();
  client_.StreamRun(options_, {.thread_id = "t1", .tools = {}}, sink);
  auto& call = transport_->last();
  call.handler->OnHeaders(Head(200));
  call.handler->OnData("<html>\n");
  EXPECT_EQ(Reason(*sink->done), "upstream_bad_response");
  call.handler->OnComplete(absl::OkStatus());  // Ignored.
}

TEST_F(HaufeClientTest, StreamHttpErrorIsMappedFromBufferedBody) {
  auto sink = std::make_shared<RecordingSink>();
  client_.StreamRun(options_, {.thread_id = "t1", .tools = {}}, sink);
  auto& call = transport_->last();
  call.handler->OnHeaders(Head(422));
  call.handler->OnData(R"({"error_code":"engine_does_not_su)");
  call.handler->OnData(R"(pport_streaming","detail":"no"})");
  EXPECT_FALSE(sink->done.has_value());
  call.handler->OnComplete(absl::OkStatus());
  EXPECT_EQ(sink->done->code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Reason(*sink->done), "engine_does_not_support_streaming");
  EXPECT_TRUE(sink->chunks.empty());
}

TEST_F(HaufeClientTest, StreamTransportFailureAfterChunks) {
  auto sink = std::make_shared<RecordingSink>();
  client_.StreamRun(options_, {.thread_id = "t1", .tools = {}}, sink);
  auto& call = transport_->last();
  call.handler->OnHeaders(Head(200));
  call.handler->OnData(ChunkLine("a"));
  call.handler->OnComplete(MakeError(absl::StatusCode::kUnavailable, "reset", "upstream_reset",
                                     {{"headers_received", "true"}}));
  EXPECT_EQ(sink->chunks.size(), 1u);
  EXPECT_EQ(sink->done->code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(Reason(*sink->done), "upstream_reset");
}

TEST_F(HaufeClientTest, StreamEmptyThreadIdRejectedInline) {
  auto sink = std::make_shared<RecordingSink>();
  client_.StreamRun(options_, {.thread_id = "", .tools = {}}, sink);
  EXPECT_EQ(sink->done->code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(transport_->empty());
}

}  // namespace
}  // namespace copilot::gateway
