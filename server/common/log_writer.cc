#include "server/common/log_writer.h"

#include <poll.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "absl/time/clock.h"

namespace copilot::gateway {
namespace {

// How long the writer waits, after a line woke it, for more to join the batch; a batch this
// large (or half the bound, when that is smaller) is written at once.
constexpr absl::Duration kBatchWindow = absl::Milliseconds(10);
constexpr std::size_t kWakeBytes = 64 * 1024;

}  // namespace

LogWriter::LogWriter(int fd, std::size_t max_buffered_bytes)
    : fd_(fd),
      max_buffered_bytes_(std::max<std::size_t>(max_buffered_bytes, 1)),
      wake_bytes_(std::max<std::size_t>(std::min(kWakeBytes, max_buffered_bytes_ / 2), 1)) {
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
    refused_ = true;  // Ends the writer's batch window: write what waits now.
    return false;
  }
  // The writer thread waits on a condition over pending_: unlocking wakes it when it holds.
  pending_.append(line.data(), line.size());
  ++pending_lines_;
  ++queued_;
  return true;
}

bool LogWriter::Flush(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  const uint64_t target = queued_;
  auto done = [this, target]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return done_ >= target; };
  ++flushes_waiting_;  // Ends the writer's batch window at once.
  const bool flushed = mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
  --flushes_waiting_;
  return flushed;
}

LogWriter::Stats LogWriter::stats() const {
  absl::MutexLock lock(&mu_);
  return Stats{written_, dropped_, pending_.size() + writing_bytes_};
}

void LogWriter::Run() {
  // Two buffers swapped back and forth keep their capacity: no allocation once warm.
  std::string batch;
  absl::Time last_written = absl::InfinitePast();
  while (true) {
    std::size_t lines = 0;
    {
      absl::MutexLock lock(&mu_);
      auto any = [this]()
                     ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || !pending_.empty(); };
      mu_.Await(absl::Condition(&any));
      // Under load (the last batch written within the window), the line that woke us waits
      // for those that follow within the window to join its batch, so that a write(2) and a
      // wake-up serve many lines, not one each: unlocking callers only evaluate this condition,
      // no wake-up until it holds or the window ends. A line after a quiet spell is written at
      // once.
      if (absl::Now() - last_written < kBatchWindow) {
        auto full = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return stopping_ || flushes_waiting_ > 0 || refused_ || pending_.size() >= wake_bytes_;
        };
        mu_.AwaitWithTimeout(absl::Condition(&full), kBatchWindow);
      }
      if (pending_.empty()) return;  // Stopping, and everything written.
      refused_ = false;
      batch.clear();
      batch.swap(pending_);
      lines = std::exchange(pending_lines_, 0);
      writing_bytes_ = batch.size();
    }
    const bool ok = WriteAll(batch);
    last_written = absl::Now();
    absl::MutexLock lock(&mu_);
    writing_bytes_ = 0;
    done_ += lines;
    (ok ? written_ : dropped_) += lines;
    // A batch of a burst may have grown far past the usual; give it back.
    if (batch.capacity() > 4 * std::max<std::size_t>(batch.size(), kWakeBytes)) {
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
