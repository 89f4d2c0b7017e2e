#include "tests/emulator/emulator_app.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace copilot::emulator {

using nlohmann::json;

namespace {

constexpr size_t kMaxLimit = 1000;
constexpr absl::string_view kJsonType = "application/json";
constexpr absl::string_view kNdjsonType = "application/x-ndjson";

json Loc(std::initializer_list<json> parts) { return json(parts); }

ValidationIssue Missing(json loc) { return {std::move(loc), "Field required", "missing"}; }
ValidationIssue BadUuid(json loc) {
  return {std::move(loc), "Input should be a valid UUID", "uuid_parsing"};
}
ValidationIssue NotString(json loc) {
  return {std::move(loc), "Input should be a valid string", "string_type"};
}
ValidationIssue NotDict(json loc) {
  return {std::move(loc), "Input should be a valid dictionary", "dict_type"};
}
ValidationIssue NotList(json loc) {
  return {std::move(loc), "Input should be a valid list", "list_type"};
}
ValidationIssue NotObject(json loc) {
  return {std::move(loc), "Input should be a valid dictionary or object to extract fields from",
          "model_attributes_type"};
}

json Append(const json& loc, json part) {
  json out = loc;
  out.push_back(std::move(part));
  return out;
}

// Parses a request body that must be a JSON object. An empty body is {} when `empty_ok`.
std::optional<json> ParseObjectBody(const std::string& body, bool empty_ok,
                                    std::vector<ValidationIssue>& issues) {
  if (absl::StripAsciiWhitespace(body).empty()) {
    if (empty_ok) return json::object();
    issues.push_back(Missing(Loc({"body"})));
    return std::nullopt;
  }
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    issues.push_back({Loc({"body", 0}), "JSON decode error", "json_invalid"});
    return std::nullopt;
  }
  if (!j.is_object()) {
    issues.push_back(NotObject(Loc({"body"})));
    return std::nullopt;
  }
  return j;
}

// An optional string-or-null field; nullopt when absent or null.
std::optional<std::string> OptionalString(const json& obj, const char* field, const json& loc,
                                          std::vector<ValidationIssue>& issues) {
  auto it = obj.find(field);
  if (it == obj.end() || it->is_null()) return std::nullopt;
  if (!it->is_string()) {
    issues.push_back(NotString(Append(loc, field)));
    return std::nullopt;
  }
  return it->get<std::string>();
}

std::optional<std::string> OptionalUuid(const json& obj, const char* field, const json& loc,
                                        std::vector<ValidationIssue>& issues) {
  std::optional<std::string> value = OptionalString(obj, field, loc, issues);
  if (value && !IsUuid(*value)) {
    issues.push_back(BadUuid(Append(loc, field)));
    return std::nullopt;
  }
  if (value) return NormalizeUuid(*value);
  return std::nullopt;
}

// The optional `meta_data` object (null when absent).
json MetaDataField(const json& body, std::vector<ValidationIssue>& issues) {
  auto it = body.find("meta_data");
  if (it == body.end() || it->is_null()) return nullptr;
  if (!it->is_object()) {
    issues.push_back(NotDict(Loc({"body", "meta_data"})));
    return nullptr;
  }
  return *it;
}

// Parses one message object (thread message or chat-completions item) at `loc`.
std::optional<Message> ParseMessage(const json& j, const json& loc,
                                    std::vector<ValidationIssue>& issues) {
  if (!j.is_object()) {
    issues.push_back(NotObject(loc));
    return std::nullopt;
  }
  size_t before = issues.size();
  Message m;
  auto role = j.find("role");
  if (role == j.end() || role->is_null()) {
    issues.push_back(Missing(Append(loc, "role")));
  } else if (!role->is_string() ||
             (*role != "user" && *role != "system" && *role != "tool" && *role != "assistant")) {
    issues.push_back(
        {Append(loc, "role"), "Input should be 'user', 'system', 'tool' or 'assistant'", "enum"});
  } else {
    m.role = role->get<std::string>();
  }
  auto content = j.find("content");
  if (content == j.end() || content->is_null()) {
    if (m.role != "assistant") issues.push_back(Missing(Append(loc, "content")));
  } else if (!content->is_string()) {
    issues.push_back(NotString(Append(loc, "content")));
  } else {
    m.content = content->get<std::string>();
  }
  auto calls = j.find("tool_calls");
  if (calls != j.end() && !calls->is_null()) {
    if (!calls->is_array()) {
      issues.push_back(NotList(Append(loc, "tool_calls")));
    } else {
      for (size_t i = 0; i < calls->size(); ++i) {
        const json& call = (*calls)[i];
        if (!call.is_object()) {
          issues.push_back(NotObject(Append(Append(loc, "tool_calls"), i)));
        } else if (!call.contains("id") || !call["id"].is_string()) {
          issues.push_back(Missing(Append(Append(Append(loc, "tool_calls"), i), "id")));
        }
      }
      if (!calls->empty()) m.tool_calls = *calls;
    }
  }
  if (m.role == "tool") {
    auto id = j.find("tool_call_id");
    if (id == j.end() || id->is_null()) {
      issues.push_back(Missing(Append(loc, "tool_call_id")));
    } else if (!id->is_string()) {
      issues.push_back(NotString(Append(loc, "tool_call_id")));
    } else {
      m.tool_call_id = id->get<std::string>();
    }
  }
  auto attachments = j.find("attachments");
  if (attachments != j.end() && !attachments->is_null()) {
    if (!attachments->is_array()) {
      issues.push_back(NotList(Append(loc, "attachments")));
    } else if (!attachments->empty()) {
      m.attachments = *attachments;
    }
  }
  auto sources = j.find("sources");
  if (sources != j.end() && sources->is_array() && m.role == "assistant") m.sources = *sources;
  if (issues.size() != before) return std::nullopt;
  return m;
}

