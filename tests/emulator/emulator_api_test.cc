// End-to-end tests of the emulated upstream API: the real haufe-emulator binary over loopback.
#include <memory>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/emulator/testing/emulator_process.h"
#include "tests/emulator/thread_store.h"

namespace copilot::emulator {
namespace {

using nlohmann::json;
using testing::EmulatorProcess;
using testing::HttpClient;
using testing::HttpResponse;
using testing::RequestOptions;

const std::string kTax(kTaxAssistantId);
const std::string kHr(kHrAssistantId);
const std::string kLegacy(kLegacyAssistantId);
constexpr char kUnknownId[] = "11111111-2222-4333-8444-555555555555";

bool IsIsoMicros(const json& value) {
  static const std::regex kIso(R"(^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$)");
  return value.is_string() && std::regex_match(value.get<std::string>(), kIso);
}

bool IsUuidJson(const json& value) {
  static const std::regex kUuid(
      R"(^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$)");
  return value.is_string() && std::regex_match(value.get<std::string>(), kUuid);
}

std::vector<json> NdjsonLines(const std::string& body) {
  std::vector<json> lines;
  for (absl::string_view line : absl::StrSplit(body, '\n', absl::SkipEmpty())) {
    lines.push_back(json::parse(line, nullptr, false));
  }
  return lines;
}

std::string ExpectedAnswer(const std::string& question, const std::string& assistant) {
  return absl::StrCat("Regarding \"", question, "\": this is the emulated answer of ", assistant,
                      ".");
}

class EmulatorApiTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto started = EmulatorProcess::Start({.args = {"--stream-delay-ms", "1", "--seed", "7"}});
    ASSERT_TRUE(started.ok()) << started.status();
    emulator_ = std::move(started).value().release();
  }
  static void TearDownTestSuite() {
    delete emulator_;
    emulator_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(emulator_, nullptr);
    ASSERT_TRUE(emulator_->Reset().ok());
  }

  EmulatorProcess& emu() { return *emulator_; }

  // Creates a thread and returns its id.
  std::string NewThread(const std::string& assistant = kHr, const std::string& title = "t") {
    HttpResponse r =
        emu().ApiPost("/threads", json{{"assistant_id", assistant}, {"title", title}}.dump());
    EXPECT_EQ(r.status, 201) << r.body;
    return r.Json().value("id", "");
  }
  json AddMessage(const std::string& thread, const json& message, int expected_status = 201) {
    HttpResponse r = emu().ApiPost(absl::StrCat("/threads/", thread, "/messages"), message.dump());
    EXPECT_EQ(r.status, expected_status) << r.body;
    return r.Json();
  }
  json ChatBody(const std::string& assistant, const json& messages) {
    return json{{"assistant_id", assistant}, {"messages", messages}};
  }

  static EmulatorProcess* emulator_;
};

EmulatorProcess* EmulatorApiTest::emulator_ = nullptr;

TEST_F(EmulatorApiTest, ListsTheSeededAssistants) {
  HttpResponse r = emu().ApiGet("/assistants");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Header("content-type"), "application/json");
  json list = r.Json();
  ASSERT_TRUE(list.is_array());
  ASSERT_EQ(list.size(), 3u);
  EXPECT_EQ(list[0]["id"], kTax);
  EXPECT_EQ(list[0]["name"], "Haufe Copilot Tax");
  EXPECT_EQ(list[0]["request_required_fields"],
            json({{"__root__", {"user_data"}}, {"user_data", {"licence"}}}));
  EXPECT_EQ(list[0]["streaming"], true);
  EXPECT_EQ(list[0]["meta_data_response_schema"]["title"], "LgAgentMetaDataModel");
  EXPECT_EQ(list[1]["request_required_fields"], json::object());
  EXPECT_EQ(list[2]["name"], "Haufe Copilot Legacy");
  EXPECT_EQ(list[2]["streaming"], false);
}

