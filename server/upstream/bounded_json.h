// Parsing JSON from the upstream with a bound on nesting.
//
// nlohmann::json parses without recursion, but copying, dumping and converting a parsed value
// recurse once per level: an answer nested 100,000 levels deep (a 200 KB body) would overflow
// the stack of the transport's event loop thread. Every upstream body and stream line is parsed
// through ParseUpstreamJson, which refuses a document nested deeper than kMaxJsonDepth before
// any value is built, so everything downstream may recurse freely.
//
// Free functions, no state: thread-safe.
#ifndef COPILOT_GATEWAY_SERVER_UPSTREAM_BOUNDED_JSON_H_
#define COPILOT_GATEWAY_SERVER_UPSTREAM_BOUNDED_JSON_H_

#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace copilot::gateway {

// Arrays and objects nested deeper than this make an upstream document unacceptable. The
// upstream's documents nest about 6 levels (haufe-api.md section 5).
inline constexpr int kMaxJsonDepth = 64;

// True when `text`, read as JSON, opens more than `max_depth` arrays or objects inside each
// other (brackets inside strings do not count). Linear, no allocation; `text` need not be valid.
bool JsonNestsDeeperThan(absl::string_view text, int max_depth);

// `text` parsed, or a discarded value (is_discarded()) when it is not JSON or nests deeper than
// kMaxJsonDepth. Never throws.
nlohmann::json ParseUpstreamJson(absl::string_view text);

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_UPSTREAM_BOUNDED_JSON_H_