// Whether `meta_data` satisfies the assistant's request_required_fields (haufe-api.md 5.5).
bool HasRequiredMetadata(const Assistant& assistant, const json& meta_data) {
  json required = assistant.RequestRequiredFields();
  for (const auto& [path, fields] : required.items()) {
    const json* container = nullptr;
    if (path == "__root__") {
      container = &meta_data;
    } else if (meta_data.is_object() && meta_data.contains(path)) {
      container = &meta_data[path];
    }
    for (const json& field : fields) {
      if (container == nullptr || !container->is_object()) return false;
      auto it = container->find(field.get<std::string>());
      if (it == container->end() || it->is_null()) return false;
      if (it->is_string() && absl::StripAsciiWhitespace(it->get<std::string>()).empty()) {
        return false;
      }
    }
  }
  return true;
}

std::string LastUserQuestion(const std::vector<StackMessage>& stack) {
  for (auto it = stack.rbegin(); it != stack.rend(); ++it) {
    if (it->role == "user") return it->content;
  }
  return "";
}

// Word chunks: each word keeps the space after it, so the chunks concatenate to `text`.
std::vector<std::string> WordChunks(absl::string_view text) {
  std::vector<std::string> chunks;
  size_t start = 0;
  while (start < text.size()) {
    size_t space = text.find(' ', start);
    size_t end = space == absl::string_view::npos ? text.size() : space + 1;
    chunks.emplace_back(text.substr(start, end - start));
    start = end;
  }
  return chunks;
}

json AnswerSources(absl::string_view question, const Assistant& assistant) {
  return json::array({json{{"content", absl::StrCat("Emulated excerpt about: ", question)},
                           {"meta_data",
                            {{"document_title", absl::StrCat(assistant.name, " source")},
                             {"section", "1"},
                             {"app_doc_id", "HI0000001"}}}}});
}

json AnswerMetaData() {
  return json{{"type", "lgagentmetadatamodel"}, {"legal_advice", false}, {"intent", "question"}};
}

// Default error_code for an injected status.
absl::string_view DefaultErrorCode(int status) {
  switch (status) {
    case 400:
      return "bad_request";
    case 401:
      return "unauthorized";
    case 403:
      return "permission_denied";
    case 404:
      return "resource_not_found";
    case 409:
      return "conflict_error";
    case 422:
      return "unprocessable_entity";
    case 429:
      return "rate_limit_error";
    case 500:
      return "internal_server_error";
    case 502:
    case 503:
      return "internal_service_error";
    case 504:
      return "api_timeout_error";
    default:
      return status >= 500 ? "internal_server_error" : "bad_request";
  }
}

bool IsStreamRoute(absl::string_view route) {
  return route == "run_stream" || route == "chat_completions_stream";
}

bool ReplacesResponse(FaultType type) {
  return type == FaultType::kStatus || type == FaultType::kRateLimit ||
         type == FaultType::kResetBeforeHeaders || type == FaultType::kMalformedJson ||
         type == FaultType::kRawBody;
}

ResponsePlan ControlJson(int status, const json& body) {
  ResponsePlan plan;
  plan.status = status;
  plan.headers.emplace_back("Content-Type", std::string(kJsonType));
  plan.body_parts.push_back(Dump(body));
  return plan;
}

ResponsePlan ControlError(int status, absl::string_view message) {
  return ControlJson(status, json{{"error", message}});
}

}  // namespace

EmulatorApp::EmulatorApp(const EmulatorOptions& options, Clock& clock, UuidGenerator& uuids,
                         std::function<ServerStats()> server_stats)
    : api_keys_(options.api_keys.begin(), options.api_keys.end()),
      error_shape_(options.error_shape),
      stream_delay_ms_(options.stream_delay_ms),
      response_delay_ms_(options.response_delay_ms),
      store_(clock, uuids),
      rate_limiter_(clock, options.rate_limits),
      log_(options.max_record),
      server_stats_(std::move(server_stats)) {
  for (const FaultRule& rule : options.faults) faults_.Add(rule);
}

