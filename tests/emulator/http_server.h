// The emulator's HTTP server: non-blocking sockets on an EventLoop; HTTP/1.1 with keep-alive and
// Content-Length request bodies, and over TLS optionally HTTP/2 (ALPN h2, H2Session); response
// plans that may be delayed, paced chunk by chunk, or broken on purpose (reset, stall).
#ifndef COPILOT_TESTS_EMULATOR_HTTP_SERVER_H_
#define COPILOT_TESTS_EMULATOR_HTTP_SERVER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "tests/emulator/event_loop.h"
#include "tests/emulator/h2_session.h"
#include "tests/emulator/http_request.h"
#include "tests/emulator/http_response.h"

struct ssl_ctx_st;  // OpenSSL's SSL_CTX, kept out of this header.

namespace copilot::emulator {

// Turns a complete request into a response plan. Implementations need not be thread-safe: the
// server calls them from the loop thread only, and they must not block.
class RequestHandler {
 public:
  virtual ~RequestHandler() = default;
  virtual ResponsePlan Handle(HttpRequest request) = 0;
};

struct ServerStats {
  int64_t open_connections = 0;
  int64_t peak_connections = 0;
  int64_t accepted_total = 0;
  // Connections closed under a request by keep_alive_timeout.
  int64_t idle_closed_total = 0;
  // TLS handshakes that failed (the client refused the certificate, or spoke no TLS).
  int64_t tls_handshake_failures = 0;
  // HTTP/2 (H2Session): connections that agreed on h2, streams refused, GOAWAY frames sent.
  int64_t h2_connections = 0;
  int64_t h2_refused_streams = 0;
  int64_t h2_goaways_sent = 0;
  // Times a connection's HTTP/2 output stopped at its share of a pass of the loop (the rest
  // went on in the next pass).
  int64_t h2_output_yields = 0;

  // Adds `other`'s figures (the sum over several listeners).
  ServerStats& operator+=(const ServerStats& other) {
    open_connections += other.open_connections;
    peak_connections += other.peak_connections;
    accepted_total += other.accepted_total;
    idle_closed_total += other.idle_closed_total;
    tls_handshake_failures += other.tls_handshake_failures;
    h2_connections += other.h2_connections;
    h2_refused_streams += other.h2_refused_streams;
    h2_goaways_sent += other.h2_goaways_sent;
    h2_output_yields += other.h2_output_yields;
    return *this;
  }
};

// Accepts connections and runs one response at a time per connection (pipelined requests wait
// in the input buffer). A peer that closes (EOF, EPOLLRDHUP, EPOLLERR, a failed send) while its
// response is pending ends that response with client_closed_early and cancels its timer. Not
// thread-safe: lives on the loop thread.
class HttpServer {
 public:
  struct Options {
    int backlog = 65535;  // the kernel caps it at net.core.somaxconn
    size_t max_header_bytes = 64 * 1024;
    size_t max_body_bytes = 32 * 1024 * 1024;
    // Zero: none. Otherwise a request that arrives on a connection idle at least this long is
    // not read: the connection is closed (FIN) instead. That is the race a client loses when it
    // reuses a connection just as the server's keep-alive timer closes it, made deterministic.
    absl::Duration keep_alive_timeout = absl::ZeroDuration();
    // Both set: HTTPS (TLS 1.2 and 1.3) with this certificate chain and key (PEM), ALPN
    // "http/1.1" (a client offering only other protocols gets no ALPN and HTTP/1.1).
    std::string tls_cert_file;
    std::string tls_key_file;
    // With TLS: offer HTTP/2 too (ALPN "h2" preferred over "http/1.1"), with these behaviours.
    bool http2 = false;
    H2Options h2;
  };

  HttpServer(EventLoop& loop, RequestHandler& handler, Options options);
  HttpServer(EventLoop& loop, RequestHandler& handler) : HttpServer(loop, handler, Options()) {}
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds `host:port` (IPv4 literal; port 0 picks one) and starts accepting. With TLS options,
  // first loads the certificate and key (an error names the file).
  absl::Status Listen(absl::string_view host, int port);
  bool tls() const { return tls_ != nullptr; }
  int port() const { return port_; }
  ServerStats stats() const;
  // Shutting down: stops accepting and sends GOAWAY on every HTTP/2 connection (the requests it
  // already processes complete; the client retries the others elsewhere).
  void GoAway();
  // Requests whose response is not over yet (HTTP/1.1 and HTTP/2).
  size_t active_requests() const;

 private:
  struct Connection;

  void OnAcceptable();
  absl::Status SetUpTls();
  // Runs the TLS handshake; false when it is still going on or failed (then it closed `conn`).
  bool Handshake(Connection& conn);
  // read()/send() through TLS when the connection has it; errno as for the plain calls.
  ssize_t Receive(Connection& conn, char* buffer, size_t size);
  ssize_t Send(Connection& conn, const char* data, size_t size);
  void OnEvent(uint64_t conn_id, uint32_t events);
  // Each of these returns false when it closed (and destroyed) the connection.
  bool ReadAvailable(Connection& conn, bool& peer_closed);
  void OnH2Event(Connection& conn, bool peer_closed);
  // Sends what the HTTP/2 session has to say; closes the connection when it is done.
  bool PumpH2(Connection& conn);
  // PumpH2 again in the loop's next pass.
  void QueueH2Pump(Connection& conn);
  bool ProcessInput(Connection& conn);
  bool StartResponse(Connection& conn, ResponsePlan plan);
  bool Begin(Connection& conn);
  bool EmitParts(Connection& conn);
  bool Flush(Connection& conn);
  void OnTimer(uint64_t conn_id, void (HttpServer::*step)(Connection&));
  void BeginStep(Connection& conn) { Begin(conn); }
  void EmitStep(Connection& conn) { EmitParts(conn); }
  // Half-closes the connection and discards its input until EOF or a timeout, then closes it.
  void BeginDrain(Connection& conn);
  void ResetStep(Connection& conn);
  void Finish(Connection& conn, bool completed, bool client_closed_early);
  // Tells the plan's on_progress how many response bytes the kernel has accepted.
  void ReportBytesSent(Connection& conn);
  void Close(Connection& conn, bool with_reset);
  ResponsePlan ProtocolError(int status, absl::string_view detail);

  EventLoop& loop_;
  RequestHandler& handler_;
  Options options_;
  int listen_fd_ = -1;
  ssl_ctx_st* tls_ = nullptr;  // SSL_CTX
  int port_ = 0;
  EventLoop::WatchId listen_watch_ = 0;
  uint64_t next_conn_id_ = 1;
  absl::flat_hash_map<uint64_t, std::unique_ptr<Connection>> connections_;
  ServerStats stats_;  // HTTP/2 figures of closed connections only; stats() adds open ones
};

}  // namespace copilot::emulator

#endif  // COPILOT_TESTS_EMULATOR_HTTP_SERVER_H_
