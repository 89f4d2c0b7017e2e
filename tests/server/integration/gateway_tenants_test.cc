// Tenants through the real binaries: three tenants with bearer tokens; every thread RPC x (own,
// another tenant's, unknown thread) x (valid, wrong, no, another tenant's token); the emulator's
// record shows each tenant's licence and API key on every upstream call.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/common/crypto.h"
#include "tests/server/integration/integration_fixture.h"

namespace copilot::gateway::testing {
namespace {

namespace v1 = ::copilot::v1;

std::string Sha256Hex(const std::string& token) { return absl::BytesToHexString(Sha256(token)); }

// Tenant a: Tax (own licence) and HR; b: every assistant, two tokens (rotation); c: HR only,
// its own upstream API key.
constexpr char kTokenA[] = "token-a-7f3e";
constexpr char kTokenB[] = "token-b-91c2";
constexpr char kTokenB2[] = "token-b-rotated-0d4a";
constexpr char kTokenC[] = "token-c-55aa";
constexpr char kKeyC[] = "upstream-key-of-c";

class GatewayTenantsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto emulator = emulator::testing::EmulatorProcess::Start(
        {.args = {"--stream-delay-ms", "1"}, .extra_api_keys = {kKeyC}});
    ASSERT_TRUE(emulator.ok()) << emulator.status();
    emulator_ = std::move(*emulator).release();
    // Per process: ctest runs this suite's tests in parallel processes.
    key_c_path_ =
        new std::string(absl::StrCat(::testing::TempDir(), "/tenant-c-api-key-", getpid()));
    std::ofstream(*key_c_path_) << kKeyC << "\n";
    GatewayProcessOptions options;
    options.upstream_url = emulator_->base_url() + "/agents";
    options.identity = "bearer";
    options.extra_yaml = absl::StrCat(R"(tenants:
  - id: a
    bearer_token_sha256: [")",
                                      Sha256Hex(kTokenA), R"("]
    licence: LIC-A
    assistants:
      - id: ")",
                                      kTaxAssistant, R"("
        licence: LIC-A-TAX
      - id: ")",
                                      kHrAssistant, R"("
  - id: b
    bearer_token_sha256: [")",
                                      Sha256Hex(kTokenB), R"(", ")", Sha256Hex(kTokenB2), R"("]
    licence: LIC-B
    assistants: [{id: "*"}]
  - id: c
    bearer_token_sha256: [")",
                                      Sha256Hex(kTokenC), R"("]
    assistants: [{id: ")",
                                      kHrAssistant, R"(", licence: LIC-C-HR}]
    api_key_file: ")",
                                      *key_c_path_, R"("
)");
    options_ = new GatewayProcessOptions(options);
    auto gateway = GatewayProcess::Start(options);
    ASSERT_TRUE(gateway.ok()) << gateway.status();
    gateway_ = std::move(*gateway).release();
  }

  static void TearDownTestSuite() {
    if (gateway_ != nullptr) {
      EXPECT_EQ(gateway_->Stop().value_or(-1), 0);
    }
    delete gateway_;
    delete emulator_;
    if (key_c_path_ != nullptr) std::remove(key_c_path_->c_str());
    delete key_c_path_;
    delete options_;
    options_ = nullptr;
    gateway_ = nullptr;
    emulator_ = nullptr;
    key_c_path_ = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(gateway_, nullptr);
    ASSERT_TRUE(emulator_->Reset().ok());
    stub_ = v1::CopilotService::NewStub(gateway_->channel());
  }

  static std::vector<nlohmann::json> RequestsTo(const std::string& route) {
    std::vector<nlohmann::json> out;
    const nlohmann::json records = emulator_->Requests().value_or(nlohmann::json::array());
    for (const auto& record : records) {
      if (record.value("route", "") == route) out.push_back(record);
    }
    return out;
  }

  // A context carrying `token` (none when empty), with a deadline.
  static std::unique_ptr<grpc::ClientContext> As(const std::string& token) {
    auto context = std::make_unique<grpc::ClientContext>();
    SetTimeout(*context, absl::Seconds(20));
    if (!token.empty()) context->AddMetadata("authorization", "Bearer " + token);
    return context;
  }

  // A thread of `assistant` with one question, created with `token`.
  std::string ThreadOf(const std::string& token, const std::string& assistant) {
    v1::CreateThreadRequest create;
    create.set_assistant_id(assistant);
    create.set_user_id("5a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d");
    v1::CreateThreadResponse created;
    grpc::Status status = stub_->CreateThread(As(token).get(), create, &created);
    EXPECT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(created.thread().user_id(), create.user_id());
    v1::AddMessageRequest add;
    add.set_thread_id(created.thread().id());
    add.mutable_message()->set_role(v1::ROLE_USER);
    add.mutable_message()->set_content("Question?");
    v1::AddMessageResponse added;
    status = stub_->AddMessage(As(token).get(), add, &added);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return created.thread().id();
  }

