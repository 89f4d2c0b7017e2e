#include "server/ops/audit_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "server/common/log.h"

namespace copilot::gateway {

absl::StatusOr<std::unique_ptr<AuditLog>> AuditLog::Open(const std::string& path) {
  if (path == "stderr") return std::unique_ptr<AuditLog>(new AuditLog(STDERR_FILENO, false));
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("usage.audit_log: cannot open ", path, ": ", std::strerror(errno)));
  }
  return std::unique_ptr<AuditLog>(new AuditLog(fd, true));
}

AuditLog::~AuditLog() {
  if (owned_) ::close(fd_);
}

std::string AuditLog::FormatLine(const AnswerRecord& record) {
  nlohmann::ordered_json fields = {
      {"event", "answer"},
      {"method", record.method},
      {"tenant", record.tenant},
      {"assistant_id", record.assistant_id},
      {"thread_id", record.thread_id},
      {"request_id", record.request_id},
      {"characters_in", record.characters_in},
      {"characters_out", record.characters_out},
      {"upstream_seconds", absl::ToDoubleSeconds(record.upstream_time)},
      {"code", absl::StatusCodeToString(record.code)}};
  if (!record.reason.empty()) fields["reason"] = record.reason;
  return FormatLogLine(LogLevel::kInfo, "audit", fields);
}

void AuditLog::Answered(const AnswerRecord& record) {
  const std::string line = FormatLine(record) + "\n";
  std::size_t written = 0;
  while (written < line.size()) {
    const ssize_t n = ::write(fd_, line.data() + written, line.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // A full disk loses the line, never the call.
    written += static_cast<std::size_t>(n);
  }
}

}  // namespace copilot::gateway
