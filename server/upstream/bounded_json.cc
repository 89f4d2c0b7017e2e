#include "server/upstream/bounded_json.h"

#include <algorithm>
#include <cerrno>
#include <clocale>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "rapidjson/error/error.h"
#include "rapidjson/reader.h"
#include "rapidjson/stream.h"
#include "server/common/json_text.h"

namespace copilot::gateway {
namespace {

// The UTF-16 unit of the four hex digits at text[at], or -1 when there are not four.
int HexUnit(absl::string_view text, std::size_t at) {
  if (text.size() < at + 4) return -1;
  const absl::string_view digits = text.substr(at, 4);
  int unit = -1;
  if (!std::all_of(digits.begin(), digits.end(), [](char c) { return absl::ascii_isxdigit(c); }) ||
      !absl::SimpleHexAtoi(digits, &unit)) {
    return -1;
  }
  return unit;
}

// The length of the well-formed UTF-8 sequence starting with the non-ASCII byte text[at]
// (Unicode's table 3-7: no overlong forms, no surrogates, nothing past U+10FFFF), or 0.
std::size_t Utf8SequenceLength(absl::string_view text, std::size_t at) {
  const auto byte = [&](std::size_t i) {
    return at + i < text.size() ? static_cast<unsigned char>(text[at + i]) : 0U;
  };
  const auto in = [](unsigned value, unsigned low, unsigned high) {
    return value >= low && value <= high;
  };
  const unsigned lead = byte(0);
  std::size_t length = 0;
  unsigned second_low = 0x80;
  unsigned second_high = 0xBF;
  if (in(lead, 0xC2, 0xDF)) {
    length = 2;
  } else if (in(lead, 0xE0, 0xEF)) {
    length = 3;
    if (lead == 0xE0) second_low = 0xA0;
    if (lead == 0xED) second_high = 0x9F;
  } else if (in(lead, 0xF0, 0xF4)) {
    length = 4;
    if (lead == 0xF0) second_low = 0x90;
    if (lead == 0xF4) second_high = 0x8F;
  } else {
    return 0;
  }
  if (!in(byte(1), second_low, second_high)) return 0;
  for (std::size_t i = 2; i < length; ++i) {
    if (!in(byte(i), 0x80, 0xBF)) return 0;
  }
  return length;
}

// Forwards a reader's events to a document, reading each number as nlohmann::json::parse does:
// without a fraction or exponent, a signed or unsigned 64-bit integer when it fits; otherwise
// strtod's double, refused when it is not finite. (rapidjson's own conversion is not used: its
// correctly rounded one calls __builtin_clzll(0), undefined, for a zero significand.)
class DocumentBuilder {
 public:
  explicit DocumentBuilder(rapidjson::Document& document) : document_(document) {}

  bool Null() { return document_.Null(); }
  bool Bool(bool value) { return document_.Bool(value); }
  bool Int(int value) { return document_.Int(value); }
  bool Uint(unsigned value) { return document_.Uint(value); }
  bool Int64(int64_t value) { return document_.Int64(value); }
  bool Uint64(uint64_t value) { return document_.Uint64(value); }
  bool Double(double value) { return document_.Double(value); }
  // `text` is the number in the document's text, not NUL-terminated (parsed in place).
  bool RawNumber(const char* in_place, rapidjson::SizeType length, bool /*copy*/) {
    const std::string number(in_place, length);
    const char* text = number.c_str();
    char* end = nullptr;
    if (number.find_first_of(".eE") == std::string::npos) {
      errno = 0;
      if (number.front() == '-') {
        const long long value = std::strtoll(text, &end, 10);
        if (errno == 0) return document_.Int64(value);
      } else {
        const unsigned long long value = std::strtoull(text, &end, 10);
        if (errno == 0) return document_.Uint64(value);
      }
    }
    // In the C locale whatever the process's is: the decimal point is '.'. (newlocale of "C"
    // fails only without memory; then the process's locale, which the gateway never changes.)
    static const locale_t c_locale = newlocale(LC_ALL_MASK, "C", nullptr);
    const double value =
        c_locale != nullptr ? strtod_l(text, &end, c_locale) : std::strtod(text, &end);
    if (!std::isfinite(value)) return false;
    return document_.Double(value);
  }
  bool String(const char* text, rapidjson::SizeType length, bool copy) {
    return document_.String(text, length, copy);
  }
  bool StartObject() { return document_.StartObject(); }
  bool Key(const char* text, rapidjson::SizeType length, bool copy) {
    return document_.Key(text, length, copy);
  }
  bool EndObject(rapidjson::SizeType members) { return document_.EndObject(members); }
  bool StartArray() { return document_.StartArray(); }
  bool EndArray(rapidjson::SizeType elements) { return document_.EndArray(elements); }