TEST_F(EmulatorApiTest, GetsOneAssistantOr404Or422) {
  HttpResponse ok = emu().ApiGet("/assistants/" + kHr);
  ASSERT_EQ(ok.status, 200);
  EXPECT_EQ(ok.Json()["name"], "Haufe Copilot HR");
  // Upper case is the same UUID.
  EXPECT_EQ(emu().ApiGet("/assistants/7C0E5D3A-4C1B-4F57-9A51-1F1F3E0A0002").status, 200);

  HttpResponse missing = emu().ApiGet(absl::StrCat("/assistants/", kUnknownId));
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.Json(),
            json({{"error_code", "assistant_not_found"}, {"detail", "Assistant not found"}}));

  HttpResponse bad = emu().ApiGet("/assistants/not-a-uuid");
  EXPECT_EQ(bad.status, 422);
  json body = bad.Json();
  EXPECT_EQ(body["error_code"], "validation_error");
  ASSERT_EQ(body["detail"].size(), 1u);
  EXPECT_EQ(body["detail"][0]["loc"], json({"path", "assistant_id"}));
  EXPECT_EQ(body["detail"][0]["type"], "uuid_parsing");
  EXPECT_TRUE(body["detail"][0].contains("message"));
}

TEST_F(EmulatorApiTest, RejectsMissingOrWrongApiKeyWith401) {
  HttpResponse none = emu().Get("/agents/v1/assistants");
  EXPECT_EQ(none.status, 401);
  EXPECT_EQ(none.Json(),
            json({{"error_code", "unauthorized"}, {"detail", "Missing or invalid API key"}}));
  HttpResponse wrong =
      emu().Get("/agents/v1/threads", RequestOptions{.headers = {{"api-key", "nope"}}});
  EXPECT_EQ(wrong.status, 401);
  EXPECT_EQ(wrong.Json()["error_code"], "unauthorized");
  // The key is checked before the path UUID.
  EXPECT_EQ(emu().Post("/agents/v1/threads/bad/run", "{}").status, 401);
}

TEST(EmulatorApiKeysTest, EveryGivenKeyIsAcceptedAndTheRecordShowsWhichOneCame) {
  auto started = EmulatorProcess::Start(
      {.api_key = "key-tenant-a", .extra_api_keys = {"key-tenant-b", "key-tenant-c"}});
  ASSERT_TRUE(started.ok()) << started.status();
  EmulatorProcess& emu = **started;
  EXPECT_EQ(emu.extra_api_keys(), (std::vector<std::string>{"key-tenant-b", "key-tenant-c"}));

  EXPECT_EQ(emu.ApiGet("/assistants").status, 200);
  EXPECT_EQ(emu.ApiGet("/assistants", {.api_key = "key-tenant-b"}).status, 200);
  EXPECT_EQ(emu.ApiPost("/threads", json{{"assistant_id", kHr}}.dump(), {.api_key = "key-tenant-c"})
                .status,
            201);
  HttpResponse unknown = emu.ApiGet("/assistants", {.api_key = "key-tenant-d"});
  EXPECT_EQ(unknown.status, 401);
  EXPECT_EQ(unknown.Json()["error_code"], "unauthorized");

  absl::StatusOr<json> records = emu.Requests();
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 4u);
  const std::vector<std::pair<std::string, int>> expected = {
      {"key-tenant-a", 200}, {"key-tenant-b", 200}, {"key-tenant-c", 201}, {"key-tenant-d", 401}};
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ((*records)[i]["headers"]["api-key"], expected[i].first) << i;
    EXPECT_EQ((*records)[i]["status"], expected[i].second) << i;
  }
}

TEST_F(EmulatorApiTest, UnknownPathIs404AndWrongMethodIs405) {
  HttpResponse unknown = emu().ApiGet("/files");
  EXPECT_EQ(unknown.status, 404);
  EXPECT_EQ(unknown.Json(), json({{"detail", "Not Found"}}));
  HttpResponse wrong = emu().ApiDelete("/assistants");
  EXPECT_EQ(wrong.status, 405);
  EXPECT_EQ(wrong.Json(), json({{"detail", "Method Not Allowed"}}));
}