ResponsePlan EmulatorApp::Handle(HttpRequest request) {
  if (request.path == "/_emulator" || absl::StartsWith(request.path, "/_emulator/")) {
    return HandleControl(request);
  }
  RouteMatch route = MatchRoute(request.method, request.path);
  int64_t seq = log_.Append(request, route.name);
  ++requests_total_;
  std::optional<FaultRule> fault = faults_.Take(route.name);
  Reply reply;
  if (fault && ReplacesResponse(fault->type)) {
    reply = FaultReply(*fault, route);
  } else {
    reply = HandleUpstream(request, route);
    if (fault) ApplyFault(*fault, reply);
  }
  if (reply.rate_limited) log_.SetRateLimited(seq);
  reply.plan.start_delay += absl::Milliseconds(response_delay_ms_);
  ++in_flight_;
  reply.plan.on_progress =
      [this, seq, on_complete = std::move(reply.on_complete)](const ResponseProgress& progress) {
        log_.SetStatus(seq, progress.status);
        log_.SetResponseBytesSent(seq, progress.bytes_sent);
        if (!progress.finished) return;
        log_.SetFinished(seq, progress.client_closed_early);
        --in_flight_;
        if (progress.completed && on_complete) on_complete();
      };
  return std::move(reply.plan);
}

EmulatorApp::Reply EmulatorApp::Json(int status, const json& body) const {
  Reply reply;
  reply.plan.status = status;
  reply.plan.headers.emplace_back("Content-Type", std::string(kJsonType));
  reply.plan.body_parts.push_back(Dump(body));
  return reply;
}

EmulatorApp::Reply EmulatorApp::Error(int status, absl::string_view error_code,
                                      absl::string_view detail) const {
  return Json(status, StandardError(error_code, detail));
}

EmulatorApp::Reply EmulatorApp::Validation(const std::vector<ValidationIssue>& issues) const {
  return Json(422, ValidationErrorBody(error_shape_, issues));
}

// ---------------------------------------------------------------------------------------------
// Faults

EmulatorApp::Reply EmulatorApp::FaultReply(const FaultRule& rule, const RouteMatch& route) {
  Reply reply;
  switch (rule.type) {
    case FaultType::kStatus: {
      std::string code =
          rule.error_code.empty() ? std::string(DefaultErrorCode(rule.status)) : rule.error_code;
      std::string detail = rule.detail.empty() ? "Injected fault" : rule.detail;
      if (rule.shape == "text") {
        reply.plan.status = rule.status;
        reply.plan.headers.emplace_back("Content-Type", "text/plain; charset=utf-8");
        reply.plan.body_parts.push_back(detail);
      } else if (rule.shape == "message_only") {
        reply = Json(rule.status, json{{"message", detail}});
      } else if (rule.shape == "fastapi") {
        reply = Json(rule.status, ValidationErrorBody(ErrorShape::kNew,
                                                      {{Loc({"body"}), detail, "value_error"}}));
      } else if (rule.shape == "custom_validation") {
        json body = ValidationErrorBody(ErrorShape::kOld, {{Loc({"body"}), detail, "value_error"}});
        if (!rule.error_code.empty()) body["error_code"] = rule.error_code;
        reply = Json(rule.status, body);
      } else {
        reply = Json(rule.status, StandardError(code, detail));
      }
      break;
    }
    case FaultType::kRateLimit: {
      ErrorShape shape = rule.shape.empty()    ? error_shape_
                         : rule.shape == "new" ? ErrorShape::kNew
                                               : ErrorShape::kOld;
      reply = Json(429, RateLimitBody(shape));
      break;
    }
    case FaultType::kResetBeforeHeaders:
      reply.plan.interruption = Interruption::kResetBeforeHeaders;
      break;
    case FaultType::kMalformedJson:
      reply.plan.status = 200;
      if (IsStreamRoute(route.name)) {
        reply.plan.headers.emplace_back("Content-Type", std::string(kNdjsonType));
        reply.plan.chunked = true;
        reply.plan.body_parts.push_back(
            "{\"message_id\": \"emulated\", \"delta\": {\"content\": \n");
      } else {
        reply.plan.headers.emplace_back("Content-Type", std::string(kJsonType));
        reply.plan.body_parts.push_back("{\"id\": \"emulated\", \"content\": \"this is not JSON");
      }
      break;
    case FaultType::kRawBody: {
      reply.plan.status = rule.status;
      const bool stream = IsStreamRoute(route.name) && rule.status >= 200 && rule.status < 300;
      const std::string type = !rule.content_type.empty() ? rule.content_type
                               : stream                   ? std::string(kNdjsonType)
                                                          : std::string(kJsonType);
      reply.plan.headers.emplace_back("Content-Type", type);
      if (stream) {
        // One HTTP chunk per line, like a real stream.
        reply.plan.chunked = true;
        for (absl::string_view line : absl::StrSplit(rule.body, absl::ByChar('\n'))) {
          if (!line.empty()) reply.plan.body_parts.push_back(absl::StrCat(line, "\n"));
        }
      } else {
        reply.plan.body_parts.push_back(rule.body);
      }
      break;
    }
    default:
      break;
  }
  if (rule.retry_after) {
    reply.plan.headers.emplace_back("Retry-After", absl::StrCat(*rule.retry_after));
  }
  return reply;
}

