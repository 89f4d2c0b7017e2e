// Rotating the thread signing key through the real binaries: a thread ID handed out under key A
// keeps working after a restart with B current and A previous, and is NOT_FOUND (exactly as a
// thread that does not exist, without an upstream call) once A is dropped. With a user_id_key,
// the end user's upstream ID is a version-4 UUID and stays the same across the rotation.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/core/validation.h"
#include "tests/server/integration/integration_fixture.h"

namespace copilot::gateway::testing {
namespace {

namespace v1 = ::copilot::v1;

// Also in log_secret_scan_test.cc's list.
constexpr char kKeyA[] = "rotation-signing-key-A-0123456789abcdef01";
constexpr char kKeyB[] = "rotation-signing-key-B-0123456789abcdef01";
constexpr char kUserIdKey[] = "rotation-user-id-key-0123456789abcdef0123";
constexpr char kUser[] = "5a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";

// Version 4 and the RFC 4122 variant.
bool IsV4(const std::string& uuid) {
  return IsUuid(uuid) && uuid[14] == '4' && absl::StrContains("89ab", uuid[19]);
}

std::string ReadLog(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

class GatewayKeyRotationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto emulator = emulator::testing::EmulatorProcess::Start({.args = {"--stream-delay-ms", "1"}});
    ASSERT_TRUE(emulator.ok()) << emulator.status();
    emulator_ = std::move(*emulator).release();
  }
  static void TearDownTestSuite() {
    delete emulator_;
    emulator_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(emulator_, nullptr);
    ASSERT_TRUE(emulator_->Reset().ok());
  }

  // A gateway (identity none: every caller is tenant "test") with these keys.
  static std::unique_ptr<GatewayProcess> StartGateway(const std::string& current,
                                                      const std::vector<std::string>& previous,
                                                      const std::string& user_id_key) {
    GatewayProcessOptions options;
    options.upstream_url = emulator_->base_url() + "/agents";
    options.signing_key = current;
    options.previous_signing_keys = previous;
    options.user_id_key = user_id_key;
    auto gateway = GatewayProcess::Start(options);
    EXPECT_TRUE(gateway.ok()) << gateway.status();
    return gateway.ok() ? *std::move(gateway) : nullptr;
  }

  // A thread of kUser with one question; returns its ID.
  static std::string CreateThread(GatewayProcess& gateway) {
    auto stub = v1::CopilotService::NewStub(gateway.channel());
    grpc::ClientContext create_context;
    SetTimeout(create_context, absl::Seconds(10));
    v1::CreateThreadRequest create;
    create.set_assistant_id(kHrAssistant);
    create.set_user_id(kUser);
    v1::CreateThreadResponse created;
    grpc::Status status = stub->CreateThread(&create_context, create, &created);
    EXPECT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(created.thread().user_id(), kUser);
    grpc::ClientContext add_context;
    SetTimeout(add_context, absl::Seconds(10));
    v1::AddMessageRequest add;
    add.set_thread_id(created.thread().id());
    add.mutable_message()->set_role(v1::ROLE_USER);
    add.mutable_message()->set_content("Wie viele Urlaubstage habe ich?");
    v1::AddMessageResponse added;
    status = stub->AddMessage(&add_context, add, &added);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return created.thread().id();
  }

  static grpc::Status GetThread(GatewayProcess& gateway, const std::string& thread,
                                v1::GetThreadResponse* response) {
    auto stub = v1::CopilotService::NewStub(gateway.channel());
    grpc::ClientContext context;
    SetTimeout(context, absl::Seconds(10));
    v1::GetThreadRequest request;
    request.set_thread_id(thread);
    return stub->GetThread(&context, request, response);
  }

  static grpc::Status Run(GatewayProcess& gateway, const std::string& thread) {
    auto stub = v1::CopilotService::NewStub(gateway.channel());
    grpc::ClientContext context;
    SetTimeout(context, absl::Seconds(20));
    v1::RunRequest request;
    request.set_thread_id(thread);
    v1::RunResponse response;
    return stub->Run(&context, request, &response);
  }

