// JSON text written directly, for the few documents the gateway writes on every call (log lines,
// the upstream request body): byte for byte what nlohmann's dump writes for the same values,
// without building a JSON value first.
#ifndef COPILOT_GATEWAY_SERVER_COMMON_JSON_TEXT_H_
#define COPILOT_GATEWAY_SERVER_COMMON_JSON_TEXT_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace copilot::gateway {

// Appends `text` as a JSON string, as nlohmann's dump(-1, ' ', false, replace) writes it:
// printable ASCII other than quotes and backslashes as it is, anything else through nlohmann's
// serializer (escapes; invalid UTF-8 replaced by U+FFFD).
void AppendJsonString(std::string& out, absl::string_view text);

// The index of the first byte of `text` at or after `from` that a JSON string does not hold as
// it is written (a control character, '"', '\\', DEL or any byte from 0x80 up), else
// text.size(). Sixteen bytes at a time where SSE2 is there (x86-64 always): the gateway reads
// and writes most JSON bytes inside strings.
std::size_t PlainJsonStringEnd(absl::string_view text, std::size_t from);

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_COMMON_JSON_TEXT_H_
