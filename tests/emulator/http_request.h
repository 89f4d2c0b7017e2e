// An HTTP/1.1 request as the emulator sees it, and an incremental parser for it.
#ifndef COPILOT_TESTS_EMULATOR_HTTP_REQUEST_H_
#define COPILOT_TESTS_EMULATOR_HTTP_REQUEST_H_

#include <cstddef>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace copilot::emulator {

struct HttpRequest {
  std::string method;
  std::string target;     // as sent: path plus optional "?query"
  std::string path;       // target before '?', not percent-decoded
  std::string query;      // target after '?', raw ("" when absent)
  int version_minor = 1;  // HTTP/1.x
  // In arrival order; names lower-cased, values trimmed.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;

  // The first value of header `lower_name`, or nullopt.
  std::optional<absl::string_view> Header(absl::string_view lower_name) const;
  // True unless the client asked to close (HTTP/1.1 default) or did not ask to keep it (1.0).
  bool KeepAlive() const;
};

// Decodes %XX escapes and '+' (as a space), as in application/x-www-form-urlencoded.
std::string PercentDecode(absl::string_view text);
// Splits a raw query string into decoded (name, value) pairs, in order.
std::vector<std::pair<std::string, std::string>> ParseQuery(absl::string_view query);

// Parses one request at a time from a byte stream that arrives in pieces. Handles Content-Length
// bodies; a chunked request body is reported as kLengthRequired (the emulator answers 411).
// Not thread-safe (one per connection).
class HttpRequestParser {
 public:
  enum class Result {
    kNeedMore,         // feed more bytes
    kHeadersDone,      // headers parsed, body still incomplete (check ExpectsContinue())
    kComplete,         // request() is ready
    kBadRequest,       // 400
    kHeadersTooLarge,  // 431
    kBodyTooLarge,     // 413
    kLengthRequired,   // 411: Transfer-Encoding on the request
  };

  explicit HttpRequestParser(size_t max_header_bytes = 64 * 1024,
                             size_t max_body_bytes = 32 * 1024 * 1024)
      : max_header_bytes_(max_header_bytes), max_body_bytes_(max_body_bytes) {}

  // Looks at the unconsumed bytes `data` (everything received and not yet consumed). On kComplete,
  // `consumed()` says how many bytes of `data` the request used; the caller drops them and calls
  // Reset() before parsing the next request. Calling again after kHeadersDone is fine.
  Result Parse(absl::string_view data);
  size_t consumed() const { return consumed_; }
  bool headers_done() const { return headers_done_; }
  // True when the headers carried "Expect: 100-continue".
  bool ExpectsContinue() const;
  HttpRequest& request() { return request_; }
  void Reset();

 private:
  Result ParseHead(absl::string_view head);

  size_t max_header_bytes_;
  size_t max_body_bytes_;
  bool headers_done_ = false;
  size_t head_size_ = 0;
  size_t content_length_ = 0;
  size_t consumed_ = 0;
  HttpRequest request_;
};

}  // namespace copilot::emulator

#endif  // COPILOT_TESTS_EMULATOR_HTTP_REQUEST_H_
