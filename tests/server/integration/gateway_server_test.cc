// GatewayServer in-process: the object graph wired from a config, with the upstream replaced by
// a fake; binding port 0, serving, and shutting down with calls in flight.
#include "server/app/gateway_server.h"

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <future>
#include <string>
#include <thread>
#include <utility>

#include "copilot/v1/copilot_service.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/server/core/fake_haufe_api.h"

namespace copilot::gateway {
namespace {

namespace v1 = ::copilot::v1;
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
