// CurlTransport: the production HttpTransport. Each event loop thread (event_loops of them) owns
// one libcurl multi handle and runs the transfers given to it; there is no thread per transfer.
#ifndef COPILOT_GATEWAY_SERVER_TRANSPORT_CURL_TRANSPORT_H_
#define COPILOT_GATEWAY_SERVER_TRANSPORT_CURL_TRANSPORT_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/transport/http_transport.h"

namespace copilot::gateway {

enum class TlsVersion { k1_2, k1_3 };

// Plain data.
struct CurlTransportOptions {
  // Offer HTTP/2 over TLS (ALPN; CURL_HTTP_VERSION_2TLS) and multiplex transfers to one host
  // over shared connections. Plain http:// stays HTTP/1.1.
  bool http2 = true;
  // Response bytes one transfer may take in one turn of its event loop; past them it yields
  // (libcurl pauses it) until the loop's other sockets have had their turn. libcurl (7.88) reads
  // a socket for as long as it stays readable (6.4 MiB of one 8 MiB answer in one turn,
  // measured), so without a bound a few large answers arriving at once held the loop for tens of
  // milliseconds, and every other call on it waited. 0: no bound.
  std::size_t max_read_per_turn = 64 * 1024;
  // Called on the loop thread each time a transfer yields (for a metric); may be empty.
  std::function<void()> on_read_yield = {};
  // Called on a loop thread with +1 when an upstream connection's socket opens and -1 when it
  // closes (for a gauge of open connections, idle ones included); may be empty. Not called for
  // the connections closed while the transport is destroyed.
  std::function<void(int)> on_connections_changed = {};
  // Size of each connection cache (CURLMOPT_MAXCONNECTS; one per loop and connection pool):
  // idle connections kept for reuse. 0: as many as max_transfers, so that a burst's connections
  // serve the next one (idle ones still close after max_idle_connection_age).
  long max_cached_connections = 0;
  // Connections to one host at most, per connection pool (CURLMOPT_MAX_HOST_CONNECTIONS). Transfers
  // beyond wait in libcurl's queue for a connection, or over HTTP/2 for a free stream on one. 0:
  // sized to the load: no bound while the upstream answers HTTP/1.x; once a connection negotiated
  // HTTP/2, each loop's transfers in flight / 100 (the usual stream cap) + 8 / event_loops (at
  // least 2), updated as they start and end (libcurl alone opens a connection per transfer in a
  // burst; see UpdateConnectionBound).
  long max_connections = 0;
  // No connection idle this long is reused (CURLOPT_MAXAGE_CONN), nor one this old
  // (CURLOPT_MAXLIFETIME_CONN; zero: no bound). libcurl counts whole seconds, so both act as
  // if rounded down to whole seconds (the idle age at least 1 s, the lifetime at least 2 s).
  // Keep the idle age below the upstream's keep-alive timeout, so the gateway never sends on a
  // connection the upstream is about to close.
  absl::Duration max_idle_connection_age = absl::Seconds(4);
  absl::Duration max_connection_lifetime = absl::Minutes(5);
  // TLS: the trust bundle (PEM) for the upstream and an https:// proxy (empty: the system's)
  // and the lowest TLS version accepted.
  std::string ca_file = {};
  TlsVersion tls_min_version = TlsVersion::k1_2;
  // The forward proxy every transfer goes through ("http://host:port" or "https://host:port";
  // CONNECT for https:// URLs), empty: none. The environment (http_proxy, https_proxy, ...) is
  // never read here: the caller decides (ResolveUpstreamProxy in the config layer).
  std::string proxy = {};
  // Basic credentials for the proxy; empty username: none.
  std::string proxy_username = {};
  std::string proxy_password = {};
  // Hosts reached directly, not through `proxy` (CURLOPT_NOPROXY syntax: comma-separated host
  // names or domains, "*" for all).
  std::string no_proxy = {};
  // Transfers in flight (queued for the loop or running) at most. A Start beyond it completes
  // at once with RESOURCE_EXHAUSTED "upstream_transfers_exhausted"; nothing queues without bound.
  // Each transfer holds a socket, so keep it below the process's file descriptor limit.
  int64_t max_transfers = 20000;
  // Event loops (1..64), each a thread with its own multi handle, connection cache and
  // connections; a transfer stays on the loop it started on: the one with the fewest transfers
  // of other connection pools in flight, then the fewest transfers, then the first (so that
  // calls one after the other reuse one loop's connections). One pool spreads over all loops;
  // different pools (tenants) keep to different loops while there are loops enough, and a loop
  // busy reading one tenant's multi-megabyte HTTP/2 answers delays no other tenant's. max_transfers
  // holds for all of them together; max_connections and max_cached_connections are split evenly
  // between them (rounded up), and so are the spare connections of the automatic HTTP/2 bound (at
  // least 2 per loop).
  int event_loops = 1;
};

// A loop (there are `event_loops` of them): one thread blocks in epoll_wait on the sockets libcurl
// asks for (CURLMOPT_SOCKETFUNCTION), an eventfd for wakeups and one timeout: the nearer of
// libcurl's timer (CURLMOPT_TIMERFUNCTION) and the next stall check (a min-heap keyed by steady
// time, one entry per transfer, re-armed lazily, so a byte costs O(1) and a check O(log n)). Ready
// sockets go to curl_multi_socket_action, so a wakeup costs O(ready sockets), not O(transfers).
// Start, Cancel and Resume from other threads append to a mutex-protected queue and write the
// eventfd (only when the queue was empty); that is the only cross-thread signal, and no thread but
// the loop ever calls into libcurl.
//
// A connection's socket stays registered with epoll while the connection waits in the cache
// (libcurl opens and closes it through the loop's CURLOPT_OPENSOCKETFUNCTION and
// CURLOPT_CLOSESOCKETFUNCTION, so its end is seen): a reused connection costs no epoll_ctl.
//
// Per transfer: CURLOPT_NOSIGNAL; CURLOPT_TIMEOUT_MS from HttpRequest::deadline (a deadline
// already past fails with DEADLINE_EXCEEDED without sending anything);
// CURLOPT_CONNECTTIMEOUT_MS; TCP keep-alive; "Expect:" suppressed; no redirects; http and
// https only. Each loop's multi handle is its shared connection, DNS and TLS session cache
// (CURLMOPT_MAX_HOST_CONNECTIONS: max_connections, unlimited by default).
//
// Connection pools (HttpRequest::connection_pool): a request naming a pool reuses only that
// pool's connections, from a connection cache of its own on its loop (a libcurl share handle
// with CURL_LOCK_DATA_CONNECT, made on first use, at most 1,024 per loop; beyond, the shared
// pool). max_connections, the automatic HTTP/2 bound and max_cached_connections then hold for
// each pool's connections to a host. Why: over HTTP/2 every transfer to a host multiplexes onto
// the same few connections, one TCP stream each, read in order; a stream's frame queued behind
// megabytes of another call's answer waits for them to be read. With a pool per tenant (the
// gateway's default, upstream.connections_per_tenant), a tenant's calls wait only behind its own.
//
// No request is sent twice unless it is idempotent. libcurl on its own sends a request again on
// a fresh connection when a reused one closed (or reset) before any response byte, POSTs
// included (lib/transfer.c, Curl_retry_request): but a connection that dies after the request
// went out may die after the upstream carried it out, and a Run sent twice is two answers in
// the thread. So each transfer counts its sends (CURLOPT_PREREQFUNCTION runs right before each)
// and a second send of a POST is refused: the transfer fails with UNAVAILABLE "upstream_reset",
// metadata "resend_refused": "true", "connection_reused": "true". The connection policy
// (max_idle_connection_age below the upstream's keep-alive timeout) makes this rare. Over
// HTTP/2, libcurl (7.88) also re-sends when a stream is reset before any response byte on a
// reused connection, whatever the reset's code (REFUSED_STREAM, which means "not processed",
// and INTERNAL_ERROR, which does not), without saying which. The loop learns which from
// nghttp2 itself (h2_stream_refusals.h): a send whose stream the upstream refused
// (REFUSED_STREAM, or above a GOAWAY's last stream ID) is followed by libcurl's re-send, POSTs
// included; any other re-send of a POST is refused as above (GatewayUpstreamH2Test).
//
// Errors (OnComplete; ErrorInfo reason, metadata "curl_code", "headers_received",
// "response_started" and "request_sent": "false" when the upstream provably did not act on
// the request: CURLOPT_PREREQFUNCTION never ran for the transfer (libcurl never began to send
// it), or every send's HTTP/2 stream was refused (then also "streams_refused": the count)):
//   connect refused / resolve failure / connect timeout  UNAVAILABLE "upstream_unreachable"
//   the egress proxy refused CONNECT / cannot resolve it  UNAVAILABLE "upstream_proxy_error"
//   TLS handshake or certificate failure                 UNAVAILABLE "upstream_tls_error"
//   connection reset or closed early                     UNAVAILABLE "upstream_reset"
//   the latest send's HTTP/2 stream refused, and libcurl  UNAVAILABLE "upstream_refused_stream"
//     gave up (5 sends, or a lone stream above a GOAWAY)
//   no response byte for stall_timeout while not paused  UNAVAILABLE "upstream_stalled"
//   any other libcurl failure                            UNAVAILABLE "upstream_transport_error"
//     ... but INTERNAL, same reason, once a response byte arrived for a request that is not
//     idempotent (POST): the upstream may have carried it out (HttpTransferHandler::OnComplete)
//   the request deadline passed                          DEADLINE_EXCEEDED "upstream_timeout"
//   body larger than max_response_bytes                  INTERNAL "upstream_response_too_large"
//   HttpTransfer::Cancel()                               CANCELLED "upstream_call_cancelled"
//     (the connection is closed at once)
//   Shutdown() / Start() after Shutdown()                CANCELLED "transport_shutdown"
//   max_transfers already in flight (inline in Start)    RESOURCE_EXHAUSTED
//                                                          "upstream_transfers_exhausted"
//                                                          (+ RetryInfo, QuotaFailure)
//   a bad URL, or an option libcurl refuses              INTERNAL "transport_misconfigured"
//     (metadata "curl_option" names a refused option)
//
// Flow control: when OnData returns false the transfer is paused (CURL_WRITEFUNC_PAUSE; libcurl
// delivers those bytes again on unpause and the loop skips them, since the handler consumed
// them). After Resume() the loop first calls OnData with an EMPTY piece, so the handler can
// deliver what it held back (it may return false again), then unpauses. A transfer whose
// handler holds it paused never completes with OK before that (its completion waits for
// Resume); errors such as the deadline or Cancel still end it at once.
//
// Threads: DNS for names other than numeric addresses and "localhost" uses libcurl's resolver,
// which in Debian's build is a short-lived helper thread per lookup (cached by the multi
// handle); every other piece of work runs on the loop thread.
//
// curl_global_init: Create() calls it once per process (std::call_once, CURL_GLOBAL_DEFAULT);
// main may call it earlier itself (it is reference counted). main calls curl_global_cleanup
// once the gateway (and with it every transport) is destroyed.
//
// Thread-safety: thread-safe. Start, Shutdown and the returned HttpTransfer's methods may be
// called from any thread, also from handler callbacks on the loop thread. Handlers run on the
// loop thread and must not block.
class CurlTransport final : public HttpTransport {
 public:
  // Starts the loop threads. Fails with INVALID_ARGUMENT for max_transfers < 1 or event_loops
  // outside 1..64, and with INTERNAL when epoll, eventfd or libcurl cannot be set up (a refused
  // multi option: "transport_misconfigured" naming it).
  static absl::StatusOr<std::unique_ptr<CurlTransport>> Create(
      const CurlTransportOptions& options = CurlTransportOptions());

