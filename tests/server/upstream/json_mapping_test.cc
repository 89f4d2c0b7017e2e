#include "server/upstream/json_mapping.h"

#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "copilot/v1/copilot_service.pb.h"
#include "gmock/gmock.h"
#include "google/protobuf/io/coded_stream.h"
#include "gtest/gtest.h"
#include "server/common/errors.h"

namespace copilot::gateway {
namespace {

namespace v1 = ::copilot::v1;
using nlohmann::json;
using ::testing::HasSubstr;

std::string Reason(const absl::Status& status) {
  auto info = GetErrorInfo(status);
  return info.has_value() ? info->reason() : "<no ErrorInfo>";
}

void ExpectBadResponse(const absl::Status& status) {
  EXPECT_EQ(status.code(), absl::StatusCode::kInternal) << status;
  EXPECT_EQ(Reason(status), "upstream_bad_response") << status;
}

TEST(JsonMappingTest, TimestampWithMicroseconds) {
  auto ts = ParseTimestamp("2025-03-15T09:12:33.456789Z");
  ASSERT_TRUE(ts.ok()) << ts.status();
  EXPECT_EQ(ts->seconds(), 1742029953);
  EXPECT_EQ(ts->nanos(), 456789000);
}

TEST(JsonMappingTest, TimestampVariants) {
  EXPECT_EQ(ParseTimestamp("2025-03-15T09:12:33Z")->nanos(), 0);
  EXPECT_EQ(ParseTimestamp("2025-03-15T10:12:33.5+01:00")->seconds(), 1742029953);
  EXPECT_EQ(ParseTimestamp("2025-03-15T10:12:33.5+01:00")->nanos(), 500000000);
  EXPECT_EQ(ParseTimestamp("2025-03-15T09:12:33.000001")->seconds(), 1742029953);  // Naive: UTC.
  EXPECT_EQ(ParseTimestamp("2025-03-15T09:12:33.000001")->nanos(), 1000);
  EXPECT_FALSE(ParseTimestamp("yesterday").ok());
  EXPECT_FALSE(
      ParseTimestamp("infinite-future").ok());  // absl parses it; Timestamp cannot hold it.
  EXPECT_FALSE(ParseTimestamp("infinite-past").ok());
  EXPECT_FALSE(ParseTimestamp("").ok());
}

// ParseTimestamp before its fast path: absl::ParseTime alone, the reference it must agree with.
absl::StatusOr<google::protobuf::Timestamp> ReferenceTimestamp(const std::string& input) {
  absl::Time time;
  std::string error;
  if (!absl::ParseTime(absl::RFC3339_full, input, &time, &error) &&
      !absl::ParseTime("%Y-%m-%d%ET%H:%M:%E*S", input, absl::UTCTimeZone(), &time, &error)) {
    return absl::InvalidArgumentError("not a time");
  }
  if (time < absl::FromUnixSeconds(-62135596800) || time > absl::FromUnixSeconds(253402300799)) {
    return absl::InvalidArgumentError("out of range");
  }
  google::protobuf::Timestamp out;
  out.set_seconds(absl::ToUnixSeconds(time));
  out.set_nanos(
      static_cast<int32_t>(absl::ToInt64Nanoseconds(time - absl::FromUnixSeconds(out.seconds()))));
  return out;
}

// The fast path (the common spelling, read without absl::ParseTime) accepts what absl accepts,
// to the nanosecond, and declines the rest to it: 200,000 times, valid and nearly valid, with
// every field at and past its bounds (day 29-31 in every month, leap years, hour 24, second
// 60, 0-40 fraction digits, offsets up to +-25:99, "t", "z", spaces, a missing or extra byte).
TEST(JsonMappingTest, TimestampsReadTheSameWithAndWithoutTheFastPath) {
  std::mt19937 random(20261206);
  auto pick = [&random](int low, int high) {
    return std::uniform_int_distribution<int>(low, high)(random);
  };
  int accepted = 0;
  for (int i = 0; i < 200000; ++i) {
    const int year = pick(0, 9) == 0 ? pick(0, 9999) : pick(1896, 2104);
    std::string text =
        absl::StrFormat("%04d-%02d-%02d%c%02d:%02d:%02d", year, pick(0, 13),
                        pick(0, 9) < 7 ? pick(1, 28) : pick(0, 32), pick(0, 30) == 0 ? 't' : 'T',
                        pick(0, 24), pick(0, 60), pick(0, 9) < 8 ? pick(0, 59) : pick(0, 61));
    if (pick(0, 1) == 1) {
      text += '.';
      // Past 18 digits a fraction outgrows int64_t: the fast path must decline it, not overflow.
      for (int digits = pick(0, 20) == 0 ? pick(13, 40) : pick(0, 12); digits > 0; --digits)
        text += static_cast<char>('0' + pick(0, 9));
    }
    switch (pick(0, 5)) {
      case 0:
        break;  // Naive: UTC.
      case 1:
        text += pick(0, 20) == 0 ? "z" : "Z";
        break;
      default:
        absl::StrAppendFormat(&text, "%c%02d:%02d", pick(0, 1) == 0 ? '+' : '-',
                              pick(0, 9) == 0 ? pick(0, 25) : pick(0, 14),
                              pick(0, 9) == 0 ? pick(0, 99) : pick(0, 59));
    }
    switch (pick(0, 40)) {
      case 0:
        text = " " + text;
        break;
      case 1:
        text += " ";
        break;
      case 2:
        text.erase(static_cast<std::size_t>(pick(0, static_cast<int>(text.size()) - 1)), 1);
        break;
      case 3:
        text.insert(static_cast<std::size_t>(pick(0, static_cast<int>(text.size()))), "1");
        break;
      default:
        break;
    }
    const absl::StatusOr<google::protobuf::Timestamp> expected = ReferenceTimestamp(text);
    const absl::StatusOr<google::protobuf::Timestamp> got = ParseTimestamp(text);
    ASSERT_EQ(got.ok(), expected.ok()) << text;
    if (!expected.ok()) continue;
    ++accepted;
    ASSERT_EQ(got->seconds(), expected->seconds()) << text;
    ASSERT_EQ(got->nanos(), expected->nanos()) << text;
  }
  EXPECT_GT(accepted, 100000);  // Mostly valid: the comparison is of values, not of refusals.
}

TEST(JsonMappingTest, DeeplyNestedJsonIsCutAtTheDepthLimit) {
  // A hostile upstream could nest a million arrays; the mapping must neither recurse without
  // bound nor fail the whole message.
  std::string text = R"({"deep":)";
  for (int i = 0; i < 100000; ++i) text += "[";
  for (int i = 0; i < 100000; ++i) text += "]";
  text += "}";
  // Parsed without recursion and without the precheck: StructFromJson must cut it anyway.
  JsonDocument parsed;
  parsed.Parse<rapidjson::kParseIterativeFlag>(text.data(), text.size());
  ASSERT_FALSE(parsed.HasParseError());
  google::protobuf::Struct out = StructFromJson(parsed);
  const google::protobuf::Value* value = &out.fields().at("deep");
  int depth = 0;
  while (value->has_list_value()) {
    ASSERT_EQ(value->list_value().values_size(), 1);
    value = &value->list_value().values(0);
    ++depth;
  }
  EXPECT_EQ(depth, kMaxStructDepth);
  EXPECT_TRUE(value->has_null_value());
}

std::string Nested(int levels, absl::string_view open, absl::string_view close) {
  std::string text;
  for (int i = 0; i < levels; ++i) absl::StrAppend(&text, open);
  absl::StrAppend(&text, "1");
  for (int i = 0; i < levels; ++i) absl::StrAppend(&text, close);
  return text;
}

// Issue #13, item 1: tool_calls[].function.arguments nested 100,000 levels (a 200 KB body)
// overflowed the loop thread's stack in the recursive dump. Such a body is refused before any
// value is built.
TEST(JsonMappingTest, AnAnswerNestedTooDeepIsABadResponseNotACrash) {
  const std::string body = absl::StrCat(
      R"({"id":"m1","role":"assistant","content":"","tool_calls":[{"id":"c1","type":"function",)",
      R"("function":{"name":"f","arguments":)", Nested(100000, "[", "]"), "}}]}");
  absl::StatusOr<v1::Message> message = ParseMessage(body);
  ASSERT_FALSE(message.ok());
  EXPECT_EQ(message.status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(GetErrorInfo(message.status())->reason(), kBadResponseReason);
  EXPECT_THAT(std::string(message.status().message()), HasSubstr("nests deeper than 64 levels"));
  EXPECT_FALSE(
      ParseMessagePage(absl::StrCat(R"({"items":)", Nested(70, "{\"a\":", "}"), "}")).ok());
  EXPECT_FALSE(ParseAssistantList(Nested(65, "[", "]")).ok());
}

TEST(JsonMappingTest, NestingUpToTheLimitIsAcceptedAndDumped) {
  // 60 levels of arguments (inside 4 levels of message): dumped back as the JSON text it was.
  const std::string arguments = Nested(60, "[", "]");
  const std::string body = absl::StrCat(
      R"({"id":"m1","role":"assistant","content":"","tool_calls":[{"id":"c1","type":"function",)",
      R"("function":{"name":"f","arguments":)", arguments, "}}]}");
  absl::StatusOr<v1::Message> message = ParseMessage(body);
  ASSERT_TRUE(message.ok()) << message.status();
  EXPECT_EQ(message->tool_calls(0).function().arguments(), arguments);
}

// A hostile answer of many small values is refused before any is built: 16 MiB of "[0,0,0,..."
// (8 million values) took the gateway to 624 MiB of RSS decoded, empty objects to 1.2 GB.
TEST(JsonMappingTest, ValuesAreBoundedAndCountedOutsideStringsOnly) {
  EXPECT_EQ(PrecheckUpstreamJson("[0,0,0]", kMaxJsonDepth, 3), JsonRead::kOk);
  EXPECT_EQ(PrecheckUpstreamJson("[0,0,0,0]", kMaxJsonDepth, 3), JsonRead::kTooManyValues);
  EXPECT_EQ(PrecheckUpstreamJson("[{},{}]", kMaxJsonDepth, 4), JsonRead::kOk);
  EXPECT_EQ(PrecheckUpstreamJson("[{},{},{}]", kMaxJsonDepth, 5), JsonRead::kTooManyValues);
  EXPECT_EQ(PrecheckUpstreamJson(R"({"a":"[,,,,{,,"})", kMaxJsonDepth, 1), JsonRead::kOk);
  // At the default bound: a page of messages passes, a flood of zeros does not, and the error
  // says why.
  std::string zeros = "[0";
  for (int64_t i = 0; i < kMaxJsonValues; ++i) zeros += ",0";
  zeros += "]";
  EXPECT_EQ(PrecheckUpstreamJson(zeros), JsonRead::kTooManyValues);
  zeros.erase(zeros.size() - 3, 2);  // One value fewer: the bound itself.
  EXPECT_EQ(PrecheckUpstreamJson(zeros), JsonRead::kOk);
  const absl::StatusOr<std::vector<v1::Assistant>> list = ParseAssistantList(
      absl::StrCat(R"({"items":[{"id":"a","meta_data_response_schema":{"x":)", zeros, R"(}}]})"));
  ASSERT_FALSE(list.ok());
  EXPECT_THAT(list.status().message(), HasSubstr("holds more than 262144 JSON values"));
}

TEST(JsonMappingTest, NestingIsCountedOutsideStringsOnly) {
  EXPECT_EQ(PrecheckUpstreamJson(absl::StrCat(R"({"a":")", std::string(1000, '['), R"("})"), 2),
            JsonRead::kOk);
  EXPECT_EQ(PrecheckUpstreamJson(R"({"a":"\"[[[["})", 1), JsonRead::kOk);
  EXPECT_EQ(PrecheckUpstreamJson(R"({"a":"\\\"[[[["})", 1), JsonRead::kOk);
  EXPECT_EQ(PrecheckUpstreamJson(R"({"a":"\\"})", 1), JsonRead::kOk);
  EXPECT_EQ(PrecheckUpstreamJson(R"({"a":"\\","b":[[]]})", 2), JsonRead::kTooDeep);
  EXPECT_EQ(PrecheckUpstreamJson(R"({"a":[{"b":[]}]})", 3), JsonRead::kTooDeep);
  EXPECT_EQ(PrecheckUpstreamJson(R"({"a":[{"b":[]}]})", 4), JsonRead::kOk);
  EXPECT_EQ(PrecheckUpstreamJson("]]]]]]", 0), JsonRead::kOk);
}

// A control character in a string is not JSON to either parser. rapidjson 1.1 reading sixteen
// bytes at a time (RAPIDJSON_SSE2) misses 0x1A-0x1F there; the precheck refuses every one, at
// every position around a sixteen-byte block.
TEST(JsonMappingTest, AControlCharacterInAStringIsNotJson) {
  for (int byte = 1; byte < 0x20; ++byte) {
    for (std::size_t at = 0; at < 40; ++at) {
      std::string value(40, 'a');
      value[at] = static_cast<char>(byte);
      const std::string body = absl::StrCat(R"({"id":")", value, R"("})");
      ASSERT_TRUE(nlohmann::json::parse(body, nullptr, false).is_discarded()) << byte;
      JsonDocument document;
      ASSERT_EQ(ParseUpstreamJson(body, document), JsonRead::kNotJson)
          << "byte " << byte << " at " << at;
    }
  }
  // Escaped, it is a character like any other.
  JsonDocument document;
  EXPECT_EQ(ParseUpstreamJson(R"({"id":"a\u001fb"})", document), JsonRead::kOk);
}

// rapidjson 1.1 takes a lone low surrogate escape and writes it as invalid UTF-8; the precheck
// refuses it (nlohmann::json refuses it too), and only it.
TEST(JsonMappingTest, ALoneLowSurrogateEscapeIsNotJson) {
  EXPECT_EQ(PrecheckUpstreamJson(R"(["\udc00"])"), JsonRead::kNotJson);
  EXPECT_EQ(PrecheckUpstreamJson(R"(["\uDFFF"])"), JsonRead::kNotJson);
  EXPECT_EQ(PrecheckUpstreamJson(R"(["a\u0041\udc00"])"), JsonRead::kNotJson);
  EXPECT_EQ(PrecheckUpstreamJson(R"(["\ud800x\udc00"])"), JsonRead::kNotJson);
  EXPECT_EQ(PrecheckUpstreamJson(R"({"\udc00":1})"), JsonRead::kNotJson);
  EXPECT_EQ(PrecheckUpstreamJson(R"(["\ud834\udd1e"])"), JsonRead::kOk);
  EXPECT_EQ(PrecheckUpstreamJson(R"(["\uDBFF\uDFFF\uD800\uDC00"])"), JsonRead::kOk);
  // A backslash escaped, then the letters "udc00": no escape at all.
  EXPECT_EQ(PrecheckUpstreamJson(R"(["\\udc00"])"), JsonRead::kOk);
  // Outside strings the precheck reads no escapes (the parser refuses the text).
  EXPECT_EQ(PrecheckUpstreamJson(R"(\udc00)"), JsonRead::kOk);
  const absl::StatusOr<v1::Message> message =
      ParseMessage(R"({"id":"m1","role":"assistant","content":"\udc00"})");
  ASSERT_FALSE(message.ok());
  ExpectBadResponse(message.status());
  EXPECT_THAT(std::string(message.status().message()), HasSubstr("is not valid JSON"));
  const absl::StatusOr<v1::Message> pair =
      ParseMessage(R"({"id":"m1","role":"assistant","content":"\ud834\udd1e"})");
  ASSERT_TRUE(pair.ok()) << pair.status();
  EXPECT_EQ(pair->content(), "\xF0\x9D\x84\x9E");
}

// The texts nlohmann::json told apart, read by rapidjson: the same accepted, to the same values
// (the fuzzer upstream_json checks the same on its inputs).
TEST(JsonMappingTest, UpstreamJsonIsReadAsNlohmannReadsIt) {
  std::vector<std::string> texts = {
      "1e400",
      "-1e400",
      "1e-400",
      R"("\udc00")",
      R"("\ud800")",
      R"("\ud800\u0041")",
      R"("\ud800\udc00")",
      "\xEF\xBB\xBF{}",
      "\"\xC0\x80\"",
      "\"\xED\xA0\x80\"",
      "\"\xF4\x90\x80\x80\"",
      "\"\xF0\x80\x80\x80\"",
      "\"\xE0\x80\x80\"",
      "\"\xff\"",
      "\"\xc3\"",
      "\x80",
      R"("\u0000")",
      R"({"\u0000k":1})",
      "18446744073709551615",
      "18446744073709551616",
      "-9223372036854775808",
      "-9223372036854775809",
      "9223372036854775808",
      "-0",
      "-0.0",
      "0.1",
      "123456789012345678901234567890",
      "1.7976931348623157e308",
      "2.2250738585072011e-308",
      "4.9e-324",
      "1e-500",
      "1e23",
      "0.30000000000000004",
      "9007199254740993",
      "1.00000000000000011102230246251565404236316680908203125",
      R"({"a":1,"a":2})",
      R"({"a":1,"a":null})",
      "[1,]",
      R"({"a":1,})",
      "01",
      "1.",
      ".5",
      "+1",
      "",
      " ",
      "nul",
      "[] x",
      "[]\n",
      "\t[]\r\n",
      "\"\x7f\"",
      "\"\x1f\"",
      "/*c*/1",
      "NaN",
      "Infinity",
      R"("\x")",
      R"("\/")",
      R"("\U0041")",
      "1E5",
      "1e+5",
      "-",
      "0e",
      R"(["\ud834\udd1e"])",
      R"({"a" :  [ 1 , 2 ] })",
      "true",
      "false",
      "null",
      "[1,2",
      R"({"a":})",
      R"({"a" 1})",
      "\xBB{}",
      "\xEF{}",
      "\xEF\xBB{}",
      "\xEF\xBB\xBF\xEF\xBB\xBF{}",
      "1000e306",
      "0.01e310",
      "1e308",
      "-1e308",
      "2e-308",
      "1.5E-3",
      "0.0",
      "-01",
      "1e01",
      "[-0,0.0,-0.0e0]",
      R"({"n":[12345678901234567890,-12345678901234567890,1e2,100]})"};
  // UTF-8 at each edge of Unicode's table 3-7, in a string and outside one.
  for (const char* sequence : {"\xC2\x80",
                               "\xDF\xBF",
                               "\xE0\xA0\x80",
                               "\xE0\x9F\xBF",
                               "\xED\x9F\xBF",
                               "\xED\xA0\x80",
                               "\xEE\x80\x80",
                               "\xEF\xBF\xBF",
                               "\xF0\x90\x80\x80",
                               "\xF0\x8F\xBF\xBF",
                               "\xF4\x8F\xBF\xBF",
                               "\xF4\x90\x80\x80",
                               "\xF5\x80\x80\x80",
                               "\xC1\xBF",
                               "\xC2\x7F",
                               "\xC2\xC0",
                               "\xE2\x82",
                               "\xE2\x28\xA1",
                               "\xF1\x80\x80",
                               "\x80",
                               "\xBF",
                               "\xF8\x88\x80\x80\x80"}) {
    texts.push_back(absl::StrCat("\"", sequence, "\""));
    texts.push_back(absl::StrCat("[\"a", sequence, "b\",1]"));
    texts.push_back(absl::StrCat("\"", sequence));
    texts.push_back(absl::StrCat("[", sequence, "]"));
  }
  std::vector<std::string> with_nul = {std::string("5\0x", 3), std::string("{}\0{", 4),
                                       std::string("[1,\0 2]", 7), std::string("\"a\0b\"", 5),
                                       std::string("5\0", 2), std::string("\0", 1),
                                       // Past the NUL, nothing is read: neither depth nor escapes.
                                       std::string("[]\0\"\\udc00\"", 11),
                                       absl::StrCat(std::string("1\0", 2), Nested(100, "[", "]"))};
  texts.insert(texts.end(), with_nul.begin(), with_nul.end());
  for (const std::string& text : texts) {
    JsonDocument document;
    const JsonRead read = ParseUpstreamJson(text, document);
    const json reference = json::parse(text, nullptr, /*allow_exceptions=*/false);
    ASSERT_EQ(read == JsonRead::kOk, !reference.is_discarded())
        << json(text).dump(-1, ' ', true, json::error_handler_t::replace);
    if (read != JsonRead::kOk) continue;
    EXPECT_EQ(NlohmannFromJson(document).dump(), reference.dump()) << text;
  }
  // The difference left (bounded_json.h): an exponent past 308 refused before the value is
  // known, though the number is zero.
  for (const std::string text : {"0e400", "[-0.0E+310]"}) {
    JsonDocument document;
    rapidjson::ParseErrorCode error = rapidjson::kParseErrorNone;
    EXPECT_EQ(ParseUpstreamJson(text, document, &error), JsonRead::kNotJson) << text;
    EXPECT_EQ(error, rapidjson::kParseErrorNumberTooBig) << text;
    EXPECT_FALSE(json::parse(text, nullptr, false).is_discarded()) << text;
  }
}

// Of duplicate member names the last counts, everywhere nlohmann::json's map kept only it.
TEST(JsonMappingTest, TheLastOfDuplicateMembersCounts) {
  const absl::StatusOr<v1::Message> message = ParseMessage(
      R"({"id":"m0","id":"m1","role":"user","role":"assistant","content":"x","content":null,)"
      R"("meta_data":{"k":1,"k":2,"l":[1,2],"l":[3],"o":{"a":1},"o":{"b":{"c":1},"b":{"d":2}}},)"
      R"("tool_calls":[{"id":"c1","type":"function","function":)"
      R"({"name":"f","arguments":{"b":1,"a":[1.5,true,null,"\u0000"],"b":2}}}]})");
  ASSERT_TRUE(message.ok()) << message.status();
  EXPECT_EQ(message->id(), "m1");
  EXPECT_EQ(message->role(), v1::ROLE_ASSISTANT);
  EXPECT_EQ(message->content(), "");
  EXPECT_EQ(message->meta_data().fields().at("k").number_value(), 2);
  // Lists and objects are replaced by a later duplicate, not merged with it.
  const google::protobuf::Value& list = message->meta_data().fields().at("l");
  ASSERT_EQ(list.list_value().values_size(), 1);
  EXPECT_EQ(list.list_value().values(0).number_value(), 3);
  const google::protobuf::Struct& object = message->meta_data().fields().at("o").struct_value();
  ASSERT_EQ(object.fields_size(), 1);
  const google::protobuf::Struct& inner = object.fields().at("b").struct_value();
  ASSERT_EQ(inner.fields_size(), 1);
  EXPECT_EQ(inner.fields().at("d").number_value(), 2);
  // An object's arguments are written as nlohmann::json wrote them: sorted, compact.
  EXPECT_EQ(message->tool_calls(0).function().arguments(),
            R"({"a":[1.5,true,null,"\u0000"],"b":2})");
}

// A document read again holds the new text, or null when that is not JSON: never the old
// values, whose text it no longer keeps.
TEST(JsonMappingTest, ADocumentReadAgainHoldsOnlyTheNewText) {
  JsonDocument document;
  ASSERT_EQ(ParseUpstreamJson(R"({"a":"first"})", document), JsonRead::kOk);
  ASSERT_EQ(ParseUpstreamJson(R"({"b":"second"})", document), JsonRead::kOk);
  EXPECT_EQ(JsonStringMember(document, "b"), "second");
  EXPECT_EQ(JsonMember(document, "a"), nullptr);
  EXPECT_EQ(ParseUpstreamJson(R"({"c":)", document), JsonRead::kNotJson);
  EXPECT_TRUE(document.IsNull());
  // Moved, its strings still read (they point into the copy that moves with it).
  ASSERT_EQ(ParseUpstreamJson(R"({"d":"moved"})", document), JsonRead::kOk);
  const JsonDocument moved = std::move(document);
  EXPECT_EQ(JsonStringMember(moved, "d"), "moved");
}

TEST(JsonMappingTest, StringsKeepTheirNulBytes) {
  const absl::StatusOr<v1::Message> message = ParseMessage(
      R"({"id":"m1","role":"assistant","content":"a\u0000b","meta_data":{"k\u0000":"v\u0000"}})");
  ASSERT_TRUE(message.ok()) << message.status();
  EXPECT_EQ(message->content(), std::string("a\0b", 3));
  EXPECT_EQ(message->meta_data().fields().at(std::string("k\0", 2)).string_value(),
            std::string("v\0", 2));
}

// Issue #13, item 10: a Struct nested 64 levels became ~190 protobuf levels, past what clients
// parse (protobuf's default recursion limit of 100). Cut at kMaxStructDepth, a whole response
// carrying it parses with the default limit.
TEST(JsonMappingTest, AMessageWithDeepMetaDataStillParsesInClients) {
  const std::string body = absl::StrCat(R"({"id":"m1","role":"assistant","content":"x",)",
                                        R"("meta_data":)", Nested(60, "{\"a\":", "}"), "}");
  absl::StatusOr<v1::Message> message = ParseMessage(body);
  ASSERT_TRUE(message.ok()) << message.status();
  v1::ListMessagesResponse response;
  *response.add_messages() = *message;
  const std::string wire = response.SerializeAsString();
  google::protobuf::io::CodedInputStream input(reinterpret_cast<const uint8_t*>(wire.data()),
                                               static_cast<int>(wire.size()));
  v1::ListMessagesResponse parsed;  // CodedInputStream's default recursion limit: 100.
  EXPECT_TRUE(parsed.ParseFromCodedStream(&input));
}

TEST(JsonMappingTest, Assistant) {
  auto assistant = ParseAssistant(R"({
    "id": "7c0e5d3a-4c1b-4f57-9a51-1f1f3e0a0001", "name": "Haufe Copilot Tax",
    "meta_data_response_schema": {"title": "LgAgentMetaDataModel", "required": ["intent"]},
    "request_required_fields": {"__root__": ["user_data"], "user_data": ["licence"]},
    "streaming": true, "unknown_field": {"x": 1}})");
  ASSERT_TRUE(assistant.ok()) << assistant.status();
  EXPECT_EQ(assistant->id(), "7c0e5d3a-4c1b-4f57-9a51-1f1f3e0a0001");
  EXPECT_EQ(assistant->name(), "Haufe Copilot Tax");
  EXPECT_TRUE(assistant->streaming());
  EXPECT_EQ(assistant->meta_data_response_schema().fields().at("title").string_value(),
            "LgAgentMetaDataModel");
  const auto& required = assistant->request_required_fields().fields();
  EXPECT_EQ(required.at("user_data").list_value().values(0).string_value(), "licence");
}

TEST(JsonMappingTest, AssistantWithNullsAndWrongTypes) {
  auto assistant = ParseAssistant(
      R"({"id":"a","name":null,"meta_data_response_schema":null,"streaming":"yes"})");
  ASSERT_TRUE(assistant.ok()) << assistant.status();
  EXPECT_EQ(assistant->name(), "");
  EXPECT_FALSE(assistant->streaming());
  EXPECT_FALSE(assistant->has_meta_data_response_schema());
}

TEST(JsonMappingTest, AssistantWithoutIdIsBadResponse) {
  ExpectBadResponse(ParseAssistant(R"({"name":"x"})").status());
  ExpectBadResponse(ParseAssistant(R"({"id":null})").status());
  ExpectBadResponse(ParseAssistant(R"({"id":42})").status());
  ExpectBadResponse(ParseAssistant("[]").status());
  ExpectBadResponse(ParseAssistant("not json").status());
  ExpectBadResponse(ParseAssistant("").status());
}

TEST(JsonMappingTest, AssistantListIsBareArray) {
  auto list = ParseAssistantList(R"([{"id":"a","name":"A"},{"id":"b","name":"B"}])");
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[1].id(), "b");
  auto wrapped = ParseAssistantList(R"({"items":[{"id":"a"}]})");
  ASSERT_TRUE(wrapped.ok());
  EXPECT_EQ(wrapped->size(), 1u);
  ExpectBadResponse(ParseAssistantList(R"([{"id":"a"},{"name":"no id"}])").status());
  ExpectBadResponse(ParseAssistantList("\"x\"").status());
}

TEST(JsonMappingTest, Thread) {
  auto thread = ParseThread(R"({"id":"t1","assistant_id":"a1","tenant_id":"x","user_id":null,
      "title":"Tax","created_at":"2025-03-15T09:12:33.456789Z",
      "last_updated_at":"2025-03-15T09:13:00.000001Z"})");
  ASSERT_TRUE(thread.ok()) << thread.status();
  EXPECT_EQ(thread->id(), "t1");
  EXPECT_EQ(thread->assistant_id(), "a1");
  EXPECT_EQ(thread->user_id(), "");
  EXPECT_EQ(thread->title(), "Tax");
  EXPECT_EQ(thread->create_time().seconds(), 1742029953);
  EXPECT_EQ(thread->create_time().nanos(), 456789000);
  EXPECT_EQ(thread->update_time().seconds(), 1742029980);
  EXPECT_EQ(thread->update_time().nanos(), 1000);
}

TEST(JsonMappingTest, ThreadWithUnreadableTimestampIsBadResponse) {
  ExpectBadResponse(ParseThread(R"({"id":"t1","created_at":"later"})").status());
  ExpectBadResponse(ParseThread(R"({"id":"t1","created_at":12})").status());
  EXPECT_TRUE(ParseThread(R"({"id":"t1","created_at":null})").ok());
  // The value is upstream text (it may echo a secret, unredacted here): the message names the
  // field, never quotes it (found by the stream_decoder fuzzer).
  const absl::Status echoed = ParseThread(R"({"id":"t1","created_at":"LICENCE-42"})").status();
  ExpectBadResponse(echoed);
  EXPECT_EQ(std::string(echoed.message()).find("LICENCE-42"), std::string::npos)
      << echoed.message();
  EXPECT_NE(std::string(echoed.message()).find("created_at"), std::string::npos)
      << echoed.message();
}

TEST(JsonMappingTest, AssistantMessageWithEverything) {
  auto message = ParseMessage(R"({
    "id":"m1","thread_id":"t1","role":"assistant","content":"",
    "created_at":"2025-01-01T00:00:00.000000Z",
    "tool_calls":[{"id":"call_1","type":"function",
                   "function":{"name":"lookup","arguments":"{\"q\":\"vat\"}"}},
                  {"id":"call_2","type":"function",
                   "function":{"name":"obj","arguments":{"a":1}}}, 5],
    "sources":[{"content":"excerpt","meta_data":{"document_title":"EStG","page":3}}],
    "meta_data":{"intent":"tax","legal_advice":false,"type":"abc"}})");
  ASSERT_TRUE(message.ok()) << message.status();
  EXPECT_EQ(message->id(), "m1");
  EXPECT_EQ(message->thread_id(), "t1");
  EXPECT_EQ(message->role(), v1::ROLE_ASSISTANT);
  EXPECT_EQ(message->create_time().seconds(), 1735689600);
  ASSERT_EQ(message->tool_calls_size(), 2);
  EXPECT_EQ(message->tool_calls(0).id(), "call_1");
  EXPECT_EQ(message->tool_calls(0).type(), "function");
  EXPECT_EQ(message->tool_calls(0).function().name(), "lookup");
  EXPECT_EQ(message->tool_calls(0).function().arguments(), R"({"q":"vat"})");
  EXPECT_EQ(message->tool_calls(1).function().arguments(), R"({"a":1})");
  ASSERT_EQ(message->sources_size(), 1);
  EXPECT_EQ(message->sources(0).content(), "excerpt");
  EXPECT_EQ(message->sources(0).meta_data().fields().at("document_title").string_value(), "EStG");
  EXPECT_EQ(message->sources(0).meta_data().fields().at("page").number_value(), 3);
  EXPECT_EQ(message->meta_data().fields().at("intent").string_value(), "tax");
  EXPECT_FALSE(message->meta_data().fields().at("legal_advice").bool_value());
}

TEST(JsonMappingTest, ToolAndUserMessages) {
  auto tool = ParseMessage(R"({"id":"m2","role":"tool","content":"42","tool_call_id":"call_1",
                              "sources":null,"meta_data":null})");
  ASSERT_TRUE(tool.ok());
  EXPECT_EQ(tool->role(), v1::ROLE_TOOL);
  EXPECT_EQ(tool->tool_call_id(), "call_1");
  EXPECT_FALSE(tool->has_meta_data());
  auto user = ParseMessage(R"({"id":"m3","role":"user","content":"hi",
      "attachments":[{"file_id":"f1","user_id":"u1","base_url":"https://docs"}]})");
  ASSERT_TRUE(user.ok());
  EXPECT_EQ(user->role(), v1::ROLE_USER);
  ASSERT_EQ(user->attachments_size(), 1);
  EXPECT_EQ(user->attachments(0).file_id(), "f1");
  EXPECT_EQ(user->attachments(0).user_id(), "u1");
  EXPECT_EQ(user->attachments(0).base_url(), "https://docs");
  auto odd = ParseMessage(R"({"id":"m4","role":"wizard"})");
  ASSERT_TRUE(odd.ok());
  EXPECT_EQ(odd->role(), v1::ROLE_UNSPECIFIED);
  ExpectBadResponse(ParseMessage(R"({"role":"user"})").status());
}

