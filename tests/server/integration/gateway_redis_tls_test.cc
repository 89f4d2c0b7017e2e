// Shared limits over TLS through the real binaries: two gateway processes share one tenant's
// limit in a redis-server that speaks only TLS and requires client certificates (rediss://,
// redis.ca_file, redis.cert_file, redis.key_file), and a gateway that does not trust the
// server's certificate stays not ready, refuses calls (fail_closed) and logs why.
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "server/common/crypto.h"
#include "tests/server/integration/integration_fixture.h"
#include "tests/server/limits/redis_server.h"
#include "tests/testing/eventually.h"

namespace copilot::gateway::testing {
namespace {

namespace v1 = ::copilot::v1;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kToken[] = "token-t1-7f3a";

std::string Cert(absl::string_view name) { return absl::StrCat(COPILOT_TEST_CERTS_DIR, "/", name); }

std::string ReadLog(const GatewayProcess& gateway) {
  std::ifstream in(gateway.log_path());
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

long ReadyzStatus(const GatewayProcess& gateway) {
  return emulator::testing::SendHttpRequest(
             "GET", absl::StrCat("http://127.0.0.1:", gateway.metrics_port(), "/readyz"), "")
      .status;
}

class GatewayRedisTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // TLS only for the gateways (the plain port is the test's own, for inspection), and a
    // client certificate required.
    auto redis = RedisServer::StartTls({.cert_file = Cert("server.pem"),
                                        .key_file = Cert("server.key"),
                                        .ca_file = Cert("ca.pem"),
                                        .require_client_certificate = true});
    ASSERT_TRUE(redis.ok()) << redis.status();
    redis_ = *std::move(redis);
    auto emulator = emulator::testing::EmulatorProcess::Start({});
    ASSERT_TRUE(emulator.ok()) << emulator.status();
    emulator_ = *std::move(emulator);
  }

  // A gateway whose tenant t1 may make 3 other calls at once and then 1 per minute, with its
  // limits in the TLS Redis, trusting `ca_file`; fail_closed: no Redis, no calls.
  absl::StatusOr<std::unique_ptr<GatewayProcess>> StartGateway(const std::string& ca_file) {
    GatewayProcessOptions options;
    options.upstream_url = emulator_->base_url() + "/agents";
    options.identity = "bearer";
    options.extra_yaml =
        absl::StrCat("tenants:\n  - id: t1\n    bearer_token_sha256: [\"",
                     absl::BytesToHexString(Sha256(kToken)),
                     "\"]\n    licence: LIC-t1\n    assistants: [{id: \"*\"}]\n"
                     "    limits: {other_per_minute: 1, other_burst: 3}\n",
                     "redis:\n  url: \"", redis_->tls_url(), "\"\n  ca_file: \"", ca_file,
                     "\"\n  cert_file: \"", Cert("tenant-a.pem"), "\"\n  key_file: \"",
                     Cert("tenant-a.key"), "\"\n  on_failure: fail_closed\n");
    return GatewayProcess::Start(options);
  }

  static grpc::Status CreateThread(const GatewayProcess& gateway) {
    auto stub = v1::CopilotService::NewStub(gateway.NewChannel());
    grpc::ClientContext context;
    SetTimeout(context, absl::Seconds(5));
    context.AddMetadata("authorization", absl::StrCat("Bearer ", kToken));
    v1::CreateThreadRequest request;
    request.set_assistant_id(kTaxAssistant);
    v1::CreateThreadResponse response;
    return stub->CreateThread(&context, request, &response);
  }

  std::unique_ptr<RedisServer> redis_;
  std::unique_ptr<emulator::testing::EmulatorProcess> emulator_;
};

TEST_F(GatewayRedisTlsTest, TwoReplicasShareATenantLimitThroughATlsRedis) {
  std::vector<std::unique_ptr<GatewayProcess>> gateways;
  for (int i = 0; i < 2; ++i) {
    auto gateway = StartGateway(Cert("ca.pem"));
    ASSERT_TRUE(gateway.ok()) << gateway.status();
    gateways.push_back(*std::move(gateway));
  }
  for (const auto& gateway : gateways) {
    // Ready once Redis answered over TLS.
    ASSERT_TRUE(Eventually([&] { return ReadyzStatus(*gateway) == 200; }, absl::Seconds(5)))
        << ReadLog(*gateway);
  }
  // Six calls alternating between the replicas: the burst of 3 is spent once, not per replica.
  std::vector<grpc::StatusCode> codes;
  for (int i = 0; i < 6; ++i) codes.push_back(CreateThread(*gateways[i % 2]).error_code());
  EXPECT_THAT(
      codes, ElementsAre(grpc::StatusCode::OK, grpc::StatusCode::OK, grpc::StatusCode::OK,
                         grpc::StatusCode::RESOURCE_EXHAUSTED, grpc::StatusCode::RESOURCE_EXHAUSTED,
                         grpc::StatusCode::RESOURCE_EXHAUSTED));
  // The state is in Redis, under the tenant's key.
  absl::StatusOr<std::vector<std::string>> exists =
      redis_->Command({"EXISTS", "copilot:{tenant:t1:other}:rate"});
  ASSERT_TRUE(exists.ok()) << exists.status();
  EXPECT_THAT(*exists, ElementsAre("1"));
  for (const auto& gateway : gateways) {
    EXPECT_EQ(gateway->Stop().value_or(-1), 0);  // And so every log line written.
    const std::string log = ReadLog(*gateway);
    EXPECT_THAT(log, HasSubstr("limits shared in Redis over TLS"));
    EXPECT_THAT(log, HasSubstr("\"msg\":\"redis limit store connected\""));
    EXPECT_THAT(log, HasSubstr("\"tls\":true"));
  }
}

TEST_F(GatewayRedisTlsTest, AnUntrustedRedisCertificateKeepsTheGatewayNotReadyAndSaysWhy) {
  auto gateway = StartGateway(Cert("other-ca.pem"));
  ASSERT_TRUE(gateway.ok()) << gateway.status();
  ASSERT_TRUE(Eventually(
      [&] { return ReadLog(**gateway).find("certificate verify failed") != std::string::npos; },
      absl::Seconds(5)))
      << ReadLog(**gateway);
  EXPECT_THAT(ReadLog(**gateway), HasSubstr("redis limit store unavailable"));
  EXPECT_EQ(ReadyzStatus(**gateway), 503);
  const grpc::Status refused = CreateThread(**gateway);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAVAILABLE);
  // Why is for the operator: the call's log line has it, the caller gets no address or TLS text.
  EXPECT_THAT(refused.error_message(), HasSubstr("limits unavailable"));
  EXPECT_THAT(refused.error_message(), Not(HasSubstr("certificate")));
  EXPECT_THAT(refused.error_message(), Not(HasSubstr("127.0.0.1")));
  EXPECT_TRUE(
      Eventually([&] { return ReadLog(**gateway).find("\"error_detail\":") != std::string::npos; },
                 absl::Seconds(5)))
      << ReadLog(**gateway);
  EXPECT_EQ((*gateway)->Stop().value_or(-1), 0);
}

}  // namespace
}  // namespace copilot::gateway::testing
