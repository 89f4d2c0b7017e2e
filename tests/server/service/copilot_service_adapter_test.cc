#include "server/service/copilot_service_adapter.h"

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "copilot/v1/copilot_service.grpc.pb.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "gtest/gtest.h"
#include "server/common/errors.h"
#include "server/common/grpc_status.h"
#include "server/core/copilot_core.h"
#include "server/core/thread_handles.h"
#include "tests/server/core/fake_haufe_api.h"
#include "tests/testing/eventually.h"

namespace copilot::gateway {
namespace {

namespace v1 = ::copilot::v1;
using ::copilot::gateway::testing::Eventually;
using ::copilot::gateway::testing::FakeClock;
using ::copilot::gateway::testing::FakeHaufeApi;
using ::copilot::gateway::testing::FakeUpstreamCall;
using ::google::protobuf::util::MessageDifferencer;

// How long Eventually waits for the reactors' threads.
constexpr absl::Duration kEventuallyTimeout = absl::Seconds(10);

constexpr char kThread[] = "0b8e5f0e-9a4c-4b7a-8f43-2f6f0e1c2d3e";
constexpr char kAssistant[] = "7c0e5d3a-4c1b-4f57-9a51-1f1f3e0a0001";

// Every client call in these tests ends by then at the latest, so a server or fake that never
// answers fails the test instead of hanging it.
constexpr absl::Duration kCallTimeout = absl::Seconds(30);

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

std::string Reason(const grpc::Status& status) {
  auto info = Find<google::rpc::ErrorInfo>(status);
  return info.has_value() ? info->reason() : "(no ErrorInfo)";
}

// A thread ID of its own for call `i`: kThread with `i` as its last group.
std::string ThreadOf(int i) {
  const std::string digits = std::to_string(i);
  return absl::StrCat("0b8e5f0e-9a4c-4b7a-8f43-", std::string(12 - digits.size(), '0'), digits);
}

// The `i` of ThreadOf(i), or -1 for any other thread ID.
int IndexOf(absl::string_view thread_id) {
  int i = -1;
  if (thread_id.size() != 36 || !absl::StartsWith(thread_id, "0b8e5f0e-9a4c-4b7a-8f43-") ||
      !absl::SimpleAtoi(thread_id.substr(24), &i)) {
    return -1;
  }
  return i;
}

class AdapterTest : public ::testing::Test {
 protected:
  void SetUp() override { StartServer(AdapterOptions{}); }

  void TearDown() override { StopServer(absl::Seconds(5)); }

  void StartServer(AdapterOptions options) {
    CoreOptions core_options;
    core_options.api_key = "KEY";
    core_options.default_tenant.id = "default";
    core_options.default_tenant.licence = "LIC";
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
    // Connected up front, so that no call's timing includes the handshake.
    ASSERT_TRUE(channel_->WaitForConnected(absl::ToChronoTime(absl::Now() + absl::Seconds(10))));
    stub_ = v1::CopilotService::NewStub(channel_);
  }

  // Shuts the server down, cancelling calls still in flight after `grace`, and returns how long
  // Shutdown and Wait took. A reactor that never finishes would block them for ever: then the
  // test fails and the process aborts rather than hang.
  absl::Duration StopServer(absl::Duration grace) {
    if (server_ == nullptr) return absl::ZeroDuration();
    const absl::Time start = absl::Now();
    absl::Notification stopped;
    std::thread stopper([&] {
      server_->Shutdown(absl::ToChronoTime(absl::Now() + grace));
      server_->Wait();
      stopped.Notify();
    });
    if (!stopped.WaitForNotificationWithTimeout(grace + absl::Seconds(20))) {
      ADD_FAILURE() << "the server did not shut down within " << grace + absl::Seconds(20)
                    << ": a call never finished";
      std::fflush(stdout);
      std::abort();
    }
    const absl::Duration took = absl::Now() - start;
    stopper.join();
    server_.reset();
    return took;
  }

