// Structured logs: one JSON object per line on stderr, e.g.
//   {"time":"2026-11-27T14:00:00.123Z","level":"info","msg":"call","method":"Run",...}
// The level is process-wide (stderr is), set from the config at start-up and on every reload.
// Never pass secrets (API keys, tokens, licences, signing keys) or message content.
#ifndef COPILOT_GATEWAY_SERVER_COMMON_LOG_H_
#define COPILOT_GATEWAY_SERVER_COMMON_LOG_H_

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/common/log_writer.h"

namespace copilot::gateway {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// "debug", "info", "warning" (or "warn"), "error"; INVALID_ARGUMENT otherwise.
absl::StatusOr<LogLevel> ParseLogLevel(absl::string_view name);
absl::string_view LogLevelName(LogLevel level);

// The least severe level written. Thread-safe (atomic).
void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
inline bool LogEnabled(LogLevel level) { return level >= GetLogLevel(); }

// Writes {"time", "level", "msg", ...fields} as one whole line, when `level` is enabled, through
// the log writer set (SetLogWriter), else to stderr at once.
// `fields` must be an object (or null). Thread-safe; never throws (invalid UTF-8 is replaced).
void Log(LogLevel level, absl::string_view msg,
         const nlohmann::ordered_json& fields = nlohmann::ordered_json());

// Routes libprotobuf's own log messages into Log() as JSON lines ("msg":"libprotobuf"), instead
// of the library's plain-text lines on stderr. Its complaint about invalid UTF-8 while *parsing*
// a request (a caller's fault, answered with INVALID_ARGUMENT and logged with the call) goes to
// debug; everything else keeps its severity (ERROR and FATAL as error). Process-wide; call once
// from main.
void RouteProtobufLogs();

// Where Log() and WriteLogText() put their lines: `writer` (not owned; it must outlive its use
// here: unset it with nullptr before destroying it), or, when null (the default), stderr at once
// from the calling thread. Thread-safe.
void SetLogWriter(LogWriter* writer);
LogWriter* GetLogWriter();

// Writes `text`, whole lines ending in '\n', to the log writer set, else to stderr: the way for
// other line writers on stderr (the audit log) to keep their lines whole beside Log()'s.
void WriteLogText(absl::string_view text);

// The one JSON line Log() writes (without the newline). For tests.
std::string FormatLogLine(LogLevel level, absl::string_view msg,
                          const nlohmann::ordered_json& fields);

// One log line written field by field straight into its text: the same line FormatLogLine makes
// of the same fields in the same order, without building a JSON object first (nor the object's
// copy), for the lines of every call (the call and audit lines; before, a JSON object of ten
// fields was built and the time formatted through its time zone for each). Keys are
// written as given and must differ from "time", "level", "msg" and each other. Strings are
// escaped as nlohmann's dump escapes them, invalid UTF-8 replaced.
class JsonLogLine {
 public:
  JsonLogLine(LogLevel level, absl::string_view msg);
  JsonLogLine& AddString(absl::string_view key, absl::string_view value);
  JsonLogLine& AddInt(absl::string_view key, int64_t value);
  JsonLogLine& AddDouble(absl::string_view key, double value);  // NaN and infinities as null.
  JsonLogLine& AddJson(absl::string_view key, const nlohmann::ordered_json& value);
  // The line, without the newline.
  std::string Text() &&;

 private:
  void Key(absl::string_view key);
  std::string text_;
};

// Writes `line` (a JsonLogLine's text) when `level` is enabled, as Log() writes its lines.
void LogText(LogLevel level, std::string line);

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_COMMON_LOG_H_