// The licence the gateway sends in meta_data.user_data is its own: an answer that echoes the
// field gets it removed (and user_data with it when nothing else is in it), whatever its value;
// the assistant's own meta_data stays.
TEST(JsonMappingTest, MessageMetaDataLosesTheGatewaysLicenceField) {
  auto echoed = ParseMessage(R"({"id":"m5","role":"assistant","meta_data":{"intent":"tax",)"
                             R"("user_data":{"licence":"anything","customer":"c1"}}})");
  ASSERT_TRUE(echoed.ok()) << echoed.status();
  const auto& fields = echoed->meta_data().fields();
  EXPECT_EQ(fields.at("intent").string_value(), "tax");
  const auto& user_data = fields.at("user_data").struct_value().fields();
  EXPECT_EQ(user_data.count("licence"), 0u);
  EXPECT_EQ(user_data.at("customer").string_value(), "c1");

  auto only_licence = ParseMessage(
      R"({"id":"m6","role":"assistant","meta_data":{"user_data":{"licence":"LIC-1"}}})");
  ASSERT_TRUE(only_licence.ok()) << only_licence.status();
  EXPECT_EQ(only_licence->meta_data().fields().count("user_data"), 0u);
  EXPECT_EQ(only_licence->meta_data().SerializeAsString().find("LIC-1"), std::string::npos);

  // Not an object: left as it is (nothing the gateway sent).
  auto odd = ParseMessage(R"({"id":"m7","role":"assistant","meta_data":{"user_data":"x"}})");
  ASSERT_TRUE(odd.ok()) << odd.status();
  EXPECT_EQ(odd->meta_data().fields().at("user_data").string_value(), "x");
}