void EmulatorApp::ApplyFault(const FaultRule& rule, Reply& reply) {
  ResponsePlan& plan = reply.plan;
  switch (rule.type) {
    case FaultType::kLatency:
      plan.start_delay += absl::Milliseconds(rule.delay_ms);
      break;
    case FaultType::kResetMidBody:
      plan.interruption = Interruption::kResetAfterBytes;
      if (rule.after_bytes) plan.interrupt_after_bytes = static_cast<size_t>(*rule.after_bytes);
      reply.on_complete = nullptr;
      break;
    case FaultType::kStall:
      plan.interruption = Interruption::kStallAfterBytes;
      if (rule.after_bytes) plan.interrupt_after_bytes = static_cast<size_t>(*rule.after_bytes);
      reply.on_complete = nullptr;
      break;
    case FaultType::kTruncatedNdjson: {
      if (!reply.stream || plan.body_parts.empty()) break;
      size_t full = std::min<size_t>(static_cast<size_t>(rule.lines), plan.body_parts.size() - 1);
      std::string half = plan.body_parts[full].substr(0, plan.body_parts[full].size() / 2);
      plan.body_parts.resize(full);
      plan.body_parts.push_back(std::move(half));
      reply.on_complete = nullptr;
      break;
    }
    case FaultType::kMidStreamError: {
      if (!reply.stream) break;
      size_t full = std::min<size_t>(static_cast<size_t>(rule.lines), plan.body_parts.size());
      plan.body_parts.resize(full);
      json line = StandardError(rule.error_code.empty() ? "api_timeout_error" : rule.error_code,
                                rule.detail.empty() ? "Upstream request timed out" : rule.detail);
      plan.body_parts.push_back(Dump(line) + "\n");
      reply.on_complete = nullptr;
      break;
    }
    case FaultType::kOversizedBody: {
      size_t target = static_cast<size_t>(rule.bytes);
      if (reply.stream) {
        // One huge first line: {"emulator_padding": "xxx..."}.
        plan.body_parts.insert(plan.body_parts.begin(),
                               Dump(json{{"emulator_padding", std::string(target, 'x')}}) + "\n");
        break;
      }
      std::string body;
      for (const std::string& part : plan.body_parts) body += part;
      json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded() || !j.is_object()) j = json::object();
      std::string current = Dump(j);
      size_t overhead = absl::string_view(",\"emulator_padding\":\"\"").size();
      size_t pad = target > current.size() + overhead ? target - current.size() - overhead : 0;
      j["emulator_padding"] = std::string(pad, 'x');
      plan.status = plan.status == 204 ? 200 : plan.status;
      plan.headers = {{"Content-Type", std::string(kJsonType)}};
      plan.body_parts = {Dump(j)};
      break;
    }
    default:
      break;
  }
}

// ---------------------------------------------------------------------------------------------
// Upstream routes

EmulatorApp::Reply EmulatorApp::HandleUpstream(const HttpRequest& request,
                                               const RouteMatch& route) {
  if (route.method_not_allowed) return Json(405, json{{"detail", "Method Not Allowed"}});
  if (route.name.empty()) return Json(404, json{{"detail", "Not Found"}});
  std::optional<absl::string_view> key = request.Header("api-key");
  if (!key || !api_keys_.contains(*key)) {
    return Error(401, "unauthorized", "Missing or invalid API key");
  }
  // The rate limits count per API key, so only requests with an accepted key take part.
  RateLimitDecision admission = rate_limiter_.Admit(*key, ClassOfRoute(route.name));
  if (!admission.admitted) {
    Reply reply = Json(429, RateLimitBody(error_shape_));
    reply.plan.headers.emplace_back("Retry-After", absl::StrCat(admission.retry_after_seconds));
    reply.rate_limited = true;
    return reply;
  }

  std::vector<ValidationIssue> issues;
  if (!route.assistant_id.empty() && !IsUuid(route.assistant_id)) {
    issues.push_back(BadUuid(Loc({"path", "assistant_id"})));
  }
  if (!route.thread_id.empty() && !IsUuid(route.thread_id)) {
    issues.push_back(BadUuid(Loc({"path", "thread_id"})));
  }
  if (!route.message_id.empty() && !IsUuid(route.message_id)) {
    issues.push_back(BadUuid(Loc({"path", "message_id"})));
  }
  if (!issues.empty()) return Validation(issues);
  RouteMatch normalized = route;
  if (!route.assistant_id.empty()) normalized.assistant_id = NormalizeUuid(route.assistant_id);
  if (!route.thread_id.empty()) normalized.thread_id = NormalizeUuid(route.thread_id);
  if (!route.message_id.empty()) normalized.message_id = NormalizeUuid(route.message_id);

  const std::string& name = route.name;
  if (name == "list_assistants") return ListAssistants();
  if (name == "get_assistant") return GetAssistant(normalized);
  if (name == "list_threads") return ListThreads(request);
  if (name == "create_thread") return CreateThread(request);
  if (name == "get_thread") return GetThread(normalized);
  if (name == "delete_thread") return DeleteThread(normalized);
  if (name == "list_messages") return ListMessages(request, normalized);
  if (name == "create_message") return CreateMessage(request, normalized);
  if (name == "delete_message") return DeleteMessage(normalized);
  if (name == "run") return Run(request, normalized, /*stream=*/false);
  if (name == "run_stream") return Run(request, normalized, /*stream=*/true);
  if (name == "chat_completions") return ChatCompletions(request, /*stream=*/false);
  return ChatCompletions(request, /*stream=*/true);
}

