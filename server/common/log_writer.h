// Writes log lines to a file descriptor from a thread of its own, so that no call waits for
// stderr or a disk: a caller appends its line to a bounded buffer and goes on; the writer thread
// takes everything buffered and writes it with as few write(2)s as it can (whole lines only). A
// line after a quiet spell is written at once; under load (a batch written in the last 10 ms)
// the first line waits up to 10 ms for more to join its batch (less once 64 KiB or half the
// bound wait, or a line was refused, or Flush() asks), so a line reaches the file descriptor
// about 10 ms after it was logged at most.
// When the buffer is full (the log pipeline or the disk stopped taking lines), a line is
// dropped and counted, and the call that logged it is not slowed down: a gateway whose stderr
// nobody reads keeps answering.
#ifndef COPILOT_GATEWAY_SERVER_COMMON_LOG_WRITER_H_
#define COPILOT_GATEWAY_SERVER_COMMON_LOG_WRITER_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace copilot::gateway {

// Thread-safe.
class LogWriter {
 public:
  struct Stats {
    uint64_t lines_written = 0;
    // Lines refused because the buffer was full, or lost to a failed write (e.g. EPIPE, ENOSPC).
    uint64_t lines_dropped = 0;
    // Bytes waiting to be written (at most max_buffered_bytes), and those being written.
    std::size_t buffered_bytes = 0;
  };

  // Writes to `fd` (not owned; it must stay open until the writer is destroyed). At most
  // `max_buffered_bytes` (at least 1) wait to be written at once, besides the batch in write.
  LogWriter(int fd, std::size_t max_buffered_bytes);
  // Writes what is buffered (Flush()), then stops the thread. To stop without waiting for a
  // descriptor that takes nothing (a process on its way out), Flush with a timeout first and
  // leak the writer when it fails.
  ~LogWriter();
  LogWriter(const LogWriter&) = delete;
  LogWriter& operator=(const LogWriter&) = delete;

  // Queues `line`, one whole line ending in '\n'. Never blocks on the file descriptor: false
  // (the line dropped and counted) when it does not fit in the buffer.
  bool Write(absl::string_view line);

  // Returns true once every line queued before the call has been written or dropped; false
  // when `timeout` passed first (the descriptor is not taking lines).
  bool Flush(absl::Duration timeout = absl::InfiniteDuration());

  Stats stats() const;

 private:
  void Run();
  // Writes `batch` whole; false when the file descriptor failed.
  bool WriteAll(const std::string& batch) const;

  const int fd_;
  const std::size_t max_buffered_bytes_;
  // pending_ this large ends the batch window at once.
  const std::size_t wake_bytes_;
  mutable absl::Mutex mu_;
  std::string pending_ ABSL_GUARDED_BY(mu_);
  std::size_t pending_lines_ ABSL_GUARDED_BY(mu_) = 0;
  std::size_t writing_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  // Sequence numbers of accepted lines: queued_ counts them, done_ those written or lost.
  uint64_t queued_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t done_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t written_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
  int flushes_waiting_ ABSL_GUARDED_BY(mu_) = 0;
  // A line was refused since the last batch was taken.
  bool refused_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_COMMON_LOG_WRITER_H_