  using Rpc = std::function<grpc::Status(const std::string& token, const std::string& thread)>;
  // Every RPC that names a thread, in an order the owner's thread allows (a run needs a user
  // message last: AddMessage sits between Run and StreamRun); DeleteThread last.
  std::vector<std::pair<std::string, Rpc>> ThreadRpcs(const std::string& assistant) {
    auto user = [](v1::MessageInput* m) {
      m->set_role(v1::ROLE_USER);
      m->set_content("Another question?");
    };
    return {
        {"GetThread",
         [this](const std::string& token, const std::string& thread) {
           v1::GetThreadRequest r;
           r.set_thread_id(thread);
           v1::GetThreadResponse out;
           return stub_->GetThread(As(token).get(), r, &out);
         }},
        {"ListMessages",
         [this](const std::string& token, const std::string& thread) {
           v1::ListMessagesRequest r;
           r.set_thread_id(thread);
           v1::ListMessagesResponse out;
           return stub_->ListMessages(As(token).get(), r, &out);
         }},
        {"Run",
         [this](const std::string& token, const std::string& thread) {
           v1::RunRequest r;
           r.set_thread_id(thread);
           v1::RunResponse out;
           return stub_->Run(As(token).get(), r, &out);
         }},
        {"AddMessage",
         [this, user](const std::string& token, const std::string& thread) {
           v1::AddMessageRequest r;
           r.set_thread_id(thread);
           user(r.mutable_message());
           v1::AddMessageResponse out;
           return stub_->AddMessage(As(token).get(), r, &out);
         }},
        {"StreamRun",
         [this](const std::string& token, const std::string& thread) {
           v1::StreamRunRequest r;
           r.set_thread_id(thread);
           auto context = As(token);
           auto reader = stub_->StreamRun(context.get(), r);
           v1::StreamRunResponse chunk;
           while (reader->Read(&chunk)) {
           }
           return reader->Finish();
         }},
        {"Complete",
         [this, assistant, user](const std::string& token, const std::string& thread) {
           v1::CompleteRequest r;
           r.set_assistant_id(assistant);
           r.set_thread_id(thread);
           user(r.add_messages());
           v1::CompleteResponse out;
           return stub_->Complete(As(token).get(), r, &out);
         }},
        {"StreamComplete",
         [this, assistant, user](const std::string& token, const std::string& thread) {
           v1::StreamCompleteRequest r;
           r.set_assistant_id(assistant);
           r.set_thread_id(thread);
           user(r.add_messages());
           auto context = As(token);
           auto reader = stub_->StreamComplete(context.get(), r);
           v1::StreamCompleteResponse chunk;
           while (reader->Read(&chunk)) {
           }
           return reader->Finish();
         }},
        {"DeleteThread",
         [this](const std::string& token, const std::string& thread) {
           v1::DeleteThreadRequest r;
           r.set_thread_id(thread);
           v1::DeleteThreadResponse out;
           return stub_->DeleteThread(As(token).get(), r, &out);
         }},
    };
  }

  static inline emulator::testing::EmulatorProcess* emulator_ = nullptr;
  static inline GatewayProcess* gateway_ = nullptr;
  static inline std::string* key_c_path_ = nullptr;
  static inline GatewayProcessOptions* options_ = nullptr;
  std::unique_ptr<v1::CopilotService::Stub> stub_;
};