EmulatorApp::Reply EmulatorApp::ListAssistants() {
  json items = json::array();
  for (const Assistant& a : store_.assistants()) items.push_back(a.ToJson());
  return Json(200, items);
}

EmulatorApp::Reply EmulatorApp::GetAssistant(const RouteMatch& route) {
  const Assistant* assistant = store_.FindAssistant(route.assistant_id);
  if (assistant == nullptr) return Error(404, "assistant_not_found", "Assistant not found");
  return Json(200, assistant->ToJson());
}

namespace {

struct ListQuery {
  size_t limit = 100;
  std::optional<int64_t> cursor;
  std::optional<std::string> user_id;
  bool include_deleted = false;
};

ListQuery ParseListQuery(absl::string_view raw, bool threads,
                         std::vector<ValidationIssue>& issues) {
  ListQuery q;
  for (const auto& [name, value] : ParseQuery(raw)) {
    if (name == "limit") {
      int64_t limit = 0;
      if (!absl::SimpleAtoi(value, &limit)) {
        issues.push_back({Loc({"query", "limit"}),
                          "Input should be a valid integer, unable to parse string as an integer",
                          "int_parsing"});
      } else if (limit < 1) {
        issues.push_back({Loc({"query", "limit"}), "Input should be greater than or equal to 1",
                          "greater_than_equal"});
      } else if (limit > static_cast<int64_t>(kMaxLimit)) {
        issues.push_back({Loc({"query", "limit"}),
                          absl::StrCat("Input should be less than or equal to ", kMaxLimit),
                          "less_than_equal"});
      } else {
        q.limit = static_cast<size_t>(limit);
      }
    } else if (name == "cursor") {
      if (value.empty() || value == "null") continue;
      absl::StatusOr<int64_t> seq = DecodeCursor(value);
      if (!seq.ok()) {
        issues.push_back({Loc({"query", "cursor"}), "Invalid cursor", "value_error"});
      } else {
        q.cursor = *seq;
      }
    } else if (threads && name == "user_id") {
      if (!IsUuid(value)) {
        issues.push_back(BadUuid(Loc({"query", "user_id"})));
      } else {
        q.user_id = NormalizeUuid(value);
      }
    } else if (threads && name == "include_deleted") {
      std::string v = absl::AsciiStrToLower(value);
      if (v == "true" || v == "1" || v == "yes" || v == "on") {
        q.include_deleted = true;
      } else if (v == "false" || v == "0" || v == "no" || v == "off") {
        q.include_deleted = false;
      } else {
        issues.push_back({Loc({"query", "include_deleted"}),
                          "Input should be a valid boolean, unable to interpret input",
                          "bool_parsing"});
      }
    }
  }
  return q;
}

}  // namespace

EmulatorApp::Reply EmulatorApp::ListThreads(const HttpRequest& request) {
  std::vector<ValidationIssue> issues;
  ListQuery q = ParseListQuery(request.query, /*threads=*/true, issues);
  if (!issues.empty()) return Validation(issues);
  return Json(200, store_.ListThreads(q.limit, q.cursor, q.user_id, q.include_deleted).ToJson());
}

EmulatorApp::Reply EmulatorApp::CreateThread(const HttpRequest& request) {
  std::vector<ValidationIssue> issues;
  std::optional<json> body = ParseObjectBody(request.body, /*empty_ok=*/false, issues);
  if (!body) return Validation(issues);
  json loc = Loc({"body"});
  std::optional<std::string> assistant_id;
  if (!body->contains("assistant_id") || (*body)["assistant_id"].is_null()) {
    issues.push_back(Missing(Loc({"body", "assistant_id"})));
  } else {
    assistant_id = OptionalUuid(*body, "assistant_id", loc, issues);
  }
  std::optional<std::string> user_id = OptionalUuid(*body, "user_id", loc, issues);
  std::optional<std::string> title = OptionalString(*body, "title", loc, issues);
  if (!issues.empty()) return Validation(issues);
  if (store_.FindAssistant(*assistant_id) == nullptr) {
    return Error(404, "assistant_not_found", "Assistant not found");
  }
  Thread& thread = store_.CreateThread(*assistant_id, user_id, title ? json(*title) : json(nullptr),
                                       /*via_chat_completions=*/false);
  return Json(201, thread.ToJson());
}

EmulatorApp::Reply EmulatorApp::GetThread(const RouteMatch& route) {
  Thread* thread = store_.FindThread(route.thread_id);
  if (thread == nullptr) return Error(404, "thread_not_found", "Thread not found");
  return Json(200, thread->ToJson());
}

