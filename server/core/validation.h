// Request validation before any upstream call.
//
// Each function checks one request against the rules the gateway can decide locally (the
// contract's MessageInput comment and the upstream's message-stack rules) and returns OK or
// INVALID_ARGUMENT with ErrorInfo reason "INVALID_REQUEST" and one google.rpc.BadRequest field
// violation per broken rule, each naming its field path (e.g. "messages[2].content"). All
// violations are reported, not just the first. Stateless and thread-safe.
#ifndef COPILOT_GATEWAY_SERVER_CORE_VALIDATION_H_
#define COPILOT_GATEWAY_SERVER_CORE_VALIDATION_H_

#include <cstddef>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "copilot/v1/copilot_service.pb.h"

namespace copilot::gateway {

// ErrorInfo.reason of a request rejected by validation.
inline constexpr absl::string_view kInvalidRequestReason = "INVALID_REQUEST";

// Configurable bounds of validation.
struct ValidationLimits {
  // Maximum content length in Unicode code points.
  int max_content_chars = 30000;
  // Maximum number of messages in a Complete request.
  int max_messages = 500;
  // Maximum ListMessages page size.
  int max_page_size = 100;
  // Maximum ListMessages page_token length (upstream cursors are far shorter).
  std::size_t max_page_token_bytes = 1024;
  // Maximum tool_calls on one message, and bytes of one tool call's function.arguments.
  int max_tool_calls = 64;
  std::size_t max_tool_arguments_bytes = 64 * 1024;
  // Maximum tool definitions (`tools`) on one Run/Complete request, and their serialized bytes
  // together.
  int max_tools = 64;
  std::size_t max_tools_bytes = 256 * 1024;
  // Maximum thread title length in Unicode code points.
  int max_title_chars = 1000;
};

// Longest tool call ID, tool call type and function name a message may carry, in bytes.
inline constexpr std::size_t kMaxToolCallFieldBytes = 256;
// Longest attachment base_url, in bytes.
inline constexpr std::size_t kMaxBaseUrlBytes = 2048;
// Deepest nesting of objects and lists inside one tool definition (a JSON schema nests a few
// levels; the same bound as upstream Structs, server/upstream/json_mapping.h).
inline constexpr int kMaxToolDepth = 20;

// Longest thread ID (an opaque handle) a request may carry.
inline constexpr std::size_t kMaxThreadIdBytes = 512;

// True for the canonical 8-4-4-4-12 hexadecimal UUID text form (either case).
bool IsUuid(absl::string_view text);

// The number of code points in `text` if it is valid UTF-8 (no overlong forms, no surrogates,
// nothing above U+10FFFF); -1 otherwise.
std::ptrdiff_t Utf8CodePoints(absl::string_view text);

absl::Status ValidateListAssistants(const copilot::v1::ListAssistantsRequest& request);
absl::Status ValidateCreateThread(const copilot::v1::CreateThreadRequest& request,
                                  const ValidationLimits& limits);
absl::Status ValidateGetThread(const copilot::v1::GetThreadRequest& request);
absl::Status ValidateDeleteThread(const copilot::v1::DeleteThreadRequest& request);
absl::Status ValidateAddMessage(const copilot::v1::AddMessageRequest& request,
                                const ValidationLimits& limits);
absl::Status ValidateListMessages(const copilot::v1::ListMessagesRequest& request,
                                  const ValidationLimits& limits);
absl::Status ValidateRun(const copilot::v1::RunRequest& request, const ValidationLimits& limits);
absl::Status ValidateStreamRun(const copilot::v1::StreamRunRequest& request,
                               const ValidationLimits& limits);
absl::Status ValidateComplete(const copilot::v1::CompleteRequest& request,
                              const ValidationLimits& limits);
absl::Status ValidateStreamComplete(const copilot::v1::StreamCompleteRequest& request,
                                    const ValidationLimits& limits);

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_CORE_VALIDATION_H_