TEST(JsonMappingTest, MessagePage) {
  auto page = ParseMessagePage(
      R"({"cursor":"abc","items":[{"id":"m2","role":"assistant"},{"id":"m1","role":"user"}]})");
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->messages.size(), 2u);
  EXPECT_EQ(page->messages[0].id(), "m2");
  EXPECT_EQ(page->next_cursor, "abc");
  for (const char* last :
       {R"({"cursor":null,"items":[]})", R"({"items":[]})", R"({"cursor":"","items":null})"}) {
    auto end = ParseMessagePage(last);
    ASSERT_TRUE(end.ok()) << last;
    EXPECT_EQ(end->next_cursor, "") << last;
    EXPECT_TRUE(end->messages.empty()) << last;
  }
  ExpectBadResponse(ParseMessagePage(R"({"items":[{"role":"user"}]})").status());
  ExpectBadResponse(ParseMessagePage("[]").status());
}

TEST(JsonMappingTest, MessageChunk) {
  auto json_line = ParseJson(
      R"({"message_id":"m1","thread_id":"t1","created_at":"2025-01-01T00:00:00.000000Z",
          "delta":{"role":"assistant","content":"First part ","sources":[
            {"content":"c","meta_data":{"document_title":"t"}}]}})",
      "line");
  ASSERT_TRUE(json_line.ok());
  EXPECT_FALSE(IsStreamErrorLine(*json_line));
  auto chunk = MessageChunkFromJson(*json_line);
  ASSERT_TRUE(chunk.ok()) << chunk.status();
  EXPECT_EQ(chunk->message_id(), "m1");
  EXPECT_EQ(chunk->thread_id(), "t1");
  EXPECT_EQ(chunk->create_time().seconds(), 1735689600);
  EXPECT_EQ(chunk->delta().role(), v1::ROLE_ASSISTANT);
  EXPECT_EQ(chunk->delta().content(), "First part ");
  ASSERT_EQ(chunk->delta().sources_size(), 1);
  EXPECT_EQ(chunk->delta().sources(0).meta_data().fields().at("document_title").string_value(),
            "t");
  ExpectBadResponse(MessageChunkFromJson(*ParseJson(R"({"delta":{}})", "line")).status());
}