 private:
  rapidjson::Document& document_;
};

// RFC 8259 as nlohmann::json::parse reads it (the UTF-8 of strings validated by the precheck);
// strings decoded in place; numbers handed over as text (DocumentBuilder::RawNumber).
constexpr unsigned kParseFlags =
    rapidjson::kParseInsituFlag | rapidjson::kParseNumbersAsStringsFlag;

constexpr absl::string_view kByteOrderMark = "\xEF\xBB\xBF";

}  // namespace

JsonRead PrecheckUpstreamJson(absl::string_view text, int max_depth, int64_t max_values) {
  constexpr std::size_t kNone = absl::string_view::npos;
  int depth = 0;
  int64_t values = 0;  // Brackets and commas outside strings: about the values (bounded_json.h).
  bool in_string = false;
  // Where the last high surrogate escape ended: a low one is a character only right there.
  std::size_t high_surrogate_end = kNone;
  const std::size_t size = text.size();
  for (std::size_t i = 0; i < size; ++i) {
    // Inside a string only a quote, a backslash, a byte from 0x80 up and a NUL matter here.
    if (in_string) i = PlainJsonStringEnd(text, i);
    if (i == size) break;
    const char c = text[i];
    // Both parsers read a NUL byte as the end of the text (inside a string, as an error).
    if (c == '\0') break;
    if (in_string) {
      if (c == '"') {
        in_string = false;
      } else if (static_cast<unsigned char>(c) < 0x20) {
        // Both parsers refuse a control character in a string; rapidjson 1.1 with RAPIDJSON_SSE2
        // does not see 0x1A-0x1F among sixteen bytes (it compares with 0x19, not 0x1F: the
        // fuzzer upstream_json found it), so it is refused here.
        return JsonRead::kNotJson;
      } else if (static_cast<unsigned char>(c) >= 0x80) {
        // Validated here, in the pass the text gets anyway, not by rapidjson (a third of its
        // parse); outside strings the parser refuses any byte that is not ASCII.
        const std::size_t length = Utf8SequenceLength(text, i);
        if (length == 0) return JsonRead::kNotJson;
        i += length - 1;
      } else if (c == '\\' && i + 1 < size) {
        if (text[i + 1] != 'u') {
          ++i;  // The escaped character.
          continue;
        }
        const int unit = HexUnit(text, i + 2);
        if (unit < 0) {
          ++i;  // Not an escape the parser takes: it refuses the text.
          continue;
        }
        if (unit >= 0xDC00 && unit <= 0xDFFF && high_surrogate_end != i) {
          return JsonRead::kNotJson;
        }
        if (unit >= 0xD800 && unit <= 0xDBFF) high_surrogate_end = i + 6;
        i += 5;
      }
      continue;
    }
    switch (c) {
      case '"':
        in_string = true;
        break;
      case '[':
      case '{':
        if (++depth > max_depth) return JsonRead::kTooDeep;
        if (++values > max_values) return JsonRead::kTooManyValues;
        break;
      case ',':
        if (++values > max_values) return JsonRead::kTooManyValues;
        break;
      case ']':
      case '}':
        // Unbalanced closers make the text invalid JSON; the parser reports that.
        if (depth > 0) --depth;
        break;
      default:
        break;
    }
  }
  return JsonRead::kOk;
}

JsonRead ParseUpstreamJson(absl::string_view text, JsonDocument& out,
                           rapidjson::ParseErrorCode* error) {
  const JsonRead precheck = PrecheckUpstreamJson(text);
  if (precheck != JsonRead::kOk) return precheck;
  // nlohmann skips a whole UTF-8 byte order mark; rapidjson's own skip takes any of its bytes.
  if (absl::StartsWith(text, kByteOrderMark)) text.remove_prefix(kByteOrderMark.size());
  // The document's own copy, NUL-terminated (a NUL ends the text for the parser, as in a
  // MemoryStream): strings are decoded into it where they stand. Zeroed up to the end of the
  // 16-byte block holding the NUL: with RAPIDJSON_SSE2 the parser loads whole aligned blocks
  // (new[] aligns to 16).
  const std::size_t padded = (text.size() + 1 + 15) / 16 * 16;
  out.text_ = std::unique_ptr<char[]>(new char[padded]);
  std::memcpy(out.text_.get(), text.data(), text.size());
  std::memset(out.text_.get() + text.size(), 0, padded - text.size());
  rapidjson::InsituStringStream stream(out.text_.get());
  rapidjson::Reader reader;
  rapidjson::ParseResult result;
  auto generate = [&](rapidjson::Document& document) {
    DocumentBuilder builder(document);
    result = reader.Parse<kParseFlags>(stream, builder);
    return !result.IsError();
  };
  out.Populate(generate);
  if (error != nullptr) *error = result.Code();
  if (!result.IsError()) return JsonRead::kOk;
  out.SetNull();  // Nothing of a document this one held before may point into the new copy.
  return JsonRead::kNotJson;
}

const JsonValue* JsonMember(const JsonValue& object, absl::string_view key) {
  if (!object.IsObject()) return nullptr;
  const JsonValue* found = nullptr;
  for (const auto& member : object.GetObject()) {
    if (JsonText(member.name) == key) found = &member.value;
  }
  if (found == nullptr || found->IsNull()) return nullptr;
  return found;
}

std::string JsonStringMember(const JsonValue& object, absl::string_view key) {
  const JsonValue* value = JsonMember(object, key);
  if (value == nullptr || !value->IsString()) return "";
  return std::string(JsonText(*value));
}

nlohmann::json NlohmannFromJson(const JsonValue& value) {
  switch (value.GetType()) {
    case rapidjson::kFalseType:
      return false;
    case rapidjson::kTrueType:
      return true;
    case rapidjson::kStringType:
      return std::string(JsonText(value));
    case rapidjson::kNumberType:
      if (value.IsUint64()) return value.GetUint64();
      if (value.IsInt64()) return value.GetInt64();
      return value.GetDouble();
    case rapidjson::kArrayType: {
      nlohmann::json out = nlohmann::json::array();
      for (const JsonValue& item : value.GetArray()) out.push_back(NlohmannFromJson(item));
      return out;
    }
    case rapidjson::kObjectType: {
      nlohmann::json out = nlohmann::json::object();
      for (const auto& member : value.GetObject()) {
        out[std::string(JsonText(member.name))] = NlohmannFromJson(member.value);
      }
      return out;
    }
    case rapidjson::kNullType:
      break;
  }
  return nullptr;
}

}  // namespace copilot::gateway