  // A client context whose call ends within kCallTimeout.
  static std::unique_ptr<grpc::ClientContext> Context() {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(absl::ToChronoTime(absl::Now() + kCallTimeout));
    return context;
  }

  // Makes the client call `rpc` (on `context`) on another thread while this one plays the
  // upstream: waits for upstream call `index` and hands it to `answer`. If that call never
  // reaches the fake, or the client call has not ended kCallTimeout after the answer, the test
  // fails and the client call is cancelled, so nothing waits longer, even without a deadline.
  grpc::Status CallWithUpstream(grpc::ClientContext& context, int index,
                                absl::FunctionRef<void(FakeUpstreamCall&)> answer,
                                absl::FunctionRef<grpc::Status()> rpc) {
    grpc::Status status;
    absl::Notification ended;
    std::thread client([&] {
      status = rpc();
      ended.Notify();
    });
    if (std::shared_ptr<FakeUpstreamCall> call = api_.WaitForCall(index)) {
      answer(*call);
      if (!ended.WaitForNotificationWithTimeout(kCallTimeout)) {
        ADD_FAILURE() << "the client call did not end after upstream call " << index;
        context.TryCancel();
      }
    } else {
      ADD_FAILURE() << "upstream call " << index << " never reached the fake";
      context.TryCancel();
    }
    client.join();
    return status;
  }

  static v1::RunRequest RunRequest() {
    v1::RunRequest request;
    request.set_thread_id(kThread);
    return request;
  }

  static v1::Message Answer(const std::string& thread = kThread) {
    v1::Message m;
    m.set_id("m1");
    m.set_thread_id(thread);
    m.set_role(v1::ROLE_ASSISTANT);
    m.set_content("the answer");
    return m;
  }