TEST_F(EmulatorApiTest, CreatesAndGetsAThread) {
  const std::string user = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee";
  HttpResponse r = emu().ApiPost(
      "/threads", json{{"assistant_id", kHr}, {"user_id", user}, {"title", "Urlaub"}}.dump());
  ASSERT_EQ(r.status, 201) << r.body;
  json thread = r.Json();
  EXPECT_TRUE(IsUuidJson(thread["id"]));
  EXPECT_EQ(thread["assistant_id"], kHr);
  EXPECT_EQ(thread["tenant_id"], std::string(kTenantId));
  EXPECT_EQ(thread["user_id"], user);
  EXPECT_EQ(thread["title"], "Urlaub");
  EXPECT_TRUE(IsIsoMicros(thread["created_at"])) << thread["created_at"];
  EXPECT_TRUE(IsIsoMicros(thread["last_updated_at"]));

  HttpResponse get = emu().ApiGet("/threads/" + thread["id"].get<std::string>());
  ASSERT_EQ(get.status, 200);
  EXPECT_EQ(get.Json(), thread);

  HttpResponse minimal = emu().ApiPost("/threads", json{{"assistant_id", kTax}}.dump());
  ASSERT_EQ(minimal.status, 201);
  EXPECT_EQ(minimal.Json()["user_id"], nullptr);
  EXPECT_EQ(minimal.Json()["title"], nullptr);
}

TEST_F(EmulatorApiTest, CreateThreadValidationAndLookupErrors) {
  HttpResponse missing = emu().ApiPost("/threads", R"({"title":"x"})");
  ASSERT_EQ(missing.status, 422);
  EXPECT_EQ(missing.Json(),
            json::parse(R"({"error_code":"validation_error","detail":[{"loc":["body",
              "assistant_id"],"message":"Field required","type":"missing"}]})"));

  HttpResponse bad_json = emu().ApiPost("/threads", "{not json");
  ASSERT_EQ(bad_json.status, 422);
  EXPECT_EQ(bad_json.Json()["detail"][0]["type"], "json_invalid");

  HttpResponse bad_user =
      emu().ApiPost("/threads", json{{"assistant_id", kHr}, {"user_id", "bob"}}.dump());
  ASSERT_EQ(bad_user.status, 422);
  EXPECT_EQ(bad_user.Json()["detail"][0]["loc"], json({"body", "user_id"}));

  HttpResponse unknown = emu().ApiPost("/threads", json{{"assistant_id", kUnknownId}}.dump());
  EXPECT_EQ(unknown.status, 404);
  EXPECT_EQ(unknown.Json()["error_code"], "assistant_not_found");

  HttpResponse not_found = emu().ApiGet(absl::StrCat("/threads/", kUnknownId));
  EXPECT_EQ(not_found.status, 404);
  EXPECT_EQ(not_found.Json(),
            json({{"error_code", "thread_not_found"}, {"detail", "Thread not found"}}));
  HttpResponse bad_id = emu().ApiGet("/threads/123");
  EXPECT_EQ(bad_id.status, 422);
  EXPECT_EQ(bad_id.Json()["detail"][0]["loc"], json({"path", "thread_id"}));
}

TEST_F(EmulatorApiTest, ListsThreadsNewestFirstWithCursorPaging) {
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(NewThread(kHr, absl::StrCat("t", i)));
  std::vector<std::string> seen;
  std::string cursor;
  int pages = 0;
  while (true) {
    std::string path = "/threads?limit=2";
    if (!cursor.empty()) path += "&cursor=" + cursor;
    HttpResponse r = emu().ApiGet(path);
    ASSERT_EQ(r.status, 200) << r.body;
    json page = r.Json();
    ++pages;
    for (const json& t : page["items"]) seen.push_back(t["id"]);
    if (page["cursor"].is_null()) break;
    cursor = page["cursor"];
    ASSERT_LT(pages, 10);
  }
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(seen, std::vector<std::string>(ids.rbegin(), ids.rend()));

  HttpResponse all = emu().ApiGet("/threads");
  EXPECT_EQ(all.Json()["items"].size(), 5u);
  EXPECT_TRUE(all.Json()["cursor"].is_null());

  EXPECT_EQ(emu().ApiGet("/threads?limit=0").status, 422);
  HttpResponse bad_limit = emu().ApiGet("/threads?limit=abc");
  EXPECT_EQ(bad_limit.status, 422);
  EXPECT_EQ(bad_limit.Json()["detail"][0]["loc"], json({"query", "limit"}));
  HttpResponse bad_cursor = emu().ApiGet("/threads?cursor=garbage");
  EXPECT_EQ(bad_cursor.status, 422);
  EXPECT_EQ(bad_cursor.Json()["detail"][0]["loc"], json({"query", "cursor"}));
}

