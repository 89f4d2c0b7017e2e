// The transport seam: bytes to and from an HTTP server, nothing about Haufe.
//
// The one production implementation is CurlTransport (server/transport/curl_transport.h): a
// single libcurl multi event loop thread that runs every upstream transfer. Tests use fakes.
#ifndef COPILOT_GATEWAY_SERVER_TRANSPORT_HTTP_TRANSPORT_H_
#define COPILOT_GATEWAY_SERVER_TRANSPORT_HTTP_TRANSPORT_H_

#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/common/call_trace.h"

namespace copilot::gateway {

using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

// One outgoing HTTP request and the limits that bound it. Plain data.
struct HttpRequest {
  std::string method;  // "GET", "POST" or "DELETE".
  std::string url;     // Absolute URL, query string included.
  HttpHeaders headers;
  std::string body;  // Sent as-is; empty for GET and DELETE.
  // The whole transfer must finish by then (the caller's deadline): DEADLINE_EXCEEDED otherwise.
  absl::Time deadline = absl::InfiniteFuture();
  // Bound on establishing the connection: UNAVAILABLE after it.
  absl::Duration connect_timeout = absl::Seconds(5);
  // Once the response has started, no byte for this long while the transfer is not paused by
  // the handler: reason "upstream_stalled" (a failure after the first response byte; see
  // HttpTransferHandler::OnComplete for its code). The wait for the first byte is bounded by the
  // deadline alone (a blocking run answers only when its answer is complete).
  absl::Duration stall_timeout = absl::Seconds(60);
  // Response bodies larger than this fail the transfer with an error (reason
  // "upstream_response_too_large").
  std::size_t max_response_bytes = 16 * 1024 * 1024;
  // Requests in different pools never share a connection: each pool has connections of its own
  // (CurlTransport: a connection cache per pool on each loop). Empty: the shared pool. The
  // upstream client names the tenant, so that one tenant's large answers never queue in front
  // of another tenant's on one HTTP/2 connection (one TCP stream, read in order).
  std::string connection_pool;
  // For metrics and logs only (never sent): the request's template, e.g.
  // "POST /v1/threads/{thread_id}/run", and the incoming call it serves (may be null).
  std::string endpoint;
  std::shared_ptr<CallTrace> trace;
};

// Status line and headers of a response. Header names are lower-case.
struct HttpResponseHead {
  int status = 0;
  HttpHeaders headers;
  // First value of header `name` (lower-case), or empty.
  absl::string_view Header(absl::string_view name) const {
    for (const auto& [key, value] : headers) {
      if (key == name) return value;
    }
    return {};
  }
};

// Receives the events of one transfer. All calls come from the transport's event loop thread,
// in order: OnHeaders at most once, OnData zero or more times, OnComplete exactly once (also
// after Cancel). One exception: a transfer that cannot even be queued (the transport is shut
// down or at its bound on transfers in flight, or a circuit breaker refuses it) gets OnComplete
// inline, on the thread calling HttpTransport::Start, before Start returns. Implementations
// must not block.
class HttpTransferHandler {
 public:
  virtual ~HttpTransferHandler() = default;
  // The response's status line and headers arrived.
  virtual void OnHeaders(const HttpResponseHead& head) = 0;
  // The next piece of the body. Returning false pauses the transfer: no more OnData until
  // HttpTransfer::Resume() (flow control for slow readers); the piece itself was consumed.
  virtual bool OnData(absl::string_view piece) = 0;
  // The transfer ended: OK when the whole body arrived, otherwise why it failed. Errors carry
  // an ErrorInfo payload (server/common/errors.h) with a reason and metadata
  // "headers_received" / "response_started" ("true"/"false"):
  //   - Every transport failure carries metadata "request_sent": "false" when no byte of the
  //     request was ever sent, or the upstream said it did not process it (HTTP/2
  //     REFUSED_STREAM or above a GOAWAY's last stream ID), so it provably did not act on it: a
  //     retry is safe for any method; "true" when it may have.
  //   - A transport failure (reasons "upstream_unreachable", "upstream_tls_error",
  //     "upstream_proxy_error" (the egress proxy refused the tunnel: metadata "proxy_status"),
  //     "upstream_reset", "upstream_stalled", "upstream_transport_error") before any response
  //     byte arrived is UNAVAILABLE (safe to retry), for every method.
  //   - The same failure after the first response byte stays UNAVAILABLE for GET and DELETE
  //     (idempotent in HTTP) but is INTERNAL for POST: the upstream may have carried out the
  //     request, so a blind retry could do it twice.
  //   - The deadline gives DEADLINE_EXCEEDED ("upstream_timeout"); Cancel() gives CANCELLED
  //     ("upstream_call_cancelled"); a body over max_response_bytes INTERNAL
  //     ("upstream_response_too_large"); a transport at its bound on transfers in flight
  //     RESOURCE_EXHAUSTED ("upstream_transfers_exhausted", with RetryInfo); a bad URL or
  //     option INTERNAL ("transport_misconfigured").
  virtual void OnComplete(absl::Status status) = 0;
  // How long the transport itself had the transfer (connecting, sending, the upstream's work,
  // receiving), without the time the request waited in the gateway before that. Called at most
  // once per transfer, right before OnComplete, by transports that know it (CurlTransport:
  // libcurl's CURLINFO_TOTAL_TIME_T); decorators pass it on. The default ignores it.
  virtual void OnUpstreamTime(absl::Duration elapsed) { (void)elapsed; }
};

// A transfer in progress. Thread-safe: any thread may call these at any time, also after the
// transfer ended (they are then no-ops).
class HttpTransfer {
 public:
  virtual ~HttpTransfer() = default;
  // Aborts the transfer at once (closing its connection); OnComplete(CANCELLED) follows.
  virtual void Cancel() = 0;
  // Resumes a transfer paused by OnData returning false.
  virtual void Resume() = 0;
};

// The statuses every transport (and decorator) ends a transfer with for these two causes:
// CANCELLED "transport_shutdown" and CANCELLED "upstream_call_cancelled" (HttpTransfer::Cancel).
// `request_sent` as in OnComplete's metadata: a transfer ended after a byte of its request was
// sent may have been carried out (its quota is then not given back).
absl::Status TransportShutdownStatus(bool request_sent = false);
absl::Status TransferCancelledStatus(bool request_sent = false);

// HTTP 502, 503 or 504: a gateway or the upstream saying it cannot answer now (retried for
// idempotent requests, a failure for the circuit breaker).
inline bool IsUnavailableHttpStatus(int status) {
  return status == 502 || status == 503 || status == 504;
}

// Starts HTTP transfers. Thread-safe; Start never blocks on the network.
class HttpTransport {
 public:
  virtual ~HttpTransport() = default;
  // Queues `request`; `handler` receives its events on the event loop thread and is kept alive
  // by the transport until OnComplete has returned (see HttpTransferHandler for the one case
  // where OnComplete runs inline).
  virtual std::shared_ptr<HttpTransfer> Start(HttpRequest request,
                                              std::shared_ptr<HttpTransferHandler> handler) = 0;

  // Runs `task` once on the transport's event loop thread after `delay` (a timer of the loop:
  // no thread sleeps), or earlier, when the transport shuts down first. False when the
  // transport has no timers or has shut down: `task` is then dropped without running. For
  // decorators that wait on the loop (retry backoff). Decorators pass it on.
  virtual bool RunAfter(absl::Duration delay, absl::AnyInvocable<void() &&> task) {
    (void)delay;
    (void)task;
    return false;
  }
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_TRANSPORT_HTTP_TRANSPORT_H_
