// One HTTP/2 connection of the emulator's server (RFC 9113, through libnghttp2): bytes in, bytes
// out, requests to the RequestHandler and their ResponsePlans played as streams, with the server
// behaviours a client must survive: a cap on concurrent streams, GOAWAY after N requests, on
// shutdown and when idle, and REFUSED_STREAM. An injected reset (Interruption) resets the TCP
// connection, as an upstream that dies does: every stream on it is lost.
#ifndef COPILOT_TESTS_EMULATOR_H2_SESSION_H_
#define COPILOT_TESTS_EMULATOR_H2_SESSION_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "tests/emulator/event_loop.h"
#include "tests/emulator/http_request.h"
#include "tests/emulator/http_response.h"

struct nghttp2_session;

namespace copilot::emulator {

class RequestHandler;

struct H2Options {
  // SETTINGS_MAX_CONCURRENT_STREAMS; a stream opened above it is refused (REFUSED_STREAM).
  uint32_t max_concurrent_streams = 100;
  // Zero: never. Otherwise, once this many requests were handed to the handler on the
  // connection, GOAWAY names the last of them: later streams are not processed (the client must
  // retry them on a new connection) and the connection closes when the processed ones are done.
  int64_t goaway_after_requests = 0;
  // Zero: never. Otherwise every Nth stream of the connection is refused (RST_STREAM
  // REFUSED_STREAM) without being processed or recorded.
  int64_t refuse_every = 0;
  size_t max_header_bytes = 64 * 1024;
  size_t max_body_bytes = 32 * 1024 * 1024;
};

struct H2Stats {
  int64_t requests = 0;         // handed to the handler
  int64_t refused_streams = 0;  // RST_STREAM REFUSED_STREAM sent by refuse_every or GOAWAY
  int64_t goaways_sent = 0;
};

// Not thread-safe: lives on the loop thread. `wake` is called (from a timer of this session) when
// the session has output to send; the owner then calls CollectOutput. The owner may destroy the
// session from inside `wake`.
class H2Session {
 public:
  H2Session(EventLoop& loop, RequestHandler& handler, H2Options options,
            std::function<void()> wake);
  ~H2Session();  // streams still open end with client_closed_early
  H2Session(const H2Session&) = delete;
  H2Session& operator=(const H2Session&) = delete;

  // Queues the server's SETTINGS.
  absl::Status Start();
  // Feeds bytes received from the client. An error is a connection error: send what
  // CollectOutput gives (GOAWAY), then close.
  absl::Status Receive(absl::string_view data);
  // Appends the bytes the session wants to send, until `out` holds at least `max_bytes` (the
  // rest stays in the session for the next call).
  absl::Status CollectOutput(std::string& out, size_t max_bytes);
  // Graceful GOAWAY: streams already handed to the handler complete, no new ones are processed.
  void GoAway();
  // Neither side has anything left to say (after GOAWAY, every stream closed): close.
  bool Done() const;
  // A response plan asked for the connection to be reset (after its bytes were collected).
  bool reset_requested() const { return reset_requested_; }
  // Streams handed to the handler and not yet closed.
  size_t active_requests() const { return active_requests_; }
  const H2Stats& stats() const { return stats_; }

 private:
  struct Stream;
  struct Callbacks;

  void Dispatch(Stream& stream);
  void Refuse(int32_t stream_id);
  void Begin(int32_t stream_id);
  void EmitParts(Stream& stream);
  void OnStreamTimer(int32_t stream_id, void (H2Session::*step)(int32_t));
  void EmitStep(int32_t stream_id);
  void ResetStep(int32_t stream_id);
  void Finish(Stream& stream, bool completed, bool client_closed_early);
  void SendGoAway();

  EventLoop& loop_;
  RequestHandler& handler_;
  H2Options options_;
  std::function<void()> wake_;
  nghttp2_session* session_ = nullptr;
  absl::flat_hash_map<int32_t, std::unique_ptr<Stream>> streams_;
  int64_t streams_seen_ = 0;
  int32_t last_dispatched_ = 0;
  bool goaway_sent_ = false;
  bool reset_requested_ = false;
  size_t active_requests_ = 0;
  H2Stats stats_;
};

}  // namespace copilot::emulator

#endif  // COPILOT_TESTS_EMULATOR_H2_SESSION_H_