  // The user_id of every create_thread call the emulator recorded, in order.
  static std::vector<std::string> UpstreamUserIds() {
    std::vector<std::string> users;
    for (const auto& record : emulator_->Requests().value_or(nlohmann::json::array())) {
      if (record.value("route", "") != "create_thread") continue;
      users.push_back(
          nlohmann::json::parse(record["body"].get<std::string>()).value("user_id", ""));
    }
    return users;
  }

  static inline emulator::testing::EmulatorProcess* emulator_ = nullptr;
};

TEST_F(GatewayKeyRotationTest, AThreadIdOutlivesTheRotationUntilItsKeyIsDropped) {
  // 1. Key A.
  std::unique_ptr<GatewayProcess> gateway = StartGateway(kKeyA, {}, kUserIdKey);
  ASSERT_NE(gateway, nullptr);
  const std::string old_thread = CreateThread(*gateway);
  ASSERT_TRUE(absl::StartsWith(old_thread, "th2_")) << old_thread;
  std::vector<std::string> users = UpstreamUserIds();
  ASSERT_EQ(users.size(), 1u);
  const std::string upstream_user = users[0];
  EXPECT_TRUE(IsV4(upstream_user)) << upstream_user;
  EXPECT_NE(upstream_user, kUser);
  ASSERT_EQ(gateway->Stop().value_or(-1), 0);

  // 2. Restarted with B current and A previous: the old ID still works.
  gateway = StartGateway(kKeyB, {kKeyA}, kUserIdKey);
  ASSERT_NE(gateway, nullptr);
  v1::GetThreadResponse got;
  grpc::Status status = GetThread(*gateway, old_thread, &got);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(got.thread().user_id(), kUser);
  // Answers name the thread by a handle signed with B: a caller storing it has migrated.
  const std::string resigned = got.thread().id();
  EXPECT_NE(resigned, old_thread);
  EXPECT_NE(resigned.substr(0, 10), old_thread.substr(0, 10));  // "th2_" + the key id.
  status = Run(*gateway, old_thread);
  EXPECT_TRUE(status.ok()) << status.error_message();
  // A new thread of the same end user: a new key id in its ID, the same upstream user.
  const std::string new_thread = CreateThread(*gateway);
  EXPECT_NE(new_thread.substr(0, 10), old_thread.substr(0, 10));  // "th2_" + the key id.
  users = UpstreamUserIds();
  ASSERT_EQ(users.size(), 2u);
  EXPECT_EQ(users[1], upstream_user);
  ASSERT_EQ(gateway->Stop().value_or(-1), 0);

  // 3. A dropped: the old ID is NOT_FOUND, exactly as a thread the upstream does not have, and
  // nothing reaches the upstream; the IDs signed with B work.
  gateway = StartGateway(kKeyB, {}, kUserIdKey);
  ASSERT_NE(gateway, nullptr);
  Tenant tenant;
  tenant.id = "test";
  const std::string unknown_thread =
      SignedThreadHandles(kKeyB).ToCaller(tenant, ThreadRef{kUnknownThread, kHrAssistant});
  grpc::Status unknown = GetThread(*gateway, unknown_thread, &got);
  ASSERT_EQ(unknown.error_code(), grpc::StatusCode::NOT_FOUND) << unknown.error_message();
  ASSERT_TRUE(emulator_->ClearRequests().ok());
  status = GetThread(*gateway, old_thread, &got);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND) << status.error_message();
  EXPECT_EQ(status.error_message(), unknown.error_message());
  EXPECT_EQ(RpcStatus(status).SerializeAsString(), RpcStatus(unknown).SerializeAsString());
  status = Run(*gateway, old_thread);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND) << status.error_message();
  EXPECT_EQ(RpcStatus(status).SerializeAsString(), RpcStatus(unknown).SerializeAsString());
  EXPECT_TRUE(emulator_->Requests().value_or(nlohmann::json::array()).empty())
      << "a handle of a dropped key reached the upstream";
  for (const std::string& thread : {new_thread, resigned}) {
    status = GetThread(*gateway, thread, &got);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(got.thread().user_id(), kUser);
  }
  ASSERT_EQ(gateway->Stop().value_or(-1), 0);
  // The start-up log names the key ids (the keys themselves: log_secret_scan_test.cc); with a
  // user-ID key, no warning about it.
  const std::string log = ReadLog(gateway->log_path());
  EXPECT_TRUE(absl::StrContains(log, "thread IDs signed with key id ")) << log;
  EXPECT_FALSE(absl::StrContains(log, "no user_id_key_file")) << log;
}

