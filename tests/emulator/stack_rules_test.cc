#include "tests/emulator/stack_rules.h"

#include <optional>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace copilot::emulator {
namespace {

StackMessage User(std::string content) { return {.role = "user", .content = std::move(content)}; }
StackMessage System(std::string content) {
  return {.role = "system", .content = std::move(content)};
}
StackMessage Assistant(std::string content) {
  return {.role = "assistant", .content = std::move(content)};
}
StackMessage AssistantCalls(std::vector<std::string> ids) {
  return {.role = "assistant", .tool_call_ids = std::move(ids)};
}
StackMessage Tool(std::string id, std::string content = "42") {
  return {.role = "tool", .content = std::move(content), .tool_call_id = std::move(id)};
}

std::string CodeOf(const std::vector<StackMessage>& stack) {
  std::optional<StackViolation> v = CheckMessageStack(stack);
  return v ? v->error_code : "ok";
}

TEST(StackRulesTest, AcceptsValidStacks) {
  EXPECT_EQ(CodeOf({User("q")}), "ok");
  EXPECT_EQ(CodeOf({System("be brief"), User("q")}), "ok");
  EXPECT_EQ(CodeOf({User("q"), Assistant("a"), User("q2")}), "ok");
  EXPECT_EQ(CodeOf({User("q"), AssistantCalls({"c1", "c2"}), Tool("c1"), Tool("c2")}), "ok");
  EXPECT_EQ(CodeOf({User("q"), AssistantCalls({"c1"}), Tool("c1"), Assistant("a"), User("more")}),
            "ok");
}

TEST(StackRulesTest, EachRuleHasItsCode) {
  EXPECT_EQ(CodeOf({}), "message_stack_empty");
  EXPECT_EQ(CodeOf({User("  \n\t")}), "message_content_empty");
  EXPECT_EQ(CodeOf({System(""), User("q")}), "message_content_empty");
  EXPECT_EQ(CodeOf({User(std::string(kMaxContentChars + 1, 'x'))}), "message_content_too_long");
  EXPECT_EQ(CodeOf({User(std::string(kMaxContentChars, 'x'))}), "ok");
  EXPECT_EQ(CodeOf({User("bad \xC3\x28 utf8")}), "message_content_invalid_unicode");
  EXPECT_EQ(CodeOf({User("q"), Assistant("")}), "assistant_message_content_invalid");
  StackMessage calls_with_text = AssistantCalls({"c1"});
  calls_with_text.content = "text";
  EXPECT_EQ(CodeOf({User("q"), calls_with_text, Tool("c1")}), "assistant_message_content_invalid");
  EXPECT_EQ(CodeOf({System("a"), System("b"), User("q")}), "multiple_system_messages");
  EXPECT_EQ(CodeOf({User("q"), System("late")}), "system_message_not_first");
  EXPECT_EQ(CodeOf({Assistant("first"), User("q")}), "assistant_message_not_after_user");
  EXPECT_EQ(CodeOf({User("q"), Assistant("a"), Assistant("b"), User("q")}),
            "assistant_message_not_after_user");
  EXPECT_EQ(CodeOf({User("q"), Tool("nope")}), "tool_message_has_no_matching_tool_call");
  EXPECT_EQ(CodeOf({User("q"), AssistantCalls({"c1"}), Tool("c1"), Tool("c1")}),
            "tool_message_has_no_matching_tool_call");
  EXPECT_EQ(CodeOf({User("q"), AssistantCalls({"c1", "c2"}), Tool("c1")}),
            "tool_call_without_tool_message");
  EXPECT_EQ(CodeOf({User("q"), AssistantCalls({"c1"}), User("again")}),
            "tool_call_without_tool_message");
  EXPECT_EQ(CodeOf({System("only")}), "no_user_message");
  EXPECT_EQ(CodeOf({User("q"), Assistant("a")}), "incorrect_stack_ending");
  StackMessage two_files = User("q");
  two_files.attachment_keys = {"f1||", "f2||"};
  EXPECT_EQ(CodeOf({two_files}), "too_many_attachments");
  StackMessage file = User("q");
  file.attachment_keys = {"f1|u|b"};
  EXPECT_EQ(CodeOf({file, Assistant("a"), file}), "attachment_not_unique");
}

TEST(StackRulesTest, ReportsTheOffendingIndexAndDetail) {
  std::optional<StackViolation> v = CheckMessageStack({User("q"), Assistant("a"), User(" ")});
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(v->error_code, "message_content_empty");
  EXPECT_EQ(v->detail, "Message content cannot be empty.");
  EXPECT_EQ(v->index, 2u);
}

TEST(StackRulesTest, NewThreadMessageChecksContentAndToolPairing) {
  std::vector<StackMessage> earlier = {User("q"), AssistantCalls({"c1"})};
  EXPECT_FALSE(CheckNewThreadMessage(earlier, Tool("c1")).has_value());
  EXPECT_EQ(CheckNewThreadMessage(earlier, Tool("c9"))->error_code,
            "tool_message_has_no_matching_tool_call");
  EXPECT_EQ(CheckNewThreadMessage(earlier, User(""))->error_code, "message_content_empty");
  // Ordering rules wait for the run.
  EXPECT_FALSE(CheckNewThreadMessage({}, Assistant("a")).has_value());
}

TEST(Utf8Test, ValidatesEncodings) {
  EXPECT_TRUE(IsValidUtf8("plain"));
  EXPECT_TRUE(
      IsValidUtf8("Gr\xC3\xBC\xC3\x9F"
                  "e \xE2\x82\xAC \xF0\x9F\x98\x80"));
  EXPECT_FALSE(IsValidUtf8("\xC0\xAF"));          // overlong
  EXPECT_FALSE(IsValidUtf8("\xED\xA0\x80"));      // surrogate
  EXPECT_FALSE(IsValidUtf8("\xF4\x90\x80\x80"));  // > U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\xE2\x82"));          // truncated
  EXPECT_FALSE(IsValidUtf8("\xFF"));
}

}  // namespace
}  // namespace copilot::emulator
