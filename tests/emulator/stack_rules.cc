#include "tests/emulator/stack_rules.h"

#include <cstdint>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace copilot::emulator {
namespace {

bool IsBlank(absl::string_view text) { return absl::StripAsciiWhitespace(text).empty(); }

// Counts code points; `text` must be valid UTF-8.
size_t CodePoints(absl::string_view text) {
  size_t n = 0;
  for (char c : text) {
    if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) ++n;
  }
  return n;
}

StackViolation Violation(std::string code, std::string detail, size_t index) {
  return StackViolation{std::move(code), std::move(detail), index};
}

// Rules that look at one message alone.
std::optional<StackViolation> CheckContent(const StackMessage& m, size_t i) {
  if (!IsValidUtf8(m.content)) {
    return Violation("message_content_invalid_unicode", "Message content must be valid UTF-8.", i);
  }
  if (CodePoints(m.content) > kMaxContentChars) {
    return Violation("message_content_too_long",
                     absl::StrCat("Message content exceeds ", kMaxContentChars, " characters."), i);
  }
  if (m.role == "assistant") {
    bool has_calls = !m.tool_call_ids.empty();
    if (has_calls && !m.content.empty()) {
      return Violation("assistant_message_content_invalid",
                       "An assistant message with tool_calls must have empty content.", i);
    }
    if (!has_calls && IsBlank(m.content)) {
      return Violation("assistant_message_content_invalid",
                       "An assistant message without tool_calls must have content.", i);
    }
  } else if (IsBlank(m.content)) {
    return Violation("message_content_empty", "Message content cannot be empty.", i);
  }
  if (m.attachment_keys.size() > 1) {
    return Violation("too_many_attachments", "A message can carry at most one attachment.", i);
  }
  return std::nullopt;
}

}  // namespace

bool IsValidUtf8(absl::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
    unsigned char c = byte(i);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > text.size()) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((byte(i + k) & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (byte(i + k) & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += len;
  }
  return true;
}

std::optional<StackViolation> CheckMessageStack(const std::vector<StackMessage>& stack) {
  if (stack.empty()) {
    return Violation("message_stack_empty", "The message stack must contain at least one message.",
                     0);
  }
  for (size_t i = 0; i < stack.size(); ++i) {
    if (auto v = CheckContent(stack[i], i)) return v;
  }
  absl::flat_hash_set<std::string> attachments;
  absl::flat_hash_set<std::string> open_calls;  // assistant tool calls not yet answered
  int systems = 0;
  bool any_user = false;
  for (size_t i = 0; i < stack.size(); ++i) {
    const StackMessage& m = stack[i];
    // Tool calls of an assistant message must be answered before any other message role.
    if (!open_calls.empty() && m.role != "tool") {
      return Violation("tool_call_without_tool_message",
                       "Every tool call of an assistant message must be answered by a tool "
                       "message before the next message.",
                       i);
    }
    if (m.role == "system") {
      ++systems;
      if (systems > 1) {
        return Violation("multiple_system_messages", "Only one system message is allowed.", i);
      }
      if (i != 0) {
        return Violation("system_message_not_first",
                         "The system message must be the first message.", i);
      }
    } else if (m.role == "user") {
      any_user = true;
    } else if (m.role == "assistant") {
      // Directly after a user message; after a tool message too, so tool round trips
      // (user -> assistant[tool_calls] -> tool -> assistant) stay valid (haufe-api.md 12.4).
      if (i == 0 || (stack[i - 1].role != "user" && stack[i - 1].role != "tool")) {
        return Violation("assistant_message_not_after_user",
                         "An assistant message must directly follow a user message.", i);
      }
      for (const std::string& id : m.tool_call_ids) open_calls.insert(id);
    } else if (m.role == "tool") {
      if (open_calls.erase(m.tool_call_id) == 0) {
        return Violation("tool_message_has_no_matching_tool_call",
                         "Tool message does not match any tool call of a preceding assistant "
                         "message.",
                         i);
      }
    }
    for (const std::string& key : m.attachment_keys) {
      if (!attachments.insert(key).second) {
        return Violation("attachment_not_unique", "A thread can contain only a single attachment.",
                         i);
      }
    }
  }
  size_t last = stack.size() - 1;
  if (!open_calls.empty()) {
    return Violation("tool_call_without_tool_message",
                     "Every tool call of an assistant message must be answered by a tool message.",
                     last);
  }
  if (!any_user) {
    return Violation("no_user_message", "The message stack must contain a user message.", last);
  }
  if (stack[last].role != "user" && stack[last].role != "tool") {
    return Violation("incorrect_stack_ending",
                     "The last message of the stack must have the role user or tool.", last);
  }
  return std::nullopt;
}

std::optional<StackViolation> CheckNewThreadMessage(const std::vector<StackMessage>& earlier,
                                                    const StackMessage& message) {
  if (auto v = CheckContent(message, earlier.size())) return v;
  if (message.role == "tool") {
    for (auto it = earlier.rbegin(); it != earlier.rend(); ++it) {
      if (it->role != "assistant") continue;
      for (const std::string& id : it->tool_call_ids) {
        if (id == message.tool_call_id) return std::nullopt;
      }
    }
    return Violation("tool_message_has_no_matching_tool_call",
                     "Tool message does not match any tool call of a preceding assistant message.",
                     earlier.size());
  }
  return std::nullopt;
}

}  // namespace copilot::emulator
