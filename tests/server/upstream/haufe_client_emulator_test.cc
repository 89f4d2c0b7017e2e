// HaufeClient over the real CurlTransport against the haufe-emulator: the bodies, statuses and
// faults of docs/emulator.md, end to end.
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/common/errors.h"
#include "server/transport/curl_transport.h"
#include "server/upstream/haufe_client.h"
#include "tests/emulator/testing/emulator_process.h"

namespace copilot::gateway {
namespace {

using copilot::emulator::testing::EmulatorProcess;
using nlohmann::json;

constexpr char kTax[] = "7c0e5d3a-4c1b-4f57-9a51-1f1f3e0a0001";
constexpr char kHr[] = "7c0e5d3a-4c1b-4f57-9a51-1f1f3e0a0002";
constexpr char kLegacy[] = "7c0e5d3a-4c1b-4f57-9a51-1f1f3e0a0003";

std::string Reason(const absl::Status& status) {
  auto info = GetErrorInfo(status);
  return info.has_value() ? info->reason() : "<no ErrorInfo>";
}

// Waits for one callback's value. Thread-safe.
template <typename T>
class Waiter {
 public:
  UpstreamCallback<T> Callback() {
    return [this](absl::StatusOr<T> value) {
      value_ = std::move(value);
      done_.Notify();
    };
  }
  UpstreamDoneCallback DoneCallback() {
    return [this](absl::Status status) {
      value_ = std::move(status);
      done_.Notify();
    };
  }
  absl::StatusOr<T> Get() {
    if (!done_.WaitForNotificationWithTimeout(absl::Seconds(20))) {
      return absl::UnknownError("test: no callback in time");
    }
    return *value_;
  }

 private:
  absl::Notification done_;
  std::optional<absl::StatusOr<T>> value_;
};

// Collects a stream. Thread-safe.
class CollectingSink final : public ChunkSink {
 public:
  explicit CollectingSink(bool pause_every_chunk = false) : pause_(pause_every_chunk) {}
  bool OnChunk(v1::MessageChunk chunk) override {
    absl::MutexLock lock(&mu_);
    EXPECT_FALSE(paused_) << "OnChunk while paused";
    chunks_.push_back(std::move(chunk));
    paused_ = pause_;
    return !pause_;
  }
  void OnDone(absl::Status status) override {
    absl::MutexLock lock(&mu_);
    EXPECT_FALSE(status_.has_value()) << "OnDone twice";
    status_ = std::move(status);
  }
  absl::Status Wait() {
    absl::MutexLock lock(&mu_);
    auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return status_.has_value(); };
    if (!mu_.AwaitWithTimeout(absl::Condition(&done), absl::Seconds(20))) {
      return absl::UnknownError("test: no OnDone in time");
    }
    return *status_;
  }
  // Resumes `call` whenever the sink has paused, until the stream ends.
  void ResumeUntilDone(UpstreamCall& call) {
    while (true) {
      {
        absl::MutexLock lock(&mu_);
        auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return paused_ || status_.has_value();
        };
        if (!mu_.AwaitWithTimeout(absl::Condition(&ready), absl::Seconds(20))) return;
        if (status_.has_value()) return;
        paused_ = false;
      }
      call.Resume();
    }
  }
  std::vector<v1::MessageChunk> chunks() {
    absl::MutexLock lock(&mu_);
    return chunks_;
  }
  std::string Text() {
    std::string text;
    for (const auto& chunk : chunks()) text += chunk.delta().content();
    return text;
  }

 private:
  const bool pause_;
  absl::Mutex mu_;
  std::vector<v1::MessageChunk> chunks_ ABSL_GUARDED_BY(mu_);
  std::optional<absl::Status> status_ ABSL_GUARDED_BY(mu_);
  bool paused_ ABSL_GUARDED_BY(mu_) = false;
};

