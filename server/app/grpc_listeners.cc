#include "server/app/grpc_listeners.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "server/app/log.h"
#include "server/common/errors.h"
#include "server/common/tcp_listen.h"

namespace copilot::gateway {
namespace {

// At the bound, the open connections are checked again at most this often: a flood of new
// connections must not make the accepting thread walk every open one for each.
constexpr absl::Duration kSweepAtTheBound = absl::Milliseconds(100);
// Without new connections, the map of open connections is cleaned this often.
constexpr int kIdleSweepMs = 1000;

// The socket's cookie (unique among the sockets of the network namespace, never reused), or 0
// when `fd` is no socket now.
uint64_t SocketCookie(int fd) {
  uint64_t cookie = 0;
  socklen_t length = sizeof cookie;
  if (getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &length) != 0) return 0;
  return cookie;
}

std::string PeerText(const sockaddr_storage& peer) {
  char text[INET6_ADDRSTRLEN] = {};
  if (peer.ss_family == AF_INET) {
    const auto& v4 = reinterpret_cast<const sockaddr_in&>(peer);
    inet_ntop(AF_INET, &v4.sin_addr, text, sizeof text);
    return absl::StrCat(text, ":", ntohs(v4.sin_port));
  }
  if (peer.ss_family == AF_INET6) {
    const auto& v6 = reinterpret_cast<const sockaddr_in6&>(peer);
    inet_ntop(AF_INET6, &v6.sin6_addr, text, sizeof text);
    return absl::StrCat("[", text, "]:", ntohs(v6.sin6_port));
  }
  return "unknown";
}

// The peer as gRPC names the connection (ServerContext::peer(), from grpc_sockaddr_to_uri):
// "ipv4:ADDR:PORT" (an IPv4-mapped IPv6 address as IPv4) or "ipv6:[ADDR]:PORT".
std::string GrpcPeer(const sockaddr_storage& peer) {
  char text[INET6_ADDRSTRLEN] = {};
  if (peer.ss_family == AF_INET6) {
    const auto& v6 = reinterpret_cast<const sockaddr_in6&>(peer);
    if (!IN6_IS_ADDR_V4MAPPED(&v6.sin6_addr)) return absl::StrCat("ipv6:", PeerText(peer));
    inet_ntop(AF_INET, &v6.sin6_addr.s6_addr[12], text, sizeof text);
    return absl::StrCat("ipv4:", text, ":", ntohs(v6.sin6_port));
  }
  return absl::StrCat("ipv4:", PeerText(peer));
}

}  // namespace

GrpcListeners::GrpcListeners(int max_connections, RefusedCallback on_refused)
    : max_connections_(max_connections), on_refused_(std::move(on_refused)) {}

GrpcListeners::~GrpcListeners() { Stop(); }

absl::StatusOr<int> GrpcListeners::Add(const std::string& listen,
                                       std::shared_ptr<grpc::ServerCredentials> credentials,
                                       grpc::ServerBuilder& builder) {
  absl::StatusOr<ListeningSocket> listening = ListenTcp(listen, "");
  if (!listening.ok()) return listening.status();
  Listener listener;
  listener.fd = listening->fd;
  listener.listen = listen;
  listener.acceptor = builder.experimental().AddExternalConnectionAcceptor(
      grpc::ServerBuilder::experimental_type::ExternalConnectionType::FROM_FD,
      std::move(credentials));
  listeners_.push_back(std::move(listener));
  return listening->port;
}

void GrpcListeners::Start() {
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (epoll_fd_ < 0 || wake_fd_ < 0) {
    // Only at a descriptor or memory shortage at start-up: no listener would ever accept.
    LogLine(absl::StrCat("warning: cannot watch the gRPC listeners: ", ErrnoText(errno)));
    return;
  }
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.u64 = listeners_.size();  // The wake-up; listeners are their index.
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &event);
  for (size_t i = 0; i < listeners_.size(); ++i) {
    event.data.u64 = i;
    epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listeners_[i].fd, &event);
  }
  thread_ = std::thread([this] { Run(); });
}

void GrpcListeners::Stop() {
  if (stopped_.exchange(true)) return;
  if (thread_.joinable()) {
    const uint64_t one = 1;
    // Adding 1 to a fresh eventfd's counter neither blocks nor fails.
    const ssize_t written = write(wake_fd_, &one, sizeof one);
    (void)written;
    thread_.join();
  }
  for (Listener& listener : listeners_) {
    if (listener.fd >= 0) close(listener.fd);
    listener.fd = -1;
  }
  for (const int fd : {wake_fd_, epoll_fd_}) {
    if (fd >= 0) close(fd);
  }
  wake_fd_ = epoll_fd_ = -1;
}

