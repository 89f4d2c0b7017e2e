#include "client/copilot_client.h"

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/notification.h"
#include "client/error_details.h"
#include "google/protobuf/util/message_differencer.h"
#include "google/rpc/error_details.pb.h"
#include "gtest/gtest.h"
#include "tests/client/fake_copilot_service.h"

namespace copilot::client {
namespace {

using ::copilot::client::testing::DeadTarget;
using ::copilot::client::testing::FakeCopilotService;
using ::copilot::client::testing::MakeStatus;
using ::copilot::client::testing::RecordedCall;
using ::google::protobuf::util::MessageDifferencer;

constexpr char kToken[] = "tok-acme";
// gRPC sends the deadline as a `grpc-timeout` header rounded up to a coarser
// unit, so the server may see up to a second more than the client set.
constexpr absl::Duration kWireRounding = absl::Seconds(1);

v1::MessageChunk Chunk(const std::string& content) {
  v1::MessageChunk chunk;
  chunk.set_message_id("m-answer");
  chunk.set_thread_id("t1");
  chunk.mutable_delta()->set_role(v1::ROLE_ASSISTANT);
  chunk.mutable_delta()->set_content(content);
  return chunk;
}

class CopilotClientTest : public ::testing::Test {
 protected:
  CopilotClientTest() : fake_(FakeCopilotService::Start()) {}

  CopilotClient MakeClient(absl::Duration timeout = absl::Seconds(30),
                           const std::string& token = kToken) {
    ClientOptions options;
    options.target = fake_->target();
    options.token = token;
    options.timeout = timeout;
    absl::StatusOr<CopilotClient> client = MakeCopilotClient(options);
    EXPECT_TRUE(client.ok()) << client.status();
    return *std::move(client);
  }

  // The only call the fake received, which must be to `method`.
  RecordedCall OnlyCall(const std::string& method) {
    std::vector<RecordedCall> calls = fake_->calls();
    EXPECT_EQ(calls.size(), 1u);
    if (calls.empty()) return {};
    EXPECT_EQ(calls[0].method, method);
    return calls[0];
  }

  // Every call carries the token and a deadline no later than `timeout`.
  void ExpectTokenAndDeadline(const RecordedCall& call, absl::Duration timeout) {
    EXPECT_EQ(call.Metadata("authorization"), "Bearer tok-acme");
    ASSERT_TRUE(call.time_left.has_value()) << call.method << " arrived without a deadline";
    EXPECT_GT(*call.time_left, absl::ZeroDuration());
    EXPECT_LE(*call.time_left, timeout + kWireRounding);
    EXPECT_GT(*call.time_left, timeout - absl::Seconds(10));
  }