TEST_F(GatewayTenantsTest, EveryThreadRpcByThreadOwnerAndCredential) {
  const std::string thread_a = ThreadOf(kTokenA, kHrAssistant);
  const std::string thread_b = ThreadOf(kTokenB, kHrAssistant);
  const std::string unknown = SignedHandle("a", kUnknownThread, kHrAssistant);  // Valid for a.
  ASSERT_TRUE(emulator_->ClearRequests().ok());
  struct Case {
    std::string thread_name, thread, token_name, token;
    grpc::StatusCode expected;
    bool reaches_upstream;
  };
  const std::vector<Case> cases = {
      // The caller's own thread with its token (DeleteThread comes last in ThreadRpcs).
      {"own", thread_a, "valid", kTokenA, grpc::StatusCode::OK, true},
      {"other tenant's", thread_b, "valid", kTokenA, grpc::StatusCode::NOT_FOUND, false},
      {"unknown", unknown, "valid", kTokenA, grpc::StatusCode::NOT_FOUND, true},
      {"own", thread_a, "wrong", "token-nobody-has", grpc::StatusCode::UNAUTHENTICATED, false},
      {"own", thread_a, "no", "", grpc::StatusCode::UNAUTHENTICATED, false},
      {"own", thread_a, "another tenant's", kTokenB, grpc::StatusCode::NOT_FOUND, false},
      {"other tenant's", thread_b, "wrong", "token-nobody-has", grpc::StatusCode::UNAUTHENTICATED,
       false},
      {"other tenant's", thread_b, "no", "", grpc::StatusCode::UNAUTHENTICATED, false},
      {"other tenant's", thread_b, "another tenant's", kTokenC, grpc::StatusCode::NOT_FOUND, false},
      {"unknown", unknown, "wrong", "token-nobody-has", grpc::StatusCode::UNAUTHENTICATED, false},
      {"unknown", unknown, "no", "", grpc::StatusCode::UNAUTHENTICATED, false},
      {"unknown", unknown, "another tenant's", kTokenB, grpc::StatusCode::NOT_FOUND, false},
  };
  // Run the denied cases first, then the owner's (which deletes the thread at the end).
  std::vector<const Case*> order;
  for (const Case& c : cases) {
    if (c.expected != grpc::StatusCode::OK) order.push_back(&c);
  }
  for (const Case& c : cases) {
    if (c.expected == grpc::StatusCode::OK) order.push_back(&c);
  }
  grpc::Status not_found_reference;
  for (const Case* c : order) {
    for (const auto& [name, rpc] : ThreadRpcs(kHrAssistant)) {
      const std::string label =
          absl::StrCat(name, " on the ", c->thread_name, " thread with ", c->token_name, " token");
      const std::size_t before = emulator_->Requests()->size();
      grpc::Status status = rpc(c->token, c->thread);
      EXPECT_EQ(status.error_code(), c->expected) << label << ": " << status.error_message();
      const std::size_t after = emulator_->Requests()->size();
      if (!c->reaches_upstream) {
        EXPECT_EQ(after, before) << label << " reached the upstream";
      }
      if (c->expected == grpc::StatusCode::NOT_FOUND) {
        // Indistinguishable: another tenant's thread and a thread that does not exist.
        if (not_found_reference.error_message().empty()) not_found_reference = status;
        EXPECT_EQ(status.error_message(), not_found_reference.error_message()) << label;
        EXPECT_EQ(RpcStatus(status).SerializeAsString(),
                  RpcStatus(not_found_reference).SerializeAsString())
            << label;
      }
      if (c->expected == grpc::StatusCode::UNAUTHENTICATED) {
        EXPECT_EQ(status.error_message().find(c->token.empty() ? "\x01" : c->token),
                  std::string::npos)
            << "the token is echoed";
      }
    }
  }
}

// What the matrix above sent upstream: only tenant a's calls got through, each with the
// gateway's key and, where the API takes one, a's licence.
TEST_F(GatewayTenantsTest, EveryUpstreamCallOfTheMatrixCarriesTheCallersKeyAndLicence) {
  const std::string thread_a = ThreadOf(kTokenA, kHrAssistant);
  ASSERT_TRUE(emulator_->ClearRequests().ok());
  for (const auto& [name, rpc] : ThreadRpcs(kHrAssistant)) {
    EXPECT_TRUE(rpc(kTokenA, thread_a).ok()) << name;
  }
  const nlohmann::json records = emulator_->Requests().value_or(nlohmann::json::array());
  ASSERT_GE(records.size(), 8u);
  for (const auto& record : records) {
    EXPECT_EQ(record["headers"]["api-key"], "test-api-key") << record["route"];
    const std::string route = record.value("route", "");
    if (route == "run" || route == "run_stream" || route == "chat_completions" ||
        route == "chat_completions_stream") {
      const nlohmann::json body = nlohmann::json::parse(record["body"].get<std::string>());
      EXPECT_EQ(body["meta_data"]["user_data"]["licence"], "LIC-A") << route;
    }
  }
}

