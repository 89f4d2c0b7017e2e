// Reloading the tenants while the gateway runs: a valid change, an invalid one, a change during
// calls in flight, and SIGHUP.
#include <signal.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/common/crypto.h"
#include "tests/server/integration/integration_fixture.h"

namespace copilot::gateway::testing {
namespace {

namespace v1 = ::copilot::v1;

std::string Tenant(const std::string& id, const std::string& token) {
  return absl::StrCat("  - id: ", id, "\n    bearer_token_sha256: [\"",
                      absl::BytesToHexString(Sha256(token)), "\"]\n    licence: LIC-", id,
                      "\n    assistants: [{id: \"*\"}]\n");
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

class GatewayReloadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto emulator = emulator::testing::EmulatorProcess::Start({});
    ASSERT_TRUE(emulator.ok()) << emulator.status();
    emulator_ = *std::move(emulator);
    options_.upstream_url = emulator_->base_url() + "/agents";
    options_.identity = "bearer";
    options_.extra_yaml = absl::StrCat("tenants:\n", Tenant("a", "token-a"));
  }

  void Start(const std::string& reload_interval) {
    options_.extra_yaml =
        absl::StrCat("config_reload_interval: ", reload_interval, "\n", options_.extra_yaml);
    auto gateway = GatewayProcess::Start(options_);
    ASSERT_TRUE(gateway.ok()) << gateway.status();
    gateway_ = *std::move(gateway);
    stub_ = v1::CopilotService::NewStub(gateway_->channel());
    original_ = ReadAll(gateway_->config_path());
  }

  // Replaces the config file atomically (as a ConfigMap update does), with `tenants` YAML in
  // place of the original tenants section.
  void Rewrite(const std::string& new_tail) {
    std::string text = original_;
    text = text.substr(0, text.find("tenants:\n")) + new_tail;
    const std::string temp = gateway_->config_path() + ".new";
    std::ofstream(temp) << text;
    ASSERT_EQ(std::rename(temp.c_str(), gateway_->config_path().c_str()), 0);
  }

  grpc::StatusCode ListAs(const std::string& token) {
    grpc::ClientContext context;
    SetTimeout(context, absl::Seconds(10));
    context.AddMetadata("authorization", "Bearer " + token);
    v1::ListAssistantsResponse response;
    return stub_->ListAssistants(&context, {}, &response).error_code();
  }