TEST_F(EmulatorApiTest, FiltersThreadsByUser) {
  const std::string alice = "aaaaaaaa-0000-4000-8000-000000000001";
  emu().ApiPost("/threads", json{{"assistant_id", kHr}, {"user_id", alice}}.dump());
  NewThread();
  HttpResponse r = emu().ApiGet("/threads?user_id=" + alice);
  ASSERT_EQ(r.status, 200);
  ASSERT_EQ(r.Json()["items"].size(), 1u);
  EXPECT_EQ(r.Json()["items"][0]["user_id"], alice);
}

TEST_F(EmulatorApiTest, SoftDeletedThreadsAreHiddenAndDeactivated) {
  std::string keep = NewThread();
  std::string gone = NewThread();
  AddMessage(gone, {{"role", "user"}, {"content", "hi"}});
  std::string message_id = emu().ApiGet("/threads/" + gone + "/messages").Json()["items"][0]["id"];

  HttpResponse del = emu().ApiDelete("/threads/" + gone);
  EXPECT_EQ(del.status, 204);
  EXPECT_EQ(del.body, "");

  json listed = emu().ApiGet("/threads").Json();
  ASSERT_EQ(listed["items"].size(), 1u);
  EXPECT_EQ(listed["items"][0]["id"], keep);
  EXPECT_EQ(emu().ApiGet("/threads?include_deleted=true").Json()["items"].size(), 2u);
  EXPECT_EQ(emu().ApiGet("/threads/" + gone).status, 200);

  const json deactivated = {{"error_code", "thread_is_deactivated"},
                            {"detail", "Thread is deactivated"}};
  struct Op {
    const char* method;
    std::string path;
  };
  for (const Op& op :
       {Op{"GET", "/threads/" + gone + "/messages"}, Op{"POST", "/threads/" + gone + "/messages"},
        Op{"DELETE", "/threads/" + gone + "/messages/" + message_id},
        Op{"POST", "/threads/" + gone + "/run"}, Op{"POST", "/threads/" + gone + "/run/stream"}}) {
    HttpResponse r = std::string(op.method) == "GET" ? emu().ApiGet(op.path)
                     : std::string(op.method) == "DELETE"
                         ? emu().ApiDelete(op.path)
                         : emu().ApiPost(op.path, R"({"role":"user","content":"x"})");
    EXPECT_EQ(r.status, 400) << op.method << " " << op.path << " " << r.body;
    EXPECT_EQ(r.Json(), deactivated) << op.path;
  }
  EXPECT_EQ(emu().ApiDelete(absl::StrCat("/threads/", kUnknownId)).status, 404);
}

TEST_F(EmulatorApiTest, MessagesAreListedNewestFirstWithPagingAndDeleted) {
  std::string thread = NewThread();
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    json m = AddMessage(thread, {{"role", "user"}, {"content", absl::StrCat("q", i)}});
    EXPECT_EQ(m["role"], "user");
    EXPECT_EQ(m["thread_id"], thread);
    EXPECT_TRUE(IsIsoMicros(m["created_at"]));
    ids.push_back(m["id"]);
  }
  json first = emu().ApiGet("/threads/" + thread + "/messages?limit=2").Json();
  ASSERT_EQ(first["items"].size(), 2u);
  EXPECT_EQ(first["items"][0]["id"], ids[2]);
  EXPECT_EQ(first["items"][1]["id"], ids[1]);
  ASSERT_TRUE(first["cursor"].is_string());
  json second = emu()
                    .ApiGet("/threads/" + thread +
                            "/messages?limit=2&cursor=" + first["cursor"].get<std::string>())
                    .Json();
  ASSERT_EQ(second["items"].size(), 1u);
  EXPECT_EQ(second["items"][0]["id"], ids[0]);
  EXPECT_TRUE(second["cursor"].is_null());

  HttpResponse del = emu().ApiDelete("/threads/" + thread + "/messages/" + ids[1]);
  EXPECT_EQ(del.status, 204);
  HttpResponse again = emu().ApiDelete("/threads/" + thread + "/messages/" + ids[1]);
  EXPECT_EQ(again.status, 404);
  EXPECT_EQ(again.Json(),
            json({{"error_code", "message_not_found"}, {"detail", "Message not found"}}));
  EXPECT_EQ(emu().ApiGet("/threads/" + thread + "/messages").Json()["items"].size(), 2u);
  EXPECT_EQ(emu().ApiDelete("/threads/" + thread + "/messages/xyz").status, 422);
  EXPECT_EQ(emu().ApiGet(absl::StrCat("/threads/", kUnknownId, "/messages")).status, 404);
}

