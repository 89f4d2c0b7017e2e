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

using GatewayTimingTest = GatewayIntegrationTest;

TEST_F(GatewayTimingTest, CallerDeadlineEndsTheCallAndTheUpstreamTransfer) {
  const std::string thread = ThreadWithQuestion(kHrAssistant, "slow?");
  Fault({{"endpoint", "run"}, {"type", "latency"}, {"delay_ms", 5000}});
  const absl::Time start = absl::Now();
  v1::RunResponse response;
  grpc::Status status = RunOn(thread, &response, absl::Milliseconds(500));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << status.error_message();
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  // The gateway gave up on the upstream too: the emulator saw the connection close early.
  EXPECT_TRUE(Eventually(
      [] {
        auto runs = RequestsTo("run");
        return runs.size() == 1 && runs[0].value("client_closed_early", false);
      },
      absl::Seconds(3)))
      << Requests().dump();
}

TEST_F(GatewayTimingTest, CancelAbortsTheUpstreamTransferAtOnce) {
  const std::string thread = ThreadWithQuestion(kHrAssistant, "cancel me");
  Fault({{"endpoint", "run"}, {"type", "latency"}, {"delay_ms", 10000}});
  grpc::ClientContext context;
  v1::RunRequest request;
  request.set_thread_id(thread);
  std::thread canceller([&] {
    // Once the upstream request is in flight, cancel.
    Eventually([] { return RequestsTo("run").size() == 1; });
    context.TryCancel();
  });
  v1::RunResponse response;
  grpc::Status status = stub_->Run(&context, request, &response);
  canceller.join();
  const absl::Time cancelled = absl::Now();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(Eventually(
      [] {
        auto runs = RequestsTo("run");
        return runs.size() == 1 && runs[0].value("client_closed_early", false);
      },
      absl::Seconds(2)))
      << Requests().dump();
  EXPECT_LT(absl::Now() - cancelled, absl::Seconds(2));
}

TEST_F(GatewayTimingTest, StreamCancelAbortsTheUpstreamStream) {
  ASSERT_TRUE(emulator_->SetConfig({{"stream_delay_ms", 300}}).ok());
  const std::string thread = ThreadWithQuestion(kHrAssistant, "stream and cancel");
  grpc::ClientContext context;
  v1::StreamRunRequest request;
  request.set_thread_id(thread);
  auto reader = stub_->StreamRun(&context, request);
  v1::StreamRunResponse chunk;
  ASSERT_TRUE(reader->Read(&chunk));
  context.TryCancel();
  while (reader->Read(&chunk)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(Eventually(
      [] {
        auto runs = RequestsTo("run_stream");
        return runs.size() == 1 && runs[0].value("client_closed_early", false);
      },
      absl::Seconds(2)))
      << Requests().dump();
}

TEST_F(GatewayTimingTest, StalledUpstreamBodyIsDetected) {
  const std::string thread = ThreadWithQuestion(kHrAssistant, "stall");
  Fault({{"endpoint", "run"}, {"type", "stall"}, {"after_bytes", 10}});
  const absl::Time start = absl::Now();
  v1::RunResponse response;
  grpc::Status status = RunOn(thread, &response, absl::Seconds(20));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  EXPECT_EQ(Reason(status), "upstream_stalled");
  // stall_timeout is 1 s in this suite; far sooner than the 20 s deadline.
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

TEST_F(GatewayTimingTest, CallWithoutDeadlineIsBoundedByMaxCallTimeout) {
  GatewayProcessOptions options = DefaultGatewayOptions(UpstreamUrl());
  options.upstream["max_call_timeout"] = "1s";
  options.upstream["stall_timeout"] = "30s";
  auto gateway = GatewayProcess::Start(options);
  ASSERT_TRUE(gateway.ok()) << gateway.status();
  auto stub = v1::CopilotService::NewStub((*gateway)->channel());
  const std::string thread = ThreadWithQuestion(kHrAssistant, "forever?");
  Fault({{"endpoint", "run"}, {"type", "latency"}, {"delay_ms", 10000}});
  grpc::ClientContext context;  // No deadline.
  v1::RunRequest request;
  request.set_thread_id(thread);
  v1::RunResponse response;
  const absl::Time start = absl::Now();
  grpc::Status status = stub->Run(&context, request, &response);
  const absl::Duration elapsed = absl::Now() - start;
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << status.error_message();
  EXPECT_GE(elapsed, absl::Milliseconds(900));
  EXPECT_LT(elapsed, absl::Seconds(4));
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
  EXPECT_LT(elapsed, absl::Seconds(3));
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
  std::thread caller([&] {
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
}

}  // namespace
}  // namespace copilot::gateway::testing
