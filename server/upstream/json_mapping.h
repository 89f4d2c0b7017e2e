// JSON <-> proto for the Haufe Copilot REST API (haufe-api.md sections 4-6): response bodies
// into copilot.v1 resources, and the request bodies the client sends.
//
// Parsing is tolerant: unknown fields and JSON nulls are ignored, a field of the wrong type is
// treated as absent. Only a missing required field (an object's `id`, a chunk's `message_id`),
// a body that is not JSON, or a timestamp that cannot be read is an error: INTERNAL with reason
// "upstream_bad_response". Nothing here throws.
//
// Free functions, no state: thread-safe.
#ifndef COPILOT_GATEWAY_SERVER_UPSTREAM_JSON_MAPPING_H_
#define COPILOT_GATEWAY_SERVER_UPSTREAM_JSON_MAPPING_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "copilot/v1/resources.pb.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/timestamp.pb.h"
#include "nlohmann/json.hpp"
#include "server/upstream/bounded_json.h"
#include "server/upstream/haufe_api.h"

namespace copilot::gateway {

// Objects and arrays nested deeper than this inside a google.protobuf.Struct taken from the
// upstream become null. Each JSON level costs up to three protobuf levels (Struct, map entry,
// Value), and clients refuse messages nested deeper than 100 (protobuf's default recursion
// limit, also Python's and Go's): a Struct at this depth inside a response stays under 70.
inline constexpr int kMaxStructDepth = 20;

// ErrorInfo.reason of every parse failure below.
inline constexpr absl::string_view kBadResponseReason = "upstream_bad_response";

// --- Building blocks ---

// `text` as JSON, or INTERNAL "upstream_bad_response" naming `what` (e.g. "thread") when it is
// not JSON or nests deeper than kMaxJsonDepth (bounded_json.h).
absl::StatusOr<JsonDocument> ParseJson(absl::string_view text, absl::string_view what);

// "2025-03-15T09:12:33.456789Z" (any RFC 3339 offset and fraction) -> Timestamp.
absl::StatusOr<google::protobuf::Timestamp> ParseTimestamp(absl::string_view text);

// JSON object <-> google.protobuf.Struct: from an upstream document, to a request body.
// Non-objects give an empty Struct. Numbers become doubles; whole doubles go back out as JSON
// integers.
google::protobuf::Struct StructFromJson(const JsonValue& object, int depth = 0);
nlohmann::json JsonFromStruct(const google::protobuf::Struct& value);
google::protobuf::Value ValueFromJson(const JsonValue& value, int depth = 0);
nlohmann::json JsonFromValue(const google::protobuf::Value& value);

// "user" <-> ROLE_USER, ... Unknown strings give ROLE_UNSPECIFIED; ROLE_UNSPECIFIED gives "".
copilot::v1::Role RoleFromString(absl::string_view role);
absl::string_view RoleToString(copilot::v1::Role role);

// --- Responses: parsed JSON values ---

absl::StatusOr<copilot::v1::Assistant> AssistantFromJson(const JsonValue& json);
absl::StatusOr<copilot::v1::Thread> ThreadFromJson(const JsonValue& json);
// Its meta_data without user_data.licence: the field the gateway sends with a Run or a
// completion is its own, never the caller's, whatever value an answer echoes in it
// (StripLicenceMetaData).
absl::StatusOr<copilot::v1::Message> MessageFromJson(const JsonValue& json);
// Removes user_data.licence from `meta_data`, and user_data when nothing else is left in it.
void StripLicenceMetaData(google::protobuf::Struct& meta_data);
// One NDJSON stream line (haufe-api.md section 6). Not for error lines (see IsStreamErrorLine).
absl::StatusOr<copilot::v1::MessageChunk> MessageChunkFromJson(const JsonValue& json);
// True for `{"error_code": ..., ...}` without `delta`: an upstream error inside a stream.
bool IsStreamErrorLine(const JsonValue& json);

// --- Responses: body text ---

// GET /v1/assistants: a bare JSON array (an object with `items` is accepted too).
absl::StatusOr<std::vector<copilot::v1::Assistant>> ParseAssistantList(absl::string_view body);
absl::StatusOr<copilot::v1::Assistant> ParseAssistant(absl::string_view body);
absl::StatusOr<copilot::v1::Thread> ParseThread(absl::string_view body);
absl::StatusOr<copilot::v1::Message> ParseMessage(absl::string_view body);
// GET /v1/threads/{id}/messages: `{"cursor": ..., "items": [...]}`; a null, absent or empty
// cursor means the last page.
absl::StatusOr<MessagePage> ParseMessagePage(absl::string_view body);

// --- Request bodies (compact JSON text) ---

// POST /v1/threads: {"assistant_id", "user_id"?, "title"?}.
std::string CreateThreadBody(const CreateThreadParams& params);
// POST /v1/threads/{id}/messages: {"role", "content", "tool_calls"?, "tool_call_id"?,
// "attachments"?}.
std::string CreateMessageBody(const copilot::v1::MessageInput& message);
// POST /v1/threads/{id}/run[/stream]: {"meta_data": {"user_data": {"licence"}}?, "tools"?};
// `{}` when both are empty.
std::string RunBody(const RunParams& params, absl::string_view licence);
// POST /v1/chat/completions[/stream]: {"assistant_id", "messages", "user_id"?, "meta_data"?,
// "tools"?}. `thread_id` is a query parameter, not part of the body.
std::string CompletionBody(const CompletionParams& params, absl::string_view licence);

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_UPSTREAM_JSON_MAPPING_H_
