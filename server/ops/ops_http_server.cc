#include "server/ops/ops_http_server.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "server/common/errors.h"
#include "server/common/log.h"
#include "server/common/tcp_listen.h"

namespace copilot::gateway {
namespace {

// Deadlines are on the steady clock, read here rather than injected: they pace epoll_wait,
// which waits in real time, so a fake clock could not move them. Tests shorten OpsHttpOptions.
using SteadyClock = std::chrono::steady_clock;
using SteadyTime = SteadyClock::time_point;

// epoll keys besides the connections' ids (OpsHttpServer::next_id_ starts above them).
constexpr uint64_t kListenKey = 0;
constexpr uint64_t kWakeKey = 1;
// Connections accepted per wake-up, so that a connect storm does not starve the others.
constexpr int kAcceptBatch = 64;
// Out of file descriptors: how long accepting pauses (the listening socket stays readable, so
// watching it meanwhile would spin).
constexpr auto kAcceptPause = std::chrono::milliseconds(100);
// After the response: how long we read and discard what the client still sends, waiting for it
// to close. Closing with input unread would reset the connection, and a reset can cost the
// client the end of its response.
constexpr auto kDrainTimeout = std::chrono::seconds(1);
// What one event discards at most from a draining connection (the rest on the next events).
constexpr size_t kDrainPerEvent = size_t{64} * 1024;

constexpr absl::string_view kPrometheusText = "text/plain; version=0.0.4; charset=utf-8";
constexpr absl::string_view kText = "text/plain";

SteadyClock::duration ToSteady(absl::Duration duration) {
  return std::chrono::duration_cast<SteadyClock::duration>(absl::ToChronoNanoseconds(duration));
}

bool EpollControl(int epoll_fd, int operation, int fd, uint32_t events, uint64_t key) {
  epoll_event event{};
  event.events = events;
  event.data.u64 = key;
  return epoll_ctl(epoll_fd, operation, fd, &event) == 0;
}

absl::string_view ReasonPhrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 431:
      return "Request Header Fields Too Large";
    case 503:
      return "Service Unavailable";
    default:
      return "Error";
  }
}

// A response: its head, and its body apart, so that a /metrics body is sent as the handler
// returned it (sendmsg with two parts), never copied.
struct Reply {
  std::string head;
  std::string body;
};

// `head_only` (HEAD) leaves the body out but keeps its Content-Length.
Reply MakeReply(int status, absl::string_view content_type, std::string body, bool head_only,
                absl::string_view extra_headers = "") {
  Reply reply;
  reply.head =
      absl::StrCat("HTTP/1.1 ", status, " ", ReasonPhrase(status),
                   "\r\nContent-Type: ", content_type, "\r\nContent-Length: ", body.size(),
                   "\r\nCache-Control: no-store\r\nConnection: close\r\n", extra_headers, "\r\n");
  if (!head_only) reply.body = std::move(body);
  return reply;
}

// The length of the request head at the start of `data`, through its empty line (CRLF CRLF, or
// bare LFs), or npos while incomplete. Scans from `*scanned` on and advances it, so that a head
// arriving byte by byte is scanned once.
size_t HeadLength(absl::string_view data, size_t* scanned) {
  for (size_t i = *scanned; i < data.size(); ++i) {
    if (data[i] != '\n') continue;
    if ((i >= 1 && data[i - 1] == '\n') || (i >= 2 && data[i - 1] == '\r' && data[i - 2] == '\n')) {
      return i + 1;
    }
  }
  *scanned = data.size();
  return absl::string_view::npos;
}

bool IsTokenChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
         absl::string_view("!#$%&'*+-.^_`|~").find(c) != absl::string_view::npos;
}

struct RequestLine {
  absl::string_view method;
  absl::string_view path;  // Without the query string.
};

// The request line `METHOD SP /TARGET SP HTTP/1.x` at the start of a request head; nullopt when
// it is not one.
std::optional<RequestLine> ParseRequestLine(absl::string_view head) {
  absl::string_view line = head.substr(0, head.find('\n'));
  absl::ConsumeSuffix(&line, "\r");
  const std::vector<absl::string_view> parts = absl::StrSplit(line, ' ');
  if (parts.size() != 3) return std::nullopt;
  const absl::string_view method = parts[0];
  const absl::string_view target = parts[1];
  const absl::string_view version = parts[2];
  if (method.empty() || !std::all_of(method.begin(), method.end(), IsTokenChar)) {
    return std::nullopt;
  }
  if (!absl::StartsWith(target, "/") || std::any_of(target.begin(), target.end(), [](char c) {
        return static_cast<unsigned char>(c) <= 0x20 || c == 0x7f;
      })) {
    return std::nullopt;
  }
  if (version.size() != 8 || !absl::StartsWith(version, "HTTP/1.") ||
      !absl::ascii_isdigit(static_cast<unsigned char>(version[7]))) {
    return std::nullopt;
  }
  return RequestLine{method, target.substr(0, target.find('?'))};
}

