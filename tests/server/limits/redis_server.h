// A real redis-server for tests and the benchmark: started on a free loopback port with no
// persistence, killed when destroyed; can be killed, stalled and restarted on the same port.
#ifndef COPILOT_GATEWAY_TESTS_SERVER_LIMITS_REDIS_SERVER_H_
#define COPILOT_GATEWAY_TESTS_SERVER_LIMITS_REDIS_SERVER_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace copilot::gateway::testing {

// A free TCP port on 127.0.0.1 (bound and released: another process could take it meanwhile).
absl::StatusOr<int> FreeLoopbackPort();

// Not thread-safe.
class RedisServer {
 public:
  // Starts /usr/bin/redis-server on `port` (a free one when 0) with `extra_args`, and waits until
  // it answers PING (with the password from "--requirepass", if any).
  static absl::StatusOr<std::unique_ptr<RedisServer>> Start(
      int port = 0, std::vector<std::string> extra_args = {});
  ~RedisServer();

  int port() const { return port_; }
  std::string url() const;

  // SIGKILL and wait: the port refuses connections afterwards.
  void Kill();
  // Starts the server again on the same port (after Kill).
  absl::Status Restart();
  // SIGSTOP / SIGCONT: connections stay open, nothing answers.
  void Stall();
  void Resume();

  // Runs one command on a fresh connection and flattens the reply: a string, status or
  // integer is one element, an array its elements (nested arrays flattened), nil is "(nil)".
  // An error reply or a connection failure is an error status.
  absl::StatusOr<std::vector<std::string>> Command(const std::vector<std::string>& args,
                                                   int database = 0) const;

 private:
  RedisServer(int port, std::vector<std::string> extra_args)
      : port_(port), extra_args_(std::move(extra_args)) {}
  absl::Status Spawn();

  const int port_;
  const std::vector<std::string> extra_args_;
  std::string password_;
  pid_t pid_ = -1;
};

}  // namespace copilot::gateway::testing

#endif  // COPILOT_GATEWAY_TESTS_SERVER_LIMITS_REDIS_SERVER_H_