TEST_F(EmulatorApiTest, CreateMessageValidatesBodyContentAndToolPairing) {
  std::string thread = NewThread();
  json empty = AddMessage(thread, {{"role", "user"}, {"content", "   "}}, 422);
  EXPECT_EQ(empty, json({{"error_code", "message_content_empty"},
                         {"detail", "Message content cannot be empty."}}));
  json bad_role = AddMessage(thread, {{"role", "robot"}, {"content", "x"}}, 422);
  EXPECT_EQ(bad_role["error_code"], "validation_error");
  EXPECT_EQ(bad_role["detail"][0]["loc"], json({"body", "role"}));
  json no_content = AddMessage(thread, {{"role", "user"}}, 422);
  EXPECT_EQ(no_content["detail"][0]["loc"], json({"body", "content"}));
  json orphan =
      AddMessage(thread, {{"role", "tool"}, {"tool_call_id", "c1"}, {"content", "r"}}, 422);
  EXPECT_EQ(orphan["error_code"], "tool_message_has_no_matching_tool_call");

  AddMessage(thread, {{"role", "user"}, {"content", "weather?"}});
  json call = AddMessage(thread, {{"role", "assistant"},
                                  {"content", ""},
                                  {"tool_calls",
                                   {{{"id", "c1"},
                                     {"type", "function"},
                                     {"function", {{"name", "w"}, {"arguments", "{}"}}}}}}});
  EXPECT_EQ(call["tool_calls"][0]["id"], "c1");
  json tool = AddMessage(thread, {{"role", "tool"}, {"tool_call_id", "c1"}, {"content", "sunny"}});
  EXPECT_EQ(tool["tool_call_id"], "c1");
  HttpResponse run = emu().ApiPost("/threads/" + thread + "/run", "{}");
  EXPECT_EQ(run.status, 200) << run.body;
}

TEST_F(EmulatorApiTest, RunAnswersQuotingTheQuestionAndStoresIt) {
  std::string thread = NewThread();
  AddMessage(thread, {{"role", "user"}, {"content", "Wie viel Urlaub?"}});
  HttpResponse r = emu().ApiPost("/threads/" + thread + "/run", "");
  ASSERT_EQ(r.status, 200) << r.body;
  json answer = r.Json();
  EXPECT_EQ(answer["role"], "assistant");
  EXPECT_EQ(answer["thread_id"], thread);
  EXPECT_EQ(answer["content"], ExpectedAnswer("Wie viel Urlaub?", "Haufe Copilot HR"));
  EXPECT_EQ(answer["meta_data"]["legal_advice"], false);
  ASSERT_EQ(answer["sources"].size(), 1u);
  EXPECT_TRUE(answer["sources"][0]["meta_data"].contains("document_title"));
  EXPECT_TRUE(IsUuidJson(answer["id"]));
  json listed = emu().ApiGet("/threads/" + thread + "/messages").Json();
  ASSERT_EQ(listed["items"].size(), 2u);
  EXPECT_EQ(listed["items"][0], answer);

  // The stack now ends with the answer.
  HttpResponse again = emu().ApiPost("/threads/" + thread + "/run", "{}");
  EXPECT_EQ(again.status, 422);
  EXPECT_EQ(again.Json()["error_code"], "incorrect_stack_ending");
}

