#include "server/common/log_writer.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace copilot::gateway {
namespace {

// A file deleted when the test ends; fd() open for writing (appending).
class TempFile {
 public:
  TempFile() {
    char name[] = "/tmp/log_writer_test_XXXXXX";
    fd_ = mkstemp(name);
    path_ = name;
  }
  ~TempFile() {
    close(fd_);
    std::remove(path_.c_str());
  }
  int fd() const { return fd_; }
  std::vector<std::string> Lines() const {
    std::string text;
    const int in = open(path_.c_str(), O_RDONLY);
    char buffer[65536];
    for (ssize_t n; (n = read(in, buffer, sizeof(buffer))) > 0;) text.append(buffer, n);
    close(in);
    std::vector<std::string> lines = absl::StrSplit(text, '\n');
    EXPECT_EQ(lines.back(), "") << "the last line is not whole";
    lines.pop_back();
    return lines;
  }

 private:
  int fd_ = -1;
  std::string path_;
};

std::string Drain(int fd) {
  std::string text;
  char buffer[65536];
  for (ssize_t n; (n = read(fd, buffer, sizeof(buffer))) > 0;) text.append(buffer, n);
  return text;
}

TEST(LogWriterTest, LinesFromManyThreadsArriveWholeAndInEachThreadsOrder) {
  TempFile file;
  constexpr int kThreads = 4;
  constexpr int kLines = 2000;
  {
    // Room for every line (1.7 MB), however far the callers get ahead of the file.
    LogWriter writer(file.fd(), 4 << 20);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&writer, t] {
        for (int i = 0; i < kLines; ++i) {
          // Each line long enough that a torn write would show.
          ASSERT_TRUE(writer.Write(absl::StrCat(t, " ", i, " ", std::string(200, 'x'), "\n")));
        }
      });
    }
    for (std::thread& thread : threads) thread.join();
    writer.Flush();
    const LogWriter::Stats stats = writer.stats();
    EXPECT_EQ(stats.lines_written, uint64_t{kThreads * kLines});
    EXPECT_EQ(stats.lines_dropped, 0u);
    EXPECT_EQ(stats.buffered_bytes, 0u);
  }
  std::vector<int> next(kThreads, 0);
  const std::vector<std::string> lines = file.Lines();
  ASSERT_EQ(lines.size(), std::size_t{kThreads * kLines});
  for (const std::string& line : lines) {
    std::vector<std::string> parts = absl::StrSplit(line, ' ');
    ASSERT_EQ(parts.size(), 3u) << line;
    ASSERT_EQ(parts[2], std::string(200, 'x'));
    const int t = std::stoi(parts[0]);
    EXPECT_EQ(std::stoi(parts[1]), next[t]++) << "thread " << t << " out of order";
  }
}

TEST(LogWriterTest, AFullBufferDropsAndCountsLinesAndNeverBlocksTheCaller) {
  // A pipe nobody reads, filled up front: the writer thread blocks in its first write(2). The
  // callers must not: were Write to wait for the descriptor, this test would hang.
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const int write_flags = fcntl(fds[1], F_GETFL);
  ASSERT_EQ(fcntl(fds[1], F_SETFL, write_flags | O_NONBLOCK), 0);
  std::size_t prefilled = 0;
  const std::string filler(4096, 'p');
  for (ssize_t n; (n = write(fds[1], filler.data(), filler.size())) > 0;) prefilled += n;
  ASSERT_EQ(errno, EAGAIN);
  ASSERT_EQ(fcntl(fds[1], F_SETFL, write_flags), 0);  // Blocking again, as stderr usually is.

  constexpr std::size_t kBound = 16 * 1024;
  const std::string line = absl::StrCat(std::string(99, 'y'), "\n");
  LogWriter writer(fds[1], kBound);
  int accepted = 0;
  for (int i = 0; i < 5000; ++i) accepted += writer.Write(line) ? 1 : 0;  // 500,000 bytes
  const LogWriter::Stats full = writer.stats();
  EXPECT_EQ(full.lines_dropped, 5000u - accepted);
  EXPECT_GT(full.lines_dropped, 4000u);
  // What waits is the bound plus at most the batch in write(2).
  EXPECT_LE(full.buffered_bytes, 2 * kBound);
  EXPECT_LE(static_cast<std::size_t>(accepted) * line.size(), 2 * kBound);

  // The reader comes back: everything accepted arrives whole, nothing more is dropped.
  const int read_flags = fcntl(fds[0], F_GETFL);
  ASSERT_EQ(fcntl(fds[0], F_SETFL, read_flags | O_NONBLOCK), 0);
  std::string received;
  std::thread flusher([&writer] { writer.Flush(); });
  const std::size_t expected = prefilled + line.size() * accepted;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (received.size() < expected && std::chrono::steady_clock::now() < deadline) {
    received += Drain(fds[0]);
    usleep(1000);
  }
  flusher.join();
  ASSERT_EQ(received.size(), expected);
  EXPECT_EQ(received.substr(0, prefilled).find_first_not_of('p'), std::string::npos);
  received.erase(0, prefilled);
  for (std::size_t at = 0; at < received.size(); at += line.size()) {
    ASSERT_EQ(received.substr(at, line.size()), line) << "at byte " << at;
  }
  const LogWriter::Stats after = writer.stats();
  EXPECT_EQ(after.lines_written, static_cast<uint64_t>(accepted));
  EXPECT_EQ(after.lines_dropped, full.lines_dropped);
  EXPECT_EQ(after.buffered_bytes, 0u);
  close(fds[0]);
  close(fds[1]);  // Nothing is queued: the writer's destructor writes nothing.
}