class HaufeClientEmulatorTest : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto emulator = EmulatorProcess::Start({.args = {"--stream-delay-ms", "5"}});
    ASSERT_TRUE(emulator.ok()) << emulator.status();
    emulator_ = emulator->release();
  }
  static void TearDownTestSuite() {
    delete emulator_;
    emulator_ = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(emulator_, nullptr);
    ASSERT_TRUE(emulator_->Reset().ok());
    ASSERT_TRUE(emulator_->SetConfig({{"error_shape", "old"}, {"stream_delay_ms", 5}}).ok());
    auto transport = CurlTransport::Create();
    ASSERT_TRUE(transport.ok()) << transport.status();
    transport_ = std::shared_ptr<CurlTransport>(*std::move(transport));
    client_ = std::make_unique<HaufeClient>(
        HaufeClientConfig{.base_url = emulator_->base_url() + "/agents",
                          .connect_timeout = absl::Seconds(2),
                          .stall_timeout = absl::Seconds(5),
                          .max_response_bytes = 1 << 20,
                          .max_ndjson_line_bytes = 64 * 1024,
                          .version = ""},
        transport_);
    options_.deadline = absl::Now() + absl::Seconds(20);
    options_.api_key = emulator_->api_key();
    options_.request_id = "req-42";
  }

  EmulatorProcess& emu() { return *emulator_; }
  void AddFault(const json& rule) { ASSERT_TRUE(emu().AddFault(rule).ok()) << rule.dump(); }

  std::string NewThread(const std::string& assistant) {
    Waiter<v1::Thread> thread;
    client_->CreateThread(options_, {.assistant_id = assistant, .user_id = "", .title = ""},
                          thread.Callback());
    absl::StatusOr<v1::Thread> created = thread.Get();
    EXPECT_TRUE(created.ok()) << created.status();
    return created.ok() ? created->id() : "";
  }

  void AddUserMessage(const std::string& thread_id, const std::string& content) {
    v1::MessageInput message;
    message.set_role(v1::ROLE_USER);
    message.set_content(content);
    Waiter<v1::Message> added;
    client_->AddMessage(options_, thread_id, message, added.Callback());
    absl::StatusOr<v1::Message> result = added.Get();
    ASSERT_TRUE(result.ok()) << result.status();
  }

  CompletionParams Completion(const std::string& assistant, const std::string& question) {
    v1::MessageInput message;
    message.set_role(v1::ROLE_USER);
    message.set_content(question);
    return {.assistant_id = assistant,
            .messages = {message},
            .user_id = "",
            .thread_id = "",
            .tools = {}};
  }

  static EmulatorProcess* emulator_;
  std::shared_ptr<CurlTransport> transport_;
  std::unique_ptr<HaufeClient> client_;
  UpstreamCallOptions options_;
};

EmulatorProcess* HaufeClientEmulatorTest::emulator_ = nullptr;

TEST_F(HaufeClientEmulatorTest, ListAssistantsSendsOurHeaders) {
  Waiter<std::vector<v1::Assistant>> assistants;
  client_->ListAssistants(options_, assistants.Callback());
  absl::StatusOr<std::vector<v1::Assistant>> list = assistants.Get();
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->size(), 3u);
  for (const auto& assistant : *list) {
    EXPECT_EQ(assistant.streaming(), assistant.id() != kLegacy) << assistant.id();
  }
  json record = (*emu().Requests())[0];
  EXPECT_EQ(record["path"], "/agents/v1/assistants");
  EXPECT_EQ(record["headers"]["api-key"], emu().api_key());
  EXPECT_EQ(record["headers"]["accept"], "application/json");
  EXPECT_EQ(record["headers"]["x-request-id"], "req-42");
  EXPECT_EQ(record["headers"]["user-agent"], "copilot-gateway/" COPILOT_TEST_VERSION);
}

