// Deadlines, cancellation, the configured maximum call time and stall detection, through the
// real binaries.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "tests/server/integration/integration_fixture.h"

namespace copilot::gateway::testing {
namespace {

namespace v1 = ::copilot::v1;

// Timing bounds in this suite are loose on purpose (a loaded 2-core machine): what a test proves
// rests on status codes, reasons and the emulator's record, and each bound stays far from the
// time the wrong behaviour would take.
class GatewayTimingTest : public GatewayIntegrationTest {
 protected:
  // Whether the emulator's record of the one request to `route` says the client (the gateway)
  // closed the connection before the response was complete. While the response is still held
  // back (a long latency fault, a slow stream, a stall) that can only mean the gateway aborted
  // the transfer; a response left to complete keeps the flag false for good. So a generous wait
  // for it proves the abort as well as a short one would.
  static bool UpstreamAborted(const std::string& route) {
    auto records = RequestsTo(route);
    return records.size() == 1 && records[0].value("client_closed_early", false);
  }
};

TEST_F(GatewayTimingTest, CallerDeadlineEndsTheCallAndTheUpstreamTransfer) {
  const std::string thread = ThreadWithQuestion(kHrAssistant, "slow?");
  Fault({{"endpoint", "run"}, {"type", "latency"}, {"delay_ms", 60000}});
  const absl::Time start = absl::Now();
  v1::RunResponse response;
  grpc::Status status = RunOn(thread, &response, absl::Seconds(2));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << status.error_message();
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));  // Not the upstream's 60 s.
  // The gateway gave up on the upstream too: the emulator saw the connection close before it
  // answered.
  EXPECT_TRUE(Eventually([] { return UpstreamAborted("run"); }, absl::Seconds(10)))
      << Requests().dump();
}

TEST_F(GatewayTimingTest, CancelAbortsTheUpstreamTransferAtOnce) {
  const std::string thread = ThreadWithQuestion(kHrAssistant, "cancel me");
  // The upstream would answer after 60 s and the gateway's own limit (max_call_timeout) is 30 s,
  // so a transfer that ends within 10 s of the cancel was ended by the cancel.
  Fault({{"endpoint", "run"}, {"type", "latency"}, {"delay_ms", 60000}});
  grpc::ClientContext context;  // No deadline, which would end the transfer too; TryCancel always
                                // ends the client call.
  v1::RunRequest request;
  request.set_thread_id(thread);
  bool in_flight = false;
  std::thread canceller([&] {
    // Once the upstream request is in flight, cancel.
    in_flight = Eventually([] { return RequestsTo("run").size() == 1; }, absl::Seconds(10));
    context.TryCancel();
  });
  v1::RunResponse response;
  grpc::Status status = stub_->Run(&context, request, &response);
  canceller.join();
  EXPECT_TRUE(in_flight) << "the run request never reached the emulator";
  EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED) << status.error_message();
  // Within 10 s of the cancel: well before the 30 s limit and the 60 s answer.
  EXPECT_TRUE(Eventually([] { return UpstreamAborted("run"); }, absl::Seconds(10)))
      << Requests().dump();
}

TEST_F(GatewayTimingTest, StreamCancelAbortsTheUpstreamStream) {
  // Left alone, the answer's 14 lines take 13 s: the stream is still running when the wait for
  // the abort below ends.
  ASSERT_TRUE(emulator_->SetConfig({{"stream_delay_ms", 1000}}).ok());
  const std::string thread = ThreadWithQuestion(kHrAssistant, "stream and cancel");
  grpc::ClientContext context;
  SetTimeout(context, absl::Seconds(25));  // Only against a hang; the cancel comes first.
  v1::StreamRunRequest request;
  request.set_thread_id(thread);
  auto reader = stub_->StreamRun(&context, request);
  v1::StreamRunResponse chunk;
  const bool got_chunk = reader->Read(&chunk);
  EXPECT_TRUE(got_chunk) << "no first chunk";
  context.TryCancel();
  while (reader->Read(&chunk)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  if (got_chunk) {
    EXPECT_TRUE(Eventually([] { return UpstreamAborted("run_stream"); }, absl::Seconds(10)))
        << Requests().dump();
  }
  EXPECT_TRUE(emulator_->SetConfig({{"stream_delay_ms", 2}}).ok());  // The suite's setting.
}

TEST_F(GatewayTimingTest, StalledUpstreamBodyIsDetected) {
  const std::string thread = ThreadWithQuestion(kHrAssistant, "stall");
  Fault({{"endpoint", "run"}, {"type", "stall"}, {"after_bytes", 10}});
  const absl::Time start = absl::Now();
  v1::RunResponse response;
  grpc::Status status = RunOn(thread, &response, absl::Seconds(30));
  // A run is a POST and its response had begun: the upstream may have carried it out, so the
  // failure is INTERNAL rather than a retryable UNAVAILABLE (docs/architecture.md).
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INTERNAL) << status.error_message();
  EXPECT_EQ(Reason(status), "upstream_stalled");
  // stall_timeout is 1 s in this suite; far sooner than the 30 s deadline.
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  EXPECT_TRUE(Eventually([] { return UpstreamAborted("run"); }, absl::Seconds(10)))
      << Requests().dump();
  auto info = FindDetail<google::rpc::ErrorInfo>(status);
  ASSERT_TRUE(info.has_value());
  auto started = info->metadata().find("response_started");
  ASSERT_NE(started, info->metadata().end());
  EXPECT_EQ(started->second, "true");
}

