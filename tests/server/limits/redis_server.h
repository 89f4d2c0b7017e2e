// A real redis-server for tests and the benchmark: started on a free loopback port with no
// persistence, killed when destroyed; can be killed, stalled and restarted on the same port(s).
// With TLS it listens on two ports: TLS for the code under test, plain for Command().
#ifndef COPILOT_GATEWAY_TESTS_SERVER_LIMITS_REDIS_SERVER_H_
#define COPILOT_GATEWAY_TESTS_SERVER_LIMITS_REDIS_SERVER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tests/testing/child_process.h"
#include "tests/testing/free_port.h"

namespace copilot::gateway::testing {

// What a TLS redis-server presents and asks for (PEM files, e.g. from tests/certs).
struct RedisTlsFiles {
  std::string cert_file;
  std::string key_file;
  std::string ca_file;  // Redis verifies client certificates against it.
  // tls-auth-clients: require a client certificate.
  bool require_client_certificate = false;
};

// Not thread-safe.
class RedisServer {
 public:
  // Starts /usr/bin/redis-server on `port` (a free one when 0) with `extra_args`, and waits until
  // it answers PING (with the password from "--requirepass", if any).
  static absl::StatusOr<std::unique_ptr<RedisServer>> Start(
      int port = 0, std::vector<std::string> extra_args = {});
  // Starts it with TLS on `tls_port` (a free one when 0) and plain TCP on another free port
  // (for Command()).
  static absl::StatusOr<std::unique_ptr<RedisServer>> StartTls(
      const RedisTlsFiles& tls, int tls_port = 0, std::vector<std::string> extra_args = {});
  ~RedisServer();

  // The plain TCP port.
  int port() const { return port_; }
  std::string url() const;
  // With StartTls: the TLS port, and "rediss://127.0.0.1:<tls_port>"; 0 and "" otherwise.
  int tls_port() const { return tls_port_; }
  std::string tls_url() const;

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
  RedisServer(int port, std::vector<std::string> extra_args, int tls_port = 0);
  absl::Status Spawn();

  const int port_;
  const int tls_port_;
  const std::vector<std::string> extra_args_;
  std::string password_;
  std::unique_ptr<ChildProcess> process_;  // Null while killed.
};

}  // namespace copilot::gateway::testing

#endif  // COPILOT_GATEWAY_TESTS_SERVER_LIMITS_REDIS_SERVER_H_