EmulatorApp::Reply EmulatorApp::DeleteThread(const RouteMatch& route) {
  Thread* thread = store_.FindThread(route.thread_id);
  if (thread == nullptr) return Error(404, "thread_not_found", "Thread not found");
  thread->deleted = true;
  Reply reply;
  reply.plan.status = 204;
  return reply;
}

EmulatorApp::Reply EmulatorApp::ListMessages(const HttpRequest& request, const RouteMatch& route) {
  std::vector<ValidationIssue> issues;
  ListQuery q = ParseListQuery(request.query, /*threads=*/false, issues);
  if (!issues.empty()) return Validation(issues);
  Thread* thread = store_.FindThread(route.thread_id);
  if (thread == nullptr) return Error(404, "thread_not_found", "Thread not found");
  if (thread->deleted) return Error(400, "thread_is_deactivated", "Thread is deactivated");
  return Json(200, store_.ListMessages(*thread, q.limit, q.cursor).ToJson());
}

EmulatorApp::Reply EmulatorApp::CreateMessage(const HttpRequest& request, const RouteMatch& route) {
  std::vector<ValidationIssue> issues;
  std::optional<json> body = ParseObjectBody(request.body, /*empty_ok=*/false, issues);
  if (!body) return Validation(issues);
  std::optional<Message> message = ParseMessage(*body, Loc({"body"}), issues);
  if (!message) return Validation(issues);
  Thread* thread = store_.FindThread(route.thread_id);
  if (thread == nullptr) return Error(404, "thread_not_found", "Thread not found");
  if (thread->deleted) return Error(400, "thread_is_deactivated", "Thread is deactivated");
  if (thread->via_chat_completions) {
    return Error(400, "bad_request",
                 "Messages cannot be added to a thread created via Chat Completions");
  }
  std::vector<StackMessage> earlier;
  for (const Message& m : thread->messages) earlier.push_back(m.ToStackMessage());
  if (auto violation = CheckNewThreadMessage(earlier, message->ToStackMessage())) {
    return Error(422, violation->error_code, violation->detail);
  }
  Message& stored = store_.AddMessage(*thread, *std::move(message));
  return Json(201, stored.ToJson());
}

EmulatorApp::Reply EmulatorApp::DeleteMessage(const RouteMatch& route) {
  Thread* thread = store_.FindThread(route.thread_id);
  if (thread == nullptr) return Error(404, "thread_not_found", "Thread not found");
  if (thread->deleted) return Error(400, "thread_is_deactivated", "Thread is deactivated");
  if (!store_.DeleteMessage(*thread, route.message_id)) {
    return Error(404, "message_not_found", "Message not found");
  }
  Reply reply;
  reply.plan.status = 204;
  return reply;
}

EmulatorApp::Reply EmulatorApp::Run(const HttpRequest& request, const RouteMatch& route,
                                    bool stream) {
  std::vector<ValidationIssue> issues;
  std::optional<json> body = ParseObjectBody(request.body, /*empty_ok=*/true, issues);
  if (!body) return Validation(issues);
  json meta_data = MetaDataField(*body, issues);
  if (!issues.empty()) return Validation(issues);
  Thread* thread = store_.FindThread(route.thread_id);
  if (thread == nullptr) return Error(404, "thread_not_found", "Thread not found");
  if (thread->deleted) return Error(400, "thread_is_deactivated", "Thread is deactivated");
  const Assistant* assistant = store_.FindAssistant(thread->assistant_id);
  if (assistant == nullptr) return Error(404, "assistant_not_found", "Assistant not found");
  std::vector<StackMessage> stack;
  for (const Message& m : thread->messages) stack.push_back(m.ToStackMessage());
  if (std::optional<Reply> refusal = RefuseAnswer(*assistant, meta_data, stack, stream)) {
    return *std::move(refusal);
  }
  return Answer(*thread, *assistant, stack, stream);
}

