// Captures what a piece of code writes to stderr (file descriptor 2), for the log tests.
#ifndef COPILOT_TESTS_SERVER_OPS_CAPTURE_STDERR_H_
#define COPILOT_TESTS_SERVER_OPS_CAPTURE_STDERR_H_

#include <unistd.h>

#include <cstdio>
#include <string>
#include <thread>

#include "gtest/gtest.h"

namespace copilot::gateway::ops_testing {

// Runs `write` with fd 2 redirected into a pipe and returns everything it wrote (a reader
// thread drains the pipe, so any amount fits). Not thread-safe with respect to other users of
// fd 2: nothing else may redirect stderr meanwhile.
template <typename Write>
std::string CaptureStderr(Write write) {
  int fds[2];
  if (pipe(fds) != 0) {
    ADD_FAILURE() << "pipe failed";
    return "";
  }
  std::string out;
  std::thread reader([&out, read_fd = fds[0]] {
    char buffer[4096];
    ssize_t n = 0;
    while ((n = read(read_fd, buffer, sizeof buffer)) > 0) {
      out.append(buffer, static_cast<size_t>(n));
    }
  });
  std::fflush(stderr);
  const int saved = dup(STDERR_FILENO);
  dup2(fds[1], STDERR_FILENO);
  close(fds[1]);
  write();
  std::fflush(stderr);
  dup2(saved, STDERR_FILENO);  // Closes the pipe's last write end: the reader sees EOF.
  close(saved);
  reader.join();
  close(fds[0]);
  return out;
}

}  // namespace copilot::gateway::ops_testing

#endif  // COPILOT_TESTS_SERVER_OPS_CAPTURE_STDERR_H_
