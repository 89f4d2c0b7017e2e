// The gRPC ports' listening sockets, accepted by a thread of ours and handed to gRPC (the
// ServerBuilder's external connection acceptor), so that open connections have a bound: gRPC
// 1.51 has none (its ResourceQuota bounds threads and memory, and max_concurrent_streams the
// calls of one connection, but any number of clients may connect and stay connected).
#ifndef COPILOT_GATEWAY_SERVER_APP_GRPC_LISTENERS_H_
#define COPILOT_GATEWAY_SERVER_APP_GRPC_LISTENERS_H_

#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>
#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace copilot::gateway {

// Accepts the connections of every gRPC listener on one thread (epoll) and hands each to gRPC,
// unless `max_connections` of them are open already: then it is closed at once (the client sees
// UNAVAILABLE and connects again later), counted and logged (once a minute). A connection counts
// from its accept until gRPC closes its socket (it went idle past max_connection_idle, reached
// max_connection_age, the client left, or the server shut down); the count finds closed ones by
// the socket's cookie (SO_COOKIE: unique per socket, never reused), so it never depends on gRPC
// telling us.
//
// Use: Add every listener, then grpc::ServerBuilder::BuildAndStart, then Start; Stop before
// grpc::Server::Shutdown (gRPC drops a connection handed to it after that without closing it).
// Thread-safe.
class GrpcListeners {
 public:
  // Called on the accepting thread for every refused connection (for a metric).
  using RefusedCallback = std::function<void()>;
  GrpcListeners(int max_connections, RefusedCallback on_refused);
  ~GrpcListeners();  // Stop().
  GrpcListeners(const GrpcListeners&) = delete;
  GrpcListeners& operator=(const GrpcListeners&) = delete;

  // Before BuildAndStart: listens on `listen` (HOST:PORT, [IPV6]:PORT; port 0 picks a free one)
  // and registers an acceptor with `credentials` on `builder`. Returns the port bound;
  // UNAVAILABLE naming `listen` when it cannot listen there (e.g. the address is in use).
  absl::StatusOr<int> Add(const std::string& listen,
                          std::shared_ptr<grpc::ServerCredentials> credentials,
                          grpc::ServerBuilder& builder);
  // After BuildAndStart: connections are accepted from now on.
  void Start();
  // Closes the listening sockets (new connections are refused by the kernel) and stops the
  // thread. Connections already handed to gRPC stay its own. Idempotent.
  void Stop();

  // Connections accepted and not yet closed by gRPC (checks each one: O(open connections)).
  int connections();
  // Ends the open connection gRPC names `peer` (ServerContext::peer(), e.g. "ipv4:10.0.0.7:41234"):
  // its socket is reset and its descriptor pointed at a closed socket, so gRPC's next read ends
  // the connection and cancels its calls; logged (once a minute).
  // False when no open connection has that peer. O(open connections).
  bool Cut(absl::string_view peer);

 private:
  struct Listener {
    int fd = -1;
    std::string listen;
    std::unique_ptr<grpc::experimental::ExternalConnectionAcceptor> acceptor;
  };

  void Run();
  void AcceptAll(Listener& listener);
  // Whether `fd` may be handed to gRPC (room under the bound); tracks it if so.
  bool Admit(int fd, const sockaddr_storage& peer);
  // Forgets the connections gRPC has closed.
  void Sweep() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void LogRefused(const std::string& peer);

  const int max_connections_;
  const RefusedCallback on_refused_;
  std::vector<Listener> listeners_;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  std::thread thread_;
  std::atomic<bool> stopped_{false};

  absl::Mutex mu_;
  struct Connection {
    int fd = -1;
    std::string peer;  // As gRPC names it.
  };
  // Socket cookie -> every connection handed to gRPC that was open at the last sweep (or
  // accepted since).
  std::unordered_map<uint64_t, Connection> open_ ABSL_GUARDED_BY(mu_);
  absl::Time last_sweep_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  // When a cut was last logged, and how many since.
  absl::Time last_cut_log_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  uint64_t cuts_since_log_ ABSL_GUARDED_BY(mu_) = 0;

  // The accepting thread's own: when a refusal or an accept failure was last logged.
  absl::Time last_refusal_log_ = absl::InfinitePast();
  uint64_t refusals_since_log_ = 0;
  absl::Time last_accept_error_log_ = absl::InfinitePast();
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_APP_GRPC_LISTENERS_H_