EmulatorApp::Reply EmulatorApp::ChatCompletions(const HttpRequest& request, bool stream) {
  std::vector<ValidationIssue> issues;
  std::optional<std::string> thread_id;
  for (const auto& [name, value] : ParseQuery(request.query)) {
    if (name != "thread_id" || value.empty() || value == "null") continue;
    if (!IsUuid(value)) {
      issues.push_back(BadUuid(Loc({"query", "thread_id"})));
    } else {
      thread_id = NormalizeUuid(value);
    }
  }
  std::optional<json> body = ParseObjectBody(request.body, /*empty_ok=*/false, issues);
  if (!body) return Validation(issues);
  json loc = Loc({"body"});
  std::optional<std::string> assistant_id;
  if (!body->contains("assistant_id") || (*body)["assistant_id"].is_null()) {
    issues.push_back(Missing(Loc({"body", "assistant_id"})));
  } else {
    assistant_id = OptionalUuid(*body, "assistant_id", loc, issues);
  }
  std::vector<Message> messages;
  auto raw_messages = body->find("messages");
  if (raw_messages == body->end() || raw_messages->is_null()) {
    issues.push_back(Missing(Loc({"body", "messages"})));
  } else if (!raw_messages->is_array()) {
    issues.push_back(NotList(Loc({"body", "messages"})));
  } else {
    for (size_t i = 0; i < raw_messages->size(); ++i) {
      std::optional<Message> m =
          ParseMessage((*raw_messages)[i], Loc({"body", "messages", i}), issues);
      if (m) messages.push_back(*std::move(m));
    }
  }
  std::optional<std::string> user_id = OptionalUuid(*body, "user_id", loc, issues);
  json meta_data = MetaDataField(*body, issues);
  if (!issues.empty()) return Validation(issues);

  const Assistant* assistant = store_.FindAssistant(*assistant_id);
  if (assistant == nullptr) return Error(404, "assistant_not_found", "Assistant not found");
  Thread* thread = nullptr;
  if (thread_id) {
    thread = store_.FindThread(*thread_id);
    if (thread == nullptr) return Error(404, "thread_not_found", "Thread not found");
    if (thread->deleted) return Error(400, "thread_is_deactivated", "Thread is deactivated");
  }
  std::vector<StackMessage> stack;
  for (const Message& m : messages) stack.push_back(m.ToStackMessage());
  if (std::optional<Reply> refusal = RefuseAnswer(*assistant, meta_data, stack, stream)) {
    return *std::move(refusal);
  }
  if (thread == nullptr) {
    thread = &store_.CreateThread(assistant->id, user_id, nullptr, /*via_chat_completions=*/true);
  }
  for (Message& m : messages) store_.AddMessage(*thread, std::move(m));
  return Answer(*thread, *assistant, stack, stream);
}

std::optional<EmulatorApp::Reply> EmulatorApp::RefuseAnswer(const Assistant& assistant,
                                                            const json& meta_data,
                                                            const std::vector<StackMessage>& stack,
                                                            bool stream) const {
  if (stream && !assistant.streaming) {
    return Error(422, "engine_does_not_support_streaming",
                 "The assistant's engine does not support streaming; use the non-streaming "
                 "endpoint");
  }
  if (!HasRequiredMetadata(assistant, meta_data)) {
    return Error(422, "request_metadata_missing_or_incomplete",
                 "Request lacks required request metadata");
  }
  if (auto violation = CheckMessageStack(stack)) {
    return Error(422, violation->error_code, violation->detail);
  }
  return std::nullopt;
}

EmulatorApp::Reply EmulatorApp::Answer(Thread& thread, const Assistant& assistant,
                                       const std::vector<StackMessage>& stack, bool stream) {
  std::string question = LastUserQuestion(stack);
  Message answer = store_.NewMessage(thread);
  answer.role = "assistant";
  answer.content = absl::StrCat("Regarding \"", question, "\": this is the emulated answer of ",
                                assistant.name, ".");
  answer.meta_data = AnswerMetaData();
  answer.sources = AnswerSources(question, assistant);
  if (!stream) {
    Message& stored = store_.AddMessage(thread, std::move(answer));
    return Json(200, stored.ToJson());
  }
  Reply reply;
  reply.stream = true;
  reply.plan.status = 200;
  reply.plan.headers.emplace_back("Content-Type", std::string(kNdjsonType));
  reply.plan.chunked = true;
  reply.plan.part_interval = absl::Milliseconds(stream_delay_ms_);
  auto line = [&](absl::string_view content, json sources) {
    json chunk = {{"message_id", answer.id},
                  {"thread_id", answer.thread_id},
                  {"created_at", answer.created_at},
                  {"delta", {{"role", "assistant"}, {"content", content}, {"sources", sources}}}};
    return Dump(chunk) + "\n";
  };
  for (const std::string& word : WordChunks(answer.content)) {
    reply.plan.body_parts.push_back(line(word, json::array()));
  }
  reply.plan.body_parts.push_back(line("", answer.sources));
  reply.on_complete = [this, thread_id = thread.id, answer = std::move(answer)]() mutable {
    if (Thread* t = store_.FindThread(thread_id)) store_.AddMessage(*t, std::move(answer));
  };
  return reply;
}

// ---------------------------------------------------------------------------------------------
// Control API

json EmulatorApp::ConfigJson() const {
  const RateLimitConfig& limits = rate_limiter_.config();
  return json{{"error_shape", ErrorShapeName(error_shape_)},
              {"stream_delay_ms", stream_delay_ms_},
              {"response_delay_ms", response_delay_ms_},
              {"rate_limits", limits.ModeName()},
              {"answer_rps", limits.answer.rps},
              {"answer_rpm", limits.answer.rpm},
              {"other_rps", limits.other.rps},
              {"other_rpm", limits.other.rpm}};
}