TEST(JsonMappingTest, StreamErrorLineDetection) {
  const auto is_error_line = [](absl::string_view text) {
    const absl::StatusOr<JsonDocument> line = ParseJson(text, "line");
    EXPECT_TRUE(line.ok()) << text;
    return line.ok() && IsStreamErrorLine(*line);
  };
  EXPECT_TRUE(is_error_line(R"({"error_code":"api_error","detail":"x"})"));
  EXPECT_TRUE(is_error_line(R"({"error_code":null})"));
  EXPECT_FALSE(is_error_line(R"({"error_code":"x","delta":{}})"));
  EXPECT_FALSE(is_error_line(R"({"error_code":"x","delta":null})"));
  EXPECT_FALSE(is_error_line(R"({"message_id":"m"})"));
  EXPECT_FALSE(is_error_line("[]"));
}

TEST(JsonMappingTest, StructRoundTrip) {
  const std::string text =
      R"({"s":"x","n":1.5,"i":3,"neg":-7,"b":true,"z":null,"l":[1,"a",{"k":[]}],"o":{"p":{}}})";
  google::protobuf::Struct as_struct = StructFromJson(*ParseJson(text, "struct"));
  EXPECT_EQ(as_struct.fields().at("i").number_value(), 3);
  EXPECT_EQ(JsonFromStruct(as_struct), json::parse(text));
  EXPECT_EQ(StructFromJson(*ParseJson("[]", "array")).fields_size(), 0);
}