  CurlTransport(const CurlTransport&) = delete;
  CurlTransport& operator=(const CurlTransport&) = delete;
  // Shutdown().
  ~CurlTransport() override;

  std::shared_ptr<HttpTransfer> Start(HttpRequest request,
                                      std::shared_ptr<HttpTransferHandler> handler) override;
  // A timer of the loop (a min-ordered map beside libcurl's timer and the stall checks).
  // Shutdown runs the tasks still waiting, early, after every transfer has completed.
  bool RunAfter(absl::Duration delay, absl::AnyInvocable<void() &&> task) override;

  // Cancels every transfer still running or queued (each gets OnComplete(CANCELLED
  // "transport_shutdown") on its loop thread), then joins the loop threads. Later Starts
  // complete inline with the same status. Idempotent. Called from a handler on a loop thread it
  // cannot join that one: its loop then stops, and cancels the rest, right after that handler
  // returns.
  void Shutdown();

  // Thread-safe: transfers admitted and not yet completed, on all loops.
  int64_t TransfersInFlight() const;

  class Loop;       // Defined in the .cc file.
  class PoolLoads;  // Defined in the .cc file.

 private:
  CurlTransport(std::vector<std::shared_ptr<Loop>> loops, std::shared_ptr<PoolLoads> loads);
  // For RunAfter: the loop with the fewest transfers in flight.
  Loop& PickLoop();

  const std::vector<std::shared_ptr<Loop>> loops_;
  const std::shared_ptr<PoolLoads> loads_;
  absl::Mutex shutdown_mu_;
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(shutdown_mu_);
  std::atomic<uint64_t> next_id_{1};
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_TRANSPORT_CURL_TRANSPORT_H_
