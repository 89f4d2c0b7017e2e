// A real forward proxy for tests of the egress path: Debian's tinyproxy on a free loopback
// port, with optional Basic proxy authentication, tunnelling CONNECT to any port and forwarding
// plain-HTTP requests. What it received is read back from its log.
//
//   auto proxy = ForwardProxy::Start({.username = "alice", .password = "s3cret"});
//   ASSERT_TRUE(proxy.ok()) << proxy.status();
//   options.upstream["proxy"] = (*proxy)->url();
//   ... calls ...
//   EXPECT_THAT((*proxy)->Requests(), Each(StartsWith("CONNECT 127.0.0.1:")));
#ifndef COPILOT_GATEWAY_TESTS_SERVER_INTEGRATION_FORWARD_PROXY_H_
#define COPILOT_GATEWAY_TESTS_SERVER_INTEGRATION_FORWARD_PROXY_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tests/testing/child_process.h"

namespace copilot::gateway::testing {

struct ForwardProxyOptions {
  // Basic proxy authentication (407 without them); empty: none.
  std::string username = "";
  std::string password = "";
};

// Not thread-safe.
class ForwardProxy {
 public:
  static constexpr char kBinary[] = "/usr/bin/tinyproxy";
  // Starts tinyproxy and waits until it accepts connections.
  static absl::StatusOr<std::unique_ptr<ForwardProxy>> Start(ForwardProxyOptions options = {});
  ~ForwardProxy();
  ForwardProxy(const ForwardProxy&) = delete;
  ForwardProxy& operator=(const ForwardProxy&) = delete;

  int port() const { return port_; }
  std::string url() const;  // "http://127.0.0.1:PORT"
  // The request lines it received, in order, refused ones (407) included:
  // "CONNECT 127.0.0.1:8443 HTTP/1.1", "POST http://127.0.0.1:8080/agents/... HTTP/1.1".
  std::vector<std::string> Requests() const;
  // Its whole log (for failure messages).
  std::string Log() const;

 private:
  ForwardProxy(std::string dir, int port) : dir_(std::move(dir)), port_(port) {}

  const std::string dir_;  // Its config and log; removed when destroyed.
  const int port_;
  std::unique_ptr<ChildProcess> process_;
};

}  // namespace copilot::gateway::testing

#endif  // COPILOT_GATEWAY_TESTS_SERVER_INTEGRATION_FORWARD_PROXY_H_
