// The audit log: one JSON line per answer generation that reached the upstream, e.g.
//   {"time":"2026-12-02T10:00:00.123Z","level":"info","msg":"audit","event":"answer",
//    "method":"Run","tenant":"payroll","assistant_id":"...","thread_id":"...",
//    "request_id":"...","characters_in":0,"characters_out":812,"upstream_seconds":1.92,
//    "code":"OK"}
// written whatever the log level, to stderr (beside the logs, shipped with them) or appended
// to a file (one write per line: safe with copytruncate rotation). Never message content.
#ifndef COPILOT_GATEWAY_SERVER_OPS_AUDIT_LOG_H_
#define COPILOT_GATEWAY_SERVER_OPS_AUDIT_LOG_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/ops/usage_haufe_api.h"

namespace copilot::gateway {

// Thread-safe (each line is one write(2)).
class AuditLog final : public UsageEvents {
 public:
  // `path` "stderr", or a file opened for appending (created 0640 when absent).
  // INVALID_ARGUMENT naming the path when it cannot be opened.
  static absl::StatusOr<std::unique_ptr<AuditLog>> Open(const std::string& path);
  ~AuditLog() override;
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  void Answered(const AnswerRecord& record) override;
  void MessageAdded(const std::string&, const std::string&, int64_t) override {}
  void ThreadCreated(const std::string&, const std::string&) override {}

  // The line written for `record` (without the newline). For tests.
  static std::string FormatLine(const AnswerRecord& record);

 private:
  AuditLog(int fd, bool owned) : fd_(fd), owned_(owned) {}
  const int fd_;
  const bool owned_;
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_OPS_AUDIT_LOG_H_
