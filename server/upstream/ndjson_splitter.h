// Splits an NDJSON byte stream, arriving in pieces cut anywhere, into lines.
#ifndef COPILOT_GATEWAY_SERVER_UPSTREAM_NDJSON_SPLITTER_H_
#define COPILOT_GATEWAY_SERVER_UPSTREAM_NDJSON_SPLITTER_H_

#include <cstddef>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace copilot::gateway {

// Turns pieces of a body into complete lines: "\n" or "\r\n" terminated, terminator removed,
// blank (whitespace-only) lines dropped. Holds at most one partial line, bounded by
// `max_line_bytes`.
//
// Errors (ErrorInfo reasons): a line longer than the limit is INTERNAL
// "upstream_stream_line_too_long"; a non-blank unterminated rest at Finish() that is not a whole
// JSON value is INTERNAL "upstream_stream_truncated" (the stream was cut mid-line: never a
// silent OK, and not UNAVAILABLE either: part of the answer went out, so the run happened and a
// retry would repeat it). A whole JSON value without a final line end is a line: the upstream's
// end-of-stream format is undocumented, and a body that ended cleanly after a complete object lost
// nothing. After an error the splitter stays failed.
//
// Not thread-safe: one splitter belongs to one stream, fed from one thread.
class NdjsonSplitter {
 public:
  explicit NdjsonSplitter(std::size_t max_line_bytes) : max_line_bytes_(max_line_bytes) {}

  // Calls `on_line` for each line completed by `piece`, in order. The view is valid only during
  // the call.
  absl::Status Feed(absl::string_view piece, absl::FunctionRef<void(absl::string_view)> on_line);

  // The body ended: OK when nothing but whitespace, or one whole unterminated JSON value (passed
  // to `on_line`), is left over.
  absl::Status Finish(absl::FunctionRef<void(absl::string_view)> on_line);

  // Bytes of the current partial line.
  std::size_t buffered_bytes() const { return partial_.size(); }

 private:
  absl::Status Emit(absl::string_view line, absl::FunctionRef<void(absl::string_view)> on_line);

  const std::size_t max_line_bytes_;
  std::string partial_;
  absl::Status failure_;
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_UPSTREAM_NDJSON_SPLITTER_H_
