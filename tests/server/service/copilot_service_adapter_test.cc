#include "server/service/copilot_service_adapter.h"

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "copilot/v1/copilot_service.grpc.pb.h"
#include "gmock/gmock.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "gtest/gtest.h"
#include "server/common/errors.h"
#include "server/core/copilot_core.h"
#include "server/core/thread_handles.h"
#include "server/service/grpc_status.h"
#include "tests/server/core/fake_haufe_api.h"

namespace copilot::gateway {
namespace {

namespace v1 = ::copilot::v1;
using ::copilot::gateway::testing::FakeClock;
using ::copilot::gateway::testing::FakeHaufeApi;
using ::copilot::gateway::testing::FakeUpstreamCall;

constexpr char kThread[] = "0b8e5f0e-9a4c-4b7a-8f43-2f6f0e1c2d3e";
constexpr char kAssistant[] = "7c0e5d3a-4c1b-4f57-9a51-1f1f3e0a0001";

google::rpc::Status Details(const grpc::Status& status) {
  google::rpc::Status details;
  EXPECT_TRUE(details.ParseFromString(status.error_details()));
  return details;
}

template <typename Detail>
std::optional<Detail> Find(const grpc::Status& status) {
  const google::rpc::Status details = Details(status);
  for (const auto& any : details.details()) {
    Detail detail;
    if (any.Is<Detail>() && any.UnpackTo(&detail)) return detail;
  }
  return std::nullopt;
}

// Waits (polling) for `condition`, up to 10 s.
template <typename Condition>
bool Eventually(Condition condition) {
  for (int i = 0; i < 1000; ++i) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return condition();
}

class AdapterTest : public ::testing::Test {
 protected:
  void SetUp() override { StartServer(AdapterOptions{}); }

  void StartServer(AdapterOptions options) {
    CoreOptions core_options;
    core_options.api_key = "KEY";
    core_options.default_tenant = Tenant{"default", "LIC"};
    core_options.max_call_timeout = absl::Seconds(42);
    core_ = std::make_unique<CopilotCore>(api_, clock_, handles_, core_options);
    adapter_ = std::make_unique<CopilotServiceAdapter>(*core_, options);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(adapter_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                   grpc::InsecureChannelCredentials());
    stub_ = v1::CopilotService::NewStub(channel_);
  }

  void TearDown() override {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
    server_->Wait();
  }

  static v1::RunRequest RunRequest() {
    v1::RunRequest request;
    request.set_thread_id(kThread);
    return request;
  }

  static v1::Message Answer() {
    v1::Message m;
    m.set_id("m1");
    m.set_thread_id(kThread);
    m.set_role(v1::ROLE_ASSISTANT);
    m.set_content("the answer");
    return m;
  }

  static v1::MessageChunk Chunk(int i, std::size_t size = 0) {
    v1::MessageChunk chunk;
    chunk.set_message_id("m1");
    chunk.set_thread_id(kThread);
    chunk.mutable_delta()->set_content(std::to_string(i) + std::string(size, 'x'));
    return chunk;
  }

  FakeHaufeApi api_;
  FakeClock clock_;
  IdentityThreadHandles handles_;
  std::unique_ptr<CopilotCore> core_;
  std::unique_ptr<CopilotServiceAdapter> adapter_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::CopilotService::Stub> stub_;
};

TEST(GrpcStatusTest, CarriesCodeMessageAndDetails) {
  absl::Status error = MakeError(absl::StatusCode::kResourceExhausted, "slow down",
                                 "rate_limit_gateway", {{"http_status", "429"}});
  SetRetryDelay(error, absl::Seconds(7));
  grpc::Status status = ToGrpcStatus(error);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(status.error_message(), "slow down");
  google::rpc::Status details = Details(status);
  EXPECT_EQ(details.code(), static_cast<int>(grpc::StatusCode::RESOURCE_EXHAUSTED));
  auto info = Find<google::rpc::ErrorInfo>(status);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->reason(), "rate_limit_gateway");
  EXPECT_EQ(info->domain(), "copilot-gateway");
  EXPECT_EQ(info->metadata().at("http_status"), "429");
  auto retry = Find<google::rpc::RetryInfo>(status);
  ASSERT_TRUE(retry.has_value());
  EXPECT_EQ(retry->retry_delay().seconds(), 7);
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
}

TEST(GrpcStatusTest, ErrorsWithoutErrorInfoGetOneNamedAfterTheCode) {
  grpc::Status status = ToGrpcStatus(absl::DeadlineExceededError("too late"));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  auto info = Find<google::rpc::ErrorInfo>(status);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->reason(), "DEADLINE_EXCEEDED");
  EXPECT_EQ(info->domain(), "copilot-gateway");
}

