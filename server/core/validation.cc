#include "server/core/validation.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "server/common/errors.h"

namespace copilot::gateway {
namespace {

using copilot::v1::MessageInput;
using copilot::v1::Role;

// Collects field violations; Finish() turns them into one status. Not thread-safe: one per
// validation, on the calling thread.
class Violations {
 public:
  explicit Violations(absl::string_view request_name) : request_name_(request_name) {}

  void Add(std::string field, std::string description) {
    items_.emplace_back(std::move(field), std::move(description));
  }

  absl::Status Finish() && {
    if (items_.empty()) return absl::OkStatus();
    std::string message = absl::StrCat("invalid ", request_name_, ": ", items_.front().first, ": ",
                                       items_.front().second);
    if (items_.size() > 1) absl::StrAppend(&message, " (and ", items_.size() - 1, " more)");
    absl::Status status =
        MakeError(absl::StatusCode::kInvalidArgument, message, kInvalidRequestReason);
    for (const auto& [field, description] : items_) AddFieldViolation(status, field, description);
    return status;
  }

 private:
  absl::string_view request_name_;
  std::vector<std::pair<std::string, std::string>> items_;
};

// The code point starting at text[i] (i < text.size()), advancing i past it; -1 when the bytes
// there are not valid UTF-8 (overlong forms, surrogates and values above U+10FFFF included).
int32_t NextCodePoint(absl::string_view text, std::size_t& i) {
  const unsigned char c = static_cast<unsigned char>(text[i]);
  int extra = 0;
  uint32_t code = 0;
  uint32_t min = 0;
  if (c < 0x80) {
    ++i;
    return c;
  } else if ((c & 0xE0) == 0xC0) {
    extra = 1;
    code = c & 0x1F;
    min = 0x80;
  } else if ((c & 0xF0) == 0xE0) {
    extra = 2;
    code = c & 0x0F;
    min = 0x800;
  } else if ((c & 0xF8) == 0xF0) {
    extra = 3;
    code = c & 0x07;
    min = 0x10000;
  } else {
    return -1;
  }
  if (i + static_cast<std::size_t>(extra) >= text.size()) return -1;
  for (int k = 1; k <= extra; ++k) {
    const unsigned char next = static_cast<unsigned char>(text[i + k]);
    if ((next & 0xC0) != 0x80) return -1;
    code = (code << 6) | (next & 0x3F);
  }
  if (code < min || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) return -1;
  i += extra + 1;
  return static_cast<int32_t>(code);
}

// Whitespace as Python's str.isspace() sees it (the upstream strips content that way): Unicode
// White_Space plus the ASCII separators U+001C..U+001F.
bool IsSpace(int32_t code) {
  return (code >= 0x09 && code <= 0x0D) || (code >= 0x1C && code <= 0x20) || code == 0x85 ||
         code == 0xA0 || code == 0x1680 || (code >= 0x2000 && code <= 0x200A) || code == 0x2028 ||
         code == 0x2029 || code == 0x202F || code == 0x205F || code == 0x3000;
}

// Empty or only whitespace; invalid UTF-8 is not blank (it is reported as invalid instead).
bool IsBlank(absl::string_view text) {
  for (std::size_t i = 0; i < text.size();) {
    if (!IsSpace(NextCodePoint(text, i))) return false;
  }
  return true;
}

void CheckRequiredUuid(Violations& v, absl::string_view field, absl::string_view value) {
  if (value.empty()) {
    v.Add(std::string(field), "required");
  } else if (!IsUuid(value)) {
    v.Add(std::string(field), "must be a UUID");
  }
}

void CheckOptionalUuid(Violations& v, absl::string_view field, absl::string_view value) {
  if (!value.empty() && !IsUuid(value)) v.Add(std::string(field), "must be a UUID");
}

// The thread ID callers pass back: an opaque handle (ThreadHandles decides whether it names one
// of the caller's threads: NOT_FOUND otherwise). Only presence and size are checked here.
void CheckThreadId(Violations& v, absl::string_view field, absl::string_view value) {
  if (value.empty()) {
    v.Add(std::string(field), "required");
  } else if (value.size() > kMaxThreadIdBytes) {
    v.Add(std::string(field), absl::StrCat("must be at most ", kMaxThreadIdBytes, " bytes"));
  }
}

// Nesting depth of a Struct value: 0 for scalars, 1 for a flat object or list.
int Depth(const google::protobuf::Value& value) {
  int deepest = 0;
  if (value.has_struct_value()) {
    for (const auto& [key, field] : value.struct_value().fields()) {
      deepest = std::max(deepest, Depth(field));
    }
    return deepest + 1;
  }
  if (value.has_list_value()) {
    for (const auto& item : value.list_value().values()) deepest = std::max(deepest, Depth(item));
    return deepest + 1;
  }
  return 0;
}

int Depth(const google::protobuf::Struct& object) {
  int deepest = 0;
  for (const auto& [key, field] : object.fields()) deepest = std::max(deepest, Depth(field));
  return deepest + 1;
}

// Bounds on the free-form tool definitions of Run, StreamRun, Complete and StreamComplete.
void CheckTools(Violations& v,
                const google::protobuf::RepeatedPtrField<google::protobuf::Struct>& tools,
                const ValidationLimits& limits) {
  if (tools.size() > limits.max_tools) {
    v.Add("tools", absl::StrCat("at most ", limits.max_tools, " tools, has ", tools.size()));
    return;
  }
  std::size_t bytes = 0;
  for (int i = 0; i < tools.size(); ++i) {
    bytes += tools[i].ByteSizeLong();
    if (Depth(tools[i]) > kMaxToolDepth) {
      v.Add(absl::StrCat("tools[", i, "]"),
            absl::StrCat("nested deeper than ", kMaxToolDepth, " levels"));
    }
  }
  if (bytes > limits.max_tools_bytes) {
    v.Add("tools",
          absl::StrCat("at most ", limits.max_tools_bytes, " bytes together, has ", bytes));
  }
}

void CheckMaxBytes(Violations& v, const std::string& field, absl::string_view value,
                   std::size_t max) {
  if (value.size() > max) v.Add(field, absl::StrCat("must be at most ", max, " bytes"));
}

// Bounds on an assistant message's tool calls (the other rules are in CheckMessage).
void CheckToolCalls(Violations& v, const std::string& path, const MessageInput& message,
                    const ValidationLimits& limits) {
  if (message.tool_calls_size() > limits.max_tool_calls) {
    v.Add(absl::StrCat(path, ".tool_calls"),
          absl::StrCat("at most ", limits.max_tool_calls, " tool calls, has ",
                       message.tool_calls_size()));
    return;
  }
  for (int i = 0; i < message.tool_calls_size(); ++i) {
    const auto& call = message.tool_calls(i);
    const std::string call_path = absl::StrCat(path, ".tool_calls[", i, "]");
    CheckMaxBytes(v, absl::StrCat(call_path, ".id"), call.id(), kMaxToolCallFieldBytes);
    CheckMaxBytes(v, absl::StrCat(call_path, ".type"), call.type(), kMaxToolCallFieldBytes);
    CheckMaxBytes(v, absl::StrCat(call_path, ".function.name"), call.function().name(),
                  kMaxToolCallFieldBytes);
    CheckMaxBytes(v, absl::StrCat(call_path, ".function.arguments"), call.function().arguments(),
                  limits.max_tool_arguments_bytes);
  }
}

bool IsKnownRole(Role role) {
  return role == copilot::v1::ROLE_USER || role == copilot::v1::ROLE_ASSISTANT ||
         role == copilot::v1::ROLE_SYSTEM || role == copilot::v1::ROLE_TOOL;
}

// Rules about one message on its own; `path` is its field path ("message", "messages[2]").
void CheckMessage(Violations& v, const std::string& path, const MessageInput& message,
                  const ValidationLimits& limits) {
  const Role role = message.role();
  if (!IsKnownRole(role)) {
    v.Add(absl::StrCat(path, ".role"), "must be set to user, assistant, system or tool");
    return;  // The other rules depend on the role.
  }
  const std::string content_path = absl::StrCat(path, ".content");
  const std::ptrdiff_t chars = Utf8CodePoints(message.content());
  if (chars < 0) {
    v.Add(content_path, "must be valid UTF-8");
  } else if (chars > limits.max_content_chars) {
    v.Add(content_path,
          absl::StrCat("must be at most ", limits.max_content_chars, " characters, is ", chars));
  }
  const bool blank = IsBlank(message.content());
  if (role == copilot::v1::ROLE_ASSISTANT) {
    if (message.tool_calls().empty() && blank) {
      v.Add(content_path, "must not be blank on an assistant message without tool_calls");
    } else if (!message.tool_calls().empty() && !message.content().empty()) {
      v.Add(content_path, "must be empty on an assistant message with tool_calls");
    }
    for (int i = 0; i < message.tool_calls_size() && i < limits.max_tool_calls; ++i) {
      if (message.tool_calls(i).id().empty()) {
        v.Add(absl::StrCat(path, ".tool_calls[", i, "].id"), "required");
      }
    }
    CheckToolCalls(v, path, message, limits);
  } else {
    if (blank) v.Add(content_path, "must not be blank");
    if (!message.tool_calls().empty()) {
      v.Add(absl::StrCat(path, ".tool_calls"), "only assistant messages have tool_calls");
    }
  }
  const std::string tool_call_id_path = absl::StrCat(path, ".tool_call_id");
  CheckMaxBytes(v, tool_call_id_path, message.tool_call_id(), kMaxToolCallFieldBytes);
  if (role == copilot::v1::ROLE_TOOL) {
    if (message.tool_call_id().empty()) v.Add(tool_call_id_path, "required on a tool message");
  } else if (!message.tool_call_id().empty()) {
    v.Add(tool_call_id_path, "only tool messages have a tool_call_id");
  }
  if (!message.attachments().empty()) {
    if (role != copilot::v1::ROLE_USER) {
      v.Add(absl::StrCat(path, ".attachments"), "only user messages have attachments");
    } else if (message.attachments_size() > 1) {
      v.Add(absl::StrCat(path, ".attachments"), "at most one attachment per message");
    }
    for (int i = 0; i < message.attachments_size(); ++i) {
      const std::string attachment = absl::StrCat(path, ".attachments[", i, "]");
      CheckRequiredUuid(v, absl::StrCat(attachment, ".file_id"), message.attachments(i).file_id());
      CheckOptionalUuid(v, absl::StrCat(attachment, ".user_id"), message.attachments(i).user_id());
      CheckMaxBytes(v, absl::StrCat(attachment, ".base_url"), message.attachments(i).base_url(),
                    kMaxBaseUrlBytes);
    }
  }
}

// Rules about a whole conversation (Complete and StreamComplete).
void CheckConversation(Violations& v,
                       const google::protobuf::RepeatedPtrField<MessageInput>& messages,
                       const ValidationLimits& limits) {
  if (messages.empty()) {
    v.Add("messages", "at least one message is required");
    return;
  }
  if (messages.size() > limits.max_messages) {
    v.Add("messages", absl::StrCat("at most ", limits.max_messages, " messages"));
    return;
  }
  absl::flat_hash_set<std::string> tool_call_ids;  // Of assistant messages so far.
  for (int i = 0; i < messages.size(); ++i) {
    const MessageInput& message = messages[i];
    const std::string path = absl::StrCat("messages[", i, "]");
    CheckMessage(v, path, message, limits);
    switch (message.role()) {
      case copilot::v1::ROLE_SYSTEM:
        if (i != 0) v.Add(absl::StrCat(path, ".role"), "a system message must come first");
        break;
      case copilot::v1::ROLE_ASSISTANT:
        for (const auto& call : message.tool_calls()) tool_call_ids.insert(call.id());
        break;
      case copilot::v1::ROLE_TOOL:
        if (!message.tool_call_id().empty() && !tool_call_ids.contains(message.tool_call_id())) {
          v.Add(absl::StrCat(path, ".tool_call_id"),
                "must match a tool call of an earlier assistant message");
        }
        break;
      default:
        break;
    }
  }
  const Role last = messages[messages.size() - 1].role();
  if (last != copilot::v1::ROLE_USER && last != copilot::v1::ROLE_TOOL) {
    v.Add(absl::StrCat("messages[", messages.size() - 1, "].role"),
          "the last message must be a user or tool message");
  }
}

template <typename Request>
absl::Status ValidateCompletion(absl::string_view name, const Request& request,
                                const ValidationLimits& limits) {
  Violations v(name);
  CheckRequiredUuid(v, "assistant_id", request.assistant_id());
  CheckOptionalUuid(v, "user_id", request.user_id());
  if (!request.thread_id().empty()) CheckThreadId(v, "thread_id", request.thread_id());
  if constexpr (requires { request.request_id(); }) {
    CheckOptionalUuid(v, "request_id", request.request_id());
  }
  CheckConversation(v, request.messages(), limits);
  CheckTools(v, request.tools(), limits);
  return std::move(v).Finish();
}

}  // namespace

bool IsUuid(absl::string_view text) {
  if (text.size() != 36) return false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (text[i] != '-') return false;
    } else if (!absl::ascii_isxdigit(static_cast<unsigned char>(text[i]))) {
      return false;
    }
  }
  return true;
}