  static v1::MessageChunk Chunk(int i, std::size_t size = 0, const std::string& thread = kThread) {
    v1::MessageChunk chunk;
    chunk.set_message_id("m1");
    chunk.set_thread_id(thread);
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
  v1::RunResponse response;
  auto context = Context();
  grpc::Status status = CallWithUpstream(
      *context, 0, [](FakeUpstreamCall& call) { call.FinishMessage(Answer()); },
      [&] { return stub_->Run(context.get(), RunRequest(), &response); });
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.message().content(), "the answer");
  EXPECT_EQ(response.message().thread_id(), kThread);
}

TEST_F(AdapterTest, EveryUnaryMethodIsWired) {
  // Call `index` must reach the upstream as `method`, be ended by `finish` and end OK.
  const auto expect_wired = [this](int index, const std::string& method,
                                   absl::FunctionRef<void(FakeUpstreamCall&)> finish,
                                   absl::FunctionRef<grpc::Status(grpc::ClientContext*)> rpc) {
    auto context = Context();
    grpc::Status status = CallWithUpstream(
        *context, index,
        [&](FakeUpstreamCall& call) {
          EXPECT_EQ(call.method, method);
          finish(call);
        },
        [&] { return rpc(context.get()); });
    EXPECT_TRUE(status.ok()) << method << ": " << status.error_message();
  };
  v1::Thread thread;
  thread.set_id(kThread);

  v1::ListAssistantsResponse assistants;
  expect_wired(
      0, "ListAssistants", [](FakeUpstreamCall& call) { call.FinishAssistants({v1::Assistant()}); },
      [&](grpc::ClientContext* c) { return stub_->ListAssistants(c, {}, &assistants); });
  EXPECT_EQ(assistants.assistants_size(), 1);

  v1::CreateThreadRequest create;
  create.set_assistant_id(kAssistant);
  v1::CreateThreadResponse created;
  expect_wired(
      1, "CreateThread", [&](FakeUpstreamCall& call) { call.FinishThread(thread); },
      [&](grpc::ClientContext* c) { return stub_->CreateThread(c, create, &created); });
  EXPECT_EQ(created.thread().id(), kThread);

  v1::GetThreadRequest get;
  get.set_thread_id(kThread);
  v1::GetThreadResponse got;
  expect_wired(
      2, "GetThread", [&](FakeUpstreamCall& call) { call.FinishThread(thread); },
      [&](grpc::ClientContext* c) { return stub_->GetThread(c, get, &got); });
  EXPECT_EQ(got.thread().id(), kThread);

  v1::AddMessageRequest add;
  add.set_thread_id(kThread);
  add.mutable_message()->set_role(v1::ROLE_USER);
  add.mutable_message()->set_content("hi");
  v1::AddMessageResponse added;
  expect_wired(
      3, "AddMessage", [](FakeUpstreamCall& call) { call.FinishMessage(Answer()); },
      [&](grpc::ClientContext* c) { return stub_->AddMessage(c, add, &added); });

  v1::ListMessagesRequest list;
  list.set_thread_id(kThread);
  v1::ListMessagesResponse listed;
  expect_wired(
      4, "ListMessages",
      [](FakeUpstreamCall& call) {
        call.FinishPage(MessagePage{{Answer()}, ""});
      },
      [&](grpc::ClientContext* c) { return stub_->ListMessages(c, list, &listed); });
  EXPECT_EQ(listed.messages_size(), 1);

  v1::CompleteRequest complete;
  complete.set_assistant_id(kAssistant);
  auto* m = complete.add_messages();
  m->set_role(v1::ROLE_USER);
  m->set_content("q");
  v1::CompleteResponse completed;
  expect_wired(
      5, "Complete", [](FakeUpstreamCall& call) { call.FinishMessage(Answer()); },
      [&](grpc::ClientContext* c) { return stub_->Complete(c, complete, &completed); });

  v1::DeleteThreadRequest del;
  del.set_thread_id(kThread);
  v1::DeleteThreadResponse deleted;
  expect_wired(
      6, "DeleteThread", [](FakeUpstreamCall& call) { call.FinishEmpty(); },
      [&](grpc::ClientContext* c) { return stub_->DeleteThread(c, del, &deleted); });
}

TEST_F(AdapterTest, UpstreamErrorArrivesWithCodeAndDetails) {
  auto context = Context();
  v1::RunResponse response;
  grpc::Status status = CallWithUpstream(
      *context, 0,
      [](FakeUpstreamCall& call) {
        absl::Status error = MakeError(absl::StatusCode::kResourceExhausted, "rate limited",
                                       "rate_limit_gateway", {{"http_status", "429"}});
        SetRetryDelay(error, absl::Seconds(3));
        call.Fail(error);
      },
      [&] { return stub_->Run(context.get(), RunRequest(), &response); });
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  auto info = Find<google::rpc::ErrorInfo>(status);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->reason(), "rate_limit_gateway");
  EXPECT_EQ(info->metadata().at("http_status"), "429");
  auto retry = Find<google::rpc::RetryInfo>(status);
  ASSERT_TRUE(retry.has_value());
  EXPECT_EQ(retry->retry_delay().seconds(), 3);
}

TEST_F(AdapterTest, ValidationErrorHasBadRequestAndNoUpstreamCall) {
  auto context = Context();
  v1::AddMessageRequest request;
  request.set_thread_id("");  // Required (handles are opaque: only presence is checked).
  request.mutable_message()->set_role(v1::ROLE_USER);
  v1::AddMessageResponse response;
  grpc::Status status = stub_->AddMessage(context.get(), request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Reason(status), "INVALID_REQUEST");
  auto bad = Find<google::rpc::BadRequest>(status);
  ASSERT_TRUE(bad.has_value());
  ASSERT_EQ(bad->field_violations_size(), 2);
  EXPECT_EQ(bad->field_violations(0).field(), "thread_id");
  EXPECT_EQ(bad->field_violations(1).field(), "message.content");
  EXPECT_EQ(api_.call_count(), 0);
}

TEST_F(AdapterTest, CallerDeadlineBoundsTheUpstreamCallAndEndsWithDeadlineExceeded) {
  grpc::ClientContext context;
  const absl::Time deadline = absl::Now() + absl::Seconds(1);
  context.set_deadline(absl::ToChronoTime(deadline));
  v1::RunResponse response;
  grpc::Status status = stub_->Run(&context, RunRequest(), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  auto call = api_.WaitForCall(0);
  ASSERT_NE(call, nullptr);
  // The upstream deadline is the caller's: gRPC sends the time left, so the server's copy is later
  // by the time the call took to get there (bounded generously here). The other candidate, the
  // fake clock's now + 42 s, is nowhere near the real clock.
  EXPECT_GE(call->options.deadline, deadline - absl::Milliseconds(100));
  EXPECT_LE(call->options.deadline, deadline + absl::Seconds(1));
  // The server saw the deadline pass and cancelled the upstream call, once.
  EXPECT_TRUE(Eventually([&] { return call->cancels.load() > 0; }, kEventuallyTimeout));
  EXPECT_EQ(call->cancels.load(), 1);
}

TEST_F(AdapterTest, NoCallerDeadlineUsesMaxCallTimeout) {
  grpc::ClientContext context;  // No deadline; CallWithUpstream bounds the wait.
  v1::RunResponse response;
  grpc::Status status = CallWithUpstream(
      context, 0, [](FakeUpstreamCall& call) { call.FinishMessage(Answer()); },
      [&] { return stub_->Run(&context, RunRequest(), &response); });
  EXPECT_TRUE(status.ok()) << status.error_message();
  auto call = api_.WaitForCall(0);
  ASSERT_NE(call, nullptr);
  EXPECT_EQ(call->options.deadline, clock_.Now() + absl::Seconds(42));
}

TEST_F(AdapterTest, ClientCancelCancelsTheUpstreamCall) {
  auto context = Context();
  v1::RunResponse response;
  grpc::Status status = CallWithUpstream(
      *context, 0, [&](FakeUpstreamCall&) { context->TryCancel(); },
      [&] { return stub_->Run(context.get(), RunRequest(), &response); });
  EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED);
  auto call = api_.WaitForCall(0);
  ASSERT_NE(call, nullptr);
  EXPECT_TRUE(Eventually([&] { return call->cancels.load() > 0; }, kEventuallyTimeout));
  EXPECT_EQ(call->cancels.load(), 1);
}

TEST_F(AdapterTest, StreamForwardsChunksInOrderThenOk) {
  auto context = Context();
  std::vector<std::string> got;
  grpc::Status status = CallWithUpstream(
      *context, 0,
      [](FakeUpstreamCall& call) {
        for (int i = 0; i < 5; ++i) call.Chunk(Chunk(i));
        call.EndStream(absl::OkStatus());
      },
      [&] {
        v1::StreamRunRequest request;
        request.set_thread_id(kThread);
        auto reader = stub_->StreamRun(context.get(), request);
        v1::StreamRunResponse response;
        while (reader->Read(&response)) got.push_back(response.chunk().delta().content());
        return reader->Finish();
      });
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_THAT(got, ::testing::ElementsAre("0", "1", "2", "3", "4"));
}

TEST_F(AdapterTest, StreamErrorAfterChunksEndsWithThatError) {
  auto context = Context();
  int chunks = 0;
  grpc::Status status = CallWithUpstream(
      *context, 0,
      [](FakeUpstreamCall& call) {
        call.Chunk(Chunk(0));
        call.Chunk(Chunk(1));
        call.EndStream(
            MakeError(absl::StatusCode::kInternal, "cut mid-line", "upstream_stream_truncated"));
      },
      [&] {
        v1::StreamCompleteRequest request;
        request.set_assistant_id(kAssistant);
        auto* m = request.add_messages();
        m->set_role(v1::ROLE_USER);
        m->set_content("q");
        auto reader = stub_->StreamComplete(context.get(), request);
        v1::StreamCompleteResponse response;
        while (reader->Read(&response)) ++chunks;
        return reader->Finish();
      });
  EXPECT_EQ(chunks, 2);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_EQ(Reason(status), "upstream_stream_truncated");
}

TEST_F(AdapterTest, StreamValidationErrorEndsWithInvalidArgument) {
  auto context = Context();
  auto reader = stub_->StreamRun(context.get(), v1::StreamRunRequest());
  v1::StreamRunResponse response;
  EXPECT_FALSE(reader->Read(&response));
  grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(api_.call_count(), 0);
}

TEST_F(AdapterTest, SlowReaderPausesTheUpstreamAndStillGetsEveryChunkInOrder) {
  StopServer(absl::Seconds(5));
  AdapterOptions options;
  options.max_queued_chunks = 2;
  ASSERT_NO_FATAL_FAILURE(StartServer(options));
  constexpr int kChunks = 200;
  constexpr std::size_t kChunkBytes = 64 * 1024;  // Big enough to fill HTTP/2 windows.
  std::atomic<bool> paused{false};
  // Joined on every way out of the test; it ends on its own within 10 s of a failure.
  std::jthread upstream([&] {
    std::shared_ptr<FakeUpstreamCall> call = api_.WaitForCall(0);
    if (call == nullptr) {
      ADD_FAILURE() << "StreamRun never reached the fake";
      return;
    }
    for (int i = 0; i < kChunks; ++i) {
      const int resumes = call->resumes.load();
      if (!call->Chunk(Chunk(i, kChunkBytes))) {
        paused = true;
        // Like the transport: no more data until Resume().
        if (!Eventually([&] { return call->resumes.load() > resumes; }, kEventuallyTimeout)) {
          ADD_FAILURE() << "the upstream was paused after chunk " << i << " and never resumed";
          call->EndStream(absl::InternalError("never resumed"));
          return;
        }
      }
    }
    call->EndStream(absl::OkStatus());
  });
  auto context = Context();
  v1::StreamRunRequest request;
  request.set_thread_id(kThread);
  auto reader = stub_->StreamRun(context.get(), request);
  // Read nothing until the server had to pause the upstream.
  ASSERT_TRUE(Eventually([&] { return paused.load(); }, kEventuallyTimeout));
  v1::StreamRunResponse response;
  int next = 0;
  while (reader->Read(&response)) {
    const std::string& content = response.chunk().delta().content();
    EXPECT_EQ(content.substr(0, content.size() - kChunkBytes), std::to_string(next));
    ++next;
    if (next % 20 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  grpc::Status status = reader->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
  upstream.join();
  EXPECT_EQ(next, kChunks);
  EXPECT_GT(api_.WaitForCall(0)->resumes.load(), 0);
}

TEST_F(AdapterTest, StreamCancelCancelsTheUpstream) {
  auto context = Context();
  v1::StreamRunRequest request;
  request.set_thread_id(kThread);
  auto reader = stub_->StreamRun(context.get(), request);
  auto call = api_.WaitForCall(0);
  ASSERT_NE(call, nullptr);
  call->Chunk(Chunk(0));
  v1::StreamRunResponse response;
  ASSERT_TRUE(reader->Read(&response));
  context->TryCancel();
  EXPECT_FALSE(reader->Read(&response));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(Eventually([&] { return call->cancels.load() > 0; }, kEventuallyTimeout));
  EXPECT_EQ(call->cancels.load(), 1);
  // Late chunks and the end of the upstream after cancellation are harmless.
  call->Chunk(Chunk(1));
  call->EndStream(absl::OkStatus());
}

// Upstream answers racing client cancellations, Run and StreamRun mixed. Each call has its own
// thread ID, so the fake's calls and the client's results can be matched. The fake never answers
// a third of the calls: only the server's cancellation can end those upstream. Half of the
// cancellations fire at once (racing the call's start: such a call may never reach the server),
// half the moment the fake has seen the call (racing the fake's answer inside the server).
TEST_F(AdapterTest, CompletionsRacingCancellationsAreSafe) {
  constexpr int kCalls = 400;
  constexpr int kClients = 4;
  const auto is_run = [](int i) { return i % 2 == 0; };
  const auto held = [](int i) { return i % 3 == 0; };  // The fake never answers.
  const auto cancel_when_seen = [](int i) { return i % 4 >= 2; };
  std::vector<absl::Notification> seen(kCalls);  // Notified when the fake has call i.

  // Plays the upstream until the clients are done. Calls reaching the server later were
  // cancelled by their client; the server has to cancel them upstream.
  std::atomic<bool> clients_done{false};
  std::thread upstream([&] {
    for (int next = 0; !clients_done.load();) {
      std::shared_ptr<FakeUpstreamCall> call = api_.WaitForCall(next, absl::Milliseconds(5));
      if (call == nullptr) continue;
      ++next;
      const int i = IndexOf(call->run.thread_id);
      if (i < 0 || i >= kCalls) {
        ADD_FAILURE() << "unexpected upstream call " << call->method << " on "
                      << call->run.thread_id;
        continue;
      }
      EXPECT_EQ(call->method, is_run(i) ? "Run" : "StreamRun") << "call " << i;
      if (!seen[i].HasBeenNotified()) seen[i].Notify();
      if (held(i)) continue;
      if (call->method == "Run") {
        call->FinishMessage(Answer(ThreadOf(i)));
      } else {
        call->Chunk(Chunk(i, 0, ThreadOf(i)));
        call->EndStream(absl::OkStatus());
      }
    }
  });

  struct Outcome {
    grpc::Status status;
    std::optional<v1::Message> answer;     // Run
    std::vector<v1::MessageChunk> chunks;  // StreamRun
  };
  std::vector<Outcome> outcomes(kCalls);
  const absl::Time start = absl::Now();
  std::vector<std::thread> clients;
  for (int t = 0; t < kClients; ++t) {
    clients.emplace_back([&, t] {
      for (int i = t; i < kCalls; i += kClients) {
        std::unique_ptr<grpc::ClientContext> context = Context();
        std::thread canceller([&, i] {
          if (cancel_when_seen(i) && !seen[i].WaitForNotificationWithTimeout(absl::Seconds(10))) {
            ADD_FAILURE() << "call " << i << " never reached the fake";
          }
          context->TryCancel();
        });
        Outcome& outcome = outcomes[i];
        if (is_run(i)) {
          v1::RunRequest request;
          request.set_thread_id(ThreadOf(i));
          v1::RunResponse response;
          outcome.status = stub_->Run(context.get(), request, &response);
          if (outcome.status.ok()) outcome.answer = response.message();
        } else {
          v1::StreamRunRequest request;
          request.set_thread_id(ThreadOf(i));
          auto reader = stub_->StreamRun(context.get(), request);
          v1::StreamRunResponse response;
          while (reader->Read(&response)) outcome.chunks.push_back(response.chunk());
          outcome.status = reader->Finish();
        }
        canceller.join();
      }
    });
  }
  for (auto& client : clients) client.join();
  const absl::Duration calls_took = absl::Now() - start;
  clients_done = true;
  upstream.join();

  // Client side: each call ended OK or CANCELLED, nothing else (no status made up by the server;
  // no DEADLINE_EXCEEDED, as every call is cancelled long before its deadline); an OK call got
  // exactly what the fake sent for it, a cancelled stream at most that.
  int ok = 0;
  for (int i = 0; i < kCalls; ++i) {
    const Outcome& outcome = outcomes[i];
    const grpc::StatusCode code = outcome.status.error_code();
    EXPECT_TRUE(code == grpc::StatusCode::OK || code == grpc::StatusCode::CANCELLED)
        << "call " << i << " ended with " << code << ": " << outcome.status.error_message();
    if (code == grpc::StatusCode::OK) ++ok;
    if (held(i)) {
      EXPECT_NE(code, grpc::StatusCode::OK) << "call " << i << " was never answered";
    }
    if (is_run(i)) {
      if (code == grpc::StatusCode::OK) {
        EXPECT_TRUE(outcome.answer.has_value() &&
                    MessageDifferencer::Equals(*outcome.answer, Answer(ThreadOf(i))))
            << "call " << i << " got " << (outcome.answer ? outcome.answer->DebugString() : "");
      }
    } else {
      EXPECT_LE(outcome.chunks.size(), 1u) << "call " << i;
      if (code == grpc::StatusCode::OK) {
        EXPECT_EQ(outcome.chunks.size(), 1u) << "call " << i;
      }
      for (const v1::MessageChunk& chunk : outcome.chunks) {
        EXPECT_TRUE(MessageDifferencer::Equals(chunk, Chunk(i, 0, ThreadOf(i))))
            << "call " << i << " got " << chunk.DebugString();
      }
    }
  }

  // Server side: every upstream call the server started is ended, by the fake's answer or by
  // the server's cancellation, without anyone waiting for a deadline.
  const auto dangling = [&] {
    std::string ids;
    for (int k = 0; k < api_.call_count(); ++k) {
      std::shared_ptr<FakeUpstreamCall> call = api_.WaitForCall(k);
      if (!call->finished()) absl::StrAppend(&ids, " ", call->run.thread_id);
    }
    return ids;
  };
  EXPECT_TRUE(Eventually([&] { return dangling().empty(); }, kEventuallyTimeout))
      << "upstream calls left dangling:" << dangling();

  // No reactor is left behind: Shutdown waits for calls in flight until its grace period ends,
  // so returning well before that means every call had finished.
  const absl::Duration shutdown_took = StopServer(absl::Seconds(5));
  EXPECT_LT(shutdown_took, absl::Seconds(4));

  // With the server down the record is complete. Each call reached the upstream at most once
  // (exactly once if it ended OK or was cancelled only once the fake had it); the server
  // cancelled every held call and no call that ended OK, and none twice.
  std::vector<int> upstream_calls(kCalls, 0);
  int reached = 0;
  int cancelled_upstream = 0;
  for (int k = 0; k < api_.call_count(); ++k) {
    std::shared_ptr<FakeUpstreamCall> call = api_.WaitForCall(k);
    const int i = IndexOf(call->run.thread_id);
    if (i < 0 || i >= kCalls) continue;  // Reported above.
    ++upstream_calls[i];
    ++reached;
    const int cancels = call->cancels.load();
    if (cancels > 0) ++cancelled_upstream;
    EXPECT_TRUE(call->finished()) << "call " << i;
    EXPECT_LE(cancels, 1) << "call " << i;
    if (held(i)) {
      EXPECT_EQ(cancels, 1) << "call " << i << " was held";
    }
    if (outcomes[i].status.ok()) {
      EXPECT_EQ(cancels, 0) << "call " << i << " ended OK";
    }
  }
  for (int i = 0; i < kCalls; ++i) {
    EXPECT_LE(upstream_calls[i], 1) << "call " << i;
    if (outcomes[i].status.ok() || cancel_when_seen(i)) {
      EXPECT_EQ(upstream_calls[i], 1) << "call " << i;
    }
  }
  std::printf("%d calls in %s: %d OK, %d reached the upstream, %d cancelled there; shutdown %s\n",
              kCalls, absl::FormatDuration(calls_took).c_str(), ok, reached, cancelled_upstream,
              absl::FormatDuration(shutdown_took).c_str());
}

}  // namespace
}  // namespace copilot::gateway
