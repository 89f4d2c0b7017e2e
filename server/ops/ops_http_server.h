// The operations HTTP listener (its own port, never the gRPC one): GET /metrics (Prometheus
// text format), /healthz (liveness) and /readyz (readiness: 503 while starting or draining).
#ifndef COPILOT_GATEWAY_SERVER_OPS_OPS_HTTP_SERVER_H_
#define COPILOT_GATEWAY_SERVER_OPS_OPS_HTTP_SERVER_H_

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace copilot::gateway {

// What the endpoints answer. Called on the listener's one thread, one request at a time, so
// every other client waits meanwhile: keep them quick (a /metrics scrape of a few milliseconds
// is fine).
struct OpsHandlers {
  std::function<std::string()> metrics;  // The /metrics body.
  std::function<bool()> live;            // /healthz: 200 when true, 503 otherwise.
  std::function<bool()> ready;           // /readyz: 200 when true, 503 otherwise.
};

// The listener's bounds: what any number of idle, slow or hostile clients can hold. The
// defaults are the production values (no config keys); tests shorten the timeouts.
struct OpsHttpOptions {
  // Open connections at most. One more closes the oldest idle connection to make room (already
  // answered, else still waiting for its request head; the oldest of all only when every one is
  // being answered), so a flood of idle connections cannot lock the probes out.
  int max_connections = 256;
  // A request head (request line and headers) longer than this is answered 431.
  size_t max_head_bytes = 8 * 1024;
  // From accept to the end of the request head; then the connection is closed unanswered.
  absl::Duration head_timeout = absl::Seconds(5);
  // From the request head to the response's last byte taken by the kernel; then the connection
  // is reset (a client that does not read its /metrics body).
  absl::Duration write_timeout = absl::Seconds(10);
};

// An HTTP/1.1 server of its own for the three endpoints: one thread, epoll, non-blocking
// sockets, one request per connection (every response says Connection: close). A request is
// answered as soon as its head is complete, whatever other connections do; every buffer is
// bounded by OpsHttpOptions. Only GET and HEAD on exactly /metrics, /healthz and /readyz (a
// query string is ignored); 405 for other methods there, 404 elsewhere, 400 for a malformed
// request line.
//
// Thread-safe: address() and port() are fixed by Start; the handlers run on the server's own
// thread. Stops when destroyed, closing every connection.
class OpsHttpServer {
 public:
  // Listens on `listen`: IPV4:PORT, [IPV6]:PORT or HOSTNAME:PORT (port 0 picks a free one).
  // UNAVAILABLE naming `listen` when it cannot listen there; INVALID_ARGUMENT for options
  // without room (no connection, no head byte, a timeout not above zero).
  static absl::StatusOr<std::unique_ptr<OpsHttpServer>> Start(
      const std::string& listen, OpsHandlers handlers, OpsHttpOptions options = OpsHttpOptions());
  ~OpsHttpServer();
  OpsHttpServer(const OpsHttpServer&) = delete;
  OpsHttpServer& operator=(const OpsHttpServer&) = delete;

  // HOST:PORT actually listened on (the host as given, the port as bound).
  const std::string& address() const { return address_; }
  int port() const { return port_; }
  // Connections open now (for /metrics: a handler asking counts its own connection).
  int connections() const { return open_connections_.load(std::memory_order_relaxed); }

 private:
  struct Connection;

  OpsHttpServer(OpsHandlers handlers, OpsHttpOptions options);
  absl::Status Listen(const std::string& listen);
  absl::Status Watch();

  // The server's thread: everything below runs on it.
  void Run();
  void Accept();
  void OnEvent(Connection& conn);
  // Each of these may close (and destroy) `conn`.
  void ReadHead(Connection& conn);
  void Respond(Connection& conn, std::string head, std::string body);
  void Flush(Connection& conn);
  void Drain(Connection& conn);
  void WatchFor(Connection& conn, uint32_t events) const;
  void Close(Connection& conn, bool reset);
  // Closes the connection that must make room for a new one.
  void Evict();
  // Closes the connections past their deadline; resumes a paused accept when due.
  void CloseExpired();
  // epoll_wait's timeout: until the next deadline, -1 when there is none.
  int WaitMs() const;

  const OpsHandlers handlers_;
  const OpsHttpOptions options_;
  std::string address_;
  int port_ = 0;
  int listen_fd_ = -1;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;  // An eventfd: the destructor's stop signal.
  std::thread thread_;

  // Owned by the server's thread once it runs. Connections by id, which grows with every
  // accept: the map's order is the accept order.
  std::map<uint64_t, std::unique_ptr<Connection>> connections_;
  std::atomic<int> open_connections_{0};  // connections_.size(), readable from any thread.
  uint64_t next_id_ = 2;         // 0 and 1 are the listening socket's and the eventfd's epoll keys.
  bool accept_paused_ = false;   // Out of file descriptors: accepting again at accept_resume_.
  bool accept_failing_ = false;  // Logged once until an accept succeeds again.
  std::chrono::steady_clock::time_point accept_resume_;
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_OPS_OPS_HTTP_SERVER_H_