void GrpcListeners::Run() {
  constexpr int kMaxEvents = 8;
  epoll_event events[kMaxEvents];
  while (true) {
    const int ready = epoll_wait(epoll_fd_, events, kMaxEvents, kIdleSweepMs);
    if (ready < 0 && errno != EINTR) {
      LogLine(absl::StrCat("warning: gRPC listeners stopped: epoll_wait: ", ErrnoText(errno)));
      return;
    }
    for (int i = 0; i < ready; ++i) {
      const uint64_t index = events[i].data.u64;
      if (index >= listeners_.size()) return;  // Stop.
      AcceptAll(listeners_[index]);
    }
    absl::MutexLock lock(&mu_);
    if (absl::Now() - last_sweep_ >= absl::Milliseconds(kIdleSweepMs)) Sweep();
  }
}

void GrpcListeners::AcceptAll(Listener& listener) {
  while (true) {
    sockaddr_storage peer{};
    socklen_t length = sizeof peer;
    const int fd = accept4(listener.fd, reinterpret_cast<sockaddr*>(&peer), &length,
                           SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      // Out of descriptors (EMFILE, ENFILE) or memory: the connection waits in the kernel's
      // backlog. Pause instead of spinning on a listener that stays readable.
      const absl::Time now = absl::Now();
      if (now - last_accept_error_log_ >= absl::Minutes(1)) {
        last_accept_error_log_ = now;
        LogLine(absl::StrCat("warning: cannot accept a connection on ", listener.listen, ": ",
                             ErrnoText(errno),
                             " (raise the open-files limit, or lower server.max_connections)"));
      }
      absl::SleepFor(absl::Milliseconds(10));
      return;
    }
    if (!Admit(fd, peer)) {
      close(fd);
      if (on_refused_) on_refused_();
      LogRefused(PeerText(peer));
      continue;
    }
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    grpc::experimental::ExternalConnectionAcceptor::NewConnectionParameters connection;
    connection.listener_fd = listener.fd;
    connection.fd = fd;
    listener.acceptor->HandleNewConnection(&connection);
  }
}

bool GrpcListeners::Admit(int fd, const sockaddr_storage& peer) {
  const uint64_t cookie = SocketCookie(fd);
  absl::MutexLock lock(&mu_);
  if (open_.size() >= static_cast<size_t>(max_connections_) &&
      absl::Now() - last_sweep_ >= kSweepAtTheBound) {
    Sweep();
  }
  if (open_.size() >= static_cast<size_t>(max_connections_)) return false;
  if (cookie != 0) open_[cookie] = {fd, GrpcPeer(peer)};
  return true;
}

bool GrpcListeners::Cut(absl::string_view peer) {
  absl::MutexLock lock(&mu_);
  for (const auto& [cookie, connection] : open_) {
    // Still that socket (gRPC may have closed it and the descriptor gone to another). gRPC could
    // still close it between this check and the calls below, and the number be taken by a socket
    // opened meanwhile: a window of a few system calls, in a cut that only an abusive client
    // causes.
    if (connection.peer == peer && SocketCookie(connection.fd) == cookie) {
      // The socket is closed at once with a reset, dropping what the client sent and gRPC has
      // not read yet (a shutdown alone would not do: Linux still queues what the client sends
      // after it, and a client flooding the connection keeps gRPC reading and starting calls).
      // The descriptor is gRPC's: it is not closed but pointed at a socket whose other end is
      // gone, so gRPC's next read sees the end of the connection, cancels its calls and closes
      // it.
      const linger reset{1, 0};
      setsockopt(connection.fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
      shutdown(connection.fd, SHUT_RDWR);
      int ended[2];
      if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, ended) == 0) {
        close(ended[1]);
        dup3(ended[0], connection.fd, O_CLOEXEC);
        close(ended[0]);
      }
      ++cuts_since_log_;
      const absl::Time now = absl::Now();
      if (now - last_cut_log_ >= absl::Minutes(1)) {
        LogLine(absl::StrCat("warning: cut ", cuts_since_log_,
                             " gRPC connection(s) since the last such line for more calls in "
                             "flight than server.max_calls_per_connection, the last from ",
                             peer));
        last_cut_log_ = now;
        cuts_since_log_ = 0;
      }
      return true;
    }
  }
  return false;
}

void GrpcListeners::Sweep() {
  last_sweep_ = absl::Now();
  for (auto it = open_.begin(); it != open_.end();) {
    // Closed by gRPC: the descriptor is gone, or was reused for another socket.
    if (SocketCookie(it->second.fd) != it->first) {
      it = open_.erase(it);
    } else {
      ++it;
    }
  }
}

int GrpcListeners::connections() {
  absl::MutexLock lock(&mu_);
  Sweep();
  return static_cast<int>(open_.size());
}

void GrpcListeners::LogRefused(const std::string& peer) {
  ++refusals_since_log_;
  const absl::Time now = absl::Now();
  if (now - last_refusal_log_ < absl::Minutes(1)) return;
  LogLine(absl::StrCat("warning: refused ", refusals_since_log_,
                       " gRPC connection(s) since the last such line at server.max_connections (",
                       max_connections_, "), the last from ", peer));
  last_refusal_log_ = now;
  refusals_since_log_ = 0;
}

}  // namespace copilot::gateway
