#include "client/cli/output.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "client/error_details.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/time_util.h"

namespace copilot::client::cli {
namespace {

constexpr size_t kExcerptBytes = 80;

std::string RoleName(v1::Role role) {
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
      return "unspecified";
  }
}

bool IsSet(const google::protobuf::Timestamp& t) { return t.seconds() != 0 || t.nanos() != 0; }

std::string FormatTime(const google::protobuf::Timestamp& t) {
  return google::protobuf::util::TimeUtil::ToString(t);
}

std::string StringField(const google::protobuf::Struct& s, const std::string& key) {
  auto it = s.fields().find(key);
  if (it == s.fields().end() || !it->second.has_string_value()) return "";
  return it->second.string_value();
}

// The first line of `text`, cut to kExcerptBytes without splitting a UTF-8
// sequence.
std::string Excerpt(const std::string& text) {
  std::string line = text.substr(0, text.find('\n'));
  if (line.size() <= kExcerptBytes) return line;
  size_t cut = kExcerptBytes - 3;
  while (cut > 0 && (static_cast<unsigned char>(line[cut]) & 0xC0) == 0x80) --cut;
  return absl::StrCat(line.substr(0, cut), "...");
}

std::string SourceTitle(const v1::Source& source) {
  std::string title = StringField(source.meta_data(), "document_title");
  if (title.empty()) title = StringField(source.meta_data(), "title");
  if (title.empty()) return Excerpt(source.content());
  if (std::string section = StringField(source.meta_data(), "section"); !section.empty()) {
    absl::StrAppend(&title, " (", section, ")");
  }
  return title;
}

// `text` as a JSON string literal, quoted and escaped.
std::string JsonString(const std::string& text) {
  google::protobuf::Value value;
  value.set_string_value(text);
  std::string json;
  if (!google::protobuf::util::MessageToJsonString(value, &json).ok()) return "\"\"";
  return json;
}

}  // namespace

void PrintJsonLine(std::ostream& out, const google::protobuf::Message& message) {
  std::string json;
  if (!google::protobuf::util::MessageToJsonString(message, &json).ok()) {
    // Only an Any of an unknown type can fail here; say so rather than print
    // half an object.
    json = R"({"error":"response cannot be printed as JSON"})";
  }
  out << json << "\n";
}

void PrintError(std::ostream& err, const absl::Status& status, bool json) {
  if (!json) {
    err << "error: " << FormatError(status) << "\n";
    return;
  }
  // Built by hand so the keys come in a fixed order (a Struct's would not).
  const google::rpc::Status rpc = ToRpcStatus(status);
  std::vector<std::string> details;
  for (const google::protobuf::Any& any : rpc.details()) {
    std::string detail;
    // A detail of a type unknown to this binary is left out.
    if (google::protobuf::util::MessageToJsonString(any, &detail).ok()) details.push_back(detail);
  }
  err << R"({"error":{"code":)" << static_cast<int>(status.code()) << R"(,"status":)"
      << JsonString(absl::StatusCodeToString(status.code())) << R"(,"message":)"
      << JsonString(rpc.message()) << R"(,"details":[)" << absl::StrJoin(details, ",") << "]}}\n";
}

void PrintAssistants(std::ostream& out, const v1::ListAssistantsResponse& response) {
  for (const v1::Assistant& a : response.assistants()) {
    out << a.id() << "  " << a.name() << (a.streaming() ? "  (streaming)" : "") << "\n";
  }
}

void PrintUsage(std::ostream& out, const v1::GetUsageResponse& response) {
  out << "tenant: " << response.tenant_id() << "\n";
  if (response.partial()) {
    out << "partial: the gateway could not reach its shared usage store; these are one "
           "replica's figures\n";
  }
  auto figure = [&out](const char* name, int64_t used, int64_t quota, int64_t remaining) {
    out << "  " << name << ": " << used;
    if (quota > 0) {
      out << " of " << quota << " (" << remaining << " left)";
    } else {
      out << " (no quota)";
    }
    out << "\n";
  };
  for (const auto& [name, period] :
       {std::pair<const char*, const v1::UsagePeriod&>{"day", response.day()},
        {"month", response.month()}}) {
    out << name << " " << FormatTime(period.start_time()) << " .. " << FormatTime(period.end_time())
        << "\n";
    figure("answers", period.answers(), period.answers_quota(), period.answers_remaining());
    figure("characters", period.characters(), period.characters_quota(),
           period.characters_remaining());
  }
}

void PrintThread(std::ostream& out, const v1::Thread& thread) {
  out << "id: " << thread.id() << "\n";
  out << "assistant: " << thread.assistant_id() << "\n";
  if (!thread.user_id().empty()) out << "user: " << thread.user_id() << "\n";
  if (!thread.title().empty()) out << "title: " << thread.title() << "\n";
  if (IsSet(thread.create_time())) out << "created: " << FormatTime(thread.create_time()) << "\n";
  if (IsSet(thread.update_time())) out << "updated: " << FormatTime(thread.update_time()) << "\n";
}

void PrintMessages(std::ostream& out, const v1::ListMessagesResponse& response) {
  for (const v1::Message& m : response.messages()) {
    out << RoleName(m.role()) << " " << m.id();
    if (IsSet(m.create_time())) out << " " << FormatTime(m.create_time());
    out << "\n";
    if (!m.content().empty()) {
      out << "  " << absl::StrReplaceAll(m.content(), {{"\n", "\n  "}}) << "\n";
    }
    for (const v1::ToolCall& call : m.tool_calls()) {
      out << "  tool call " << call.id() << ": " << call.function().name() << " "
          << call.function().arguments() << "\n";
    }
  }
  if (!response.next_page_token().empty()) {
    out << "next page token: " << response.next_page_token() << "\n";
  }
}

void PrintAnswer(std::ostream& out, const v1::Message& message) {
  if (!message.content().empty()) out << message.content() << "\n";
  for (const v1::ToolCall& call : message.tool_calls()) {
    out << "tool call " << call.id() << ": " << call.function().name() << " "
        << call.function().arguments() << "\n";
  }
  PrintSources(out, {message.sources().begin(), message.sources().end()});
}

void PrintSources(std::ostream& out, const std::vector<v1::Source>& sources) {
  if (sources.empty()) return;
  out << "Sources:\n";
  for (size_t i = 0; i < sources.size(); ++i) {
    out << "  [" << i + 1 << "] " << SourceTitle(sources[i]) << "\n";
  }
}

void StreamPrinter::OnChunk(const v1::MessageChunk& chunk) {
  if (!chunk.thread_id().empty()) thread_id_ = chunk.thread_id();
  if (json_) {
    PrintJsonLine(out_, chunk);
  } else {
    if (!chunk.delta().content().empty()) {
      out_ << chunk.delta().content();
      printed_text_ = true;
    }
    sources_.insert(sources_.end(), chunk.delta().sources().begin(), chunk.delta().sources().end());
  }
  out_.flush();
}

void StreamPrinter::Finish() {
  if (json_) return;
  if (printed_text_) out_ << "\n";
  PrintSources(out_, sources_);
  out_.flush();
}

}  // namespace copilot::client::cli