TEST_F(HaufeClientEmulatorTest, ThreadLifecycle) {
  Waiter<v1::Thread> created;
  client_->CreateThread(
      options_,
      {.assistant_id = kHr, .user_id = "3f2b8c1e-9d4a-4e6b-8f0a-1c2d3e4f5a6b", .title = "Urlaub"},
      created.Callback());
  absl::StatusOr<v1::Thread> thread = created.Get();
  ASSERT_TRUE(thread.ok()) << thread.status();
  EXPECT_EQ(thread->assistant_id(), kHr);
  EXPECT_EQ(thread->title(), "Urlaub");
  EXPECT_GT(thread->create_time().seconds(), 1700000000);

  Waiter<v1::Thread> got;
  client_->GetThread(options_, thread->id(), got.Callback());
  ASSERT_TRUE(got.Get().ok());

  AddUserMessage(thread->id(), "Wie viel Urlaub?");
  Waiter<v1::Message> answer;
  client_->Run(options_, {.thread_id = thread->id(), .tools = {}}, answer.Callback());
  absl::StatusOr<v1::Message> message = answer.Get();
  ASSERT_TRUE(message.ok()) << message.status();
  EXPECT_EQ(message->role(), v1::ROLE_ASSISTANT);
  EXPECT_EQ(message->content(),
            "Regarding \"Wie viel Urlaub?\": this is the emulated answer of Haufe Copilot HR.");

  Waiter<MessagePage> page;
  client_->ListMessages(options_, thread->id(), 10, "", page.Callback());
  absl::StatusOr<MessagePage> messages = page.Get();
  ASSERT_TRUE(messages.ok()) << messages.status();
  ASSERT_EQ(messages->messages.size(), 2u);
  EXPECT_EQ(messages->messages[0].role(), v1::ROLE_ASSISTANT);  // Newest first.

  absl::Notification delete_done;
  absl::Status delete_status;
  client_->DeleteThread(options_, thread->id(), [&](absl::Status status) {
    delete_status = status;
    delete_done.Notify();
  });
  ASSERT_TRUE(delete_done.WaitForNotificationWithTimeout(absl::Seconds(20)));
  EXPECT_TRUE(delete_status.ok()) << delete_status;

  v1::MessageInput late;
  late.set_role(v1::ROLE_USER);
  late.set_content("still there?");
  Waiter<v1::Message> rejected;
  client_->AddMessage(options_, thread->id(), late, rejected.Callback());
  absl::Status status = rejected.Get().status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_EQ(Reason(status), "thread_is_deactivated");
}

TEST_F(HaufeClientEmulatorTest, UnknownThreadIsNotFound) {
  Waiter<v1::Thread> got;
  client_->GetThread(options_, "5e0a4d8e-7f87-4d40-9a9f-000000000000", got.Callback());
  absl::Status status = got.Get().status();
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound) << status;
  EXPECT_EQ(Reason(status), "thread_not_found");
}

TEST_F(HaufeClientEmulatorTest, RejectedApiKeyIsInternal) {
  options_.api_key = "wrong";
  Waiter<std::vector<v1::Assistant>> assistants;
  client_->ListAssistants(options_, assistants.Callback());
  absl::Status status = assistants.Get().status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInternal) << status;
  EXPECT_EQ(Reason(status), "unauthorized");
}

TEST_F(HaufeClientEmulatorTest, LicenceIsInjectedForAssistantsThatNeedIt) {
  Waiter<v1::Message> without;
  client_->Complete(options_, Completion(kTax, "USt?"), without.Callback());
  absl::Status status = without.Get().status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_EQ(Reason(status), "request_metadata_missing_or_incomplete");

  options_.licence = "PI12345";
  Waiter<v1::Message> with;
  client_->Complete(options_, Completion(kTax, "USt?"), with.Callback());
  absl::StatusOr<v1::Message> answer = with.Get();
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_FALSE(answer->thread_id().empty());
  json body = json::parse((*emu().Requests())[1]["body"].get<std::string>());
  EXPECT_EQ(body["meta_data"]["user_data"]["licence"], "PI12345");
}