ResponsePlan EmulatorApp::SetConfig(const std::string& body) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return ControlError(400, "config: body must be a JSON object");
  }
  // Validate everything before changing anything.
  std::optional<ErrorShape> shape;
  std::optional<int64_t> stream_delay;
  std::optional<int64_t> response_delay;
  RateLimitUpdate rate_limits;
  for (const auto& [key, value] : j.items()) {
    if (key == "error_shape") {
      absl::StatusOr<ErrorShape> parsed =
          value.is_string() ? ParseErrorShape(value.get<std::string>())
                            : absl::InvalidArgumentError("must be \"old\" or \"new\"");
      if (!parsed.ok()) {
        return ControlError(400, absl::StrCat("config: error_shape ", parsed.status().message()));
      }
      shape = *parsed;
    } else if (key == "stream_delay_ms" || key == "response_delay_ms") {
      if (!value.is_number_integer() || value.get<int64_t>() < 0) {
        return ControlError(400, absl::StrCat("config: ", key, " must be a non-negative integer"));
      }
      (key == "stream_delay_ms" ? stream_delay : response_delay) = value.get<int64_t>();
    } else if (key == "rate_limits") {
      if (!value.is_string() || (value != "off" && value != "tier0" && value != "custom")) {
        return ControlError(400, "config: rate_limits must be \"off\", \"tier0\" or \"custom\"");
      }
      rate_limits.mode = value.get<std::string>();
    } else if (key == "answer_rps" || key == "answer_rpm" || key == "other_rps" ||
               key == "other_rpm") {
      if (!value.is_number_integer() || value.get<int64_t>() < 1 ||
          value.get<int64_t>() > kMaxRateLimit) {
        return ControlError(
            400, absl::StrCat("config: ", key, " must be an integer from 1 to ", kMaxRateLimit));
      }
      std::optional<int64_t>& limit = key == "answer_rps"   ? rate_limits.answer_rps
                                      : key == "answer_rpm" ? rate_limits.answer_rpm
                                      : key == "other_rps"  ? rate_limits.other_rps
                                                            : rate_limits.other_rpm;
      limit = value.get<int64_t>();
    } else {
      return ControlError(400, absl::StrCat("config: unknown field '", key, "'"));
    }
  }
  if (rate_limits.Contradicts()) {
    return ControlError(400,
                        "config: rate_limits \"off\" cannot be combined with answer_rps, "
                        "answer_rpm, other_rps or other_rpm");
  }
  if (shape) error_shape_ = *shape;
  if (stream_delay) stream_delay_ms_ = *stream_delay;
  if (response_delay) response_delay_ms_ = *response_delay;
  RateLimitConfig limits = rate_limiter_.config();
  ApplyRateLimitUpdate(rate_limits, limits);
  rate_limiter_.set_config(limits);
  return ControlJson(200, ConfigJson());
}

ResponsePlan EmulatorApp::HandleControl(const HttpRequest& request) {
  const std::string& path = request.path;
  const std::string& method = request.method;
  if (path == "/_emulator/requests") {
    if (method == "GET") return ControlJson(200, log_.ToJson());
    if (method == "DELETE") {
      size_t n = log_.size();
      log_.Clear();
      return ControlJson(200, json{{"cleared", n}});
    }
  } else if (path == "/_emulator/faults") {
    if (method == "GET") return ControlJson(200, faults_.ToJson());
    if (method == "POST") {
      absl::StatusOr<FaultRule> rule = ParseFaultRule(request.body);
      if (!rule.ok()) return ControlError(400, rule.status().message());
      return ControlJson(200, json{{"id", faults_.Add(*std::move(rule))}});
    }
    if (method == "DELETE") {
      size_t n = faults_.size();
      faults_.Clear();
      return ControlJson(200, json{{"removed", n}});
    }
  } else if (path == "/_emulator/config") {
    if (method == "GET") return ControlJson(200, ConfigJson());
    if (method == "POST") return SetConfig(request.body);
  } else if (path == "/_emulator/stats") {
    if (method == "GET") {
      ServerStats stats = server_stats_ ? server_stats_() : ServerStats();
      return ControlJson(200, json{{"open_connections", stats.open_connections},
                                   {"peak_connections", stats.peak_connections},
                                   {"accepted_total", stats.accepted_total},
                                   {"idle_closed_total", stats.idle_closed_total},
                                   {"tls_handshake_failures", stats.tls_handshake_failures},
                                   {"h2_connections", stats.h2_connections},
                                   {"h2_refused_streams", stats.h2_refused_streams},
                                   {"h2_goaways_sent", stats.h2_goaways_sent},
                                   {"h2_output_yields", stats.h2_output_yields},
                                   {"requests_total", requests_total_},
                                   {"in_flight", in_flight_},
                                   {"rate_limits", rate_limiter_.StatsJson()}});
    }
  } else if (path == "/_emulator/reset") {
    if (method == "POST") {
      store_.Clear();
      log_.Clear();
      faults_.Clear();
      rate_limiter_.Clear();
      return ControlJson(200, json{{"reset", true}});
    }
  } else {
    return ControlError(404, absl::StrCat("no control endpoint ", path));
  }
  return ControlError(405, absl::StrCat(method, " is not allowed on ", path));
}

}  // namespace copilot::emulator