TEST_F(AdapterTest, UnarySuccess) {
  std::thread upstream([this] { api_.WaitForCall(0)->FinishMessage(Answer()); });
  grpc::ClientContext context;
  v1::RunResponse response;
  grpc::Status status = stub_->Run(&context, RunRequest(), &response);
  upstream.join();
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.message().content(), "the answer");
  EXPECT_EQ(response.message().thread_id(), kThread);
}

TEST_F(AdapterTest, EveryUnaryMethodIsWired) {
  std::thread upstream([this] {
    api_.WaitForCall(0)->FinishAssistants({v1::Assistant()});
    v1::Thread thread;
    thread.set_id(kThread);
    api_.WaitForCall(1)->FinishThread(thread);
    api_.WaitForCall(2)->FinishThread(thread);
    api_.WaitForCall(3)->FinishMessage(Answer());
    api_.WaitForCall(4)->FinishPage(MessagePage{{Answer()}, ""});
    api_.WaitForCall(5)->FinishMessage(Answer());
    api_.WaitForCall(6)->FinishEmpty();
  });
  {
    grpc::ClientContext c;
    v1::ListAssistantsResponse r;
    EXPECT_TRUE(stub_->ListAssistants(&c, {}, &r).ok());
    EXPECT_EQ(r.assistants_size(), 1);
  }
  {
    grpc::ClientContext c;
    v1::CreateThreadRequest q;
    q.set_assistant_id(kAssistant);
    v1::CreateThreadResponse r;
    EXPECT_TRUE(stub_->CreateThread(&c, q, &r).ok());
    EXPECT_EQ(r.thread().id(), kThread);
  }
  {
    grpc::ClientContext c;
    v1::GetThreadRequest q;
    q.set_thread_id(kThread);
    v1::GetThreadResponse r;
    EXPECT_TRUE(stub_->GetThread(&c, q, &r).ok());
  }
  {
    grpc::ClientContext c;
    v1::AddMessageRequest q;
    q.set_thread_id(kThread);
    q.mutable_message()->set_role(v1::ROLE_USER);
    q.mutable_message()->set_content("hi");
    v1::AddMessageResponse r;
    EXPECT_TRUE(stub_->AddMessage(&c, q, &r).ok());
  }
  {
    grpc::ClientContext c;
    v1::ListMessagesRequest q;
    q.set_thread_id(kThread);
    v1::ListMessagesResponse r;
    EXPECT_TRUE(stub_->ListMessages(&c, q, &r).ok());
    EXPECT_EQ(r.messages_size(), 1);
  }
  {
    grpc::ClientContext c;
    v1::CompleteRequest q;
    q.set_assistant_id(kAssistant);
    auto* m = q.add_messages();
    m->set_role(v1::ROLE_USER);
    m->set_content("q");
    v1::CompleteResponse r;
    EXPECT_TRUE(stub_->Complete(&c, q, &r).ok());
  }
  {
    grpc::ClientContext c;
    v1::DeleteThreadRequest q;
    q.set_thread_id(kThread);
    v1::DeleteThreadResponse r;
    EXPECT_TRUE(stub_->DeleteThread(&c, q, &r).ok());
  }
  upstream.join();
}

TEST_F(AdapterTest, UpstreamErrorArrivesWithCodeAndDetails) {
  std::thread upstream([this] {
    absl::Status error = MakeError(absl::StatusCode::kResourceExhausted, "rate limited",
                                   "rate_limit_gateway", {{"http_status", "429"}});
    SetRetryDelay(error, absl::Seconds(3));
    api_.WaitForCall(0)->Fail(error);
  });
  grpc::ClientContext context;
  v1::RunResponse response;
  grpc::Status status = stub_->Run(&context, RunRequest(), &response);
  upstream.join();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  auto info = Find<google::rpc::ErrorInfo>(status);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->reason(), "rate_limit_gateway");
  EXPECT_EQ(info->metadata().at("http_status"), "429");
  EXPECT_EQ(Find<google::rpc::RetryInfo>(status)->retry_delay().seconds(), 3);
}