  // Waits up to 15 s for `token` to get `code`.
  bool Eventually(const std::string& token, grpc::StatusCode code) {
    for (int i = 0; i < 150; ++i) {
      if (ListAs(token) == code) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

  bool LogSays(const std::string& text) {
    for (int i = 0; i < 150; ++i) {
      if (absl::StrContains(ReadAll(gateway_->log_path()), text)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

  std::unique_ptr<emulator::testing::EmulatorProcess> emulator_;
  GatewayProcessOptions options_;
  std::unique_ptr<GatewayProcess> gateway_;
  std::unique_ptr<v1::CopilotService::Stub> stub_;
  std::string original_;
};

TEST_F(GatewayReloadTest, ValidChangeAppliesAndAnInvalidOneIsRefused) {
  Start("200ms");
  EXPECT_EQ(ListAs("token-a"), grpc::StatusCode::OK);
  EXPECT_EQ(ListAs("token-d"), grpc::StatusCode::UNAUTHENTICATED);
  Rewrite(absl::StrCat("tenants:\n", Tenant("a", "token-a"), Tenant("d", "token-d")));
  EXPECT_TRUE(Eventually("token-d", grpc::StatusCode::OK));
  EXPECT_EQ(ListAs("token-a"), grpc::StatusCode::OK);
  EXPECT_TRUE(LogSays("config reloaded: 2 tenant(s)"));

  // A file that does not parse, then one that parses but is invalid: both refused, old in force.
  Rewrite("tenants:\n  - id: [broken\n");
  EXPECT_TRUE(LogSays("config reload failed"));
  Rewrite(absl::StrCat("tenants:\n", Tenant("a", "token-a"),
                       "  - id: e\n    bearer_token_sha256: [\"token-e-in-clear\"]\n"
                       "    assistants: [{id: \"*\"}]\n"));
  EXPECT_TRUE(LogSays("expected 64 hex digits"));
  EXPECT_EQ(ListAs("token-d"), grpc::StatusCode::OK);
  EXPECT_EQ(ListAs("token-a"), grpc::StatusCode::OK);
  EXPECT_EQ(gateway_->Stop().value_or(-1), 0);
  EXPECT_FALSE(absl::StrContains(ReadAll(gateway_->log_path()), "token-e-in-clear"))
      << "a refused file's values are not logged";
}

TEST_F(GatewayReloadTest, CallsInFlightFinishWithTheTenantTheyStartedWith) {
  Start("200ms");
  // A slow upstream: the call is in flight across the reload that removes its tenant.
  ASSERT_TRUE(
      emulator_
          ->AddFault({{"endpoint", "list_assistants"}, {"type", "latency"}, {"delay_ms", 2500}})
          .ok());
  grpc::StatusCode in_flight = grpc::StatusCode::UNKNOWN;
  std::thread caller([&] { in_flight = ListAs("token-a"); });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  Rewrite(absl::StrCat("tenants:\n", Tenant("d", "token-d")));
  EXPECT_TRUE(LogSays("config reloaded: 1 tenant(s)"));
  caller.join();
  EXPECT_EQ(in_flight, grpc::StatusCode::OK);
  EXPECT_EQ(ListAs("token-a"), grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(GatewayReloadTest, SighupReloadsAtOnce) {
  Start("1h");  // Polling would not notice within the test.
  Rewrite(absl::StrCat("tenants:\n", Tenant("d", "token-d")));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(ListAs("token-d"), grpc::StatusCode::UNAUTHENTICATED);
  ASSERT_EQ(kill(gateway_->pid(), SIGHUP), 0);
  EXPECT_TRUE(Eventually("token-d", grpc::StatusCode::OK));
  EXPECT_EQ(ListAs("token-a"), grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(GatewayReloadTest, AQuotaChangeAppliesOnReloadAndKeepsTheCount) {
  options_.extra_yaml =
      absl::StrCat("tenants:\n", Tenant("a", "token-a"), "    quotas: {answers_per_day: 2}\n");
  Start("200ms");
  auto complete = [&]() {
    grpc::ClientContext context;
    SetTimeout(context, absl::Seconds(10));
    context.AddMetadata("authorization", "Bearer token-a");
    v1::CompleteRequest request;
    request.set_assistant_id(kTaxAssistant);
    v1::MessageInput* message = request.add_messages();
    message->set_role(v1::ROLE_USER);
    message->set_content("q");
    v1::CompleteResponse response;
    return stub_->Complete(&context, request, &response).error_code();
  };
  EXPECT_EQ(complete(), grpc::StatusCode::OK);
  EXPECT_EQ(complete(), grpc::StatusCode::OK);
  EXPECT_EQ(complete(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  // Raised to 3: one more answer (the 2 already used still count), then refused again.
  Rewrite(absl::StrCat("tenants:\n", Tenant("a", "token-a"), "    quotas: {answers_per_day: 3}\n"));
  EXPECT_TRUE(LogSays("config reloaded: 1 tenant(s)"));
  EXPECT_EQ(complete(), grpc::StatusCode::OK);
  EXPECT_EQ(complete(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  // Removed: no quota.
  Rewrite(absl::StrCat("tenants:\n", Tenant("a", "token-a")));
  bool applied = false;
  for (int i = 0; i < 150 && !applied; ++i) {
    applied = complete() == grpc::StatusCode::OK;
    if (!applied) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(applied);
}

}  // namespace
}  // namespace copilot::gateway::testing
