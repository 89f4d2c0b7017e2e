#include "server/common/log_writer.h"

#include <poll.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

namespace copilot::gateway {

LogWriter::LogWriter(int fd, std::size_t max_buffered_bytes)
    : fd_(fd), max_buffered_bytes_(std::max<std::size_t>(max_buffered_bytes, 1)) {
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "log-writer");
    Run();
  });
}

LogWriter::~LogWriter() {
  Flush();
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

bool LogWriter::Write(absl::string_view line) {
  absl::MutexLock lock(&mu_);
  if (pending_.size() + line.size() > max_buffered_bytes_) {
    ++dropped_;
    return false;
  }
  // The writer thread waits on a condition over pending_: unlocking wakes it.
  pending_.append(line.data(), line.size());
  ++pending_lines_;
  ++queued_;
  return true;
}

bool LogWriter::Flush(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  const uint64_t target = queued_;
  auto done = [this, target]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return done_ >= target; };
  return mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
}

LogWriter::Stats LogWriter::stats() const {
  absl::MutexLock lock(&mu_);
  return Stats{written_, dropped_, pending_.size() + writing_bytes_};
}

void LogWriter::Run() {
  // Two buffers swapped back and forth keep their capacity: no allocation once warm.
  std::string batch;
  while (true) {
    std::size_t lines = 0;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || !pending_.empty();
      };
      mu_.Await(absl::Condition(&ready));
      if (pending_.empty()) return;  // Stopping, and everything written.
      batch.clear();
      batch.swap(pending_);
      lines = std::exchange(pending_lines_, 0);
      writing_bytes_ = batch.size();
    }
    const bool ok = WriteAll(batch);
    absl::MutexLock lock(&mu_);
    writing_bytes_ = 0;
    done_ += lines;
    (ok ? written_ : dropped_) += lines;
    // A batch of a burst may have grown far past the usual; give it back.
    if (batch.capacity() > 4 * std::max<std::size_t>(batch.size(), 64 * 1024)) {
      std::string().swap(batch);
    }
  }
}

bool LogWriter::WriteAll(const std::string& batch) const {
  std::size_t written = 0;
  while (written < batch.size()) {
    const ssize_t n = ::write(fd_, batch.data() + written, batch.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      // A non-blocking descriptor (shared with whoever started us): wait until it takes more.
      pollfd writable{fd_, POLLOUT, 0};
      if (::poll(&writable, 1, -1) < 0 && errno != EINTR) return false;
      continue;
    }
    if (n <= 0) return false;
    written += static_cast<std::size_t>(n);
  }
  return true;
}

}  // namespace copilot::gateway