TEST(JsonMappingTest, CreateThreadBody) {
  CreateThreadParams params;
  params.assistant_id = "a1";
  EXPECT_EQ(json::parse(CreateThreadBody(params)), json({{"assistant_id", "a1"}}));
  params.user_id = "u1";
  params.title = "T";
  EXPECT_EQ(json::parse(CreateThreadBody(params)),
            json({{"assistant_id", "a1"}, {"user_id", "u1"}, {"title", "T"}}));
}

v1::MessageInput UserMessage(const std::string& content) {
  v1::MessageInput message;
  message.set_role(v1::ROLE_USER);
  message.set_content(content);
  return message;
}

TEST(JsonMappingTest, CreateMessageBodies) {
  EXPECT_EQ(json::parse(CreateMessageBody(UserMessage("Hallo"))),
            json({{"role", "user"}, {"content", "Hallo"}}));

  v1::MessageInput with_file = UserMessage("see file");
  auto* attachment = with_file.add_attachments();
  attachment->set_file_id("f1");
  EXPECT_EQ(json::parse(CreateMessageBody(with_file)),
            json::parse(R"({"role":"user","content":"see file",
                            "attachments":[{"file_id":"f1"}]})"));

  v1::MessageInput assistant;
  assistant.set_role(v1::ROLE_ASSISTANT);
  auto* call = assistant.add_tool_calls();
  call->set_id("call_1");
  call->mutable_function()->set_name("lookup");
  call->mutable_function()->set_arguments(R"({"q":1})");
  EXPECT_EQ(json::parse(CreateMessageBody(assistant)),
            json::parse(R"({"role":"assistant","content":"","tool_calls":[
                {"id":"call_1","type":"function",
                 "function":{"name":"lookup","arguments":"{\"q\":1}"}}]})"));

  v1::MessageInput tool;
  tool.set_role(v1::ROLE_TOOL);
  tool.set_content("result");
  tool.set_tool_call_id("call_1");
  EXPECT_EQ(json::parse(CreateMessageBody(tool)),
            json({{"role", "tool"}, {"content", "result"}, {"tool_call_id", "call_1"}}));
}

