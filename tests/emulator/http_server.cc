#include "tests/emulator/http_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace copilot::emulator {
namespace {

constexpr uint32_t kConnEvents = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
constexpr size_t kNoLimit = std::numeric_limits<size_t>::max();
// Time between the last bytes before an injected reset and the RST, so the peer can read them.
constexpr absl::Duration kResetGrace = absl::Milliseconds(20);
// How long a connection we are closing may keep sending before we drop it.
constexpr absl::Duration kDrainTimeout = absl::Seconds(2);
// Bytes of HTTP/2 frames taken from a session at a time (PumpH2).
constexpr size_t kH2OutputChunk = 256 * 1024;
// Bytes of HTTP/2 frames one connection sends in one pass of the loop; the rest waits for the next
// pass, after the other connections and the timers. Without it, a client reading fast kept the
// pump going for whole 8 MiB answers, TLS encryption included. Under adversarial_bench
// --upstream h2, paced chunks' timers fired 52-59 ms late at p99 with this and H2Session's
// quadratic copy; 15-36 ms with this bound alone; 3-9 ms with both fixed.
constexpr size_t kH2OutputPerPass = 2 * kH2OutputChunk;

}  // namespace

struct HttpServer::Connection {
  uint64_t id = 0;
  int fd = -1;
  EventLoop::WatchId watch = 0;
  EventLoop::TimerId timer = 0;
  std::string in;
  HttpRequestParser parser;
  bool sent_continue = false;
  bool draining = false;  // write side shut; discarding input until EOF
  SSL* ssl = nullptr;     // TLS connections only
  bool handshaking = false;
  absl::Time idle_since = absl::Now();  // accepted, or the last response finished
  std::unique_ptr<H2Session> h2;        // set once ALPN agreed on h2
  bool h2_busy = false;                 // the session had requests in progress at the last pump
  bool h2_pump_queued = false;          // PumpH2 took its kH2OutputPerPass; goes on next pass

  // The response in progress.
  bool responding = false;
  bool finished = true;
  bool keep_alive = true;
  ResponsePlan plan;
  size_t next_part = 0;
  size_t body_sent = 0;
  size_t budget = kNoLimit;
  bool headers_sent = false;
  bool all_queued = false;
  bool stalled = false;
  bool reset_pending = false;
  size_t response_bytes_sent = 0;  // of the response in progress, accepted by the kernel
  std::string out;
  size_t out_offset = 0;

  Connection(size_t max_header, size_t max_body) : parser(max_header, max_body) {}
};

HttpServer::HttpServer(EventLoop& loop, RequestHandler& handler, Options options)
    : loop_(loop), handler_(handler), options_(options) {}

HttpServer::~HttpServer() {
  for (auto& [id, conn] : connections_) {
    loop_.CancelTimer(conn->timer);
    loop_.Unwatch(conn->watch);
    conn->h2.reset();  // ends its streams while the loop and handler are still there
    if (conn->ssl != nullptr) SSL_free(conn->ssl);
    close(conn->fd);
  }
  connections_.clear();
  if (tls_ != nullptr) SSL_CTX_free(tls_);
  if (listen_fd_ >= 0) {
    loop_.Unwatch(listen_watch_);
    close(listen_fd_);
  }
}