TEST_F(AdapterTest, ValidationErrorHasBadRequestAndNoUpstreamCall) {
  grpc::ClientContext context;
  v1::AddMessageRequest request;
  request.set_thread_id("nope");
  request.mutable_message()->set_role(v1::ROLE_USER);
  v1::AddMessageResponse response;
  grpc::Status status = stub_->AddMessage(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Find<google::rpc::ErrorInfo>(status)->reason(), "INVALID_REQUEST");
  auto bad = Find<google::rpc::BadRequest>(status);
  ASSERT_TRUE(bad.has_value());
  ASSERT_EQ(bad->field_violations_size(), 2);
  EXPECT_EQ(bad->field_violations(0).field(), "thread_id");
  EXPECT_EQ(bad->field_violations(1).field(), "message.content");
  EXPECT_EQ(api_.call_count(), 0);
}

TEST_F(AdapterTest, CallerDeadlineBoundsTheUpstreamCallAndEndsWithDeadlineExceeded) {
  grpc::ClientContext context;
  const auto deadline = std::chrono::system_clock::now() + std::chrono::milliseconds(300);
  context.set_deadline(deadline);
  v1::RunResponse response;
  grpc::Status status = stub_->Run(&context, RunRequest(), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  auto call = api_.WaitForCall(0);
  ASSERT_NE(call, nullptr);
  // The upstream deadline is the caller's (the fake clock's now + 42 s is much later).
  EXPECT_LT(absl::AbsDuration(call->options.deadline - absl::FromChrono(deadline)),
            absl::Milliseconds(50));
  // The server saw the deadline pass and cancelled the upstream call.
  EXPECT_TRUE(Eventually([&] { return call->cancels.load() > 0; }));
}

TEST_F(AdapterTest, NoCallerDeadlineUsesMaxCallTimeout) {
  std::thread upstream([this] { api_.WaitForCall(0)->FinishMessage(Answer()); });
  grpc::ClientContext context;
  v1::RunResponse response;
  EXPECT_TRUE(stub_->Run(&context, RunRequest(), &response).ok());
  upstream.join();
  EXPECT_EQ(api_.WaitForCall(0)->options.deadline, clock_.Now() + absl::Seconds(42));
}

TEST_F(AdapterTest, ClientCancelCancelsTheUpstreamCall) {
  grpc::ClientContext context;
  std::thread canceller([&] {
    auto call = api_.WaitForCall(0);
    ASSERT_NE(call, nullptr);
    context.TryCancel();
  });
  v1::RunResponse response;
  grpc::Status status = stub_->Run(&context, RunRequest(), &response);
  canceller.join();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED);
  auto call = api_.WaitForCall(0);
  EXPECT_TRUE(Eventually([&] { return call->cancels.load() > 0; }));
}

TEST_F(AdapterTest, StreamForwardsChunksInOrderThenOk) {
  std::thread upstream([this] {
    auto call = api_.WaitForCall(0);
    for (int i = 0; i < 5; ++i) call->Chunk(Chunk(i));
    call->EndStream(absl::OkStatus());
  });
  grpc::ClientContext context;
  v1::StreamRunRequest request;
  request.set_thread_id(kThread);
  auto reader = stub_->StreamRun(&context, request);
  v1::StreamRunResponse response;
  std::vector<std::string> got;
  while (reader->Read(&response)) got.push_back(response.chunk().delta().content());
  grpc::Status status = reader->Finish();
  upstream.join();
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_THAT(got, ::testing::ElementsAre("0", "1", "2", "3", "4"));
}

TEST_F(AdapterTest, StreamErrorAfterChunksEndsWithThatError) {
  std::thread upstream([this] {
    auto call = api_.WaitForCall(0);
    call->Chunk(Chunk(0));
    call->Chunk(Chunk(1));
    call->EndStream(
        MakeError(absl::StatusCode::kInternal, "cut mid-line", "upstream_stream_truncated"));
  });
  grpc::ClientContext context;
  v1::StreamCompleteRequest request;
  request.set_assistant_id(kAssistant);
  auto* m = request.add_messages();
  m->set_role(v1::ROLE_USER);
  m->set_content("q");
  auto reader = stub_->StreamComplete(&context, request);
  v1::StreamCompleteResponse response;
  int chunks = 0;
  while (reader->Read(&response)) ++chunks;
  grpc::Status status = reader->Finish();
  upstream.join();
  EXPECT_EQ(chunks, 2);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_EQ(Find<google::rpc::ErrorInfo>(status)->reason(), "upstream_stream_truncated");
}

TEST_F(AdapterTest, StreamValidationErrorEndsWithInvalidArgument) {
  grpc::ClientContext context;
  auto reader = stub_->StreamRun(&context, v1::StreamRunRequest());
  v1::StreamRunResponse response;
  EXPECT_FALSE(reader->Read(&response));
  grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(api_.call_count(), 0);
}

