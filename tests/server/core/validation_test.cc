#include "server/core/validation.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/common/errors.h"

namespace copilot::gateway {
namespace {

namespace v1 = ::copilot::v1;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::Pair;

constexpr char kAssistant[] = "7c0e5d3a-4c1b-4f57-9a51-1f1f3e0a0001";
constexpr char kThread[] = "0b8e5f0e-9a4c-4b7a-8f43-2f6f0e1c2d3e";
constexpr char kUuid[] = "11111111-2222-4333-8444-555555555555";
const ValidationLimits kDefaults;

// The (field, description) pairs of the status's BadRequest, after checking the code/reason.
std::vector<std::pair<std::string, std::string>> Violations(const absl::Status& status) {
  std::vector<std::pair<std::string, std::string>> out;
  if (status.ok()) return out;
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  auto info = GetErrorInfo(status);
  EXPECT_TRUE(info.has_value());
  if (info) {
    EXPECT_EQ(info->reason(), "INVALID_REQUEST");
  }
  auto bad = GetBadRequest(status);
  EXPECT_TRUE(bad.has_value());
  if (!bad) return out;
  for (const auto& v : bad->field_violations()) out.emplace_back(v.field(), v.description());
  return out;
}

std::vector<std::string> Fields(const absl::Status& status) {
  std::vector<std::string> fields;
  for (auto& [field, unused] : Violations(status)) fields.push_back(field);
  return fields;
}

v1::MessageInput Msg(v1::Role role, std::string content) {
  v1::MessageInput m;
  m.set_role(role);
  m.set_content(std::move(content));
  return m;
}

v1::CompleteRequest Completion(std::vector<v1::MessageInput> messages) {
  v1::CompleteRequest r;
  r.set_assistant_id(kAssistant);
  for (auto& m : messages) *r.add_messages() = std::move(m);
  return r;
}

TEST(IsUuidTest, AcceptsCanonicalFormOnly) {
  EXPECT_TRUE(IsUuid(kAssistant));
  EXPECT_TRUE(IsUuid("ABCDEF00-1234-5678-9ABC-DEF012345678"));
  EXPECT_FALSE(IsUuid(""));
  EXPECT_FALSE(IsUuid("7c0e5d3a4c1b4f579a511f1f3e0a0001"));
  EXPECT_FALSE(IsUuid("7c0e5d3a-4c1b-4f57-9a51-1f1f3e0a000g"));
  EXPECT_FALSE(IsUuid("{7c0e5d3a-4c1b-4f57-9a51-1f1f3e0a0001}"));
  EXPECT_FALSE(IsUuid("7c0e5d3a-4c1b-4f57-9a51_1f1f3e0a0001"));
}

TEST(Utf8CodePointsTest, CountsCodePointsAndRejectsInvalid) {
  EXPECT_EQ(Utf8CodePoints(""), 0);
  EXPECT_EQ(Utf8CodePoints("abc"), 3);
  EXPECT_EQ(Utf8CodePoints("Grüße"), 5);
  EXPECT_EQ(Utf8CodePoints("\xF0\x9F\x98\x80"), 1);   // U+1F600
  EXPECT_EQ(Utf8CodePoints("\xE2\x82\xAC"), 1);       // U+20AC
  EXPECT_EQ(Utf8CodePoints("\xC3"), -1);              // truncated
  EXPECT_EQ(Utf8CodePoints("\xC0\xAF"), -1);          // overlong '/'
  EXPECT_EQ(Utf8CodePoints("\xED\xA0\x80"), -1);      // surrogate U+D800
  EXPECT_EQ(Utf8CodePoints("\xF4\x90\x80\x80"), -1);  // above U+10FFFF
  EXPECT_EQ(Utf8CodePoints("\x80"), -1);              // lone continuation
  EXPECT_EQ(Utf8CodePoints("a\xFF"), -1);
}

TEST(ValidationTest, CreateThreadNeedsAssistantUuidAndOptionalUuids) {
  v1::CreateThreadRequest r;
  EXPECT_THAT(Violations(ValidateCreateThread(r, kDefaults)),
              ElementsAre(Pair("assistant_id", "required")));
  r.set_assistant_id("tax");
  r.set_user_id("bob");
  r.set_request_id("retry-1");
  EXPECT_THAT(Fields(ValidateCreateThread(r, kDefaults)),
              ElementsAre("assistant_id", "user_id", "request_id"));
  r.set_assistant_id(kAssistant);
  r.set_user_id(kUuid);
  r.set_request_id(kUuid);
  EXPECT_TRUE(ValidateCreateThread(r, kDefaults).ok());
}

TEST(ValidationTest, ThreadIdMustBeAUuid) {
  v1::GetThreadRequest get;
  EXPECT_THAT(Violations(ValidateGetThread(get)), ElementsAre(Pair("thread_id", "required")));
  // Thread IDs are opaque handles: only presence and size are checked here.
  get.set_thread_id(std::string(kMaxThreadIdBytes + 1, 'x'));
  EXPECT_THAT(Violations(ValidateGetThread(get)),
              ElementsAre(Pair("thread_id", "must be at most 512 bytes")));
  get.set_thread_id("th1_opaque");
  EXPECT_TRUE(ValidateGetThread(get).ok());
  get.set_thread_id(kThread);
  EXPECT_TRUE(ValidateGetThread(get).ok());
  v1::DeleteThreadRequest del;
  EXPECT_THAT(Fields(ValidateDeleteThread(del)), ElementsAre("thread_id"));
  v1::RunRequest run;
  run.set_thread_id(kThread);
  run.set_request_id("x");
  EXPECT_THAT(Fields(ValidateRun(run, kDefaults)), ElementsAre("request_id"));
  v1::StreamRunRequest stream;
  EXPECT_THAT(Fields(ValidateStreamRun(stream, kDefaults)), ElementsAre("thread_id"));
}

TEST(ValidationTest, ErrorMessageNamesTheFirstViolationAndCountsTheRest) {
  v1::CreateThreadRequest r;
  r.set_user_id("x");
  absl::Status status = ValidateCreateThread(r, kDefaults);
  EXPECT_EQ(status.message(), "invalid CreateThreadRequest: assistant_id: required (and 1 more)");
}

TEST(ValidationTest, ListMessagesPageSizeZeroTo100) {
  ValidationLimits limits;
  v1::ListMessagesRequest r;
  r.set_thread_id(kThread);
  for (int ok : {0, 1, 100}) {
    r.set_page_size(ok);
    EXPECT_TRUE(ValidateListMessages(r, limits).ok()) << ok;
  }
  for (int bad : {-1, 101}) {
    r.set_page_size(bad);
    EXPECT_THAT(Fields(ValidateListMessages(r, limits)), ElementsAre("page_size")) << bad;
  }
}

TEST(ValidationTest, AddMessageNeedsAMessage) {
  ValidationLimits limits;
  v1::AddMessageRequest r;
  r.set_thread_id(kThread);
  EXPECT_THAT(Violations(ValidateAddMessage(r, limits)), ElementsAre(Pair("message", "required")));
  *r.mutable_message() = Msg(v1::ROLE_USER, "hi");
  EXPECT_TRUE(ValidateAddMessage(r, limits).ok());
}

TEST(ValidationTest, RoleMustBeSet) {
  ValidationLimits limits;
  v1::AddMessageRequest r;
  r.set_thread_id(kThread);
  *r.mutable_message() = Msg(v1::ROLE_UNSPECIFIED, "hi");
  EXPECT_THAT(Fields(ValidateAddMessage(r, limits)), ElementsAre("message.role"));
  r.mutable_message()->set_role(static_cast<v1::Role>(17));
  EXPECT_THAT(Fields(ValidateAddMessage(r, limits)), ElementsAre("message.role"));
}

TEST(ValidationTest, ContentNotBlankForUserSystemTool) {
  ValidationLimits limits;
  for (v1::Role role : {v1::ROLE_USER, v1::ROLE_SYSTEM, v1::ROLE_TOOL}) {
    v1::AddMessageRequest r;
    r.set_thread_id(kThread);
    *r.mutable_message() = Msg(role, " \t\n");
    r.mutable_message()->set_tool_call_id(role == v1::ROLE_TOOL ? "call_1" : "");
    EXPECT_THAT(Violations(ValidateAddMessage(r, limits)),
                ElementsAre(Pair("message.content", "must not be blank")))
        << role;
  }
}

TEST(ValidationTest, UnicodeWhitespaceIsBlankTooButOtherCharactersAreNot) {
  ValidationLimits limits;
  v1::AddMessageRequest r;
  r.set_thread_id(kThread);
  // NBSP, ideographic space, em space, line separator, NEL, U+001F.
  for (const char* blank :
       {"\xC2\xA0", "\xE3\x80\x80", " \xE2\x80\x83\t", "\xE2\x80\xA8", "\xC2\x85", "\x1F"}) {
    *r.mutable_message() = Msg(v1::ROLE_USER, blank);
    EXPECT_THAT(Violations(ValidateAddMessage(r, limits)),
                ElementsAre(Pair("message.content", "must not be blank")))
        << testing::PrintToString(std::string(blank));
  }
  // Zero-width space is not whitespace; neither is a visible character among spaces.
  for (const char* content : {"\xE2\x80\x8B", "\xC2\xA0x\xC2\xA0", "\xC3\xBC"}) {
    *r.mutable_message() = Msg(v1::ROLE_USER, content);
    EXPECT_TRUE(ValidateAddMessage(r, limits).ok()) << testing::PrintToString(std::string(content));
  }
}

TEST(ValidationTest, ListMessagesPageTokenBounded) {
  ValidationLimits limits;
  v1::ListMessagesRequest r;
  r.set_thread_id(kThread);
  r.set_page_token(std::string(limits.max_page_token_bytes, 'c'));
  EXPECT_TRUE(ValidateListMessages(r, limits).ok());
  r.set_page_token(std::string(limits.max_page_token_bytes + 1, 'c'));
  EXPECT_THAT(Fields(ValidateListMessages(r, limits)), ElementsAre("page_token"));
}

TEST(ValidationTest, ContentAtMost30000CodePoints) {
  ValidationLimits limits;
  v1::AddMessageRequest r;
  r.set_thread_id(kThread);
  std::string content;
  for (int i = 0; i < 30000; ++i) content += "\xC3\xBC";  // 30,000 'ü': 60,000 bytes.
  *r.mutable_message() = Msg(v1::ROLE_USER, content);
  EXPECT_TRUE(ValidateAddMessage(r, limits).ok());
  r.mutable_message()->mutable_content()->append("x");
  EXPECT_THAT(Violations(ValidateAddMessage(r, limits)),
              ElementsAre(Pair("message.content", "must be at most 30000 characters, is 30001")));
}

TEST(ValidationTest, ContentMustBeValidUtf8) {
  ValidationLimits limits;
  v1::CompleteRequest r = Completion(
      {Msg(v1::ROLE_USER, "ok"), Msg(v1::ROLE_ASSISTANT, "fine"), Msg(v1::ROLE_USER, "bad \xC3(")});
  EXPECT_THAT(Violations(ValidateComplete(r, limits)),
              ElementsAre(Pair("messages[2].content", "must be valid UTF-8")));
}

TEST(ValidationTest, AssistantHasContentXorToolCalls) {
  ValidationLimits limits;
  v1::MessageInput neither = Msg(v1::ROLE_ASSISTANT, "");
  v1::MessageInput both = Msg(v1::ROLE_ASSISTANT, "text");
  both.add_tool_calls()->set_id("call_1");
  v1::MessageInput calls_only = Msg(v1::ROLE_ASSISTANT, "");
  calls_only.add_tool_calls()->set_id("call_2");
  v1::MessageInput tool = Msg(v1::ROLE_TOOL, "42");
  tool.set_tool_call_id("call_2");
  v1::CompleteRequest r = Completion({Msg(v1::ROLE_USER, "q"), neither, Msg(v1::ROLE_USER, "q"),
                                      both, Msg(v1::ROLE_USER, "q"), calls_only, tool});
  EXPECT_THAT(Fields(ValidateComplete(r, limits)),
              ElementsAre("messages[1].content", "messages[3].content"));
}

TEST(ValidationTest, ToolMessageNeedsToolCallIdMatchingAnEarlierAssistantCall) {
  ValidationLimits limits;
  v1::MessageInput call = Msg(v1::ROLE_ASSISTANT, "");
  call.add_tool_calls()->set_id("call_1");
  v1::MessageInput answer = Msg(v1::ROLE_TOOL, "42");
  answer.set_tool_call_id("call_1");
  EXPECT_TRUE(ValidateComplete(Completion({Msg(v1::ROLE_USER, "q"), call, answer}), limits).ok());

  v1::MessageInput unmatched = answer;
  unmatched.set_tool_call_id("call_9");
  EXPECT_THAT(
      Violations(ValidateComplete(Completion({Msg(v1::ROLE_USER, "q"), call, unmatched}), limits)),
      ElementsAre(Pair("messages[2].tool_call_id",
                       "must match a tool call of an earlier assistant message")));
  v1::MessageInput early = answer;  // Answers a call that only comes later.
  EXPECT_THAT(
      Fields(ValidateComplete(
          Completion({Msg(v1::ROLE_USER, "q"), early, call, Msg(v1::ROLE_USER, "q")}), limits)),
      ElementsAre("messages[1].tool_call_id"));
  v1::MessageInput missing = Msg(v1::ROLE_TOOL, "42");
  EXPECT_THAT(Violations(ValidateComplete(Completion({Msg(v1::ROLE_USER, "q"), missing}), limits)),
              ElementsAre(Pair("messages[1].tool_call_id", "required on a tool message")));
  v1::MessageInput user_with_id = Msg(v1::ROLE_USER, "q");
  user_with_id.set_tool_call_id("call_1");
  EXPECT_THAT(Fields(ValidateComplete(Completion({user_with_id}), limits)),
              ElementsAre("messages[0].tool_call_id"));
}

TEST(ValidationTest, AddMessageToolNeedsToolCallIdButCannotMatchLocally) {
  ValidationLimits limits;
  v1::AddMessageRequest r;
  r.set_thread_id(kThread);
  *r.mutable_message() = Msg(v1::ROLE_TOOL, "42");
  EXPECT_THAT(Fields(ValidateAddMessage(r, limits)), ElementsAre("message.tool_call_id"));
  r.mutable_message()->set_tool_call_id("call_1");
  EXPECT_TRUE(ValidateAddMessage(r, limits).ok());
}

TEST(ValidationTest, MessagesMustNotBeEmptyOrTooMany) {
  ValidationLimits limits;
  limits.max_messages = 2;
  EXPECT_THAT(Violations(ValidateComplete(Completion({}), limits)),
              ElementsAre(Pair("messages", "at least one message is required")));
  EXPECT_THAT(
      Fields(ValidateComplete(Completion({Msg(v1::ROLE_USER, "a"), Msg(v1::ROLE_ASSISTANT, "b"),
                                          Msg(v1::ROLE_USER, "c")}),
                              limits)),
      ElementsAre("messages"));
}

TEST(ValidationTest, LastMessageMustBeUserOrTool) {
  ValidationLimits limits;
  EXPECT_THAT(
      Violations(ValidateComplete(
          Completion({Msg(v1::ROLE_USER, "q"), Msg(v1::ROLE_ASSISTANT, "a")}), limits)),
      ElementsAre(Pair("messages[1].role", "the last message must be a user or tool message")));
  EXPECT_THAT(Fields(ValidateComplete(Completion({Msg(v1::ROLE_SYSTEM, "be brief")}), limits)),
              ElementsAre("messages[0].role"));
}

TEST(ValidationTest, AtMostOneSystemMessageAndFirst) {
  ValidationLimits limits;
  EXPECT_TRUE(
      ValidateComplete(Completion({Msg(v1::ROLE_SYSTEM, "s"), Msg(v1::ROLE_USER, "q")}), limits)
          .ok());
  EXPECT_THAT(
      Violations(ValidateComplete(Completion({Msg(v1::ROLE_SYSTEM, "s"), Msg(v1::ROLE_SYSTEM, "t"),
                                              Msg(v1::ROLE_USER, "q")}),
                                  limits)),
      ElementsAre(Pair("messages[1].role", "a system message must come first")));
  EXPECT_THAT(
      Fields(ValidateComplete(
          Completion({Msg(v1::ROLE_USER, "q"), Msg(v1::ROLE_SYSTEM, "s"), Msg(v1::ROLE_USER, "q")}),
          limits)),
      ElementsAre("messages[1].role"));
}

TEST(ValidationTest, AttachmentsOnlyOnUserMessagesAtMostOneWithUuids) {
  ValidationLimits limits;
  v1::MessageInput user = Msg(v1::ROLE_USER, "see file");
  user.add_attachments()->set_file_id(kUuid);
  EXPECT_TRUE(ValidateComplete(Completion({user}), limits).ok());

  v1::MessageInput two = user;
  two.add_attachments()->set_file_id(kUuid);
  EXPECT_THAT(Violations(ValidateComplete(Completion({two}), limits)),
              ElementsAre(Pair("messages[0].attachments", "at most one attachment per message")));

  v1::MessageInput bad_ids = Msg(v1::ROLE_USER, "q");
  bad_ids.add_attachments()->set_user_id("bob");
  EXPECT_THAT(Violations(ValidateComplete(Completion({bad_ids}), limits)),
              ElementsAre(Pair("messages[0].attachments[0].file_id", "required"),
                          Pair("messages[0].attachments[0].user_id", "must be a UUID")));

  v1::MessageInput system = Msg(v1::ROLE_SYSTEM, "s");
  system.add_attachments()->set_file_id(kUuid);
  EXPECT_THAT(Fields(ValidateComplete(Completion({system, Msg(v1::ROLE_USER, "q")}), limits)),
              ElementsAre("messages[0].attachments"));
}

TEST(ValidationTest, CompletionIdsAreUuids) {
  ValidationLimits limits;
  v1::CompleteRequest r = Completion({Msg(v1::ROLE_USER, "q")});
  r.set_assistant_id("");
  r.set_user_id("u");
  r.set_thread_id(std::string(kMaxThreadIdBytes + 1, 't'));  // Opaque, but bounded.
  r.set_request_id("r");
  EXPECT_THAT(Fields(ValidateComplete(r, limits)),
              ElementsAre("assistant_id", "user_id", "thread_id", "request_id"));
  v1::StreamCompleteRequest s;
  s.set_assistant_id(kAssistant);
  EXPECT_THAT(Fields(ValidateStreamComplete(s, limits)), ElementsAre("messages"));
  *s.add_messages() = Msg(v1::ROLE_USER, "q");
  EXPECT_TRUE(ValidateStreamComplete(s, limits).ok());
  EXPECT_THAT(Violations(absl::OkStatus()), IsEmpty());
}

// Issue #13: every repeated or free-form field is bounded before any upstream call, and the
// violation names the field.
TEST(ValidationBoundsTest, TooManyToolCallsNamesTheField) {
  v1::AddMessageRequest r;
  r.set_thread_id("th1_x");
  v1::MessageInput* m = r.mutable_message();
  m->set_role(v1::ROLE_ASSISTANT);
  for (int i = 0; i < 100000; ++i) m->add_tool_calls()->set_id(absl::StrCat("call", i));
  EXPECT_THAT(Violations(ValidateAddMessage(r, kDefaults)),
              ElementsAre(Pair("message.tool_calls", "at most 64 tool calls, has 100000")));
  ValidationLimits limits;
  limits.max_tool_calls = 100000;
  EXPECT_TRUE(ValidateAddMessage(r, limits).ok());
}

TEST(ValidationBoundsTest, ToolCallFieldsAreBounded) {
  v1::AddMessageRequest r;
  r.set_thread_id("th1_x");
  v1::MessageInput* m = r.mutable_message();
  m->set_role(v1::ROLE_ASSISTANT);
  v1::ToolCall* call = m->add_tool_calls();
  call->set_id(std::string(257, 'i'));
  call->mutable_function()->set_name(std::string(300, 'n'));
  call->mutable_function()->set_arguments(std::string(64 * 1024 + 1, 'a'));
  EXPECT_THAT(Fields(ValidateAddMessage(r, kDefaults)),
              ElementsAre("message.tool_calls[0].id", "message.tool_calls[0].function.name",
                          "message.tool_calls[0].function.arguments"));
  v1::AddMessageRequest tool;
  tool.set_thread_id("th1_x");
  *tool.mutable_message() = Msg(v1::ROLE_TOOL, "result");
  tool.mutable_message()->set_tool_call_id(std::string(257, 't'));
  EXPECT_THAT(Fields(ValidateAddMessage(tool, kDefaults)), ElementsAre("message.tool_call_id"));
}

google::protobuf::Struct ToolOfBytes(std::size_t bytes) {
  google::protobuf::Struct tool;
  (*tool.mutable_fields())["type"].set_string_value("function");
  (*tool.mutable_fields())["description"].set_string_value(std::string(bytes, 'd'));
  return tool;
}

TEST(ValidationBoundsTest, ToolsAreBoundedInCountBytesAndDepth) {
  v1::RunRequest run;
  run.set_thread_id("th1_x");
  for (int i = 0; i < 65; ++i) *run.add_tools() = ToolOfBytes(10);
  EXPECT_THAT(Violations(ValidateRun(run, kDefaults)),
              ElementsAre(Pair("tools", "at most 64 tools, has 65")));

  run.clear_tools();
  for (int i = 0; i < 5; ++i) *run.add_tools() = ToolOfBytes(60 * 1024);
  EXPECT_THAT(Fields(ValidateRun(run, kDefaults)), ElementsAre("tools"));

  // 21 levels of objects inside one tool.
  google::protobuf::Struct deep;
  google::protobuf::Struct* level = &deep;
  for (int i = 0; i < kMaxToolDepth; ++i) {
    level = (*level->mutable_fields())["nested"].mutable_struct_value();
  }
  (*level->mutable_fields())["leaf"].set_number_value(1);
  v1::StreamRunRequest stream;
  stream.set_thread_id("th1_x");
  *stream.add_tools() = ToolOfBytes(10);
  *stream.add_tools() = deep;
  EXPECT_THAT(Violations(ValidateStreamRun(stream, kDefaults)),
              ElementsAre(Pair("tools[1]", "nested deeper than 20 levels")));

  v1::CompleteRequest complete = Completion({Msg(v1::ROLE_USER, "hi")});
  for (int i = 0; i < 65; ++i) *complete.add_tools() = ToolOfBytes(1);
  EXPECT_THAT(Fields(ValidateComplete(complete, kDefaults)), ElementsAre("tools"));
}

TEST(ValidationBoundsTest, TitleAndBaseUrlAreBounded) {
  v1::CreateThreadRequest r;
  r.set_assistant_id(kAssistant);
  r.set_title(std::string(1001, 't'));
  EXPECT_THAT(Violations(ValidateCreateThread(r, kDefaults)),
              ElementsAre(Pair("title", "must be at most 1000 characters, is 1001")));
  r.set_title(std::string(1000, 't'));
  EXPECT_TRUE(ValidateCreateThread(r, kDefaults).ok());

  v1::AddMessageRequest m;
  m.set_thread_id("th1_x");
  *m.mutable_message() = Msg(v1::ROLE_USER, "see file");
  v1::Attachment* attachment = m.mutable_message()->add_attachments();
  attachment->set_file_id(kUuid);
  attachment->set_base_url(std::string(2049, 'u'));
  EXPECT_THAT(Fields(ValidateAddMessage(m, kDefaults)),
              ElementsAre("message.attachments[0].base_url"));
}

}  // namespace
}  // namespace copilot::gateway
