// GatewayServer in-process: the object graph wired from a config, with the upstream replaced by
// a fake; binding port 0, serving, and shutting down with calls in flight.
#include "server/app/gateway_server.h"

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <future>
#include <string>
#include <thread>
#include <utility>

#include "copilot/v1/copilot_service.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/server/core/fake_haufe_api.h"
#include "tests/testing/eventually.h"

namespace copilot::gateway {
namespace {

namespace v1 = ::copilot::v1;
using ::copilot::gateway::testing::Eventually;
using ::copilot::gateway::testing::FakeClock;
using ::copilot::gateway::testing::FakeHaufeApi;

constexpr char kThread[] = "0b8e5f0e-9a4c-4b7a-8f43-2f6f0e1c2d3e";

constexpr char kSigningKey[] = "gateway-server-test-signing-key-0123456789";

// The handle tenant "acme" (TestConfig's default tenant) has for kThread.
std::string Handle() {
  Tenant acme;
  acme.id = "acme";
  return SignedThreadHandles(kSigningKey).ToCaller(acme, ThreadRef{kThread, ""});
}

GatewayReplacements Replace(std::shared_ptr<HaufeApi> api,
                            std::shared_ptr<const Clock> clock = nullptr) {
  GatewayReplacements replacements;
  replacements.api = std::move(api);
  replacements.clock = std::move(clock);
  return replacements;
}

GatewayConfig TestConfig() {
  GatewayConfig config;
  config.server.listen = "127.0.0.1:0";
  config.upstream.base_url = "http://127.0.0.1:1/agents";
  config.upstream.api_key_env = "UNUSED";
  config.upstream.max_call_timeout = absl::Seconds(17);
  config.default_tenant.id = "acme";
  config.server.identity = CallerIdentity::kNone;  // Every caller is "acme".
  config.server.metrics_listen = "127.0.0.1:0";
  // The fake clock stands still: no upstream budget windows (limits have tests of their own).
  config.upstream_budget = UpstreamBudgetConfig{0, 0, 0, 0, absl::Seconds(1), absl::ZeroDuration()};
  return config;
}

// Named fields, not positional ones: GatewaySecrets grows.
GatewaySecrets Secrets(std::string api_key, std::string licence) {
  GatewaySecrets secrets;
  secrets.api_key = std::move(api_key);
  secrets.licence = std::move(licence);
  secrets.thread_signing_key = kSigningKey;
  return secrets;
}

TEST(GatewayServerTest, WiresConfigAndSecretsIntoUpstreamCalls) {
  auto api = std::make_shared<FakeHaufeApi>();
  auto clock = std::make_shared<FakeClock>();
  auto server = GatewayServer::Start(TestConfig(), Secrets("KEY-1", "LIC-1"), Replace(api, clock));
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_GT((*server)->port(), 0);
  EXPECT_EQ((*server)->address(), "127.0.0.1:" + std::to_string((*server)->port()));

  auto stub = v1::CopilotService::NewStub(
      grpc::CreateChannel((*server)->address(), grpc::InsecureChannelCredentials()));
  std::thread upstream([&] {
    auto call = api->WaitForCall(0);
    ASSERT_NE(call, nullptr);
    v1::Message answer;
    answer.set_content("ok");
    call->FinishMessage(answer);
  });
  grpc::ClientContext context;
  v1::RunRequest request;
  request.set_thread_id(Handle());
  v1::RunResponse response;
  grpc::Status status = stub->Run(&context, request, &response);
  upstream.join();
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.message().content(), "ok");
  auto call = api->WaitForCall(0);
  EXPECT_EQ(call->options.api_key, "KEY-1");
  EXPECT_EQ(call->options.licence, "LIC-1");
  EXPECT_EQ(call->options.deadline, clock->Now() + absl::Seconds(17));
  stub.reset();
  (*server)->Shutdown(absl::Seconds(1));
}

TEST(GatewayServerTest, ShutdownCancelsCallsStillRunningAfterTheGrace) {
  auto api = std::make_shared<FakeHaufeApi>();
  auto server = GatewayServer::Start(TestConfig(), Secrets("KEY", ""), Replace(api));
  ASSERT_TRUE(server.ok()) << server.status();
  auto stub = v1::CopilotService::NewStub(
      grpc::CreateChannel((*server)->address(), grpc::InsecureChannelCredentials()));
  grpc::Status status;
  std::thread caller([&] {
    grpc::ClientContext context;
    v1::RunRequest request;
    request.set_thread_id(Handle());
    v1::RunResponse response;
    status = stub->Run(&context, request, &response);
  });
  auto call = api->WaitForCall(0);
  ASSERT_NE(call, nullptr);
  const auto start = std::chrono::steady_clock::now();
  (*server)->Shutdown(absl::Milliseconds(200));  // The upstream never answers.
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  caller.join();
  // The server goes away under the call when the grace period ends: the caller sees UNAVAILABLE,
  // which tells it to retry elsewhere.
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  EXPECT_GT(call->cancels.load(), 0);
}

// A request that is not its message ends at once (INVALID_ARGUMENT) and leaves nothing in flight:
// before, its call never left the drain's count, and every shutdown waited out its whole grace.
TEST(GatewayServerTest, UnreadableRequestsLeaveNothingInFlightForTheDrain) {
  auto api = std::make_shared<FakeHaufeApi>();
  auto server = GatewayServer::Start(TestConfig(), Secrets("KEY", ""), Replace(api));
  ASSERT_TRUE(server.ok()) << server.status();
  auto channel = grpc::CreateChannel((*server)->address(), grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  const char garbage[] = {'\xff', '\xff', '\xff'};
  grpc::Slice slice(garbage, sizeof(garbage));
  const grpc::ByteBuffer request(&slice, 1);
  for (const char* method :
       {"/copilot.v1.CopilotService/CreateThread", "/copilot.v1.CopilotService/StreamRun"}) {
    grpc::ClientContext context;
    grpc::ByteBuffer response;
    std::promise<grpc::Status> done;
    stub.UnaryCall(&context, method, grpc::StubOptions(), &request, &response,
                   [&done](grpc::Status status) { done.set_value(std::move(status)); });
    const grpc::Status status = done.get_future().get();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << method;
  }
  EXPECT_EQ(api->call_count(), 0);
  const auto start = std::chrono::steady_clock::now();
  (*server)->Shutdown(absl::Seconds(30));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

// An HTTP/2 frame: its 9-byte header (length, type, flags, stream) and payload.
std::string Frame(uint8_t type, uint8_t flags, uint32_t stream, const std::string& payload) {
  std::string frame;
  const auto size = static_cast<uint32_t>(payload.size());
  for (const uint32_t byte : {size >> 16, size >> 8, size})
    frame.push_back(static_cast<char>(byte));
  frame.push_back(static_cast<char>(type));
  frame.push_back(static_cast<char>(flags));
  for (const int shift : {24, 16, 8, 0}) frame.push_back(static_cast<char>(stream >> shift));
  return frame + payload;
}

// HPACK: a literal header field without indexing, with a new name (each under 127 bytes).
std::string Literal(const std::string& name, const std::string& value) {
  return std::string(1, '\0') + static_cast<char>(name.size()) + name +
         static_cast<char>(value.size()) + value;
}

// HTTP/2 "rapid reset" (CVE-2023-44487): a client that opens a stream and resets it at once,
// without end. max_concurrent_streams never holds it back (a reset stream frees its slot), and
// gRPC 1.51 starts a call for each: one such connection took the gateway to 4.4-5.2 GB in 50 s
// (200,000 streams, max_concurrent_streams 10). Past max_calls_per_connection the gateway cuts
// the connection; here after about 20 calls, and its memory stays where it was.
TEST(GatewayServerTest, AConnectionResettingStreamsWithoutEndIsCut) {
  auto api = std::make_shared<FakeHaufeApi>();
  GatewayConfig config = TestConfig();
  config.server.max_concurrent_streams = 10;  // max_calls_per_connection 0: twice that.
  auto server = GatewayServer::Start(config, Secrets("KEY", ""), Replace(api));
  ASSERT_TRUE(server.ok()) << server.status();

  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<uint16_t>((*server)->port()));
  ASSERT_EQ(connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address), 0);
  const std::string headers = Literal(":method", "POST") + Literal(":scheme", "http") +
                              Literal(":path", "/copilot.v1.CopilotService/ListAssistants") +
                              Literal(":authority", "localhost") +
                              Literal("content-type", "application/grpc") +
                              Literal("te", "trailers");
  constexpr uint8_t kHeaders = 1, kRstStream = 3, kSettings = 4, kEndHeaders = 4;
  const std::string cancel("\0\0\0\x08", 4);
  std::string out = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + Frame(kSettings, 0, 0, "");
  constexpr int kStreams = 50000;
  int sent = 0;
  bool refused = false;
  for (int i = 0; i < kStreams && !refused; ++i) {
    const auto stream = static_cast<uint32_t>(1 + 2 * i);
    out += Frame(kHeaders, kEndHeaders, stream, headers) + Frame(kRstStream, 0, stream, cancel);
    if (out.size() < 64 * 1024 && i + 1 < kStreams) continue;
    for (std::size_t at = 0; at < out.size();) {
      const ssize_t wrote = send(fd, out.data() + at, out.size() - at, MSG_NOSIGNAL);
      if (wrote < 0) {
        EXPECT_TRUE(errno == EPIPE || errno == ECONNRESET) << errno;
        refused = true;
        break;
      }
      at += static_cast<std::size_t>(wrote);
    }
    out.clear();
    sent = i + 1;
  }
  close(fd);
  EXPECT_TRUE(refused) << "all " << sent << " streams were taken";
  EXPECT_LT(sent, kStreams);
  // Counted once the cut returns, which the client may see first.
  EXPECT_TRUE(Eventually([&] { return (*server)->metrics().grpc_connections_cut().Value() >= 1; }));

  // Other connections are served.
  auto channel = grpc::CreateChannel((*server)->address(), grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  const char garbage[] = {'\xff'};
  grpc::Slice slice(garbage, sizeof(garbage));
  const grpc::ByteBuffer request(&slice, 1);
  grpc::ClientContext context;
  grpc::ByteBuffer response;
  std::promise<grpc::Status> done;
  stub.UnaryCall(&context, "/copilot.v1.CopilotService/CreateThread", grpc::StubOptions(), &request,
                 &response, [&done](grpc::Status status) { done.set_value(std::move(status)); });
  EXPECT_EQ(done.get_future().get().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST(GatewayServerTest, BusyPortFailsToStart) {
  auto api = std::make_shared<FakeHaufeApi>();
  auto first = GatewayServer::Start(TestConfig(), Secrets("KEY", ""), Replace(api));
  ASSERT_TRUE(first.ok());
  GatewayConfig config = TestConfig();
  config.server.listen = (*first)->address();
  auto second = GatewayServer::Start(config, Secrets("KEY", ""), Replace(api));
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace copilot::gateway
