// Streaming through the real binaries: no buffering, failures mid-way, slow readers.
#include <string>
#include <thread>
#include <utility>

#include "gmock/gmock.h"
#include "tests/server/integration/integration_fixture.h"

namespace copilot::gateway::testing {
namespace {

namespace v1 = ::copilot::v1;

class GatewayStreamingTest : public GatewayIntegrationTest {
 protected:
  // Streams a run on `thread`, reading every chunk: how many came, and how the call ended.
  std::pair<int, grpc::Status> StreamRunToTheEnd(const std::string& thread) {
    grpc::ClientContext context;
    v1::StreamRunRequest request;
    request.set_thread_id(thread);
    auto reader = stub_->StreamRun(&context, request);
    v1::StreamRunResponse chunk;
    int chunks = 0;
    while (reader->Read(&chunk)) ++chunks;
    return {chunks, reader->Finish()};
  }
};

TEST_F(GatewayStreamingTest, FirstChunkArrivesLongBeforeThePacedUpstreamEnds) {
  ASSERT_TRUE(emulator_->SetConfig({{"stream_delay_ms", 250}}).ok());
  const std::string thread = ThreadWithQuestion(kHrAssistant, "paced?");
  grpc::ClientContext context;
  SetTimeout(context, absl::Seconds(20));
  v1::StreamRunRequest request;
  request.set_thread_id(thread);
  const absl::Time start = absl::Now();
  auto reader = stub_->StreamRun(&context, request);
  v1::StreamRunResponse chunk;
  ASSERT_TRUE(reader->Read(&chunk));
  const absl::Duration first = absl::Now() - start;
  int chunks = 1;
  while (reader->Read(&chunk)) ++chunks;
  const absl::Duration total = absl::Now() - start;
  ASSERT_TRUE(reader->Finish().ok());
  // About a dozen chunks 250 ms apart: the whole stream takes seconds, the first chunk does not.
  EXPECT_GE(chunks, 10);
  EXPECT_GE(total, absl::Seconds(2));
  EXPECT_LT(first, absl::Milliseconds(800)) << "first " << first << " total " << total;
  EXPECT_LT(first * 4, total);
}

TEST_F(GatewayStreamingTest, TruncatedStreamEndsWithAnErrorNotOk) {
  const std::string thread = ThreadWithQuestion(kHrAssistant, "truncated?");
  Fault({{"endpoint", "run_stream"}, {"type", "truncated_ndjson"}, {"lines", 3}});
  const auto [chunks, status] = StreamRunToTheEnd(thread);
  EXPECT_EQ(chunks, 3);
  // Not UNAVAILABLE: three chunks went out, so the run happened; a retry would repeat it.
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INTERNAL) << status.error_message();
  EXPECT_EQ(Reason(status), "upstream_stream_truncated");
}

TEST_F(GatewayStreamingTest, MidStreamErrorLineEndsWithThatError) {
  const std::string thread = ThreadWithQuestion(kHrAssistant, "mid-stream error?");
  Fault({{"endpoint", "run_stream"},
         {"type", "mid_stream_error"},
         {"lines", 2},
         {"error_code", "api_timeout_error"},
         {"detail", "the model timed out"}});
  const auto [chunks, status] = StreamRunToTheEnd(thread);
  EXPECT_EQ(chunks, 2);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INTERNAL);  // Mapped like a 500 body.
  EXPECT_EQ(Reason(status), "api_timeout_error");
  EXPECT_EQ(status.error_message(), "the model timed out");
}

TEST_F(GatewayStreamingTest, MidStreamRateLimitLineIsResourceExhaustedWithRetryInfo) {
  const std::string thread = ThreadWithQuestion(kHrAssistant, "mid-stream rate limit?");
  Fault({{"endpoint", "run_stream"},
         {"type", "mid_stream_error"},
         {"lines", 1},
         {"error_code", "rate_limit_error"},
         {"detail", "model provider busy"}});
  const auto [chunks, status] = StreamRunToTheEnd(thread);
  EXPECT_EQ(chunks, 1);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  EXPECT_EQ(Reason(status), "rate_limit_error");
  EXPECT_TRUE(FindDetail<google::rpc::RetryInfo>(status).has_value());
}

TEST_F(GatewayStreamingTest, StreamCompleteUpstreamErrorBeforeTheStream) {
  Fault({{"endpoint", "chat_completions_stream"},
         {"type", "status"},
         {"status", 503},
         {"error_code", "internal_service_error"},
         {"detail", "down"}});
  grpc::ClientContext context;
  v1::StreamCompleteRequest request;
  request.set_assistant_id(kHrAssistant);
  auto* user = request.add_messages();
  user->set_role(v1::ROLE_USER);
  user->set_content("q");
  auto reader = stub_->StreamComplete(&context, request);
  v1::StreamCompleteResponse chunk;
  EXPECT_FALSE(reader->Read(&chunk));
  grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(Reason(status), "internal_service_error");
  EXPECT_EQ(HttpStatusOf(status), "503");
}

TEST_F(GatewayStreamingTest, SlowReaderGetsEveryChunkInOrder) {
  ASSERT_TRUE(emulator_->SetConfig({{"stream_delay_ms", 0}}).ok());
  // A long question: the answer quotes it, one chunk per word.
  std::string question;
  for (int i = 0; i < 2000; ++i) question += "w" + std::to_string(i) + " ";
  question.pop_back();
  const std::string thread = ThreadWithQuestion(kHrAssistant, question);
  grpc::ClientContext context;
  SetTimeout(context, absl::Seconds(60));
  v1::StreamRunRequest request;
  request.set_thread_id(thread);
  auto reader = stub_->StreamRun(&context, request);
  // Read nothing for a while: the gateway's queue fills and it pauses the upstream.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  v1::StreamRunResponse chunk;
  std::string text;
  int chunks = 0;
  while (reader->Read(&chunk)) {
    text += chunk.chunk().delta().content();
    if (++chunks % 500 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  grpc::Status status = reader->Finish();
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_GT(chunks, 2000);
  EXPECT_EQ(text,
            "Regarding \"" + question + "\": this is the emulated answer of Haufe Copilot HR.");
  auto streams = RequestsTo("run_stream");
  ASSERT_EQ(streams.size(), 1u);
  EXPECT_FALSE(streams[0].value("client_closed_early", true))
      << streams[0].dump().substr(0, 300) << " ... "
      << streams[0].dump().substr(streams[0].dump().size() - 300);
}

}  // namespace
}  // namespace copilot::gateway::testing