TEST_F(AdapterTest, SlowReaderPausesTheUpstreamAndStillGetsEveryChunkInOrder) {
  TearDown();
  AdapterOptions options;
  options.max_queued_chunks = 2;
  StartServer(options);
  constexpr int kChunks = 200;
  constexpr std::size_t kChunkBytes = 64 * 1024;  // Big enough to fill HTTP/2 windows.
  std::atomic<bool> paused{false};
  std::thread upstream([&] {
    auto call = api_.WaitForCall(0);
    for (int i = 0; i < kChunks; ++i) {
      const int resumes = call->resumes.load();
      if (!call->Chunk(Chunk(i, kChunkBytes))) {
        paused = true;
        // Like the transport: no more data until Resume().
        ASSERT_TRUE(Eventually([&] { return call->resumes.load() > resumes; }));
      }
    }
    call->EndStream(absl::OkStatus());
  });
  grpc::ClientContext context;
  v1::StreamRunRequest request;
  request.set_thread_id(kThread);
  auto reader = stub_->StreamRun(&context, request);
  // Read nothing until the server had to pause the upstream.
  ASSERT_TRUE(Eventually([&] { return paused.load(); }));
  v1::StreamRunResponse response;
  int next = 0;
  while (reader->Read(&response)) {
    const std::string& content = response.chunk().delta().content();
    EXPECT_EQ(content.substr(0, content.size() - kChunkBytes), std::to_string(next));
    ++next;
    if (next % 20 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_TRUE(reader->Finish().ok());
  upstream.join();
  EXPECT_EQ(next, kChunks);
  EXPECT_GT(api_.WaitForCall(0)->resumes.load(), 0);
}

TEST_F(AdapterTest, StreamCancelCancelsTheUpstream) {
  grpc::ClientContext context;
  v1::StreamRunRequest request;
  request.set_thread_id(kThread);
  auto reader = stub_->StreamRun(&context, request);
  auto call = api_.WaitForCall(0);
  ASSERT_NE(call, nullptr);
  call->Chunk(Chunk(0));
  v1::StreamRunResponse response;
  ASSERT_TRUE(reader->Read(&response));
  context.TryCancel();
  EXPECT_FALSE(reader->Read(&response));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(Eventually([&] { return call->cancels.load() > 0; }));
  // Late chunks and the end of the upstream after cancellation are harmless.
  call->Chunk(Chunk(1));
  call->EndStream(absl::OkStatus());
}

// Upstream completions racing client cancellations: every call ends exactly once, nothing
// leaks or crashes (run under ASan/TSan).
TEST_F(AdapterTest, CompletionsRacingCancellationsAreSafe) {
  constexpr int kCalls = 200;
  std::thread upstream([&] {
    for (int i = 0; i < kCalls; ++i) {
      auto call = api_.WaitForCall(i);
      ASSERT_NE(call, nullptr);
      if (call->method == "Run") {
        call->FinishMessage(Answer());
      } else {
        call->Chunk(Chunk(i));
        call->EndStream(absl::OkStatus());
      }
    }
  });
  std::vector<std::thread> clients;
  std::atomic<int> finished{0};
  for (int t = 0; t < 4; ++t) {
    clients.emplace_back([&, t] {
      for (int i = t; i < kCalls; i += 4) {
        grpc::ClientContext context;
        if (i % 2 == 0) {
          v1::RunResponse response;
          std::thread cancel([&context] { context.TryCancel(); });
          stub_->Run(&context, RunRequest(), &response);
          cancel.join();
        } else {
          v1::StreamRunRequest request;
          request.set_thread_id(kThread);
          auto reader = stub_->StreamRun(&context, request);
          std::thread cancel([&context] { context.TryCancel(); });
          v1::StreamRunResponse response;
          while (reader->Read(&response)) {
          }
          reader->Finish();
          cancel.join();
        }
        ++finished;
      }
    });
  }
  for (auto& c : clients) c.join();
  // Calls cancelled before they reached the server never reach the fake: finish the rest.
  for (int i = api_.call_count(); i < kCalls; ++i) {
    grpc::ClientContext context;
    v1::RunResponse response;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    stub_->Run(&context, RunRequest(), &response);
  }
  upstream.join();
  EXPECT_EQ(finished.load(), kCalls);
}

}  // namespace
}  // namespace copilot::gateway