TEST(JsonMappingTest, InvalidUtf8IsReplacedNotThrown) {
  std::string body = CreateMessageBody(UserMessage("bad \xff byte"));
  json parsed = json::parse(body, nullptr, false);
  ASSERT_FALSE(parsed.is_discarded()) << body;
  EXPECT_EQ(parsed["content"], "bad \xEF\xBF\xBD byte");
}

google::protobuf::Struct Tool(const std::string& name) {
  return StructFromJson(*ParseJson(
      R"({"type":"function","function":{"name":")" + name + R"(","parameters":{"type":"object"}}})",
      "tool"));
}

TEST(JsonMappingTest, RunBodies) {
  RunParams params;
  params.thread_id = "t1";
  EXPECT_EQ(RunBody(params, ""), "{}");
  EXPECT_EQ(json::parse(RunBody(params, "PI123")),
            json::parse(R"({"meta_data":{"user_data":{"licence":"PI123"}}})"));
  params.tools = {Tool("f")};
  EXPECT_EQ(json::parse(RunBody(params, "PI123")),
            json::parse(R"({"meta_data":{"user_data":{"licence":"PI123"}},
                "tools":[{"type":"function","function":{"name":"f",
                          "parameters":{"type":"object"}}}]})"));
}

TEST(JsonMappingTest, CompletionBodies) {
  CompletionParams params{.assistant_id = "a1",
                          .messages = {UserMessage("Q?")},
                          .user_id = "u1",
                          .thread_id = "t-not-in-body",
                          .tools = {Tool("g")}};
  EXPECT_EQ(json::parse(CompletionBody(params, "PI9")),
            json::parse(R"({"assistant_id":"a1","user_id":"u1",
                "messages":[{"role":"user","content":"Q?"}],
                "meta_data":{"user_data":{"licence":"PI9"}},
                "tools":[{"type":"function","function":{"name":"g",
                          "parameters":{"type":"object"}}}]})"));
  CompletionParams minimal;
  minimal.assistant_id = "a1";
  minimal.messages = {UserMessage("x")};
  EXPECT_EQ(json::parse(CompletionBody(minimal, "")),
            json::parse(R"({"assistant_id":"a1","messages":[{"role":"user","content":"x"}]})"));
}