namespace {

// The TLS library's last error, for messages.
std::string TlsError() {
  char text[256] = {};
  ERR_error_string_n(ERR_get_error(), text, sizeof(text));
  ERR_clear_error();
  return text;
}

// Whether the client's ALPN list `offered` holds `protocol`; sets `out` to it when it does.
bool Offers(const unsigned char* offered, unsigned int offered_length, absl::string_view protocol,
            const unsigned char** out, unsigned char* out_length) {
  for (unsigned int i = 0; i < offered_length;) {
    const unsigned int length = offered[i];
    if (i + 1 + length > offered_length) break;
    if (absl::string_view(reinterpret_cast<const char*>(offered + i + 1), length) == protocol) {
      *out = offered + i + 1;
      *out_length = static_cast<unsigned char>(length);
      return true;
    }
    i += 1 + length;
  }
  return false;
}

// ALPN: h2 when HTTP/2 is on (`arg` points at Options::http2) and the client offers it, else
// http/1.1 when offered; otherwise no protocol is agreed (HTTP/1.1 anyway).
int SelectAlpn(SSL* /*ssl*/, const unsigned char** out, unsigned char* out_length,
               const unsigned char* offered, unsigned int offered_length, void* arg) {
  const bool http2 = *static_cast<const bool*>(arg);
  if ((http2 && Offers(offered, offered_length, "h2", out, out_length)) ||
      Offers(offered, offered_length, "http/1.1", out, out_length)) {
    return SSL_TLSEXT_ERR_OK;
  }
  return SSL_TLSEXT_ERR_NOACK;
}

// The protocol ALPN agreed on ("" when none).
absl::string_view AgreedProtocol(const SSL* ssl) {
  const unsigned char* data = nullptr;
  unsigned int length = 0;
  SSL_get0_alpn_selected(ssl, &data, &length);
  return {reinterpret_cast<const char*>(data), length};
}

}  // namespace

absl::Status HttpServer::SetUpTls() {
  if (options_.tls_cert_file.empty() && options_.tls_key_file.empty()) return absl::OkStatus();
  if (options_.tls_cert_file.empty() || options_.tls_key_file.empty()) {
    return absl::InvalidArgumentError("TLS needs both a certificate and a key file");
  }
  tls_ = SSL_CTX_new(TLS_server_method());
  if (tls_ == nullptr) return absl::InternalError(absl::StrCat("SSL_CTX_new: ", TlsError()));
  SSL_CTX_set_min_proto_version(tls_, TLS1_2_VERSION);
  SSL_CTX_set_mode(tls_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (SSL_CTX_use_certificate_chain_file(tls_, options_.tls_cert_file.c_str()) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("TLS certificate ", options_.tls_cert_file, ": ", TlsError()));
  }
  if (SSL_CTX_use_PrivateKey_file(tls_, options_.tls_key_file.c_str(), SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(tls_) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("TLS key ", options_.tls_key_file, ": ", TlsError()));
  }
  SSL_CTX_set_alpn_select_cb(tls_, &SelectAlpn, &options_.http2);
  return absl::OkStatus();
}

bool HttpServer::Handshake(Connection& conn) {
  const int result = SSL_do_handshake(conn.ssl);
  if (result == 1) {
    conn.handshaking = false;
    if (options_.http2 && AgreedProtocol(conn.ssl) == "h2") {
      const uint64_t id = conn.id;
      conn.h2 = std::make_unique<H2Session>(loop_, handler_, options_.h2, [this, id] {
        auto it = connections_.find(id);
        if (it != connections_.end()) PumpH2(*it->second);
      });
      ++stats_.h2_connections;
      if (!conn.h2->Start().ok()) {
        Close(conn, /*with_reset=*/false);
        return false;
      }
      return PumpH2(conn);  // the server's SETTINGS
    }
    return true;
  }
  const int error = SSL_get_error(conn.ssl, result);
  if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) return false;
  ERR_clear_error();
  ++stats_.tls_handshake_failures;
  Close(conn, /*with_reset=*/false);
  return false;
}

namespace {

// An SSL_read/SSL_write result `n` as read()/send() would return it: bytes, 0 for the peer's
// close (reads only), or -1 with errno EAGAIN (try again on the next event) or `broken`.
ssize_t AsSocketResult(SSL* ssl, int n, bool reading, int broken) {
  if (n > 0) return n;
  const int error = SSL_get_error(ssl, n);
  if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) {
    errno = EAGAIN;
    return -1;
  }
  const int saved = errno;
  ERR_clear_error();
  if (reading && (error == SSL_ERROR_ZERO_RETURN || (error == SSL_ERROR_SYSCALL && saved == 0))) {
    return 0;
  }
  errno = broken;
  return -1;
}

}  // namespace