TEST_F(EmulatorApiTest, RunChecksLicenceMetadataAndStack) {
  std::string empty_thread = NewThread(kHr);
  HttpResponse empty = emu().ApiPost("/threads/" + empty_thread + "/run", "{}");
  EXPECT_EQ(empty.status, 422);
  EXPECT_EQ(empty.Json()["error_code"], "message_stack_empty");

  std::string tax = NewThread(kTax);
  AddMessage(tax, {{"role", "user"}, {"content", "Pendlerpauschale?"}});
  const json missing = {{"error_code", "request_metadata_missing_or_incomplete"},
                        {"detail", "Request lacks required request metadata"}};
  for (const char* body : {"{}", R"({"meta_data":{}})", R"({"meta_data":{"user_data":{}}})",
                           R"({"meta_data":{"user_data":{"licence":null}}})"}) {
    HttpResponse r = emu().ApiPost("/threads/" + tax + "/run", body);
    EXPECT_EQ(r.status, 422) << body;
    EXPECT_EQ(r.Json(), missing) << body;
  }
  HttpResponse stream = emu().ApiPost("/threads/" + tax + "/run/stream", "{}");
  EXPECT_EQ(stream.status, 422);
  EXPECT_EQ(stream.Json(), missing);
  HttpResponse ok = emu().ApiPost("/threads/" + tax + "/run",
                                  R"({"meta_data":{"user_data":{"licence":"PI12345"}}})");
  ASSERT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(ok.Json()["content"], ExpectedAnswer("Pendlerpauschale?", "Haufe Copilot Tax"));

  HttpResponse bad_meta = emu().ApiPost("/threads/" + tax + "/run", R"({"meta_data":5})");
  EXPECT_EQ(bad_meta.status, 422);
  EXPECT_EQ(bad_meta.Json()["detail"][0]["loc"], json({"body", "meta_data"}));
  EXPECT_EQ(emu().ApiPost(absl::StrCat("/threads/", kUnknownId, "/run"), "{}").status, 404);
  EXPECT_EQ(emu().ApiPost("/threads/x/run", "{}").status, 422);
}

TEST_F(EmulatorApiTest, RunStreamSendsWordChunksThenSources) {
  std::string thread = NewThread();
  AddMessage(thread, {{"role", "user"}, {"content", "Was gilt?"}});
  HttpResponse r = emu().ApiPost("/threads/" + thread + "/run/stream", "{}");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(r.ok()) << r.curl_error;
  EXPECT_EQ(r.Header("content-type"), "application/x-ndjson");
  EXPECT_EQ(r.Header("transfer-encoding"), "chunked");
  ASSERT_FALSE(r.body.empty());
  EXPECT_EQ(r.body.back(), '\n');
  std::vector<json> lines = NdjsonLines(r.body);
  const std::string expected = ExpectedAnswer("Was gilt?", "Haufe Copilot HR");
  std::vector<std::string> words = absl::StrSplit(expected, ' ');
  ASSERT_EQ(lines.size(), words.size() + 1);  // one line per word, then the sources line
  std::string text;
  for (size_t i = 0; i < lines.size(); ++i) {
    const json& line = lines[i];
    ASSERT_FALSE(line.is_discarded());
    EXPECT_EQ(line["message_id"], lines[0]["message_id"]);
    EXPECT_EQ(line["thread_id"], thread);
    EXPECT_TRUE(IsIsoMicros(line["created_at"]));
    EXPECT_EQ(line["delta"]["role"], "assistant");
    text += line["delta"]["content"].get<std::string>();
    if (i + 1 < lines.size()) {
      EXPECT_TRUE(line["delta"]["sources"].empty());
    }
  }
  EXPECT_EQ(text, expected);
  EXPECT_EQ(lines.back()["delta"]["content"], "");
  EXPECT_EQ(lines.back()["delta"]["sources"].size(), 1u);

  json listed = emu().ApiGet("/threads/" + thread + "/messages").Json();
  ASSERT_EQ(listed["items"].size(), 2u);
  EXPECT_EQ(listed["items"][0]["id"], lines[0]["message_id"]);
  EXPECT_EQ(listed["items"][0]["content"], expected);
}

TEST_F(EmulatorApiTest, LegacyAssistantDoesNotStream) {
  std::string thread = NewThread(kLegacy);
  AddMessage(thread, {{"role", "user"}, {"content", "q"}});
  HttpResponse run_stream = emu().ApiPost("/threads/" + thread + "/run/stream", "{}");
  EXPECT_EQ(run_stream.status, 422);
  EXPECT_EQ(run_stream.Json()["error_code"], "engine_does_not_support_streaming");
  HttpResponse chat_stream = emu().ApiPost(
      "/chat/completions/stream", ChatBody(kLegacy, {{{"role", "user"}, {"content", "q"}}}).dump());
  EXPECT_EQ(chat_stream.status, 422);
  EXPECT_EQ(chat_stream.Json()["error_code"], "engine_does_not_support_streaming");
  EXPECT_EQ(emu().ApiPost("/threads/" + thread + "/run", "{}").status, 200);
}