// The bodies as the gateway built them before writing them directly: nlohmann::json values
// (std::map: members sorted) dumped with invalid UTF-8 replaced.
json ReferenceMessageInput(const v1::MessageInput& message) {
  json out = json::object();
  out["role"] = std::string(RoleToString(message.role()));
  out["content"] = message.content();
  if (message.tool_calls_size() > 0) {
    json calls = json::array();
    for (const auto& call : message.tool_calls()) {
      json function = json::object();
      function["name"] = call.function().name();
      function["arguments"] = call.function().arguments();
      json item = json::object();
      item["id"] = call.id();
      item["type"] = call.type().empty() ? std::string("function") : call.type();
      item["function"] = std::move(function);
      calls.push_back(std::move(item));
    }
    out["tool_calls"] = std::move(calls);
  }
  if (!message.tool_call_id().empty()) out["tool_call_id"] = message.tool_call_id();
  if (message.attachments_size() > 0) {
    json attachments = json::array();
    for (const auto& attachment : message.attachments()) {
      json item = json::object();
      item["file_id"] = attachment.file_id();
      if (!attachment.user_id().empty()) item["user_id"] = attachment.user_id();
      if (!attachment.base_url().empty()) item["base_url"] = attachment.base_url();
      attachments.push_back(std::move(item));
    }
    out["attachments"] = std::move(attachments);
  }
  return out;
}

