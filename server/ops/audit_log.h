// The audit log: one JSON line per answer generation that reached the upstream, e.g.
//   {"time":"2026-12-02T10:00:00.123Z","level":"info","msg":"audit","event":"answer",
//    "method":"Run","tenant":"payroll","assistant_id":"...","thread_id":"...",
//    "request_id":"...","characters_in":0,"characters_out":812,"upstream_seconds":1.92,
//    "code":"OK"}
// written whatever the log level, to stderr (beside the logs, through the same writer, so the
// lines stay whole and in order) or appended to a file (by a LogWriter of its own: whole lines
// only, so copytruncate rotation never sees half a line). Never message content.
#ifndef COPILOT_GATEWAY_SERVER_OPS_AUDIT_LOG_H_
#define COPILOT_GATEWAY_SERVER_OPS_AUDIT_LOG_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/common/log_writer.h"
#include "server/ops/usage_haufe_api.h"

namespace copilot::gateway {

// Thread-safe. No call waits for the disk: a line that does not fit the writer's buffer is
// dropped and counted (LogWriter).
class AuditLog final : public UsageEvents {
 public:
  // `path` "stderr" (through WriteLogText), or a file opened for appending (created 0640 when
  // absent), written by a LogWriter of its own buffering at most `max_buffered_bytes`.
  // INVALID_ARGUMENT naming the path when it cannot be opened.
  static absl::StatusOr<std::unique_ptr<AuditLog>> Open(const std::string& path,
                                                        std::size_t max_buffered_bytes);
  ~AuditLog() override;
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  void Answered(const AnswerRecord& record) override;
  void MessageAdded(const std::string&, const std::string&, int64_t) override {}
  void ThreadCreated(const std::string&, const std::string&) override {}

  // The file's writer; null when the lines go to stderr.
  const LogWriter* file_writer() const { return writer_.get(); }

  // The line written for `record` (without the newline). For tests.
  static std::string FormatLine(const AnswerRecord& record);

 private:
  AuditLog(int fd, std::size_t max_buffered_bytes);
  // -1 for stderr.
  const int fd_;
  // Declared after fd_: destroyed (its lines written) before the file is closed.
  std::unique_ptr<LogWriter> writer_;
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_OPS_AUDIT_LOG_H_