std::ptrdiff_t Utf8CodePoints(absl::string_view text) {
  std::ptrdiff_t count = 0;
  for (std::size_t i = 0; i < text.size(); ++count) {
    if (NextCodePoint(text, i) < 0) return -1;
  }
  return count;
}

absl::Status ValidateListAssistants(const copilot::v1::ListAssistantsRequest& request) {
  return absl::OkStatus();
}

absl::Status ValidateCreateThread(const copilot::v1::CreateThreadRequest& request,
                                  const ValidationLimits& limits) {
  Violations v("CreateThreadRequest");
  CheckRequiredUuid(v, "assistant_id", request.assistant_id());
  CheckOptionalUuid(v, "user_id", request.user_id());
  CheckOptionalUuid(v, "request_id", request.request_id());
  const std::ptrdiff_t title_chars = Utf8CodePoints(request.title());
  if (title_chars < 0) {
    v.Add("title", "must be valid UTF-8");
  } else if (title_chars > limits.max_title_chars) {
    v.Add("title", absl::StrCat("must be at most ", limits.max_title_chars, " characters, is ",
                                title_chars));
  }
  return std::move(v).Finish();
}

absl::Status ValidateGetThread(const copilot::v1::GetThreadRequest& request) {
  Violations v("GetThreadRequest");
  CheckThreadId(v, "thread_id", request.thread_id());
  return std::move(v).Finish();
}