ssize_t HttpServer::Receive(Connection& conn, char* buffer, size_t size) {
  if (conn.ssl == nullptr) return read(conn.fd, buffer, size);
  return AsSocketResult(conn.ssl, SSL_read(conn.ssl, buffer, static_cast<int>(size)),
                        /*reading=*/true, ECONNRESET);
}

ssize_t HttpServer::Send(Connection& conn, const char* data, size_t size) {
  if (conn.ssl == nullptr) return send(conn.fd, data, size, MSG_NOSIGNAL);
  const int n = SSL_write(conn.ssl, data, static_cast<int>(std::min<size_t>(size, 1 << 30)));
  return AsSocketResult(conn.ssl, n, /*reading=*/false, EPIPE);
}

absl::Status HttpServer::Listen(absl::string_view host, int port) {
  if (absl::Status status = SetUpTls(); !status.ok()) return status;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  std::string host_str(host);
  if (inet_pton(AF_INET, host_str.c_str(), &addr.sin_addr) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("listen: not an IPv4 address: ", host));
  }
  listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  int one = 1;
  setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return absl::UnavailableError(
        absl::StrCat("bind ", host, ":", port, ": ", std::strerror(errno)));
  }
  if (listen(listen_fd_, options_.backlog) != 0) {
    return absl::InternalError(absl::StrCat("listen: ", std::strerror(errno)));
  }
  socklen_t len = sizeof(addr);
  getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  absl::StatusOr<EventLoop::WatchId> watch =
      loop_.Watch(listen_fd_, EPOLLIN, [this](uint32_t) { OnAcceptable(); });
  if (!watch.ok()) return watch.status();
  listen_watch_ = *watch;
  return absl::OkStatus();
}

void HttpServer::OnAcceptable() {
  // Bounded per wake-up so a connect storm does not starve established connections.
  for (int i = 0; i < 512; ++i) {
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // Out of descriptors: stop accepting for a moment instead of spinning.
        std::fprintf(stderr, "haufe-emulator: accept: %s; pausing accepts\n", std::strerror(errno));
        (void)loop_.Rewatch(listen_watch_, 0);
        loop_.AddTimer(absl::Milliseconds(100),
                       [this] { (void)loop_.Rewatch(listen_watch_, EPOLLIN); });
      }
      return;  // EAGAIN, or a transient error such as ECONNABORTED
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    auto conn = std::make_unique<Connection>(options_.max_header_bytes, options_.max_body_bytes);
    conn->id = next_conn_id_++;
    conn->fd = fd;
    if (tls_ != nullptr) {
      conn->ssl = SSL_new(tls_);
      if (conn->ssl == nullptr || SSL_set_fd(conn->ssl, fd) != 1) {
        if (conn->ssl != nullptr) SSL_free(conn->ssl);
        close(fd);
        continue;
      }
      SSL_set_accept_state(conn->ssl);
      conn->handshaking = true;
    }
    uint64_t id = conn->id;
    absl::StatusOr<EventLoop::WatchId> watch =
        loop_.Watch(fd, kConnEvents, [this, id](uint32_t events) { OnEvent(id, events); });
    if (!watch.ok()) {
      close(fd);
      continue;
    }
    conn->watch = *watch;
    connections_.emplace(id, std::move(conn));
    ++stats_.accepted_total;
    ++stats_.open_connections;
    if (stats_.open_connections > stats_.peak_connections) {
      stats_.peak_connections = stats_.open_connections;
    }
  }
}

void HttpServer::OnEvent(uint64_t conn_id, uint32_t events) {
  auto it = connections_.find(conn_id);
  if (it == connections_.end()) return;
  Connection& conn = *it->second;
  bool peer_closed = (events & (EPOLLERR | EPOLLHUP)) != 0;
  if (conn.handshaking && !Handshake(conn)) return;  // Continues on the next event.
  if (conn.h2 != nullptr && !conn.draining) {
    OnH2Event(conn, peer_closed);
    return;
  }
  const bool was_idle = !conn.responding && !conn.draining && conn.in.empty();
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
    if (!ReadAvailable(conn, peer_closed)) return;
  }
  if (was_idle && !conn.in.empty() && options_.keep_alive_timeout > absl::ZeroDuration() &&
      absl::Now() - conn.idle_since >= options_.keep_alive_timeout) {
    ++stats_.idle_closed_total;
    Close(conn, /*with_reset=*/false);  // The request is never read, never recorded.
    return;
  }
  if (peer_closed) {
    if (conn.responding && !conn.finished) Finish(conn, false, /*client_closed_early=*/true);
    Close(conn, /*with_reset=*/false);
    return;
  }
  if (conn.draining) return;
  if ((events & EPOLLOUT) && !conn.out.empty()) {
    if (!Flush(conn)) return;
  }
  if (!conn.responding) ProcessInput(conn);
}