// The response to a complete request head.
Reply Answer(absl::string_view head, const OpsHandlers& handlers) {
  const std::optional<RequestLine> request = ParseRequestLine(head);
  if (!request.has_value()) return MakeReply(400, kText, "bad request\n", false);
  const bool head_only = request->method == "HEAD";
  const absl::string_view path = request->path;
  if (path != "/metrics" && path != "/healthz" && path != "/readyz") {
    return MakeReply(404, kText, "not found\n", head_only);
  }
  if (!head_only && request->method != "GET") {
    return MakeReply(405, kText, "method not allowed\n", false, "Allow: GET, HEAD\r\n");
  }
  if (path == "/metrics") return MakeReply(200, kPrometheusText, handlers.metrics(), head_only);
  if (path == "/healthz") {
    const bool live = handlers.live();
    return MakeReply(live ? 200 : 503, kText, live ? "ok\n" : "not live\n", head_only);
  }
  const bool ready = handlers.ready();
  return MakeReply(ready ? 200 : 503, kText, ready ? "ready\n" : "not ready\n", head_only);
}

}  // namespace

// One client connection, through reading its request head, writing the response and draining.
// Not thread-safe: the server's thread only.
struct OpsHttpServer::Connection {
  enum class State {
    kReadingHead,  // Until the request head is complete.
    kWriting,      // Until the kernel has taken the whole response.
    kDraining,     // Write side shut; discarding input until the client closes.
  };
  uint64_t id = 0;
  int fd = -1;
  State state = State::kReadingHead;
  uint32_t events = 0;   // What epoll watches for.
  SteadyTime deadline;   // The current state's.
  std::string in;        // The request head so far: at most max_head_bytes + 1.
  size_t scanned = 0;    // How much of `in` HeadLength has seen.
  std::string out_head;  // The response's head,
  std::string out_body;  // and its body, apart: never copied into one buffer.
  size_t sent = 0;       // How much of out_head, then out_body, the kernel has taken.
};

OpsHttpServer::OpsHttpServer(OpsHandlers handlers, OpsHttpOptions options)
    : handlers_(std::move(handlers)), options_(options) {}

absl::StatusOr<std::unique_ptr<OpsHttpServer>> OpsHttpServer::Start(const std::string& listen,
                                                                    OpsHandlers handlers,
                                                                    OpsHttpOptions options) {
  if (options.max_connections < 1 || options.max_head_bytes < 1 ||
      options.head_timeout <= absl::ZeroDuration() ||
      options.write_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "ops listener options: max_connections, max_head_bytes, head_timeout and write_timeout "
        "must be above zero");
  }
  std::unique_ptr<OpsHttpServer> server(new OpsHttpServer(std::move(handlers), options));
  if (absl::Status listening = server->Listen(listen); !listening.ok()) return listening;
  if (absl::Status watching = server->Watch(); !watching.ok()) return watching;
  server->thread_ = std::thread([self = server.get()] { self->Run(); });
  return server;
}

OpsHttpServer::~OpsHttpServer() {
  if (thread_.joinable()) {
    const uint64_t one = 1;
    // Adding 1 to a fresh eventfd's counter neither blocks nor fails.
    const ssize_t written = write(wake_fd_, &one, sizeof one);
    (void)written;
    thread_.join();  // Run closes every connection before it returns.
  }
  for (const int fd : {listen_fd_, wake_fd_, epoll_fd_}) {
    if (fd >= 0) close(fd);
  }
}

absl::Status OpsHttpServer::Listen(const std::string& listen) {
  absl::StatusOr<ListeningSocket> listening = ListenTcp(listen, " for /metrics");
  if (!listening.ok()) return listening.status();
  listen_fd_ = listening->fd;
  port_ = listening->port;
  address_ = absl::StrCat(listen.substr(0, listen.rfind(':')), ":", port_);
  return absl::OkStatus();
}

absl::Status OpsHttpServer::Watch() {
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) {
    return absl::InternalError(absl::StrCat("ops listener: epoll_create1: ", ErrnoText(errno)));
  }
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) {
    return absl::InternalError(absl::StrCat("ops listener: eventfd: ", ErrnoText(errno)));
  }
  if (!EpollControl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, EPOLLIN, kListenKey) ||
      !EpollControl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, EPOLLIN, kWakeKey)) {
    return absl::InternalError(absl::StrCat("ops listener: epoll_ctl: ", ErrnoText(errno)));
  }
  return absl::OkStatus();
}

