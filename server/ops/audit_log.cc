#include "server/ops/audit_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "server/common/errors.h"
#include "server/common/log.h"

namespace copilot::gateway {

AuditLog::AuditLog(int fd, std::size_t max_buffered_bytes)
    : fd_(fd), writer_(fd < 0 ? nullptr : std::make_unique<LogWriter>(fd, max_buffered_bytes)) {}

absl::StatusOr<std::unique_ptr<AuditLog>> AuditLog::Open(const std::string& path,
                                                         std::size_t max_buffered_bytes) {
  if (path == "stderr") return std::unique_ptr<AuditLog>(new AuditLog(-1, max_buffered_bytes));
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("usage.audit_log: cannot open ", path, ": ", ErrnoText(errno)));
  }
  return std::unique_ptr<AuditLog>(new AuditLog(fd, max_buffered_bytes));
}

AuditLog::~AuditLog() {
  if (writer_ == nullptr) return;
  // Writes what is buffered first; a disk that takes nothing for this long keeps the writer (and
  // the file) to the process's exit instead of holding up the shutdown.
  if (!writer_->Flush(absl::Seconds(2))) {
    (void)writer_.release();
    return;
  }
  writer_.reset();
  ::close(fd_);
}

std::string AuditLog::FormatLine(const AnswerRecord& record) {
  JsonLogLine line(LogLevel::kInfo, "audit");
  line.AddString("event", "answer")
      .AddString("method", record.method)
      .AddString("tenant", record.tenant)
      .AddString("assistant_id", record.assistant_id)
      .AddString("thread_id", record.thread_id)
      .AddString("request_id", record.request_id)
      .AddInt("characters_in", record.characters_in)
      .AddInt("characters_out", record.characters_out)
      .AddDouble("upstream_seconds", absl::ToDoubleSeconds(record.upstream_time))
      .AddString("code", absl::StatusCodeToString(record.code));
  if (!record.reason.empty()) line.AddString("reason", record.reason);
  return std::move(line).Text();
}

void AuditLog::Answered(const AnswerRecord& record) {
  std::string line = FormatLine(record);
  line.push_back('\n');
  if (writer_ != nullptr) {
    writer_->Write(line);  // A full buffer (a stalled disk) loses the line, never the call.
  } else {
    WriteLogText(line);
  }
}

}  // namespace copilot::gateway