bool HttpServer::ReadAvailable(Connection& conn, bool& peer_closed) {
  char buffer[16384];
  while (true) {
    ssize_t n = Receive(conn, buffer, sizeof(buffer));
    if (n > 0) {
      if (conn.draining) continue;
      conn.in.append(buffer, static_cast<size_t>(n));
      // A peer that keeps sending while we respond cannot grow the buffer without bound.
      if (conn.in.size() > options_.max_header_bytes + options_.max_body_bytes + 65536) {
        if (conn.responding && !conn.finished) Finish(conn, false, false);
        Close(conn, /*with_reset=*/true);
        return false;
      }
      continue;
    }
    if (n == 0) {
      peer_closed = true;
      return true;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) peer_closed = true;
    return true;
  }
}

void HttpServer::OnH2Event(Connection& conn, bool peer_closed) {
  const bool was_idle = conn.h2->active_requests() == 0 && conn.in.empty();
  if (!ReadAvailable(conn, peer_closed)) return;
  if (was_idle && !conn.in.empty() && options_.keep_alive_timeout > absl::ZeroDuration() &&
      absl::Now() - conn.idle_since >= options_.keep_alive_timeout) {
    // HTTP/2 servers end an idle connection with GOAWAY: a request that crossed it is above its
    // last stream ID, refused and never processed (the client sends it again elsewhere).
    ++stats_.idle_closed_total;
    conn.h2->GoAway();
  }
  if (!conn.in.empty()) {
    const absl::Status received = conn.h2->Receive(conn.in);
    conn.in.clear();
    if (!received.ok()) {
      (void)conn.h2->CollectOutput(conn.out, kH2OutputChunk);  // GOAWAY with the error
      if (Flush(conn)) Close(conn, /*with_reset=*/false);
      return;
    }
  }
  if (peer_closed) {
    Close(conn, /*with_reset=*/false);  // ~H2Session ends open streams as client_closed_early
    return;
  }
  if (!conn.out.empty() && !Flush(conn)) return;
  PumpH2(conn);
}

bool HttpServer::PumpH2(Connection& conn) {
  if (conn.draining) return true;  // GOAWAY sent and every stream over: only closing is left
  // At most kH2OutputChunk bytes buffered at once: frames wait in the session while earlier
  // output waits for the socket (EPOLLOUT resumes); while the socket takes everything, go on, up
  // to kH2OutputPerPass.
  size_t collected = 0;
  while (true) {
    if (conn.out.empty() && collected >= kH2OutputPerPass) {
      QueueH2Pump(conn);
      break;
    }
    if (conn.out.empty()) {
      if (!conn.h2->CollectOutput(conn.out, kH2OutputChunk).ok()) {
        Close(conn, /*with_reset=*/true);
        return false;
      }
      collected += conn.out.size();
    }
    if (conn.out.empty()) break;  // the session has nothing to send
    if (!Flush(conn)) return false;
    if (!conn.out.empty()) break;  // the socket is full
  }
  if (conn.h2->reset_requested()) {
    Close(conn, /*with_reset=*/true);  // ~H2Session ends the streams it had
    return false;
  }
  if (conn.h2->active_requests() > 0) {
    conn.h2_busy = true;
  } else if (conn.h2_busy) {
    conn.h2_busy = false;
    conn.idle_since = absl::Now();
  }
  if (conn.out.empty() && conn.h2->Done()) BeginDrain(conn);
  return true;
}

