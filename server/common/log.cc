#include "server/common/log.h"

#include <atomic>
#include <cstdio>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "google/protobuf/stubs/logging.h"

namespace copilot::gateway {
namespace {

std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
std::atomic<LogWriter*> g_writer{nullptr};

void HandleProtobufLog(google::protobuf::LogLevel level, const char* filename, int line,
                       const std::string& message) {
  LogLevel ours = LogLevel::kError;
  switch (level) {
    case google::protobuf::LOGLEVEL_INFO:
      ours = LogLevel::kInfo;
      break;
    case google::protobuf::LOGLEVEL_WARNING:
      ours = LogLevel::kWarning;
      break;
    default:
      break;
  }
  if (absl::StrContains(message, "when parsing a protocol buffer")) ours = LogLevel::kDebug;
  Log(ours, "libprotobuf",
      {{"source", absl::StrCat(filename != nullptr ? filename : "?", ":", line)},
       {"detail", message}});
}

}  // namespace

void RouteProtobufLogs() { google::protobuf::SetLogHandler(&HandleProtobufLog); }

absl::StatusOr<LogLevel> ParseLogLevel(absl::string_view name) {
  const std::string lower = absl::AsciiStrToLower(name);
  if (lower == "debug") return LogLevel::kDebug;
  if (lower == "info") return LogLevel::kInfo;
  if (lower == "warning" || lower == "warn") return LogLevel::kWarning;
  if (lower == "error") return LogLevel::kError;
  return absl::InvalidArgumentError(
      absl::StrCat("log_level: \"", name, "\" is not one of debug, info, warning, error"));
}

absl::string_view LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kError:
      return "error";
  }
  return "info";
}

void SetLogLevel(LogLevel level) { g_level.store(static_cast<int>(level)); }

LogLevel GetLogLevel() { return static_cast<LogLevel>(g_level.load()); }

std::string FormatLogLine(LogLevel level, absl::string_view msg,
                          const nlohmann::ordered_json& fields) {
  nlohmann::ordered_json line = nlohmann::ordered_json::object();
  line["time"] = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone());
  line["level"] = std::string(LogLevelName(level));
  line["msg"] = std::string(msg);
  if (fields.is_object()) {
    for (const auto& [key, value] : fields.items()) line[key] = value;
  }
  return line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

void Log(LogLevel level, absl::string_view msg, const nlohmann::ordered_json& fields) {
  if (!LogEnabled(level)) return;
  WriteLogText(absl::StrCat(FormatLogLine(level, msg, fields), "\n"));
}

void SetLogWriter(LogWriter* writer) { g_writer.store(writer); }

LogWriter* GetLogWriter() { return g_writer.load(); }

void WriteLogText(absl::string_view text) {
  if (LogWriter* writer = g_writer.load(); writer != nullptr) {
    writer->Write(text);
    return;
  }
  // No writer (tests, tools, before main sets one): at once; a lost line never fails the call.
  (void)std::fwrite(text.data(), 1, text.size(), stderr);
  (void)std::fflush(stderr);
}

}  // namespace copilot::gateway