std::string ReferenceDump(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string ReferenceCompletionBody(const CompletionParams& params, absl::string_view licence) {
  json out = json::object();
  out["assistant_id"] = params.assistant_id;
  json messages = json::array();
  for (const auto& message : params.messages) messages.push_back(ReferenceMessageInput(message));
  out["messages"] = std::move(messages);
  if (!params.user_id.empty()) out["user_id"] = params.user_id;
  if (!licence.empty()) out["meta_data"]["user_data"]["licence"] = std::string(licence);
  if (!params.tools.empty()) {
    json tools = json::array();
    for (const auto& tool : params.tools) tools.push_back(JsonFromStruct(tool));
    out["tools"] = std::move(tools);
  }
  return ReferenceDump(out);
}

// CompletionBody and CreateMessageBody write, byte for byte, what the nlohmann values dumped:
// every optional member present and absent, text that needs escaping, multi-byte and invalid
// UTF-8, several messages and tool calls.
TEST(JsonMappingTest, BodiesWrittenDirectlyAreTheDumpedValuesBytes) {
  const std::vector<std::string> texts = {"",
                                          "plain",
                                          "quote \" backslash \\ slash /",
                                          "ctl \n\r\t\b\f\x01\x1f\x7f",
                                          "Gr\xc3\xbc\xc3\x9f"
                                          "e \xe2\x9c\x93 \xf0\x9f\x98\x80",
                                          "bad \xff\xfe \xc3",
                                          std::string("nul \0 in", 9)};
  int checked = 0;
  for (std::size_t t = 0; t < texts.size(); ++t) {
    const std::string& text = texts[t];
    const std::string& other = texts[(t + 3) % texts.size()];
    for (int shape = 0; shape < 8; ++shape) {
      v1::MessageInput message;
      message.set_role(shape % 4 == 0 ? v1::ROLE_USER
                                      : (shape % 4 == 1 ? v1::ROLE_ASSISTANT
                                                        : (shape % 4 == 2 ? v1::ROLE_TOOL
                                                                          : v1::ROLE_UNSPECIFIED)));
      message.set_content(text);
      if (shape & 1) {
        v1::ToolCall* call = message.add_tool_calls();
        call->set_id(other);
        call->set_type(shape & 2 ? "" : text);
        call->mutable_function()->set_name(text);
        call->mutable_function()->set_arguments(R"({"q":")" + other + "\"}");
        message.add_tool_calls()->set_id("second");
      }
      if (shape & 2) message.set_tool_call_id(other);
      if (shape & 4) {
        v1::Attachment* attachment = message.add_attachments();
        attachment->set_file_id(text);
        attachment->set_user_id(shape & 1 ? other : "");
        attachment->set_base_url(shape & 2 ? "" : other);
        message.add_attachments()->set_file_id("f2");
      }
      EXPECT_EQ(CreateMessageBody(message), ReferenceDump(ReferenceMessageInput(message)))
          << t << "/" << shape;
      CompletionParams params;
      params.assistant_id = other;
      params.messages = {message, UserMessage(other)};
      if (shape & 1) params.user_id = text;
      if (shape & 2) {
        google::protobuf::Struct named = Tool("h");
        (*named.mutable_fields())["description"].set_string_value(text);
        params.tools = {Tool("g"), named};
      }
      for (const std::string& licence : {std::string(), std::string("PI9"), other}) {
        EXPECT_EQ(CompletionBody(params, licence), ReferenceCompletionBody(params, licence))
            << t << "/" << shape;
        ++checked;
      }
    }
  }
  CompletionParams none;
  EXPECT_EQ(CompletionBody(none, ""), ReferenceCompletionBody(none, ""));
  EXPECT_EQ(checked, 168);
}

}  // namespace
}  // namespace copilot::gateway