void OpsHttpServer::Run() {
  epoll_event events[64];
  bool stopping = false;
  while (!stopping) {
    const int ready = epoll_wait(epoll_fd_, events, 64, WaitMs());
    if (ready < 0 && errno != EINTR) {
      Log(LogLevel::kError, "ops listener stopped",
          {{"error", absl::StrCat("epoll_wait: ", ErrnoText(errno))}});
      break;
    }
    for (int i = 0; i < ready && !stopping; ++i) {
      const uint64_t key = events[i].data.u64;
      if (key == kWakeKey) {
        stopping = true;
      } else if (key == kListenKey) {
        Accept();
      } else if (auto found = connections_.find(key); found != connections_.end()) {
        OnEvent(*found->second);  // Not found: closed earlier in this batch.
      }
    }
    CloseExpired();
  }
  for (auto& [id, conn] : connections_) close(conn->fd);
  connections_.clear();
  open_connections_.store(0, std::memory_order_relaxed);
}

void OpsHttpServer::Accept() {
  for (int i = 0; i < kAcceptBatch; ++i) {
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        if (!accept_failing_) {
          Log(LogLevel::kWarning, "ops listener cannot accept; pausing accepts",
              {{"error", absl::StrCat("accept: ", ErrnoText(errno))},
               {"pause_ms", static_cast<int>(kAcceptPause.count())}});
        }
        accept_failing_ = true;
        accept_paused_ = true;
        accept_resume_ = SteadyClock::now() + kAcceptPause;
        EpollControl(epoll_fd_, EPOLL_CTL_MOD, listen_fd_, 0, kListenKey);
      }
      return;  // EAGAIN: none left.
    }
    accept_failing_ = false;
    if (connections_.size() >= static_cast<size_t>(options_.max_connections)) Evict();
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    auto conn = std::make_unique<Connection>();
    conn->id = next_id_++;
    conn->fd = fd;
    conn->events = EPOLLIN | EPOLLRDHUP;
    conn->deadline = SteadyClock::now() + ToSteady(options_.head_timeout);
    if (!EpollControl(epoll_fd_, EPOLL_CTL_ADD, fd, conn->events, conn->id)) {
      close(fd);
      continue;
    }
    const uint64_t id = conn->id;
    Connection& added = *connections_.emplace(id, std::move(conn)).first->second;
    open_connections_.store(static_cast<int>(connections_.size()), std::memory_order_relaxed);
    ReadHead(added);  // The request may be there already.
  }
}

void OpsHttpServer::OnEvent(Connection& conn) {
  switch (conn.state) {
    case Connection::State::kReadingHead:
      ReadHead(conn);
      return;
    case Connection::State::kWriting:
      Flush(conn);  // A send on a failed connection fails, and closes it.
      return;
    case Connection::State::kDraining:
      Drain(conn);
      return;
  }
}

void OpsHttpServer::ReadHead(Connection& conn) {
  char buffer[4096];
  while (true) {
    const size_t room = options_.max_head_bytes + 1 - conn.in.size();
    const ssize_t n = recv(conn.fd, buffer, std::min(room, sizeof buffer), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) {  // Closed or failed before the request head was complete.
      Close(conn, /*reset=*/false);
      return;
    }
    conn.in.append(buffer, static_cast<size_t>(n));
    const size_t head = HeadLength(conn.in, &conn.scanned);
    if (head != absl::string_view::npos && head <= options_.max_head_bytes) {
      Reply reply = Answer(absl::string_view(conn.in).substr(0, head), handlers_);
      Respond(conn, std::move(reply.head), std::move(reply.body));
      return;
    }
    if (conn.in.size() > options_.max_head_bytes) {
      Reply reply = MakeReply(431, kText, "request header fields too large\n", false);
      Respond(conn, std::move(reply.head), std::move(reply.body));
      return;
    }
  }
}

void OpsHttpServer::Respond(Connection& conn, std::string head, std::string body) {
  conn.state = Connection::State::kWriting;
  conn.in = std::string();
  conn.out_head = std::move(head);
  conn.out_body = std::move(body);
  conn.sent = 0;
  conn.deadline = SteadyClock::now() + ToSteady(options_.write_timeout);
  Flush(conn);
}