TEST(LogWriterTest, AFailedWriteCountsItsLinesAsDroppedAndTheWriterGoesOn) {
  std::signal(SIGPIPE, SIG_IGN);
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  close(fds[0]);  // EPIPE from now on.
  {
    LogWriter writer(fds[1], 1 << 20);
    EXPECT_TRUE(writer.Write("one\n"));
    EXPECT_TRUE(writer.Write("two\n"));
    writer.Flush();
    EXPECT_TRUE(writer.Write("three\n"));
    writer.Flush();
    const LogWriter::Stats stats = writer.stats();
    EXPECT_EQ(stats.lines_dropped, 3u);
    EXPECT_EQ(stats.lines_written, 0u);
    EXPECT_EQ(stats.buffered_bytes, 0u);
  }
  close(fds[1]);
}

TEST(LogWriterTest, DestroyingTheWriterWritesEverythingQueued) {
  TempFile file;
  {
    LogWriter writer(file.fd(), 1 << 20);
    for (int i = 0; i < 1000; ++i) ASSERT_TRUE(writer.Write(absl::StrCat("line ", i, "\n")));
  }
  const std::vector<std::string> lines = file.Lines();
  ASSERT_EQ(lines.size(), 1000u);
  EXPECT_EQ(lines.front(), "line 0");
  EXPECT_EQ(lines.back(), "line 999");
}

TEST(LogWriterTest, ANonBlockingDescriptorIsWaitedForNotDroppedFrom) {
  // stderr may be non-blocking when shared with whoever started the gateway: EAGAIN means
  // "later", not a lost batch.
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  ASSERT_EQ(fcntl(fds[1], F_SETFL, fcntl(fds[1], F_GETFL) | O_NONBLOCK), 0);
  const std::string line = absl::StrCat(std::string(1023, 'z'), "\n");
  constexpr int kLines = 512;  // 512 KiB: eight times the pipe's buffer.
  std::string received;
  {
    LogWriter writer(fds[1], 1 << 20);
    for (int i = 0; i < kLines; ++i) ASSERT_TRUE(writer.Write(line));
    std::thread flusher([&writer] { writer.Flush(); });
    // Blocking reads: the writer keeps writing until every line is out, or the test's timeout
    // (ctest's) ends a hang; a read that fails ends the loop at once.
    while (received.size() < line.size() * kLines) {
      char buffer[4096];
      const ssize_t n = read(fds[0], buffer, sizeof(buffer));
      ASSERT_GT(n, 0);
      received.append(buffer, n);
    }
    flusher.join();
    EXPECT_EQ(writer.stats().lines_dropped, 0u);
    EXPECT_EQ(writer.stats().lines_written, uint64_t{kLines});
  }
  EXPECT_EQ(received.size(), line.size() * kLines);
  close(fds[0]);
  close(fds[1]);
}

}  // namespace
}  // namespace copilot::gateway
