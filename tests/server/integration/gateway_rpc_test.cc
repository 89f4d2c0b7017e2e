// Every RPC through the real binaries, validation before any upstream call, request_id
// de-duplication, and secrets kept out of the log.
#include <cstdio>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>

#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "tests/server/integration/integration_fixture.h"

namespace copilot::gateway::testing {
namespace {

namespace v1 = ::copilot::v1;
using ::testing::HasSubstr;

using GatewayRpcTest = GatewayIntegrationTest;

TEST_F(GatewayRpcTest, ListAssistants) {
  grpc::ClientContext context;
  v1::ListAssistantsResponse response;
  grpc::Status status = stub_->ListAssistants(&context, {}, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(response.assistants_size(), 3);
  EXPECT_EQ(response.assistants(0).id(), kTaxAssistant);
  EXPECT_EQ(response.assistants(0).name(), "Haufe Copilot Tax");
  EXPECT_TRUE(response.assistants(0).streaming());
  EXPECT_FALSE(response.assistants(2).streaming());
  auto records = RequestsTo("list_assistants");
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0]["headers"].value("api-key", ""), "test-api-key");
}

TEST_F(GatewayRpcTest, ThreadLifecycleCreateGetAddRunListDelete) {
  const std::string user = "5d2c7a4e-1b3f-4c8d-9e0a-112233445566";
  grpc::ClientContext create_context;
  v1::CreateThreadRequest create;
  create.set_assistant_id(kTaxAssistant);
  create.set_user_id(user);
  create.set_title("Pendlerpauschale");
  v1::CreateThreadResponse created;
  ASSERT_TRUE(stub_->CreateThread(&create_context, create, &created).ok());
  const std::string thread = created.thread().id();
  EXPECT_EQ(created.thread().assistant_id(), kTaxAssistant);
  EXPECT_EQ(created.thread().user_id(), user);
  EXPECT_EQ(created.thread().title(), "Pendlerpauschale");
  EXPECT_GT(created.thread().create_time().seconds(), 0);

  grpc::ClientContext get_context;
  v1::GetThreadRequest get;
  get.set_thread_id(thread);
  v1::GetThreadResponse got;
  ASSERT_TRUE(stub_->GetThread(&get_context, get, &got).ok());
  EXPECT_EQ(got.thread().id(), thread);

  grpc::ClientContext add_context;
  v1::AddMessageRequest add;
  add.set_thread_id(thread);
  add.mutable_message()->set_role(v1::ROLE_USER);
  add.mutable_message()->set_content("How far may I commute?");
  v1::AddMessageResponse added;
  ASSERT_TRUE(stub_->AddMessage(&add_context, add, &added).ok());
  EXPECT_EQ(added.message().role(), v1::ROLE_USER);
  EXPECT_EQ(added.message().thread_id(), thread);
  EXPECT_FALSE(added.message().id().empty());

  v1::RunResponse ran;
  grpc::Status status = RunOn(thread, &ran);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(ran.message().role(), v1::ROLE_ASSISTANT);
  EXPECT_EQ(ran.message().thread_id(), thread);
  EXPECT_THAT(ran.message().content(), HasSubstr("How far may I commute?"));
  EXPECT_THAT(ran.message().content(), HasSubstr("Haufe Copilot Tax"));
  // The licence of the default tenant went upstream (the Tax assistant requires it).
  auto runs = RequestsTo("run");
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_THAT(runs[0].value("body", ""), HasSubstr("LIC-TEST-0001"));

  grpc::ClientContext list_context;
  v1::ListMessagesRequest list;
  list.set_thread_id(thread);
  list.set_page_size(1);
  v1::ListMessagesResponse page;
  ASSERT_TRUE(stub_->ListMessages(&list_context, list, &page).ok());
  ASSERT_EQ(page.messages_size(), 1);
  EXPECT_EQ(page.messages(0).role(), v1::ROLE_ASSISTANT);  // Newest first.
  EXPECT_FALSE(page.next_page_token().empty());
  grpc::ClientContext next_context;
  list.set_page_token(page.next_page_token());
  v1::ListMessagesResponse next;
  ASSERT_TRUE(stub_->ListMessages(&next_context, list, &next).ok());
  ASSERT_EQ(next.messages_size(), 1);
  EXPECT_EQ(next.messages(0).role(), v1::ROLE_USER);

  grpc::ClientContext delete_context;
  v1::DeleteThreadRequest del;
  del.set_thread_id(thread);
  v1::DeleteThreadResponse deleted;
  ASSERT_TRUE(stub_->DeleteThread(&delete_context, del, &deleted).ok());
  // A deleted thread is deactivated: adding to it fails with FAILED_PRECONDITION.
  grpc::ClientContext again_context;
  v1::AddMessageResponse again;
  status = stub_->AddMessage(&again_context, add, &again);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << status.error_message();
  EXPECT_EQ(Reason(status), "thread_is_deactivated");
}

TEST_F(GatewayRpcTest, StreamRunDeliversTheAnswerInChunks) {
  const std::string thread = ThreadWithQuestion(kHrAssistant, "How many days of leave?");
  grpc::ClientContext context;
  SetTimeout(context, absl::Seconds(10));
  v1::StreamRunRequest request;
  request.set_thread_id(thread);
  auto reader = stub_->StreamRun(&context, request);
  v1::StreamRunResponse chunk;
  std::string text;
  int chunks = 0;
  std::string message_id;
  while (reader->Read(&chunk)) {
    ++chunks;
    text += chunk.chunk().delta().content();
    EXPECT_EQ(chunk.chunk().thread_id(), thread);
    if (message_id.empty()) message_id = chunk.chunk().message_id();
    EXPECT_EQ(chunk.chunk().message_id(), message_id);
  }
  grpc::Status status = reader->Finish();
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_GT(chunks, 5);
  EXPECT_EQ(text,
            "Regarding \"How many days of leave?\": this is the emulated answer of Haufe Copilot "
            "HR.");
}

TEST_F(GatewayRpcTest, CompleteAndStreamComplete) {
  v1::CompleteRequest request;
  request.set_assistant_id(kHrAssistant);
  auto* system = request.add_messages();
  system->set_role(v1::ROLE_SYSTEM);
  system->set_content("Answer briefly.");
  auto* user = request.add_messages();
  user->set_role(v1::ROLE_USER);
  user->set_content("What is parental leave?");
  grpc::ClientContext context;
  v1::CompleteResponse response;
  grpc::Status status = stub_->Complete(&context, request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_THAT(response.message().content(), HasSubstr("What is parental leave?"));
  EXPECT_FALSE(response.message().thread_id().empty());

  v1::StreamCompleteRequest stream_request;
  stream_request.set_assistant_id(kHrAssistant);
  *stream_request.mutable_messages() = request.messages();
  grpc::ClientContext stream_context;
  auto reader = stub_->StreamComplete(&stream_context, stream_request);
  v1::StreamCompleteResponse chunk;
  std::string text;
  while (reader->Read(&chunk)) text += chunk.chunk().delta().content();
  status = reader->Finish();
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(text, response.message().content());
}

TEST_F(GatewayRpcTest, StreamFromNonStreamingAssistantIsFailedPrecondition) {
  const std::string thread = ThreadWithQuestion(kLegacyAssistant, "q?");
  grpc::ClientContext context;
  v1::StreamRunRequest request;
  request.set_thread_id(thread);
  auto reader = stub_->StreamRun(&context, request);
  v1::StreamRunResponse chunk;
  EXPECT_FALSE(reader->Read(&chunk));
  grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(Reason(status), "engine_does_not_support_streaming");
}

// Each request is invalid for a reason the gateway checks itself; none reaches the upstream.
TEST_F(GatewayRpcTest, ValidationErrorsNeverReachTheUpstream) {
  struct Case {
    std::string name;
    std::function<grpc::Status()> call;
    std::string field;
  };
  auto add = [this](v1::MessageInput message, std::string thread = kUnknownThread) {
    grpc::ClientContext context;
    v1::AddMessageRequest request;
    request.set_thread_id(thread);
    *request.mutable_message() = std::move(message);
    v1::AddMessageResponse response;
    return stub_->AddMessage(&context, request, &response);
  };
  auto complete = [this](std::vector<v1::MessageInput> messages) {
    grpc::ClientContext context;
    v1::CompleteRequest request;
    request.set_assistant_id(kHrAssistant);
    for (auto& m : messages) *request.add_messages() = std::move(m);
    v1::CompleteResponse response;
    return stub_->Complete(&context, request, &response);
  };
  auto message = [](v1::Role role, std::string content) {
    v1::MessageInput m;
    m.set_role(role);
    m.set_content(std::move(content));
    return m;
  };
  v1::MessageInput long_content = message(v1::ROLE_USER, std::string(30001, 'x'));
  v1::MessageInput tool = message(v1::ROLE_TOOL, "42");
  tool.set_tool_call_id("call_1");
  v1::MessageInput two_files = message(v1::ROLE_USER, "files");
  two_files.add_attachments()->set_file_id("5d2c7a4e-1b3f-4c8d-9e0a-112233445566");
  two_files.add_attachments()->set_file_id("5d2c7a4e-1b3f-4c8d-9e0a-112233445567");
  const std::vector<Case> cases = {
      {"no thread id", [&] { return add(message(v1::ROLE_USER, "q"), ""); }, "thread_id"},
      {"blank content", [&] { return add(message(v1::ROLE_USER, "   ")); }, "message.content"},
      {"too long", [&] { return add(long_content); }, "message.content"},
      {"no role", [&] { return add(message(v1::ROLE_UNSPECIFIED, "q")); }, "message.role"},
      {"empty messages", [&] { return complete({}); }, "messages"},
      {"ends with assistant",
       [&] {
         return complete({message(v1::ROLE_USER, "q"), message(v1::ROLE_ASSISTANT, "a")});
       },
       "messages[1].role"},
      {"unmatched tool call",
       [&] {
         return complete({message(v1::ROLE_USER, "q"), tool});
       },
       "messages[1].tool_call_id"},
      {"two attachments", [&] { return complete({two_files}); }, "messages[0].attachments"},
      {"second system message",
       [&] {
         return complete({message(v1::ROLE_SYSTEM, "s"), message(v1::ROLE_SYSTEM, "t"),
                          message(v1::ROLE_USER, "q")});
       },
       "messages[1].role"},
      {"page size",
       [&] {
         grpc::ClientContext context;
         v1::ListMessagesRequest request;
         request.set_thread_id(kUnknownThread);
         request.set_page_size(101);
         v1::ListMessagesResponse response;
         return stub_->ListMessages(&context, request, &response);
       },
       "page_size"},
      {"assistant id",
       [&] {
         grpc::ClientContext context;
         v1::CreateThreadRequest request;
         request.set_assistant_id("tax");
         v1::CreateThreadResponse response;
         return stub_->CreateThread(&context, request, &response);
       },
       "assistant_id"},
  };
  for (const Case& c : cases) {
    grpc::Status status = c.call();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.name;
    EXPECT_EQ(Reason(status), "INVALID_REQUEST") << c.name;
    auto bad = FindDetail<google::rpc::BadRequest>(status);
    ASSERT_TRUE(bad.has_value()) << c.name;
    ASSERT_GE(bad->field_violations_size(), 1) << c.name;
    EXPECT_EQ(bad->field_violations(0).field(), c.field) << c.name;
  }
  EXPECT_EQ(Requests().size(), 0u) << Requests().dump();
}

TEST_F(GatewayRpcTest, RetryWithSameRequestIdRunsOnce) {
  const std::string thread = ThreadWithQuestion(kHrAssistant, "Once only?");
  ASSERT_TRUE(emulator_->ClearRequests().ok());
  const std::string request_id = "9a7b6c5d-4e3f-4a1b-8c2d-0123456789ab";
  v1::RunResponse first, second;
  std::vector<std::string> correlation_ids;
  for (v1::RunResponse* response : {&first, &second}) {
    grpc::ClientContext context;
    v1::RunRequest request;
    request.set_thread_id(thread);
    request.set_request_id(request_id);
    ASSERT_TRUE(stub_->Run(&context, request, response).ok());
    auto it = context.GetServerInitialMetadata().find("x-request-id");
    ASSERT_NE(it, context.GetServerInitialMetadata().end());
    correlation_ids.emplace_back(it->second.data(), it->second.size());
  }
  EXPECT_EQ(first.message().id(), second.message().id());
  auto runs = RequestsTo("run");
  ASSERT_EQ(runs.size(), 1u);
  // The upstream sees the first call's correlation ID (x-request-id), not the idempotency key.
  EXPECT_EQ(runs[0]["headers"].value("x-request-id", ""), correlation_ids[0]);
  EXPECT_NE(correlation_ids[0], correlation_ids[1]);
}

TEST(GatewaySecretsTest, ApiKeyAndLicenceNeverAppearInTheLog) {
  auto emulator = emulator::testing::EmulatorProcess::Start({.api_key = "sk-very-secret-key"});
  ASSERT_TRUE(emulator.ok()) << emulator.status();
  GatewayProcessOptions options;
  options.upstream_url = (*emulator)->base_url() + "/agents";
  options.api_key = "sk-very-secret-key";
  options.licence = "LIC-SECRET-777";
  auto gateway = GatewayProcess::Start(options);
  ASSERT_TRUE(gateway.ok()) << gateway.status();
  auto stub = v1::CopilotService::NewStub((*gateway)->channel());
  grpc::ClientContext context;
  v1::CompleteRequest request;
  request.set_assistant_id(kTaxAssistant);
  auto* user = request.add_messages();
  user->set_role(v1::ROLE_USER);
  user->set_content("q");
  v1::CompleteResponse response;
  ASSERT_TRUE(stub->Complete(&context, request, &response).ok());
  stub.reset();  // An idle client connection would hold shutdown for the whole grace period.
  EXPECT_EQ((*gateway)->Stop().value_or(-1), 0);
  std::ifstream log_file((*gateway)->log_path());
  std::stringstream log;
  log << log_file.rdbuf();
  EXPECT_THAT(log.str(), HasSubstr("serving copilot.v1.CopilotService"));
  EXPECT_FALSE(absl::StrContains(log.str(), "sk-very-secret-key")) << log.str();
  EXPECT_FALSE(absl::StrContains(log.str(), "LIC-SECRET-777")) << log.str();
}

}  // namespace
}  // namespace copilot::gateway::testing
