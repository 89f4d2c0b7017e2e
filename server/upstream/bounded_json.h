// Parsing JSON from the upstream with a bound on nesting.
//
// Answers, messages and stream lines are decoded with rapidjson's DOM (JsonDocument): it reads
// a typical answer in about a third of the instructions nlohmann::json takes (README
// "Performance"). It is made to accept what nlohmann::json::parse accepts, to the same values
// (a test and the fuzzer upstream_json compare the two):
//  - RFC 8259, a whole leading byte order mark skipped;
//  - the UTF-8 of strings validated (by PrecheckUpstreamJson: rapidjson's own validation took
//    a third of its parse);
//  - a lone low surrogate escape ("\udc00"), which rapidjson 1.1 takes and writes out as
//    invalid UTF-8, refused by PrecheckUpstreamJson before rapidjson reads the text;
//  - numbers converted as nlohmann converts them (ParseUpstreamJson's DocumentBuilder);
//  - duplicate member names all kept by rapidjson; readers take the last one, the one
//    nlohmann::json kept (JsonMember, NlohmannFromJson, json_mapping.cc's FillStruct);
//  - a NUL byte ends the text for both parsers (inside a string, as an error).
// One difference is left: rapidjson refuses a number whose exponent passes 308 before it knows
// the value, so "0e400" (zero) and the largest doubles written out in 309 digits, which
// nlohmann read, are not JSON here (kParseErrorNumberTooBig).
//
// rapidjson parses recursively, as the mapping and nlohmann's dump walk values, so a document
// nested 100,000 levels deep (a 200 KB body) would overflow the stack of the transport's event
// loop thread. Every
// upstream document is prechecked, refused when it nests deeper than kMaxJsonDepth before any
// value is built, so everything downstream may recurse freely.
//
// Free functions, no state: thread-safe.
#ifndef COPILOT_GATEWAY_SERVER_UPSTREAM_BOUNDED_JSON_H_
#define COPILOT_GATEWAY_SERVER_UPSTREAM_BOUNDED_JSON_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"
#include "rapidjson/document.h"
#include "rapidjson/error/error.h"

namespace copilot::gateway {

// Arrays and objects nested deeper than this make an upstream document unacceptable. The
// upstream's documents nest about 6 levels (haufe-api.md section 5).
inline constexpr int kMaxJsonDepth = 64;

// Values past this make an upstream document unacceptable. They are counted by the brackets and
// commas outside strings: each array or object opens with one, each element or member after the
// first follows one. Decoded, a value takes 16 bytes in the DOM and
// ~50-80 in protobuf: a 16 MiB answer of "[0,0,0,..." (8 million values) took the gateway to
// 624 MiB of RSS, one of empty objects to 1.2 GB, past the pod's limit. Real documents hold a few
// thousand (a page of 100 messages with their sources: ~10,000). At this bound an assistant list
// holding 262,000 zeros took the gateway's peak RSS up 45 MiB (87,000 empty objects: 19 MiB).
inline constexpr int64_t kMaxJsonValues = 262144;

using JsonValue = rapidjson::Value;

inline absl::string_view JsonText(const JsonValue& string) {
  return {string.GetString(), string.GetStringLength()};
}

// What reading an upstream text found.
enum class JsonRead {
  kOk,
  // More than the allowed arrays or objects open inside each other.
  kTooDeep,
  // More than the allowed values.
  kTooManyValues,
  // Not JSON; from the precheck, a string holding bytes that are not UTF-8, or a
  // "\uDC00".."\uDFFF" escape not straight after a "\uD800".."\uDBFF" one (not a character).
  kNotJson,
};

// A parsed upstream document: rapidjson's DOM, parsed in place in its own copy of the text, which
// its strings point into (no string is copied twice). Movable; the copy moves with it. Strings
// may hold NUL bytes: read them with JsonText, never as C strings.
class JsonDocument : public rapidjson::Document {
 public:
  JsonDocument() = default;

 private:
  friend JsonRead ParseUpstreamJson(absl::string_view text, JsonDocument& out,
                                    rapidjson::ParseErrorCode* error);
  std::unique_ptr<char[]> text_;
};

// One pass over `text` read as JSON, before it is parsed (brackets and escapes inside strings
// are told apart from the structure), up to its first NUL byte, where the parsers stop. Linear, no
// allocation; `text` need not be valid, and kOk does not mean it is.
JsonRead PrecheckUpstreamJson(absl::string_view text, int max_depth = kMaxJsonDepth,
                              int64_t max_values = kMaxJsonValues);

// Prechecks and parses `text` into `out`. Only kOk leaves `out` holding the document. `error`
// (when given) gets rapidjson's reason for kNotJson from the parser (kParseErrorNone otherwise).
JsonRead ParseUpstreamJson(absl::string_view text, JsonDocument& out,
                           rapidjson::ParseErrorCode* error = nullptr);

// The member `key` of `object` when `object` is an object holding it, not null; of duplicate
// names the last (nlohmann::json keeps the last).
const JsonValue* JsonMember(const JsonValue& object, absl::string_view key);

// The string member `key`, or "" when absent, null or not a string.
std::string JsonStringMember(const JsonValue& object, absl::string_view key);

// `value` as nlohmann::json, as nlohmann::json::parse would have read the same text: numbers
// keep their kind (unsigned, signed, floating), and of duplicate member names the last wins.
nlohmann::json NlohmannFromJson(const JsonValue& value);

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_UPSTREAM_BOUNDED_JSON_H_