void HttpServer::QueueH2Pump(Connection& conn) {
  ++stats_.h2_output_yields;
  if (conn.h2_pump_queued) return;
  conn.h2_pump_queued = true;
  // A timer due now runs in the loop's next pass (the socket is edge-triggered and still
  // writable: no EPOLLOUT would come). Looked up by ID: the connection may close before.
  const uint64_t id = conn.id;
  loop_.AddTimer(absl::ZeroDuration(), [this, id] {
    auto it = connections_.find(id);
    if (it == connections_.end()) return;
    it->second->h2_pump_queued = false;
    if (it->second->out.empty()) PumpH2(*it->second);
  });
}

ServerStats HttpServer::stats() const {
  ServerStats stats = stats_;
  for (const auto& [id, conn] : connections_) {
    if (conn->h2 == nullptr) continue;
    stats.h2_refused_streams += conn->h2->stats().refused_streams;
    stats.h2_goaways_sent += conn->h2->stats().goaways_sent;
  }
  return stats;
}

void HttpServer::GoAway() {
  if (listen_fd_ >= 0) {
    loop_.Unwatch(listen_watch_);
    close(listen_fd_);
    listen_fd_ = -1;
  }
  std::vector<uint64_t> ids;
  for (const auto& [id, conn] : connections_) {
    if (conn->h2 != nullptr) ids.push_back(id);
  }
  for (uint64_t id : ids) {
    auto it = connections_.find(id);
    if (it == connections_.end()) continue;
    it->second->h2->GoAway();
    PumpH2(*it->second);
  }
}

size_t HttpServer::active_requests() const {
  size_t n = 0;
  for (const auto& [id, conn] : connections_) {
    if (conn->h2 != nullptr) {
      n += conn->h2->active_requests();
    } else if (conn->responding) {
      ++n;
    }
  }
  return n;
}

ResponsePlan HttpServer::ProtocolError(int status, absl::string_view detail) {
  ResponsePlan plan;
  plan.status = status;
  plan.headers.emplace_back("Content-Type", "application/json");
  plan.body_parts.push_back(absl::StrCat("{\"detail\":\"", detail, "\"}"));
  plan.close_connection = true;
  return plan;
}

bool HttpServer::ProcessInput(Connection& conn) {
  while (!conn.responding && !conn.draining && !conn.in.empty()) {
    HttpRequestParser::Result result = conn.parser.Parse(conn.in);
    switch (result) {
      case HttpRequestParser::Result::kNeedMore:
        return true;
      case HttpRequestParser::Result::kHeadersDone:
        if (conn.parser.ExpectsContinue() && !conn.sent_continue) {
          conn.sent_continue = true;
          conn.out.append("HTTP/1.1 100 Continue\r\n\r\n");
          return Flush(conn);
        }
        return true;
      case HttpRequestParser::Result::kBadRequest:
        return StartResponse(conn, ProtocolError(400, "Malformed HTTP request"));
      case HttpRequestParser::Result::kHeadersTooLarge:
        return StartResponse(conn, ProtocolError(431, "Request header fields too large"));
      case HttpRequestParser::Result::kBodyTooLarge:
        return StartResponse(conn, ProtocolError(413, "Request body too large"));
      case HttpRequestParser::Result::kLengthRequired:
        return StartResponse(
            conn,
            ProtocolError(411, "Chunked request bodies are not supported; send Content-Length"));
      case HttpRequestParser::Result::kComplete: {
        HttpRequest request = std::move(conn.parser.request());
        conn.in.erase(0, conn.parser.consumed());
        conn.parser.Reset();
        conn.sent_continue = false;
        conn.keep_alive = request.KeepAlive();
        if (!StartResponse(conn, handler_.Handle(std::move(request)))) return false;
        break;
      }
    }
  }
  return true;
}