TEST_F(GatewayTenantsTest, OwnershipHoldsOnAnotherReplicaAndAfterARestart) {
  const std::string thread = ThreadOf(kTokenA, kHrAssistant);
  auto get = [&thread](GatewayProcess& gateway, const std::string& token) {
    auto stub = v1::CopilotService::NewStub(gateway.NewChannel());
    v1::GetThreadRequest r;
    r.set_thread_id(thread);
    v1::GetThreadResponse out;
    return stub->GetThread(As(token).get(), r, &out).error_code();
  };
  // A second process with the same config (and signing key): a replica, or this one restarted.
  GatewayProcessOptions options = *options_;
  auto replica = GatewayProcess::Start(options);
  ASSERT_TRUE(replica.ok()) << replica.status();
  EXPECT_EQ(get(**replica, kTokenA), grpc::StatusCode::OK);
  EXPECT_EQ(get(**replica, kTokenB), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ((*replica)->Stop().value_or(-1), 0);
  // A gateway with another signing key knows none of the handles.
  options.signing_key = "a-different-signing-key-0123456789abcdef";
  auto stranger = GatewayProcess::Start(options);
  ASSERT_TRUE(stranger.ok()) << stranger.status();
  EXPECT_EQ(get(**stranger, kTokenA), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ((*stranger)->Stop().value_or(-1), 0);
}

TEST_F(GatewayTenantsTest, RotatedTokensBothWork) {
  const std::string thread = ThreadOf(kTokenB, kHrAssistant);
  v1::GetThreadRequest r;
  r.set_thread_id(thread);
  v1::GetThreadResponse out;
  EXPECT_TRUE(stub_->GetThread(As(kTokenB2).get(), r, &out).ok());
}

TEST_F(GatewayTenantsTest, AssistantsNotAllowedArePermissionDeniedAndHiddenFromTheList) {
  v1::CreateThreadRequest create;
  create.set_assistant_id(kTaxAssistant);
  v1::CreateThreadResponse created;
  grpc::Status status = stub_->CreateThread(As(kTokenC).get(), create, &created);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED) << status.error_message();
  EXPECT_EQ(Reason(status), "assistant_not_allowed");
  EXPECT_TRUE(RequestsTo("create_thread").empty());

  auto listed = [this](const std::string& token) {
    v1::ListAssistantsResponse response;
    grpc::Status s = stub_->ListAssistants(As(token).get(), {}, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    std::vector<std::string> ids;
    for (const auto& assistant : response.assistants()) ids.push_back(assistant.id());
    return ids;
  };
  EXPECT_EQ(listed(kTokenC), std::vector<std::string>{kHrAssistant});
  EXPECT_EQ(listed(kTokenA).size(), 2u);
  EXPECT_GE(listed(kTokenB).size(), 3u);
  v1::ListAssistantsResponse response;
  EXPECT_EQ(stub_->ListAssistants(As("").get(), {}, &response).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(GatewayTenantsTest, UpstreamSeesEachTenantsLicenceAndApiKey) {
  const std::string a_tax = ThreadOf(kTokenA, kTaxAssistant);
  const std::string a_hr = ThreadOf(kTokenA, kHrAssistant);
  const std::string b_hr = ThreadOf(kTokenB, kHrAssistant);
  const std::string c_hr = ThreadOf(kTokenC, kHrAssistant);
  ASSERT_TRUE(emulator_->ClearRequests().ok());
  struct Expect {
    std::string token, thread, licence, api_key;
  };
  for (const Expect& e : std::vector<Expect>{{kTokenA, a_tax, "LIC-A-TAX", "test-api-key"},
                                             {kTokenA, a_hr, "LIC-A", "test-api-key"},
                                             {kTokenB, b_hr, "LIC-B", "test-api-key"},
                                             {kTokenC, c_hr, "LIC-C-HR", kKeyC}}) {
    ASSERT_TRUE(emulator_->ClearRequests().ok());
    v1::RunRequest run;
    run.set_thread_id(e.thread);
    v1::RunResponse out;
    grpc::Status status = stub_->Run(As(e.token).get(), run, &out);
    ASSERT_TRUE(status.ok()) << status.error_message();
    auto runs = RequestsTo("run");
    ASSERT_EQ(runs.size(), 1u);
    const nlohmann::json body = nlohmann::json::parse(runs[0]["body"].get<std::string>());
    EXPECT_EQ(body["meta_data"]["user_data"]["licence"], e.licence) << e.token;
    EXPECT_EQ(runs[0]["headers"]["api-key"], e.api_key) << e.token;
  }
  // Every upstream call of c (not only runs) carries c's key.
  ASSERT_TRUE(emulator_->ClearRequests().ok());
  ThreadOf(kTokenC, kHrAssistant);
  const nlohmann::json records = emulator_->Requests().value_or(nlohmann::json::array());
  ASSERT_FALSE(records.empty());
  for (const auto& record : records) {
    EXPECT_EQ(record["headers"]["api-key"], kKeyC) << record.dump().substr(0, 200);
  }
}

TEST_F(GatewayTenantsTest, EndUserIdsAreScopedPerTenantUpstream) {
  ThreadOf(kTokenA, kHrAssistant);
  ThreadOf(kTokenB, kHrAssistant);
  auto creates = RequestsTo("create_thread");
  ASSERT_EQ(creates.size(), 2u);
  const auto user_of = [](const nlohmann::json& record) {
    return nlohmann::json::parse(record["body"].get<std::string>()).value("user_id", "");
  };
  EXPECT_NE(user_of(creates[0]), "5a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d");
  EXPECT_NE(user_of(creates[0]), user_of(creates[1]));
}

}  // namespace
}  // namespace copilot::gateway::testing
