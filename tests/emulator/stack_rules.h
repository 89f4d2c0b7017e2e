// The message-stack rules of haufe-api.md section 7, applied to the stack of a /run (the thread's
// messages) or of a /chat/completions request.
#ifndef COPILOT_TESTS_EMULATOR_STACK_RULES_H_
#define COPILOT_TESTS_EMULATOR_STACK_RULES_H_

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace copilot::emulator {

// The parts of a message the rules look at.
struct StackMessage {
  std::string role = {};  // user | system | tool | assistant
  std::string content = {};
  std::vector<std::string> tool_call_ids = {};  // ids of an assistant message's tool_calls
  std::string tool_call_id = {};                // a tool message's tool_call_id
  // One key per attachment, e.g. file_id|user_id|base_url, for the uniqueness rule.
  std::vector<std::string> attachment_keys = {};
};

// A broken rule: all answer HTTP 422 with this error_code and detail.
struct StackViolation {
  std::string error_code;
  std::string detail;
  size_t index = 0;  // the offending message (the last one for whole-stack rules)
};

inline constexpr size_t kMaxContentChars = 30000;

// Checks `stack` in order and returns the first violation, or nullopt when it may be run.
// Rules and codes (docs/emulator.md, "Message-stack rules"):
//   message_stack_empty, message_content_empty, message_content_too_long,
//   message_content_invalid_unicode, assistant_message_content_invalid,
//   multiple_system_messages, system_message_not_first, assistant_message_not_after_user,
//   tool_message_has_no_matching_tool_call, tool_call_without_tool_message,
//   too_many_attachments, attachment_not_unique, no_user_message, incorrect_stack_ending.
std::optional<StackViolation> CheckMessageStack(const std::vector<StackMessage>& stack);

// The per-message subset checked when one message is added to a thread (POST .../messages):
// content rules, attachments per message, and tool pairing against `earlier` messages.
std::optional<StackViolation> CheckNewThreadMessage(const std::vector<StackMessage>& earlier,
                                                    const StackMessage& message);

// True when `text` is well-formed UTF-8 (no overlongs, surrogates or code points > U+10FFFF).
bool IsValidUtf8(absl::string_view text);

}  // namespace copilot::emulator

#endif  // COPILOT_TESTS_EMULATOR_STACK_RULES_H_