TEST_F(EmulatorApiTest, ChatCompletionsAnswerAndKeepAThread) {
  json messages = {{{"role", "system"}, {"content", "be brief"}},
                   {{"role", "user"}, {"content", "Kündigungsfrist?"}}};
  HttpResponse r = emu().ApiPost("/chat/completions", ChatBody(kHr, messages).dump());
  ASSERT_EQ(r.status, 200) << r.body;
  json answer = r.Json();
  EXPECT_EQ(answer["content"], ExpectedAnswer("Kündigungsfrist?", "Haufe Copilot HR"));
  std::string thread = answer["thread_id"];
  EXPECT_TRUE(IsUuidJson(answer["thread_id"]));
  json stored = emu().ApiGet("/threads/" + thread + "/messages").Json();
  ASSERT_EQ(stored["items"].size(), 3u);
  EXPECT_EQ(stored["items"][0]["id"], answer["id"]);
  // Threads made by chat completions refuse manual messages.
  json refused = AddMessage(thread, {{"role", "user"}, {"content", "more"}}, 400);
  EXPECT_EQ(refused["error_code"], "bad_request");
  // ...but continue through ?thread_id=.
  HttpResponse next =
      emu().ApiPost("/chat/completions?thread_id=" + thread,
                    ChatBody(kHr, {{{"role", "user"}, {"content", "und?"}}}).dump());
  ASSERT_EQ(next.status, 200) << next.body;
  EXPECT_EQ(next.Json()["thread_id"], thread);
  EXPECT_EQ(emu()
                .ApiPost(absl::StrCat("/chat/completions?thread_id=", kUnknownId),
                         ChatBody(kHr, {{{"role", "user"}, {"content", "q"}}}).dump())
                .status,
            404);
}

TEST_F(EmulatorApiTest, ChatCompletionsValidation) {
  HttpResponse no_assistant =
      emu().ApiPost("/chat/completions", R"({"messages":[{"role":"user","content":"q"}]})");
  ASSERT_EQ(no_assistant.status, 422);
  EXPECT_EQ(no_assistant.Json(),
            json::parse(R"({"error_code":"validation_error","detail":[{"loc":["body",
              "assistant_id"],"message":"Field required","type":"missing"}]})"));
  HttpResponse no_messages = emu().ApiPost("/chat/completions", json{{"assistant_id", kHr}}.dump());
  EXPECT_EQ(no_messages.status, 422);
  EXPECT_EQ(no_messages.Json()["detail"][0]["loc"], json({"body", "messages"}));
  HttpResponse bad_item =
      emu().ApiPost("/chat/completions",
                    ChatBody(kHr, {{{"role", "user"}}, {{"role", "x"}, {"content", "y"}}}).dump());
  ASSERT_EQ(bad_item.status, 422);
  ASSERT_EQ(bad_item.Json()["detail"].size(), 2u);
  EXPECT_EQ(bad_item.Json()["detail"][0]["loc"], json({"body", "messages", 0, "content"}));
  EXPECT_EQ(bad_item.Json()["detail"][1]["loc"], json({"body", "messages", 1, "role"}));
  HttpResponse unknown = emu().ApiPost(
      "/chat/completions", ChatBody(kUnknownId, {{{"role", "user"}, {"content", "q"}}}).dump());
  EXPECT_EQ(unknown.status, 404);
  EXPECT_EQ(unknown.Json()["error_code"], "assistant_not_found");
  HttpResponse licence = emu().ApiPost(
      "/chat/completions", ChatBody(kTax, {{{"role", "user"}, {"content", "q"}}}).dump());
  EXPECT_EQ(licence.status, 422);
  EXPECT_EQ(licence.Json()["error_code"], "request_metadata_missing_or_incomplete");
}