absl::Status ValidateDeleteThread(const copilot::v1::DeleteThreadRequest& request) {
  Violations v("DeleteThreadRequest");
  CheckThreadId(v, "thread_id", request.thread_id());
  return std::move(v).Finish();
}

absl::Status ValidateAddMessage(const copilot::v1::AddMessageRequest& request,
                                const ValidationLimits& limits) {
  Violations v("AddMessageRequest");
  CheckThreadId(v, "thread_id", request.thread_id());
  CheckOptionalUuid(v, "request_id", request.request_id());
  if (!request.has_message()) {
    v.Add("message", "required");
  } else {
    CheckMessage(v, "message", request.message(), limits);
  }
  return std::move(v).Finish();
}

absl::Status ValidateListMessages(const copilot::v1::ListMessagesRequest& request,
                                  const ValidationLimits& limits) {
  Violations v("ListMessagesRequest");
  CheckThreadId(v, "thread_id", request.thread_id());
  if (request.page_size() < 0 || request.page_size() > limits.max_page_size) {
    v.Add("page_size", absl::StrCat("must be between 0 and ", limits.max_page_size));
  }
  if (request.page_token().size() > limits.max_page_token_bytes) {
    v.Add("page_token", absl::StrCat("must be at most ", limits.max_page_token_bytes,
                                     " bytes (pass back next_page_token unchanged)"));
  }
  return std::move(v).Finish();
}

absl::Status ValidateRun(const copilot::v1::RunRequest& request, const ValidationLimits& limits) {
  Violations v("RunRequest");
  CheckThreadId(v, "thread_id", request.thread_id());
  CheckOptionalUuid(v, "request_id", request.request_id());
  CheckTools(v, request.tools(), limits);
  return std::move(v).Finish();
}

absl::Status ValidateStreamRun(const copilot::v1::StreamRunRequest& request,
                               const ValidationLimits& limits) {
  Violations v("StreamRunRequest");
  CheckThreadId(v, "thread_id", request.thread_id());
  CheckTools(v, request.tools(), limits);
  return std::move(v).Finish();
}

absl::Status ValidateComplete(const copilot::v1::CompleteRequest& request,
                              const ValidationLimits& limits) {
  return ValidateCompletion("CompleteRequest", request, limits);
}

absl::Status ValidateStreamComplete(const copilot::v1::StreamCompleteRequest& request,
                                    const ValidationLimits& limits) {
  return ValidateCompletion("StreamCompleteRequest", request, limits);
}

}  // namespace copilot::gateway