TEST_F(GatewayKeyRotationTest, WithoutAUserIdKeyTheStartUpWarns) {
  std::unique_ptr<GatewayProcess> gateway = StartGateway(kKeyA, {}, "");
  ASSERT_NE(gateway, nullptr);
  ASSERT_EQ(gateway->Stop().value_or(-1), 0);
  EXPECT_TRUE(absl::StrContains(ReadLog(gateway->log_path()),
                                "no user_id_key_file/_env configured: end-user IDs are encrypted "
                                "under a key derived from the thread signing key"));
}

// `copilot-gateway --check-config` on `yaml` (plus an upstream): its exit code and output.
std::pair<int, std::string> CheckConfig(const std::string& yaml) {
  char config[] = "/tmp/copilot_gateway_check_XXXXXX";
  const int fd = mkstemp(config);
  if (fd < 0) return {-1, "mkstemp failed"};
  const std::string text =
      absl::StrCat("upstream:\n  base_url: http://127.0.0.1:1/agents\n  api_key_env: KEY\n", yaml);
  const bool written = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  close(fd);
  const std::string output_path = absl::StrCat(config, ".out");
  const int code = written ? std::system(absl::StrCat(COPILOT_GATEWAY_PATH, " --check-config ",
                                                      config, " >", output_path, " 2>&1")
                                             .c_str())
                           : -1;
  const std::string output = ReadLog(output_path);
  std::remove(config);
  std::remove(output_path.c_str());
  return {WIFEXITED(code) ? WEXITSTATUS(code) : -1, output};
}

TEST_F(GatewayKeyRotationTest, CheckConfigValidatesTheKeys) {
  auto [code, output] = CheckConfig(
      "thread_signing_key_file: /k/new\nprevious_thread_signing_keys:\n"
      "  - key_file: /k/old\n  - key_env: OLDER_KEY\nuser_id_key_env: USER_ID_KEY\n");
  EXPECT_EQ(code, 0) << output;
  std::tie(code, output) = CheckConfig("previous_thread_signing_keys:\n  - key_file: /k/old\n");
  EXPECT_EQ(code, 1);
  EXPECT_TRUE(absl::StrContains(output, "previous_thread_signing_keys: needs thread_signing_key"))
      << output;
  std::tie(code, output) = CheckConfig(
      "thread_signing_key_file: /k/new\nprevious_thread_signing_keys:\n  - {key_file: /k/old, "
      "key_env: OLD}\n");
  EXPECT_EQ(code, 1);
  EXPECT_TRUE(absl::StrContains(
      output, "previous_thread_signing_keys[0]: exactly one of key_file and key_env"))
      << output;
  std::tie(code, output) =
      CheckConfig("thread_signing_key_file: /k/new\nprevious_thread_signing_keys:\n  - file: /k\n");
  EXPECT_EQ(code, 1);
  EXPECT_TRUE(absl::StrContains(output, "previous_thread_signing_keys[0].file: unknown key"))
      << output;
  std::tie(code, output) = CheckConfig("user_id_key_file: /k/u\nuser_id_key_env: U\n");
  EXPECT_EQ(code, 1);
  EXPECT_TRUE(absl::StrContains(output, "user_id_key_file: at most one of")) << output;
}

}  // namespace
}  // namespace copilot::gateway::testing