TEST_F(GatewayTimingTest, CallWithoutDeadlineIsBoundedByMaxCallTimeout) {
  GatewayProcessOptions options = DefaultGatewayOptions(UpstreamUrl());
  options.upstream["max_call_timeout"] = "1s";
  options.upstream["stall_timeout"] = "30s";
  auto gateway = GatewayProcess::Start(options);
  ASSERT_TRUE(gateway.ok()) << gateway.status();
  auto stub = v1::CopilotService::NewStub((*gateway)->channel());
  const std::string thread = ThreadWithQuestion(kHrAssistant, "forever?");
  Fault({{"endpoint", "run"}, {"type", "latency"}, {"delay_ms", 30000}});
  grpc::ClientContext context;  // No deadline: the upstream's 30 s latency bounds a broken gateway.
  v1::RunRequest request;
  request.set_thread_id(thread);
  v1::RunResponse response;
  const absl::Time start = absl::Now();
  grpc::Status status = stub->Run(&context, request, &response);
  const absl::Duration elapsed = absl::Now() - start;
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << status.error_message();
  EXPECT_GE(elapsed, absl::Milliseconds(900));
  EXPECT_LT(elapsed, absl::Seconds(10));
  EXPECT_TRUE(Eventually([] { return UpstreamAborted("run"); }, absl::Seconds(10)))
      << Requests().dump();
  stub.reset();  // An idle client connection would hold shutdown for the whole grace period.
  EXPECT_EQ((*gateway)->Stop().value_or(-1), 0);
}

// A listener whose accept queue is full: new connections hang in the handshake, like an
// unreachable host. Closes its sockets on destruction.
class BlackHole {
 public:
  BlackHole() {
    listener_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof(address));
    listen(listener_, 0);
    socklen_t length = sizeof(address);
    getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    // Fill the accept queue (never accepted).
    for (int i = 0; i < 4; ++i) {
      const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
      connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
      fillers_.push_back(fd);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ~BlackHole() {
    for (int fd : fillers_) close(fd);
    close(listener_);
  }
  int port() const { return port_; }

 private:
  int listener_ = -1;
  int port_ = 0;
  std::vector<int> fillers_;
};

TEST_F(GatewayTimingTest, ConnectTimeoutIsShort) {
  BlackHole hole;
  GatewayProcessOptions options =
      DefaultGatewayOptions("http://127.0.0.1:" + std::to_string(hole.port()) + "/agents");
  options.upstream["connect_timeout"] = "500ms";
  auto gateway = GatewayProcess::Start(options);
  ASSERT_TRUE(gateway.ok()) << gateway.status();
  auto stub = v1::CopilotService::NewStub((*gateway)->channel());
  grpc::ClientContext context;
  SetTimeout(context, absl::Seconds(20));
  v1::ListAssistantsResponse response;
  const absl::Time start = absl::Now();
  grpc::Status status = stub->ListAssistants(&context, {}, &response);
  const absl::Duration elapsed = absl::Now() - start;
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  EXPECT_EQ(Reason(status), "upstream_unreachable");
  // Far from the 20 s deadline, and below the 5 s default that would apply if the setting were
  // lost.
  EXPECT_LT(elapsed, absl::Seconds(4));
  stub.reset();
  EXPECT_EQ((*gateway)->Stop().value_or(-1), 0);
}

TEST_F(GatewayTimingTest, GracefulShutdownLetsCallsInFlightFinish) {
  auto gateway = GatewayProcess::Start(DefaultGatewayOptions(UpstreamUrl()));
  ASSERT_TRUE(gateway.ok()) << gateway.status();
  auto stub = v1::CopilotService::NewStub((*gateway)->channel());
  const std::string thread = ThreadWithQuestion(kHrAssistant, "finish before exit");
  Fault({{"endpoint", "run"}, {"type", "latency"}, {"delay_ms", 500}});
  grpc::Status status;
  std::jthread caller([&] {  // Joined on every way out; the call's deadline bounds it.
    grpc::ClientContext context;
    SetTimeout(context, absl::Seconds(10));
    v1::RunRequest request;
    request.set_thread_id(thread);
    v1::RunResponse response;
    status = stub->Run(&context, request, &response);
  });
  ASSERT_TRUE(Eventually([] { return RequestsTo("run").size() == 1; }));
  EXPECT_EQ((*gateway)->Stop().value_or(-1), 0);  // SIGTERM; shutdown_grace is 2 s.
  caller.join();
  EXPECT_TRUE(status.ok()) << status.error_message();
  // The upstream transfer ran to its end rather than being cut by the shutdown.
  auto runs = RequestsTo("run");
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].value("status", 0), 200) << runs[0].dump();
  EXPECT_FALSE(runs[0].value("client_closed_early", true)) << runs[0].dump();
}

}  // namespace
}  // namespace copilot::gateway::testing