bool HttpServer::StartResponse(Connection& conn, ResponsePlan plan) {
  conn.plan = std::move(plan);
  conn.responding = true;
  conn.finished = false;
  conn.next_part = 0;
  conn.body_sent = 0;
  conn.budget = kNoLimit;
  conn.headers_sent = false;
  conn.all_queued = false;
  conn.stalled = false;
  conn.reset_pending = false;
  conn.response_bytes_sent = 0;
  if (conn.plan.close_connection) conn.keep_alive = false;
  if (conn.plan.start_delay > absl::ZeroDuration()) {
    uint64_t id = conn.id;
    conn.timer =
        loop_.AddTimer(conn.plan.start_delay, [this, id] { OnTimer(id, &HttpServer::BeginStep); });
    return true;
  }
  return Begin(conn);
}

void HttpServer::OnTimer(uint64_t conn_id, void (HttpServer::*step)(Connection&)) {
  auto it = connections_.find(conn_id);
  if (it == connections_.end()) return;
  it->second->timer = 0;
  (this->*step)(*it->second);
  // The step may have finished the response (or closed the connection): serve what is queued.
  it = connections_.find(conn_id);
  if (it != connections_.end() && !it->second->responding) ProcessInput(*it->second);
}

bool HttpServer::Begin(Connection& conn) {
  const ResponsePlan& plan = conn.plan;
  if (plan.interruption == Interruption::kResetBeforeHeaders) {
    Finish(conn, false, false);
    Close(conn, /*with_reset=*/true);
    return false;
  }
  if (plan.interruption == Interruption::kResetAfterBytes) {
    conn.budget = plan.interrupt_after_bytes.value_or(plan.BodySize() / 2);
  } else if (plan.interruption == Interruption::kStallAfterBytes) {
    conn.budget = plan.interrupt_after_bytes.value_or(0);
  }
  std::string head = absl::StrFormat("HTTP/1.1 %d %s\r\n", plan.status, ReasonPhrase(plan.status));
  for (const auto& [name, value] : plan.headers) absl::StrAppend(&head, name, ": ", value, "\r\n");
  if (plan.chunked) {
    head.append("Transfer-Encoding: chunked\r\n");
  } else if (plan.status != 204 && plan.status != 304) {
    absl::StrAppend(&head, "Content-Length: ", plan.BodySize(), "\r\n");
  }
  if (!conn.keep_alive) head.append("Connection: close\r\n");
  head.append("\r\n");
  conn.out.append(head);
  conn.headers_sent = true;
  if (plan.on_progress) {
    plan.on_progress(ResponseProgress{
        .headers_sent = true, .status = plan.status, .bytes_sent = conn.response_bytes_sent});
  }
  return EmitParts(conn);
}

bool HttpServer::EmitParts(Connection& conn) {
  const ResponsePlan& plan = conn.plan;
  bool interrupting = plan.interruption != Interruption::kNone;
  while (true) {
    if (conn.next_part >= plan.body_parts.size() ||
        (interrupting && conn.body_sent >= conn.budget)) {
      if (interrupting) {
        if (plan.interruption == Interruption::kStallAfterBytes) {
          conn.stalled = true;
        } else {
          conn.reset_pending = true;
        }
      } else {
        if (plan.chunked) conn.out.append("0\r\n\r\n");
        conn.all_queued = true;
      }
      break;
    }
    const std::string& part = plan.body_parts[conn.next_part];
    ++conn.next_part;
    if (part.empty()) continue;
    size_t room = conn.budget - conn.body_sent;
    size_t n = std::min(part.size(), room);
    if (plan.chunked) absl::StrAppend(&conn.out, absl::Hex(part.size()), "\r\n");
    conn.out.append(part, 0, n);
    conn.body_sent += n;
    if (n < part.size()) continue;  // cut short: the loop head interrupts
    if (plan.chunked) conn.out.append("\r\n");
    if (plan.chunked && plan.part_interval > absl::ZeroDuration() &&
        conn.next_part < plan.body_parts.size()) {
      uint64_t id = conn.id;
      conn.timer =
          loop_.AddTimer(plan.part_interval, [this, id] { OnTimer(id, &HttpServer::EmitStep); });
      break;
    }
  }
  return Flush(conn);
}

