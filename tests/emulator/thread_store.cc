#include "tests/emulator/thread_store.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace copilot::emulator {

using nlohmann::json;

namespace {

constexpr absl::string_view kCursorPrefix = "emu:";

json MetaDataResponseSchema() {
  return json{
      {"title", "LgAgentMetaDataModel"},
      {"type", "object"},
      {"properties",
       {{"type",
         {{"type", "string"},
          {"const", "lgagentmetadatamodel"},
          {"default", "lgagentmetadatamodel"},
          {"enum", {"5b8f0e4e-0c1d-4c55-9d8e-6a0b7c3e2f10"}}}},
        {"legal_advice",
         {{"type", "boolean"}, {"description", "Whether the query counts as legal advice"}}},
        {"intent", {{"type", "string"}, {"description", "Intent of the query"}}}}},
      {"required", {"legal_advice", "intent"}}};
}

}  // namespace

json Assistant::RequestRequiredFields() const {
  if (!requires_licence) return json::object();
  return json{{"__root__", {"user_data"}}, {"user_data", {"licence"}}};
}

json Assistant::ToJson() const {
  return json{{"id", id},
              {"name", name},
              {"meta_data_response_schema", MetaDataResponseSchema()},
              {"request_required_fields", RequestRequiredFields()},
              {"streaming", streaming}};
}

json Message::ToJson() const {
  json j = {{"id", id},
            {"thread_id", thread_id},
            {"role", role},
            {"content", content},
            {"created_at", created_at}};
  if (!tool_calls.is_null()) j["tool_calls"] = tool_calls;
  if (role == "tool") j["tool_call_id"] = tool_call_id;
  if (!attachments.is_null()) j["attachments"] = attachments;
  if (!meta_data.is_null()) j["meta_data"] = meta_data;
  if (!sources.is_null()) j["sources"] = sources;
  return j;
}

StackMessage Message::ToStackMessage() const {
  StackMessage m;
  m.role = role;
  m.content = content;
  m.tool_call_id = tool_call_id;
  if (tool_calls.is_array()) {
    for (const json& call : tool_calls) {
      if (call.is_object() && call.contains("id") && call["id"].is_string()) {
        m.tool_call_ids.push_back(call["id"].get<std::string>());
      }
    }
  }
  if (attachments.is_array()) {
    for (const json& a : attachments) {
      auto field = [&](const char* name) {
        return a.is_object() && a.contains(name) && a[name].is_string() ? a[name].get<std::string>()
                                                                        : std::string();
      };
      m.attachment_keys.push_back(
          absl::StrCat(field("file_id"), "|", field("user_id"), "|", field("base_url")));
    }
  }
  return m;
}

json Thread::ToJson() const {
  return json{{"id", id},
              {"assistant_id", assistant_id},
              {"tenant_id", kTenantId},
              {"user_id", user_id ? json(*user_id) : json(nullptr)},
              {"title", title},
              {"created_at", created_at},
              {"last_updated_at", last_updated_at}};
}

ThreadStore::ThreadStore(Clock& clock, UuidGenerator& uuids) : clock_(clock), uuids_(uuids) {
  assistants_ = {
      Assistant{std::string(kTaxAssistantId), "Haufe Copilot Tax", true, true},
      Assistant{std::string(kHrAssistantId), "Haufe Copilot HR", false, true},
      Assistant{std::string(kLegacyAssistantId), "Haufe Copilot Legacy", false, false},
  };
}

const Assistant* ThreadStore::FindAssistant(absl::string_view id) const {
  for (const Assistant& a : assistants_) {
    if (a.id == id) return &a;
  }
  return nullptr;
}

Thread& ThreadStore::CreateThread(std::string assistant_id, std::optional<std::string> user_id,
                                  json title, bool via_chat_completions) {
  auto thread = std::make_unique<Thread>();
  thread->id = uuids_.Next();
  thread->assistant_id = std::move(assistant_id);
  thread->user_id = std::move(user_id);
  thread->title = std::move(title);
  thread->created_at = FormatIsoMicros(clock_.Now());
  thread->last_updated_at = thread->created_at;
  thread->seq = next_seq_++;
  thread->via_chat_completions = via_chat_completions;
  Thread* raw = thread.get();
  thread_order_.push_back(raw);
  threads_.emplace(raw->id, std::move(thread));
  return *raw;
}

Thread* ThreadStore::FindThread(absl::string_view id) {
  auto it = threads_.find(id);
  return it == threads_.end() ? nullptr : it->second.get();
}

Message ThreadStore::NewMessage(const Thread& thread) {
  Message m;
  m.id = uuids_.Next();
  m.thread_id = thread.id;
  m.created_at = FormatIsoMicros(clock_.Now());
  return m;
}

Message& ThreadStore::AddMessage(Thread& thread, Message message) {
  if (message.id.empty()) message.id = uuids_.Next();
  if (message.created_at.empty()) message.created_at = FormatIsoMicros(clock_.Now());
  message.thread_id = thread.id;
  message.seq = next_seq_++;
  thread.last_updated_at = FormatIsoMicros(clock_.Now());
  thread.messages.push_back(std::move(message));
  return thread.messages.back();
}

bool ThreadStore::DeleteMessage(Thread& thread, absl::string_view message_id) {
  auto it = std::find_if(thread.messages.begin(), thread.messages.end(),
                         [&](const Message& m) { return m.id == message_id; });
  if (it == thread.messages.end()) return false;
  thread.messages.erase(it);
  thread.last_updated_at = FormatIsoMicros(clock_.Now());
  return true;
}

Page ThreadStore::ListThreads(size_t limit, std::optional<int64_t> cursor,
                              const std::optional<std::string>& user_id,
                              bool include_deleted) const {
  Page page;
  int64_t last_seq = 0;
  bool more = false;
  for (auto it = thread_order_.rbegin(); it != thread_order_.rend(); ++it) {
    const Thread& t = **it;
    if (cursor && t.seq >= *cursor) continue;
    if (t.deleted && !include_deleted) continue;
    if (user_id && t.user_id != user_id) continue;
    if (page.items.size() == limit) {
      more = true;
      break;
    }
    page.items.push_back(t.ToJson());
    last_seq = t.seq;
  }
  if (more) page.cursor = EncodeCursor(last_seq);
  return page;
}

Page ThreadStore::ListMessages(const Thread& thread, size_t limit,
                               std::optional<int64_t> cursor) const {
  Page page;
  int64_t last_seq = 0;
  bool more = false;
  for (auto it = thread.messages.rbegin(); it != thread.messages.rend(); ++it) {
    if (cursor && it->seq >= *cursor) continue;
    if (page.items.size() == limit) {
      more = true;
      break;
    }
    page.items.push_back(it->ToJson());
    last_seq = it->seq;
  }
  if (more) page.cursor = EncodeCursor(last_seq);
  return page;
}

void ThreadStore::Clear() {
  threads_.clear();
  thread_order_.clear();
}

std::string EncodeCursor(int64_t seq) {
  return absl::WebSafeBase64Escape(absl::StrCat(kCursorPrefix, seq));
}

absl::StatusOr<int64_t> DecodeCursor(absl::string_view cursor) {
  std::string raw;
  int64_t seq = 0;
  if (!absl::WebSafeBase64Unescape(cursor, &raw) || !absl::StartsWith(raw, kCursorPrefix) ||
      !absl::SimpleAtoi(absl::string_view(raw).substr(kCursorPrefix.size()), &seq) || seq <= 0) {
    return absl::InvalidArgumentError("Invalid cursor");
  }
  return seq;
}

}  // namespace copilot::emulator