  std::unique_ptr<FakeCopilotService> fake_;
};

TEST_F(CopilotClientTest, ListAssistantsSendsTokenAndDeadline) {
  v1::ListAssistantsResponse response;
  auto* a = response.add_assistants();
  a->set_id("a-tax");
  a->set_name("Haufe Copilot Tax");
  a->set_streaming(true);
  fake_->SetResponse("ListAssistants", response);

  absl::StatusOr<v1::ListAssistantsResponse> got = MakeClient().ListAssistants({});

  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(MessageDifferencer::Equals(*got, response));
  RecordedCall call = OnlyCall("ListAssistants");
  ExpectTokenAndDeadline(call, absl::Seconds(30));
  EXPECT_NE(call.Metadata("user-agent").find("copilot-cpp-client/"), std::string::npos)
      << call.Metadata("user-agent");
}

TEST_F(CopilotClientTest, EveryUnaryMethodSendsItsRequestAndReturnsTheResponse) {
  CopilotClient client = MakeClient();

  v1::CreateThreadRequest create;
  create.set_assistant_id("a-tax");
  create.set_user_id("u-1");
  create.set_title("Pendlerpauschale");
  create.set_request_id("r-1");
  v1::CreateThreadResponse created;
  created.mutable_thread()->set_id("t1");
  fake_->SetResponse("CreateThread", created);
  absl::StatusOr<v1::CreateThreadResponse> create_result = client.CreateThread(create);
  ASSERT_TRUE(create_result.ok()) << create_result.status();
  EXPECT_EQ(create_result->thread().id(), "t1");

  v1::GetThreadRequest get;
  get.set_thread_id("t1");
  v1::GetThreadResponse got;
  got.mutable_thread()->set_title("Pendlerpauschale");
  fake_->SetResponse("GetThread", got);
  ASSERT_TRUE(client.GetThread(get).ok());

  v1::DeleteThreadRequest del;
  del.set_thread_id("t1");
  fake_->SetResponse("DeleteThread", v1::DeleteThreadResponse());
  ASSERT_TRUE(client.DeleteThread(del).ok());

  v1::AddMessageRequest add;
  add.set_thread_id("t1");
  add.mutable_message()->set_role(v1::ROLE_USER);
  add.mutable_message()->set_content("Wie hoch ist die Pendlerpauschale?");
  v1::AddMessageResponse added;
  added.mutable_message()->set_id("m1");
  fake_->SetResponse("AddMessage", added);
  absl::StatusOr<v1::AddMessageResponse> add_result = client.AddMessage(add);
  ASSERT_TRUE(add_result.ok());
  EXPECT_EQ(add_result->message().id(), "m1");

  v1::ListMessagesRequest list;
  list.set_thread_id("t1");
  list.set_page_size(10);
  list.set_page_token("p2");
  v1::ListMessagesResponse listed;
  listed.set_next_page_token("p3");
  fake_->SetResponse("ListMessages", listed);
  absl::StatusOr<v1::ListMessagesResponse> list_result = client.ListMessages(list);
  ASSERT_TRUE(list_result.ok());
  EXPECT_EQ(list_result->next_page_token(), "p3");

  v1::RunRequest run;
  run.set_thread_id("t1");
  run.set_request_id("r-2");
  v1::RunResponse ran;
  ran.mutable_message()->set_content("38 Cent");
  fake_->SetResponse("Run", ran);
  absl::StatusOr<v1::RunResponse> run_result = client.Run(run);
  ASSERT_TRUE(run_result.ok());
  EXPECT_EQ(run_result->message().content(), "38 Cent");

  v1::CompleteRequest complete;
  complete.set_assistant_id("a-tax");
  complete.add_messages()->set_content("Hallo");
  v1::CompleteResponse completed;
  completed.mutable_message()->set_thread_id("up-1");
  fake_->SetResponse("Complete", completed);
  absl::StatusOr<v1::CompleteResponse> complete_result = client.Complete(complete);
  ASSERT_TRUE(complete_result.ok());
  EXPECT_EQ(complete_result->message().thread_id(), "up-1");

  std::vector<RecordedCall> calls = fake_->calls();
  ASSERT_EQ(calls.size(), 7u);
  EXPECT_TRUE(MessageDifferencer::Equals(calls[0].RequestAs<v1::CreateThreadRequest>(), create));
  EXPECT_TRUE(MessageDifferencer::Equals(calls[1].RequestAs<v1::GetThreadRequest>(), get));
  EXPECT_TRUE(MessageDifferencer::Equals(calls[2].RequestAs<v1::DeleteThreadRequest>(), del));
  EXPECT_TRUE(MessageDifferencer::Equals(calls[3].RequestAs<v1::AddMessageRequest>(), add));
  EXPECT_TRUE(MessageDifferencer::Equals(calls[4].RequestAs<v1::ListMessagesRequest>(), list));
  EXPECT_TRUE(MessageDifferencer::Equals(calls[5].RequestAs<v1::RunRequest>(), run));
  EXPECT_TRUE(MessageDifferencer::Equals(calls[6].RequestAs<v1::CompleteRequest>(), complete));
  for (const RecordedCall& call : calls) {
    SCOPED_TRACE(call.method);
    ExpectTokenAndDeadline(call, absl::Seconds(30));
  }
}

TEST_F(CopilotClientTest, NoTokenSendsNoAuthorization) {
  fake_->SetResponse("ListAssistants", v1::ListAssistantsResponse());
  ASSERT_TRUE(MakeClient(absl::Seconds(30), "").ListAssistants({}).ok());
  EXPECT_EQ(OnlyCall("ListAssistants").metadata.count("authorization"), 0u);
}

TEST_F(CopilotClientTest, PerCallTimeoutOverridesTheDefault) {
  fake_->SetResponse("ListAssistants", v1::ListAssistantsResponse());
  CallOptions call;
  call.timeout = absl::Seconds(5);
  ASSERT_TRUE(MakeClient(absl::Seconds(120)).ListAssistants({}, call).ok());
  RecordedCall recorded = OnlyCall("ListAssistants");
  ASSERT_TRUE(recorded.time_left.has_value());
  EXPECT_LE(*recorded.time_left, absl::Seconds(5) + kWireRounding);
}

TEST_F(CopilotClientTest, NonPositivePerCallTimeoutFailsWithoutCalling) {
  CallOptions call;
  call.timeout = absl::ZeroDuration();
  absl::StatusOr<v1::ListAssistantsResponse> got = MakeClient().ListAssistants({}, call);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(got.status().message(), "CallOptions.timeout must be positive, got 0");
  absl::Status streamed = MakeClient().StreamRun(
      {}, [](const v1::MessageChunk&) {}, call);
  EXPECT_EQ(streamed.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(fake_->calls().empty());
}

TEST_F(CopilotClientTest, ErrorDetailsBecomeReadableAndStructured) {
  google::rpc::ErrorInfo info;
  info.set_reason("thread_not_found");
  info.set_domain("copilot-gateway");
  (*info.mutable_metadata())["http_status"] = "404";
  fake_->SetError("GetThread", MakeStatus(grpc::StatusCode::NOT_FOUND, "Thread not found", info));

  v1::GetThreadRequest request;
  request.set_thread_id("t-missing");
  absl::StatusOr<v1::GetThreadResponse> got = MakeClient().GetThread(request);

  EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(got.status().message(),
            "Thread not found [reason: thread_not_found; upstream HTTP 404]");
  ErrorDetails details = GetErrorDetails(got.status());
  EXPECT_EQ(details.reason, "thread_not_found");
  EXPECT_EQ(details.http_status, 404);
}

TEST_F(CopilotClientTest, ShortDeadlineAgainstAHeldCallIsDeadlineExceeded) {
  fake_->SetResponse("Run", v1::RunResponse());
  fake_->SetHold("Run", absl::Seconds(10));
  const absl::Time start = absl::Now();
  absl::StatusOr<v1::RunResponse> got = MakeClient(absl::Milliseconds(200)).Run({});
  EXPECT_EQ(got.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

TEST(CopilotClientUnreachableTest, DeadTargetIsUnavailable) {
  ClientOptions options;
  options.target = DeadTarget();
  options.timeout = absl::Seconds(10);
  absl::StatusOr<CopilotClient> client = MakeCopilotClient(options);
  ASSERT_TRUE(client.ok());
  EXPECT_EQ(client->ListAssistants({}).status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(CopilotClientTest, StreamRunDeliversEachChunkBeforeTheNextIsSent) {
  // The fake sends chunk i only after the client has seen chunk i-1: the
  // callback runs as chunks arrive, not once the stream is over.
  std::vector<std::unique_ptr<absl::Notification>> seen;
  seen.reserve(3);
  for (int i = 0; i < 3; ++i) seen.push_back(std::make_unique<absl::Notification>());
  std::atomic<int> waits_timed_out{0};
  fake_->SetStream(
      "StreamRun", {Chunk("Die "), Chunk("Pauschale "), Chunk("gilt.")}, grpc::Status::OK,
      [&](int index) {
        if (index > 0 && !seen[index - 1]->WaitForNotificationWithTimeout(absl::Seconds(5))) {
          ++waits_timed_out;
        }
      });

  v1::StreamRunRequest request;
  request.set_thread_id("t1");
  std::vector<std::string> received;
  absl::Status status = MakeClient().StreamRun(request, [&](const v1::MessageChunk& chunk) {
    received.push_back(chunk.delta().content());
    seen[received.size() - 1]->Notify();
  });

  EXPECT_TRUE(status.ok()) << status;
  EXPECT_EQ(received, (std::vector<std::string>{"Die ", "Pauschale ", "gilt."}));
  EXPECT_EQ(waits_timed_out.load(), 0);
  RecordedCall call = OnlyCall("StreamRun");
  EXPECT_EQ(call.RequestAs<v1::StreamRunRequest>().thread_id(), "t1");
  ExpectTokenAndDeadline(call, absl::Seconds(30));
}

TEST_F(CopilotClientTest, StreamErrorMidWayKeepsTheChunksDelivered) {
  google::rpc::RetryInfo retry;
  retry.mutable_retry_delay()->set_seconds(1);
  fake_->SetStream("StreamRun", {Chunk("Die "), Chunk("Pausch")},
                   MakeStatus(grpc::StatusCode::UNAVAILABLE, "Upstream stream broke", retry));

  std::vector<std::string> received;
  absl::Status status = MakeClient().StreamRun(
      {}, [&](const v1::MessageChunk& chunk) { received.push_back(chunk.delta().content()); });

  EXPECT_EQ(received, (std::vector<std::string>{"Die ", "Pausch"}));
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(status.message(), "Upstream stream broke [retry after 1s]");
  EXPECT_EQ(GetErrorDetails(status).retry_delay, absl::Seconds(1));
}

TEST_F(CopilotClientTest, StreamCompleteDeliversChunksInOrder) {
  fake_->SetStream("StreamComplete", {Chunk("a"), Chunk("b"), Chunk("c")});
  v1::StreamCompleteRequest request;
  request.set_assistant_id("a-tax");
  request.add_messages()->set_content("Hallo");
  std::string text;
  absl::Status status = MakeClient().StreamComplete(
      request, [&](const v1::MessageChunk& chunk) { text += chunk.delta().content(); });
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_EQ(text, "abc");
  RecordedCall call = OnlyCall("StreamComplete");
  EXPECT_TRUE(MessageDifferencer::Equals(call.RequestAs<v1::StreamCompleteRequest>(), request));
  ExpectTokenAndDeadline(call, absl::Seconds(30));
}

TEST_F(CopilotClientTest, StreamFailingBeforeAnyChunk) {
  fake_->SetError("StreamComplete",
                  grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "assistant cannot stream"));
  int chunks = 0;
  absl::Status status = MakeClient().StreamComplete({}, [&](const v1::MessageChunk&) { ++chunks; });
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(status.message(), "assistant cannot stream");
  EXPECT_EQ(chunks, 0);
}

TEST(MakeCopilotClientTest, RejectsInvalidOptionsNamingTheField) {
  ClientOptions no_target;
  no_target.target = "";
  EXPECT_EQ(MakeCopilotClient(no_target).status(),
            absl::InvalidArgumentError("ClientOptions.target must not be empty"));

  ClientOptions zero_timeout;
  zero_timeout.timeout = absl::ZeroDuration();
  EXPECT_EQ(MakeCopilotClient(zero_timeout).status(),
            absl::InvalidArgumentError("ClientOptions.timeout must be positive, got 0"));
}

TEST(MakeCopilotClientTest, MissingRootCertificatesFileIsNotFound) {
  ClientOptions options;
  options.tls_root_certs_path = "/nonexistent/roots.pem";
  EXPECT_EQ(MakeCopilotClient(options).status(),
            absl::NotFoundError(
                "cannot read TLS root certificates /nonexistent/roots.pem: No such file or "
                "directory"));
}

}  // namespace
}  // namespace copilot::client