TEST_F(HaufeClientEmulatorTest, StreamRunDeliversChunksInOrder) {
  const std::string thread = NewThread(kHr);
  AddUserMessage(thread, "Kündigungsfrist?");
  auto sink = std::make_shared<CollectingSink>();
  client_->StreamRun(options_, {.thread_id = thread, .tools = {}}, sink);
  absl::Status status = sink->Wait();
  ASSERT_TRUE(status.ok()) << status;
  std::vector<v1::MessageChunk> chunks = sink->chunks();
  ASSERT_GT(chunks.size(), 3u);
  for (const auto& chunk : chunks) {
    EXPECT_EQ(chunk.message_id(), chunks[0].message_id());
    EXPECT_EQ(chunk.thread_id(), thread);
  }
  EXPECT_EQ(sink->Text(),
            "Regarding \"Kündigungsfrist?\": this is the emulated answer of Haufe Copilot HR.");
  json record = (*emu().Requests()).back();
  EXPECT_EQ(record["headers"]["accept"], "application/x-ndjson, application/json");
}

TEST_F(HaufeClientEmulatorTest, SlowSinkPausesAndResumes) {
  auto sink = std::make_shared<CollectingSink>(/*pause_every_chunk=*/true);
  std::shared_ptr<UpstreamCall> call =
      client_->StreamComplete(options_, Completion(kHr, "Elternzeit?"), sink);
  std::thread resumer([&] { sink->ResumeUntilDone(*call); });
  absl::Status status = sink->Wait();
  resumer.join();
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(sink->Text(),
            "Regarding \"Elternzeit?\": this is the emulated answer of Haufe Copilot HR.");
}

TEST_F(HaufeClientEmulatorTest, StreamingNotSupported) {
  auto sink = std::make_shared<CollectingSink>();
  client_->StreamComplete(options_, Completion(kLegacy, "x?"), sink);
  absl::Status status = sink->Wait();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_EQ(Reason(status), "engine_does_not_support_streaming");
  EXPECT_TRUE(sink->chunks().empty());
}

TEST_F(HaufeClientEmulatorTest, TruncatedStreamIsNeverOk) {
  AddFault({{"endpoint", "chat_completions_stream"}, {"type", "truncated_ndjson"}, {"lines", 2}});
  auto sink = std::make_shared<CollectingSink>();
  client_->StreamComplete(options_, Completion(kHr, "x?"), sink);
  absl::Status status = sink->Wait();
  EXPECT_EQ(status.code(), absl::StatusCode::kInternal) << status;
  EXPECT_EQ(Reason(status), "upstream_stream_truncated");
  EXPECT_EQ(sink->chunks().size(), 2u);
}

TEST_F(HaufeClientEmulatorTest, MidStreamErrorLine) {
  AddFault({{"endpoint", "chat_completions_stream"},
            {"type", "mid_stream_error"},
            {"lines", 3},
            {"error_code", "api_timeout_error"},
            {"detail", "LLM timed out"}});
  auto sink = std::make_shared<CollectingSink>();
  client_->StreamComplete(options_, Completion(kHr, "x?"), sink);
  absl::Status status = sink->Wait();
  EXPECT_EQ(status.code(), absl::StatusCode::kInternal) << status;
  EXPECT_EQ(Reason(status), "api_timeout_error");
  EXPECT_EQ(status.message(), "LLM timed out");
  EXPECT_EQ(sink->chunks().size(), 3u);
}

TEST_F(HaufeClientEmulatorTest, StreamResetAfterChunks) {
  AddFault(
      {{"endpoint", "chat_completions_stream"}, {"type", "reset_mid_body"}, {"after_bytes", 400}});
  auto sink = std::make_shared<CollectingSink>();
  client_->StreamComplete(options_, Completion(kHr, "x?"), sink);
  absl::Status status = sink->Wait();
  EXPECT_EQ(status.code(), absl::StatusCode::kInternal) << status;
  EXPECT_EQ(Reason(status), "upstream_reset");
  EXPECT_GE(sink->chunks().size(), 1u);
}

