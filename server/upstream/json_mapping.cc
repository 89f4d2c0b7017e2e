#include "server/upstream/json_mapping.h"

#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "server/common/errors.h"
#include "server/common/json_text.h"

namespace copilot::gateway {
namespace {

using nlohmann::json;

absl::Status BadResponse(absl::string_view message) {
  return MakeError(absl::StatusCode::kInternal, message, kBadResponseReason);
}

// Compact JSON text; invalid UTF-8 in a proto string is replaced, never thrown on.
std::string Dump(const json& value) {
  return value.dump(-1, ' ', /*ensure_ascii=*/false, json::error_handler_t::replace);
}

// The string member `key`, or "" when absent, null or not a string.
std::string String(const JsonValue& object, absl::string_view key) {
  return JsonStringMember(object, key);
}

absl::StatusOr<std::string> RequiredString(const JsonValue& object, absl::string_view key,
                                           absl::string_view what) {
  std::string value = String(object, key);
  if (value.empty()) {
    return BadResponse(absl::StrCat("upstream ", what, " has no \"", key, "\""));
  }
  return value;
}

// Sets `*out` from the timestamp member `key` when present.
absl::Status ReadTimestamp(const JsonValue& object, absl::string_view key, absl::string_view what,
                           google::protobuf::Timestamp* out) {
  const JsonValue* value = JsonMember(object, key);
  if (value == nullptr) return absl::OkStatus();
  if (!value->IsString()) {
    return BadResponse(absl::StrCat("upstream ", what, " has a non-string \"", key, "\""));
  }
  absl::StatusOr<google::protobuf::Timestamp> parsed = ParseTimestamp(JsonText(*value));
  if (!parsed.ok()) {
    // Not the value itself: it is upstream text, and this message reaches the caller.
    return BadResponse(absl::StrCat("upstream ", what, " has an unreadable \"", key,
                                    "\" (not an RFC 3339 time in years 1-9999)"));
  }
  *out = *std::move(parsed);
  return absl::OkStatus();
}

// The items of the array member `key`; none when it is absent or not an array.
JsonValue::ConstArray Array(const JsonValue& object, absl::string_view key) {
  static const JsonValue* const kEmpty = new JsonValue(rapidjson::kArrayType);
  const JsonValue* value = JsonMember(object, key);
  if (value == nullptr || !value->IsArray()) return kEmpty->GetArray();
  return value->GetArray();
}

void FillValue(const JsonValue& value, int depth, google::protobuf::Value* out);

// Fills `out` from a JSON object's members (the last of duplicate names wins).
void FillStruct(const JsonValue& object, int depth, google::protobuf::Struct* out) {
  if (!object.IsObject()) return;
  auto& fields = *out->mutable_fields();
  for (const auto& member : object.GetObject()) {
    google::protobuf::Value& field = fields[std::string(JsonText(member.name))];
    field.Clear();  // A duplicate name's earlier list or object is replaced, not added to.
    FillValue(member.value, depth, &field);
  }
}

void FillValue(const JsonValue& value, int depth, google::protobuf::Value* out) {
  if (depth >= kMaxStructDepth && (value.IsArray() || value.IsObject())) {
    out->set_null_value(google::protobuf::NULL_VALUE);
    return;
  }
  switch (value.GetType()) {
    case rapidjson::kFalseType:
    case rapidjson::kTrueType:
      out->set_bool_value(value.GetBool());
      break;
    case rapidjson::kNumberType:
      out->set_number_value(value.GetDouble());
      break;
    case rapidjson::kStringType:
      out->set_string_value(std::string(JsonText(value)));
      break;
    case rapidjson::kArrayType: {
      auto* list = out->mutable_list_value();
      for (const JsonValue& item : value.GetArray()) FillValue(item, depth + 1, list->add_values());
      break;
    }
    case rapidjson::kObjectType:
      FillStruct(value, depth + 1, out->mutable_struct_value());
      break;
    case rapidjson::kNullType:
      out->set_null_value(google::protobuf::NULL_VALUE);
      break;
  }
}

void ReadSources(const JsonValue::ConstArray& array,
                 google::protobuf::RepeatedPtrField<v1::Source>* out) {
  for (const JsonValue& item : array) {
    if (!item.IsObject()) continue;
    v1::Source* source = out->Add();
    source->set_content(String(item, "content"));
    if (const JsonValue* meta = JsonMember(item, "meta_data");
        meta != nullptr && meta->IsObject()) {
      FillStruct(*meta, 0, source->mutable_meta_data());
    }
  }
}

// `"key":` after a comma unless it is the object's first member. Keys are the gateway's own.
void AppendKey(std::string& out, bool& first, absl::string_view key) {
  if (!first) out.push_back(',');
  first = false;
  out.push_back('"');
  out.append(key.data(), key.size());
  out += "\":";
}

// The members below are written in the order nlohmann::json (a std::map) dumped them: sorted.
void AppendToolCall(std::string& out, const v1::ToolCall& call) {
  out += R"({"function":{"arguments":)";
  AppendJsonString(out, call.function().arguments());
  out += R"(,"name":)";
  AppendJsonString(out, call.function().name());
  out += R"(},"id":)";
  AppendJsonString(out, call.id());
  out += R"(,"type":)";
  AppendJsonString(out, call.type().empty() ? absl::string_view("function") : call.type());
  out.push_back('}');
}

void AppendAttachment(std::string& out, const v1::Attachment& attachment) {
  bool first = true;
  out.push_back('{');
  if (!attachment.base_url().empty()) {
    AppendKey(out, first, "base_url");
    AppendJsonString(out, attachment.base_url());
  }
  AppendKey(out, first, "file_id");
  AppendJsonString(out, attachment.file_id());
  if (!attachment.user_id().empty()) {
    AppendKey(out, first, "user_id");
    AppendJsonString(out, attachment.user_id());
  }
  out.push_back('}');
}

// One message of a request's `messages` array (also the create-message body).
void AppendMessageInput(std::string& out, const v1::MessageInput& message) {
  bool first = true;
  out.push_back('{');
  if (message.attachments_size() > 0) {
    AppendKey(out, first, "attachments");
    out.push_back('[');
    for (int i = 0; i < message.attachments_size(); ++i) {
      if (i > 0) out.push_back(',');
      AppendAttachment(out, message.attachments(i));
    }
    out.push_back(']');
  }
  AppendKey(out, first, "content");
  AppendJsonString(out, message.content());
  AppendKey(out, first, "role");
  AppendJsonString(out, RoleToString(message.role()));
  if (!message.tool_call_id().empty()) {
    AppendKey(out, first, "tool_call_id");
    AppendJsonString(out, message.tool_call_id());
  }
  if (message.tool_calls_size() > 0) {
    AppendKey(out, first, "tool_calls");
    out.push_back('[');
    for (int i = 0; i < message.tool_calls_size(); ++i) {
      if (i > 0) out.push_back(',');
      AppendToolCall(out, message.tool_calls(i));
    }
    out.push_back(']');
  }
  out.push_back('}');
}

json ToolsToJson(const std::vector<google::protobuf::Struct>& tools) {
  json out = json::array();
  for (const auto& tool : tools) out.push_back(JsonFromStruct(tool));
  return out;
}

json LicenceMetaData(absl::string_view licence) {
  json user_data = json::object();
  user_data["licence"] = std::string(licence);
  json meta = json::object();
  meta["user_data"] = std::move(user_data);
  return meta;
}

}  // namespace

void StripLicenceMetaData(google::protobuf::Struct& meta_data) {
  auto& fields = *meta_data.mutable_fields();
  const auto user_data = fields.find("user_data");
  if (user_data == fields.end() || !user_data->second.has_struct_value()) return;
  auto& user_fields = *user_data->second.mutable_struct_value()->mutable_fields();
  user_fields.erase("licence");
  if (user_fields.empty()) fields.erase(user_data);
}

absl::StatusOr<JsonDocument> ParseJson(absl::string_view text, absl::string_view what) {
  JsonDocument parsed;
  switch (ParseUpstreamJson(text, parsed)) {
    case JsonRead::kOk:
      return parsed;
    case JsonRead::kTooDeep:
      return BadResponse(
          absl::StrCat("upstream ", what, " nests deeper than ", kMaxJsonDepth, " levels"));
    case JsonRead::kTooManyValues:
      return BadResponse(
          absl::StrCat("upstream ", what, " holds more than ", kMaxJsonValues, " JSON values"));
    case JsonRead::kNotJson:
      break;
  }
  return BadResponse(absl::StrCat("upstream ", what, " is not valid JSON"));
}

namespace {

// The value of text[at, at + count) as decimal digits, or -1 when one is not a digit.
int Digits(absl::string_view text, std::size_t at, std::size_t count) {
  int value = 0;
  for (std::size_t i = at; i < at + count; ++i) {
    const char c = text[i];
    if (c < '0' || c > '9') return -1;
    value = value * 10 + (c - '0');
  }
  return value;
}

// The common spelling, "YYYY-MM-DDTHH:MM:SS[.fraction of 1-9 digits][Z|+HH:MM|-HH:MM]", read
// without absl::ParseTime (every answer carries one: 1,183 instructions against ParseTime's
// 3,240, callgrind over the bench's answers). Anything else, including what it declines to
// read (an out-of-range field, a lowercase "t", a leap second, spaces), returns false and is
// read by absl::ParseTime, so the two agree on what this accepts.
bool ParseCommonTimestamp(absl::string_view text, absl::Time& time) {
  if (text.size() < 19 || text[4] != '-' || text[7] != '-' || text[10] != 'T' || text[13] != ':' ||
      text[16] != ':') {
    return false;
  }
  const int year = Digits(text, 0, 4);
  const int month = Digits(text, 5, 2);
  const int day = Digits(text, 8, 2);
  const int hour = Digits(text, 11, 2);
  const int minute = Digits(text, 14, 2);
  const int second = Digits(text, 17, 2);
  if (year < 1 || month < 1 || day < 1 || hour < 0 || hour > 23 || minute < 0 || minute > 59 ||
      second < 0 || second > 59) {
    return false;
  }
  // absl's civil time normalizes a field out of range (month 13, February 30) into the next
  // month or year, so a month read back that differs from the one written says the date is not.
  const absl::CivilSecond civil(year, month, day, hour, minute, second);
  if (civil.month() != month) return false;
  std::size_t at = 19;
  int64_t nanos = 0;
  if (at < text.size() && text[at] == '.') {
    std::size_t digits = 0;
    for (++at; at < text.size() && text[at] >= '0' && text[at] <= '9'; ++at, ++digits) {
      // Past nine digits the value would outgrow nanos (and, at 19, int64_t): ParseTime reads it.
      if (digits == 9) return false;
      nanos = nanos * 10 + (text[at] - '0');
    }
    if (digits == 0) return false;
    for (; digits < 9; ++digits) nanos *= 10;
  }
  int64_t offset_seconds = 0;
  if (at < text.size() && text[at] == 'Z') {
    ++at;
  } else if (at < text.size() && (text[at] == '+' || text[at] == '-')) {
    if (text.size() - at != 6 || text[at + 3] != ':') return false;
    const int offset_hours = Digits(text, at + 1, 2);
    const int offset_minutes = Digits(text, at + 4, 2);
    if (offset_hours < 0 || offset_hours > 23 || offset_minutes < 0 || offset_minutes > 59) {
      return false;
    }
    offset_seconds = (text[at] == '-' ? -1 : 1) * (offset_hours * 3600 + offset_minutes * 60);
    at += 6;
  }
  if (at != text.size()) return false;
  time = absl::FromCivil(civil, absl::UTCTimeZone()) - absl::Seconds(offset_seconds) +
         absl::Nanoseconds(nanos);
  return true;
}

}  // namespace

absl::StatusOr<google::protobuf::Timestamp> ParseTimestamp(absl::string_view text) {
  absl::Time time;
  if (!ParseCommonTimestamp(text, time)) {
    std::string error;
    const std::string input(text);
    // RFC 3339 with an offset ("Z" included); a naive ISO-8601 time is taken as UTC.
    if (!absl::ParseTime(absl::RFC3339_full, input, &time, &error) &&
        !absl::ParseTime("%Y-%m-%d%ET%H:%M:%E*S", input, absl::UTCTimeZone(), &time, &error)) {
      return absl::InvalidArgumentError(absl::StrCat("not an ISO-8601 time: \"", text, "\""));
    }
  }
  // absl accepts "infinite-future"/"infinite-past"; google.protobuf.Timestamp covers years 1-9999.
  if (time < absl::FromUnixSeconds(-62135596800) || time > absl::FromUnixSeconds(253402300799)) {
    return absl::InvalidArgumentError(absl::StrCat("time out of range: \"", text, "\""));
  }
  const int64_t seconds = absl::ToUnixSeconds(time);
  google::protobuf::Timestamp out;
  out.set_seconds(seconds);
  out.set_nanos(
      static_cast<int32_t>(absl::ToInt64Nanoseconds(time - absl::FromUnixSeconds(seconds))));
  return out;
}

google::protobuf::Value ValueFromJson(const JsonValue& value, int depth) {
  google::protobuf::Value out;
  FillValue(value, depth, &out);
  return out;
}

google::protobuf::Struct StructFromJson(const JsonValue& object, int depth) {
  google::protobuf::Struct out;
  FillStruct(object, depth, &out);
  return out;
}

json JsonFromValue(const google::protobuf::Value& value) {
  switch (value.kind_case()) {
    case google::protobuf::Value::kBoolValue:
      return value.bool_value();
    case google::protobuf::Value::kNumberValue: {
      const double number = value.number_value();
      if (!std::isfinite(number)) return nullptr;
      if (std::trunc(number) == number && std::fabs(number) < 9007199254740992.0) {
        return static_cast<int64_t>(number);
      }
      return number;
    }
    case google::protobuf::Value::kStringValue:
      return value.string_value();
    case google::protobuf::Value::kListValue: {
      json out = json::array();
      for (const auto& item : value.list_value().values()) out.push_back(JsonFromValue(item));
      return out;
    }
    case google::protobuf::Value::kStructValue:
      return JsonFromStruct(value.struct_value());
    default:
      return nullptr;
  }
}

json JsonFromStruct(const google::protobuf::Struct& value) {
  json out = json::object();
  for (const auto& [key, field] : value.fields()) out[key] = JsonFromValue(field);
  return out;
}

v1::Role RoleFromString(absl::string_view role) {
  if (role == "user") return v1::ROLE_USER;
  if (role == "assistant") return v1::ROLE_ASSISTANT;
  if (role == "system") return v1::ROLE_SYSTEM;
  if (role == "tool") return v1::ROLE_TOOL;
  return v1::ROLE_UNSPECIFIED;
}

absl::string_view RoleToString(v1::Role role) {
  switch (role) {
    case v1::ROLE_USER:
      return "user";
    case v1::ROLE_ASSISTANT:
      return "assistant";
    case v1::ROLE_SYSTEM:
      return "system";
    case v1::ROLE_TOOL:
      return "tool";
    default:
      return "";
  }
}

absl::StatusOr<v1::Assistant> AssistantFromJson(const JsonValue& json) {
  if (!json.IsObject()) return BadResponse("upstream assistant is not a JSON object");
  v1::Assistant out;
  absl::StatusOr<std::string> id = RequiredString(json, "id", "assistant");
  if (!id.ok()) return id.status();
  out.set_id(*std::move(id));
  out.set_name(String(json, "name"));
  if (const JsonValue* schema = JsonMember(json, "meta_data_response_schema")) {
    FillStruct(*schema, 0, out.mutable_meta_data_response_schema());
  }
  if (const JsonValue* fields = JsonMember(json, "request_required_fields")) {
    FillStruct(*fields, 0, out.mutable_request_required_fields());
  }
  if (const JsonValue* streaming = JsonMember(json, "streaming");
      streaming != nullptr && streaming->IsBool()) {
    out.set_streaming(streaming->GetBool());
  }
  return out;
}

absl::StatusOr<v1::Thread> ThreadFromJson(const JsonValue& json) {
  if (!json.IsObject()) return BadResponse("upstream thread is not a JSON object");
  v1::Thread out;
  absl::StatusOr<std::string> id = RequiredString(json, "id", "thread");
  if (!id.ok()) return id.status();
  out.set_id(*std::move(id));
  out.set_assistant_id(String(json, "assistant_id"));
  out.set_user_id(String(json, "user_id"));
  out.set_title(String(json, "title"));
  if (absl::Status s = ReadTimestamp(json, "created_at", "thread", out.mutable_create_time());
      !s.ok()) {
    return s;
  }
  if (absl::Status s = ReadTimestamp(json, "last_updated_at", "thread", out.mutable_update_time());
      !s.ok()) {
    return s;
  }
  return out;
}

absl::StatusOr<v1::Message> MessageFromJson(const JsonValue& json) {
  if (!json.IsObject()) return BadResponse("upstream message is not a JSON object");
  v1::Message out;
  absl::StatusOr<std::string> id = RequiredString(json, "id", "message");
  if (!id.ok()) return id.status();
  out.set_id(*std::move(id));
  out.set_thread_id(String(json, "thread_id"));
  out.set_role(RoleFromString(String(json, "role")));
  out.set_content(String(json, "content"));
  if (absl::Status s = ReadTimestamp(json, "created_at", "message", out.mutable_create_time());
      !s.ok()) {
    return s;
  }
  for (const JsonValue& item : Array(json, "tool_calls")) {
    if (!item.IsObject()) continue;
    v1::ToolCall* call = out.add_tool_calls();
    call->set_id(String(item, "id"));
    call->set_type(String(item, "type"));
    if (const JsonValue* function = JsonMember(item, "function");
        function != nullptr && function->IsObject()) {
      call->mutable_function()->set_name(String(*function, "name"));
      if (const JsonValue* arguments = JsonMember(*function, "arguments")) {
        // Passed through as the JSON text the upstream meant, whether it sent it as a string
        // (OpenAI style) or as an object (written as nlohmann::json wrote it: sorted members).
        call->mutable_function()->set_arguments(arguments->IsString()
                                                    ? std::string(JsonText(*arguments))
                                                    : Dump(NlohmannFromJson(*arguments)));
      }
    }
  }
  out.set_tool_call_id(String(json, "tool_call_id"));
  for (const JsonValue& item : Array(json, "attachments")) {
    if (!item.IsObject()) continue;
    v1::Attachment* attachment = out.add_attachments();
    attachment->set_file_id(String(item, "file_id"));
    attachment->set_user_id(String(item, "user_id"));
    attachment->set_base_url(String(item, "base_url"));
  }
  ReadSources(Array(json, "sources"), out.mutable_sources());
  if (const JsonValue* meta = JsonMember(json, "meta_data"); meta != nullptr && meta->IsObject()) {
    FillStruct(*meta, 0, out.mutable_meta_data());
    StripLicenceMetaData(*out.mutable_meta_data());
  }
  return out;
}

bool IsStreamErrorLine(const JsonValue& json) {
  // Present even when null, as nlohmann::json's contains() counted them.
  return json.IsObject() && json.HasMember("error_code") && !json.HasMember("delta");
}

absl::StatusOr<v1::MessageChunk> MessageChunkFromJson(const JsonValue& json) {
  if (!json.IsObject()) return BadResponse("upstream stream line is not a JSON object");
  v1::MessageChunk out;
  absl::StatusOr<std::string> id = RequiredString(json, "message_id", "stream chunk");
  if (!id.ok()) return id.status();
  out.set_message_id(*std::move(id));
  out.set_thread_id(String(json, "thread_id"));
  if (absl::Status s = ReadTimestamp(json, "created_at", "stream chunk", out.mutable_create_time());
      !s.ok()) {
    return s;
  }
  if (const JsonValue* delta = JsonMember(json, "delta"); delta != nullptr && delta->IsObject()) {
    v1::MessageDelta* out_delta = out.mutable_delta();
    out_delta->set_role(RoleFromString(String(*delta, "role")));
    out_delta->set_content(String(*delta, "content"));
    ReadSources(Array(*delta, "sources"), out_delta->mutable_sources());
  }
  return out;
}

absl::StatusOr<std::vector<v1::Assistant>> ParseAssistantList(absl::string_view body) {
  absl::StatusOr<JsonDocument> parsed = ParseJson(body, "assistant list");
  if (!parsed.ok()) return parsed.status();
  const JsonValue* items = &*parsed;
  if (parsed->IsObject()) {
    const JsonValue* member = JsonMember(*parsed, "items");
    if (member == nullptr || !member->IsArray()) return std::vector<v1::Assistant>();
    items = member;
  }
  if (!items->IsArray()) return BadResponse("upstream assistant list is not a JSON array");
  std::vector<v1::Assistant> out;
  out.reserve(items->Size());
  for (const JsonValue& item : items->GetArray()) {
    absl::StatusOr<v1::Assistant> assistant = AssistantFromJson(item);
    if (!assistant.ok()) return assistant.status();
    out.push_back(*std::move(assistant));
  }
  return out;
}

absl::StatusOr<v1::Assistant> ParseAssistant(absl::string_view body) {
  absl::StatusOr<JsonDocument> parsed = ParseJson(body, "assistant");
  if (!parsed.ok()) return parsed.status();
  return AssistantFromJson(*parsed);
}

absl::StatusOr<v1::Thread> ParseThread(absl::string_view body) {
  absl::StatusOr<JsonDocument> parsed = ParseJson(body, "thread");
  if (!parsed.ok()) return parsed.status();
  return ThreadFromJson(*parsed);
}

absl::StatusOr<v1::Message> ParseMessage(absl::string_view body) {
  absl::StatusOr<JsonDocument> parsed = ParseJson(body, "message");
  if (!parsed.ok()) return parsed.status();
  return MessageFromJson(*parsed);
}

absl::StatusOr<MessagePage> ParseMessagePage(absl::string_view body) {
  absl::StatusOr<JsonDocument> parsed = ParseJson(body, "message page");
  if (!parsed.ok()) return parsed.status();
  if (!parsed->IsObject()) return BadResponse("upstream message page is not a JSON object");
  MessagePage page;
  for (const JsonValue& item : Array(*parsed, "items")) {
    absl::StatusOr<v1::Message> message = MessageFromJson(item);
    if (!message.ok()) return message.status();
    page.messages.push_back(*std::move(message));
  }
  page.next_cursor = String(*parsed, "cursor");
  return page;
}

std::string CreateThreadBody(const CreateThreadParams& params) {
  json out = json::object();
  out["assistant_id"] = params.assistant_id;
  if (!params.user_id.empty()) out["user_id"] = params.user_id;
  if (!params.title.empty()) out["title"] = params.title;
  return Dump(out);
}

std::string CreateMessageBody(const v1::MessageInput& message) {
  std::string out;
  AppendMessageInput(out, message);
  return out;
}

std::string RunBody(const RunParams& params, absl::string_view licence) {
  json out = json::object();
  if (!licence.empty()) out["meta_data"] = LicenceMetaData(licence);
  if (!params.tools.empty()) out["tools"] = ToolsToJson(params.tools);
  return Dump(out);
}

// Written directly (the body of every Complete): the bytes Dump gave for the same values.
std::string CompletionBody(const CompletionParams& params, absl::string_view licence) {
  std::string out;
  out.reserve(256);
  bool first = true;
  out.push_back('{');
  AppendKey(out, first, "assistant_id");
  AppendJsonString(out, params.assistant_id);
  AppendKey(out, first, "messages");
  out.push_back('[');
  for (std::size_t i = 0; i < params.messages.size(); ++i) {
    if (i > 0) out.push_back(',');
    AppendMessageInput(out, params.messages[i]);
  }
  out.push_back(']');
  if (!licence.empty()) {
    AppendKey(out, first, "meta_data");
    out += R"({"user_data":{"licence":)";
    AppendJsonString(out, licence);
    out += "}}";
  }
  if (!params.tools.empty()) {
    AppendKey(out, first, "tools");
    out += Dump(ToolsToJson(params.tools));
  }
  if (!params.user_id.empty()) {
    AppendKey(out, first, "user_id");
    AppendJsonString(out, params.user_id);
  }
  out.push_back('}');
  return out;
}

}  // namespace copilot::gateway