bool HttpServer::Flush(Connection& conn) {
  bool sent = false;
  while (conn.out_offset < conn.out.size()) {
    ssize_t n = Send(conn, conn.out.data() + conn.out_offset, conn.out.size() - conn.out_offset);
    if (n > 0) {
      conn.out_offset += static_cast<size_t>(n);
      if (conn.responding) conn.response_bytes_sent += static_cast<size_t>(n);
      sent = true;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (sent) ReportBytesSent(conn);
      return true;  // EPOLLOUT resumes
    }
    // EPIPE / ECONNRESET: the peer is gone.
    if (conn.responding && !conn.finished) Finish(conn, false, /*client_closed_early=*/true);
    Close(conn, /*with_reset=*/false);
    return false;
  }
  conn.out.clear();
  conn.out_offset = 0;
  if (!conn.responding) return true;
  if (sent) ReportBytesSent(conn);
  if (conn.reset_pending) {
    conn.reset_pending = false;
    uint64_t id = conn.id;
    conn.timer = loop_.AddTimer(kResetGrace, [this, id] { OnTimer(id, &HttpServer::ResetStep); });
    return true;
  }
  if (conn.all_queued) {
    Finish(conn, /*completed=*/true, false);
    conn.responding = false;
    conn.plan = ResponsePlan();
    conn.idle_since = absl::Now();
    if (!conn.keep_alive) BeginDrain(conn);
  }
  return true;
}

void HttpServer::BeginDrain(Connection& conn) {
  // Half-close so the peer reads everything (closing with its bytes unread would send a reset,
  // which can destroy what it has not read yet), then drop whatever it still sends.
  if (conn.ssl != nullptr) SSL_shutdown(conn.ssl);  // close_notify first.
  shutdown(conn.fd, SHUT_WR);
  conn.draining = true;
  conn.in.clear();
  uint64_t id = conn.id;
  conn.timer = loop_.AddTimer(kDrainTimeout, [this, id] {
    auto it = connections_.find(id);
    if (it != connections_.end()) Close(*it->second, false);
  });
}

void HttpServer::ResetStep(Connection& conn) {
  Finish(conn, false, false);
  Close(conn, /*with_reset=*/true);
}

void HttpServer::Finish(Connection& conn, bool completed, bool client_closed_early) {
  if (conn.finished) return;
  conn.finished = true;
  if (conn.plan.on_progress) {
    conn.plan.on_progress(ResponseProgress{.headers_sent = conn.headers_sent,
                                           .status = conn.headers_sent ? conn.plan.status : 0,
                                           .finished = true,
                                           .completed = completed,
                                           .client_closed_early = client_closed_early,
                                           .bytes_sent = conn.response_bytes_sent});
  }
}

void HttpServer::ReportBytesSent(Connection& conn) {
  if (!conn.plan.on_progress || conn.finished) return;
  conn.plan.on_progress(ResponseProgress{.headers_sent = conn.headers_sent,
                                         .status = conn.headers_sent ? conn.plan.status : 0,
                                         .bytes_sent = conn.response_bytes_sent});
}

void HttpServer::Close(Connection& conn, bool with_reset) {
  if (conn.timer != 0) loop_.CancelTimer(conn.timer);
  loop_.Unwatch(conn.watch);
  if (with_reset) {
    linger lin{.l_onoff = 1, .l_linger = 0};
    setsockopt(conn.fd, SOL_SOCKET, SO_LINGER, &lin, sizeof(lin));
  } else if (conn.ssl != nullptr && !conn.handshaking && !conn.draining) {
    SSL_shutdown(conn.ssl);  // close_notify, as servers send before closing; never waits.
  }
  if (conn.h2 != nullptr) {
    stats_.h2_refused_streams += conn.h2->stats().refused_streams;
    stats_.h2_goaways_sent += conn.h2->stats().goaways_sent;
    conn.h2.reset();  // ends its open streams (client_closed_early) before the socket goes
  }
  if (conn.ssl != nullptr) {
    SSL_free(conn.ssl);
    ERR_clear_error();
  }
  close(conn.fd);
  --stats_.open_connections;
  connections_.erase(conn.id);  // destroys `conn`
}

}  // namespace copilot::emulator