TEST_F(EmulatorApiTest, ChatCompletionsEnforceEachStackRule) {
  auto user = [](std::string c) { return json{{"role", "user"}, {"content", c}}; };
  auto system = [](std::string c) { return json{{"role", "system"}, {"content", c}}; };
  auto assistant = [](std::string c) { return json{{"role", "assistant"}, {"content", c}}; };
  json calls = {{"role", "assistant"}, {"content", ""}, {"tool_calls", {{{"id", "c1"}}}}};
  auto tool = [](std::string id) {
    return json{{"role", "tool"}, {"tool_call_id", id}, {"content", "r"}};
  };
  json attached = user("with file");
  attached["attachments"] = {{{"file_id", "f1"}}, {{"file_id", "f2"}}};
  json one_file = user("file");
  one_file["attachments"] = {{{"file_id", "f1"}}};
  struct Case {
    json messages;
    const char* code;
  };
  const std::vector<Case> cases = {
      {json::array(), "message_stack_empty"},
      {{user(" ")}, "message_content_empty"},
      {{user(std::string(30001, 'x'))}, "message_content_too_long"},
      {{user("q"), assistant("")}, "assistant_message_content_invalid"},
      {{system("a"), system("b"), user("q")}, "multiple_system_messages"},
      {{user("q"), system("late"), user("q")}, "system_message_not_first"},
      {{assistant("a"), user("q")}, "assistant_message_not_after_user"},
      {{user("q"), tool("zz")}, "tool_message_has_no_matching_tool_call"},
      {{user("q"), calls, user("q")}, "tool_call_without_tool_message"},
      {{attached}, "too_many_attachments"},
      {{one_file, assistant("a"), one_file}, "attachment_not_unique"},
      {{system("only")}, "no_user_message"},
      {{user("q"), assistant("a")}, "incorrect_stack_ending"},
  };
  for (const Case& c : cases) {
    HttpResponse r = emu().ApiPost("/chat/completions", ChatBody(kHr, c.messages).dump());
    EXPECT_EQ(r.status, 422) << c.code;
    EXPECT_EQ(r.Json()["error_code"], c.code) << r.body;
    EXPECT_TRUE(r.Json()["detail"].is_string()) << r.body;
  }
  HttpResponse ok =
      emu().ApiPost("/chat/completions", ChatBody(kHr, {user("q"), calls, tool("c1")}).dump());
  EXPECT_EQ(ok.status, 200) << ok.body;
}

TEST_F(EmulatorApiTest, ChatCompletionsStream) {
  HttpResponse r = emu().ApiPost("/chat/completions/stream",
                                 ChatBody(kHr, {{{"role", "user"}, {"content", "Frage"}}}).dump());
  ASSERT_EQ(r.status, 200) << r.body;
  std::vector<json> lines = NdjsonLines(r.body);
  ASSERT_GE(lines.size(), 3u);
  std::string text;
  for (const json& line : lines) text += line["delta"]["content"].get<std::string>();
  EXPECT_EQ(text, ExpectedAnswer("Frage", "Haufe Copilot HR"));
  std::string thread = lines[0]["thread_id"];
  json stored = emu().ApiGet("/threads/" + thread + "/messages").Json();
  ASSERT_EQ(stored["items"].size(), 2u);
  EXPECT_EQ(stored["items"][0]["id"], lines[0]["message_id"]);
}

TEST_F(EmulatorApiTest, KeepsConnectionsAliveAndHandlesLargeBodies) {
  HttpClient client;
  RequestOptions options{.headers = {{"api-key", emu().api_key()}}};
  HttpResponse first = client.Send("GET", emu().api_url() + "/assistants", "", options);
  ASSERT_EQ(first.status, 200);
  EXPECT_EQ(client.last_new_connections(), 1);
  HttpResponse second = client.Send("GET", emu().api_url() + "/threads", "", options);
  ASSERT_EQ(second.status, 200);
  EXPECT_EQ(client.last_new_connections(), 0);
  // > 1 KiB: curl sends "Expect: 100-continue", which the emulator answers at once.
  std::string question(20000, 'q');
  HttpResponse big =
      client.Send("POST", emu().api_url() + "/chat/completions",
                  ChatBody(kHr, {{{"role", "user"}, {"content", question}}}).dump(), options);
  ASSERT_EQ(big.status, 200) << big.body;
  EXPECT_EQ(big.Json()["content"], ExpectedAnswer(question, "Haufe Copilot HR"));
  EXPECT_LT(big.elapsed, absl::Milliseconds(900));
}

}  // namespace
}  // namespace copilot::emulator