TEST_F(HaufeClientEmulatorTest, RateLimitWithRetryAfter) {
  AddFault({{"endpoint", "chat_completions"},
            {"type", "rate_limit"},
            {"retry_after", 3},
            {"shape", "new"}});
  Waiter<v1::Message> answer;
  client_->Complete(options_, Completion(kHr, "x?"), answer.Callback());
  absl::Status status = answer.Get().status();
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  EXPECT_EQ(Reason(status), "UPSTREAM_HTTP_429");
  ASSERT_TRUE(GetRetryInfo(status).has_value());
  EXPECT_EQ(GetRetryInfo(status)->retry_delay().seconds(), 3);
  ASSERT_TRUE(GetQuotaFailure(status).has_value());
}

TEST_F(HaufeClientEmulatorTest, FaultStatusesMapThroughTheTable) {
  struct Case {
    json fault;
    absl::StatusCode code;
    std::string reason;
  };
  const std::vector<Case> cases = {
      {{{"status", 503}, {"error_code", "internal_service_error"}, {"detail", "later"}},
       absl::StatusCode::kUnavailable,
       "internal_service_error"},
      {{{"status", 422}, {"shape", "fastapi"}},
       absl::StatusCode::kInvalidArgument,
       "upstream_validation_error"},
      {{{"status", 422}, {"shape", "custom_validation"}},
       absl::StatusCode::kInvalidArgument,
       "validation_error"},
      {{{"status", 502}, {"shape", "text"}},
       absl::StatusCode::kUnavailable,
       "upstream_unparseable_body"},
      {{{"status", 403}, {"shape", "message_only"}, {"detail", "no"}},
       absl::StatusCode::kPermissionDenied,
       "UPSTREAM_HTTP_403"},
      {{{"status", 409}, {"error_code", "conflict"}, {"detail", "busy"}},
       absl::StatusCode::kAborted,
       "conflict"},
  };
  for (const Case& c : cases) {
    ASSERT_TRUE(emu().ClearFaults().ok());
    json fault = c.fault;
    fault["endpoint"] = "chat_completions";
    fault["type"] = "status";
    AddFault(fault);
    Waiter<v1::Message> answer;
    client_->Complete(options_, Completion(kHr, "x?"), answer.Callback());
    absl::Status status = answer.Get().status();
    EXPECT_EQ(status.code(), c.code) << fault.dump() << " " << status;
    EXPECT_EQ(Reason(status), c.reason) << fault.dump();
    if (c.code == absl::StatusCode::kInvalidArgument) {
      EXPECT_TRUE(GetBadRequest(status).has_value()) << fault.dump();
    }
  }
}

TEST_F(HaufeClientEmulatorTest, MalformedSuccessBody) {
  AddFault({{"endpoint", "list_assistants"}, {"type", "malformed_json"}});
  Waiter<std::vector<v1::Assistant>> assistants;
  client_->ListAssistants(options_, assistants.Callback());
  absl::Status status = assistants.Get().status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInternal) << status;
  EXPECT_EQ(Reason(status), "upstream_bad_response");
}

TEST_F(HaufeClientEmulatorTest, CancelEndsAStreamWithCancelled) {
  ASSERT_TRUE(emu().SetConfig({{"stream_delay_ms", 200}}).ok());
  auto sink = std::make_shared<CollectingSink>();
  std::shared_ptr<UpstreamCall> call =
      client_->StreamComplete(options_, Completion(kHr, "x?"), sink);
  while (sink->chunks().empty()) absl::SleepFor(absl::Milliseconds(5));
  call->Cancel();
  absl::Status status = sink->Wait();
  EXPECT_EQ(status.code(), absl::StatusCode::kCancelled) << status;
  EXPECT_EQ(Reason(status), "upstream_call_cancelled");
}

}  // namespace
}  // namespace copilot::gateway