void OpsHttpServer::Flush(Connection& conn) {
  std::string& head = conn.out_head;
  std::string& body = conn.out_body;
  while (conn.sent < head.size() + body.size()) {
    iovec parts[2];
    size_t count = 0;
    if (conn.sent < head.size()) {
      parts[count++] = iovec{head.data() + conn.sent, head.size() - conn.sent};
      if (!body.empty()) parts[count++] = iovec{body.data(), body.size()};
    } else {
      const size_t body_sent = conn.sent - head.size();
      parts[count++] = iovec{body.data() + body_sent, body.size() - body_sent};
    }
    msghdr message{};
    message.msg_iov = parts;
    message.msg_iovlen = count;
    const ssize_t n = sendmsg(conn.fd, &message, MSG_NOSIGNAL);
    if (n > 0) {
      conn.sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      WatchFor(conn, EPOLLOUT);
      return;
    }
    Close(conn, /*reset=*/false);  // EPIPE, ECONNRESET: the client is gone.
    return;
  }
  // The kernel has it all: half-close, so that the client reads to the end, and wait for the
  // client to close.
  head = std::string();
  body = std::string();
  shutdown(conn.fd, SHUT_WR);
  conn.state = Connection::State::kDraining;
  conn.deadline = SteadyClock::now() + kDrainTimeout;
  WatchFor(conn, EPOLLIN | EPOLLRDHUP);
}

void OpsHttpServer::Drain(Connection& conn) {
  char buffer[4096];
  size_t discarded = 0;
  while (discarded < kDrainPerEvent) {
    const ssize_t n = recv(conn.fd, buffer, sizeof buffer, 0);
    if (n > 0) {
      discarded += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    Close(conn, /*reset=*/false);  // The client closed.
    return;
  }
}

void OpsHttpServer::WatchFor(Connection& conn, uint32_t events) const {
  if (conn.events == events) return;
  // A failure leaves the old events; the connection's deadline still closes it.
  if (EpollControl(epoll_fd_, EPOLL_CTL_MOD, conn.fd, events, conn.id)) conn.events = events;
}

void OpsHttpServer::Close(Connection& conn, bool reset) {
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, conn.fd, nullptr);
  if (reset) {
    // Drops what the kernel still holds to send instead of trying on after close.
    const linger abort{.l_onoff = 1, .l_linger = 0};
    setsockopt(conn.fd, SOL_SOCKET, SO_LINGER, &abort, sizeof abort);
  }
  close(conn.fd);
  connections_.erase(conn.id);  // Destroys `conn`.
  open_connections_.store(static_cast<int>(connections_.size()), std::memory_order_relaxed);
}

void OpsHttpServer::Evict() {
  // The oldest connection already answered (its response is with the kernel), else the oldest
  // still waiting for its request head, else the oldest (a response in progress: reset).
  Connection* answered = nullptr;
  Connection* waiting = nullptr;
  for (const auto& [id, conn] : connections_) {
    if (answered == nullptr && conn->state == Connection::State::kDraining) answered = conn.get();
    if (waiting == nullptr && conn->state == Connection::State::kReadingHead) waiting = conn.get();
    if (answered != nullptr) break;
  }
  if (answered != nullptr) {
    Close(*answered, /*reset=*/false);
  } else if (waiting != nullptr) {
    Close(*waiting, /*reset=*/false);
  } else if (!connections_.empty()) {
    Close(*connections_.begin()->second, /*reset=*/true);
  }
}

void OpsHttpServer::CloseExpired() {
  const SteadyTime now = SteadyClock::now();
  if (accept_paused_ && now >= accept_resume_) {
    accept_paused_ = false;
    EpollControl(epoll_fd_, EPOLL_CTL_MOD, listen_fd_, EPOLLIN, kListenKey);
  }
  for (auto it = connections_.begin(); it != connections_.end();) {
    Connection& conn = *it->second;
    ++it;  // Before Close erases `conn`.
    if (conn.deadline <= now) Close(conn, /*reset=*/conn.state == Connection::State::kWriting);
  }
}

int OpsHttpServer::WaitMs() const {
  std::optional<SteadyTime> next;
  if (accept_paused_) next = accept_resume_;
  for (const auto& [id, conn] : connections_) {
    if (!next.has_value() || conn->deadline < *next) next = conn->deadline;
  }
  if (!next.has_value()) return -1;
  const SteadyClock::duration wait = *next - SteadyClock::now();
  if (wait <= SteadyClock::duration::zero()) return 0;
  return static_cast<int>(
      std::min<int64_t>(std::chrono::ceil<std::chrono::milliseconds>(wait).count(), INT_MAX));
}

}  // namespace copilot::gateway
