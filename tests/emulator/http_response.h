// What the HTTP server should send for one request, including how to pace and break it.
#ifndef COPILOT_TESTS_EMULATOR_HTTP_RESPONSE_H_
#define COPILOT_TESTS_EMULATOR_HTTP_RESPONSE_H_

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace copilot::emulator {

// How a response ends early on purpose (fault injection).
enum class Interruption {
  kNone,
  kResetBeforeHeaders,  // RST (SO_LINGER 0 + close) without sending a byte
  kResetAfterBytes,     // headers + `interrupt_after_bytes` of the body, then RST
  kStallAfterBytes,     // headers + `interrupt_after_bytes` of the body, then silence
};

// Reported to ResponsePlan::on_progress: when the status line is queued (if ever), whenever the
// kernel accepted more of the response, and once when the response is over, whichever way it
// ended.
struct ResponseProgress {
  bool headers_sent = false;
  int status = 0;  // the status sent, 0 when nothing was sent
  bool finished = false;
  bool completed = false;            // the whole response was written
  bool client_closed_early = false;  // the peer closed before the response was complete
  // Response bytes (status line, headers, body with its chunk framing) the kernel accepted so
  // far. It stops growing while the client reads nothing and the socket buffers are full.
  size_t bytes_sent = 0;
};

// A response plan. Non-chunked plans send Content-Length and the concatenated `body_parts` in one
// go; chunked plans send each part as one HTTP chunk, `part_interval` apart (the first right after
// the headers). Empty parts are skipped. Plain data; copyable.
struct ResponsePlan {
  int status = 200;
  // Extra headers (Content-Type etc.). The server adds Content-Length / Transfer-Encoding and
  // Connection itself.
  std::vector<std::pair<std::string, std::string>> headers;
  bool chunked = false;
  std::vector<std::string> body_parts;
  absl::Duration start_delay = absl::ZeroDuration();
  absl::Duration part_interval = absl::ZeroDuration();
  Interruption interruption = Interruption::kNone;
  // Body bytes (decoded payload) sent before the interruption; nullopt: half the body for a reset,
  // 0 for a stall.
  std::optional<size_t> interrupt_after_bytes;
  bool close_connection = false;  // send "Connection: close" and close after the response
  std::function<void(const ResponseProgress&)> on_progress;

  size_t BodySize() const;
};

// "HTTP/1.1 404 Not Found" reason phrases for the statuses the emulator sends.
absl::string_view ReasonPhrase(int status);

}  // namespace copilot::emulator

#endif  // COPILOT_TESTS_EMULATOR_HTTP_RESPONSE_H_
