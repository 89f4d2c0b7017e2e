#include "server/upstream/ndjson_splitter.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "server/common/errors.h"

namespace copilot::gateway {
namespace {

absl::Status LineTooLong(std::size_t limit) {
  return MakeError(absl::StatusCode::kInternal,
                   absl::StrCat("an upstream stream line exceeds ", limit, " bytes"),
                   "upstream_stream_line_too_long");
}

}  // namespace

absl::Status NdjsonSplitter::Emit(absl::string_view line,
                                  absl::FunctionRef<void(absl::string_view)> on_line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.size() > max_line_bytes_) return failure_ = LineTooLong(max_line_bytes_);
  if (absl::StripAsciiWhitespace(line).empty()) return absl::OkStatus();
  on_line(line);
  return absl::OkStatus();
}

absl::Status NdjsonSplitter::Feed(absl::string_view piece,
                                  absl::FunctionRef<void(absl::string_view)> on_line) {
  if (!failure_.ok()) return failure_;
  while (!piece.empty()) {
    const std::size_t newline = piece.find('\n');
    if (newline == absl::string_view::npos) {
      // The "+ 1" leaves room for the '\r' of a "\r\n" that is cut between two pieces.
      if (partial_.size() + piece.size() > max_line_bytes_ + 1) {
        partial_.clear();
        return failure_ = LineTooLong(max_line_bytes_);
      }
      partial_.append(piece.data(), piece.size());
      return absl::OkStatus();
    }
    absl::string_view head = piece.substr(0, newline);
    piece.remove_prefix(newline + 1);
    absl::Status status;
    if (partial_.empty()) {
      status = Emit(head, on_line);  // The common case: a whole line inside one piece, no copy.
    } else {
      if (partial_.size() + head.size() > max_line_bytes_ + 1) {
        partial_.clear();
        return failure_ = LineTooLong(max_line_bytes_);
      }
      partial_.append(head.data(), head.size());
      status = Emit(partial_, on_line);
      partial_.clear();
    }
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

absl::Status NdjsonSplitter::Finish(absl::FunctionRef<void(absl::string_view)> on_line) {
  if (!failure_.ok()) return failure_;
  if (absl::StripAsciiWhitespace(partial_).empty()) return absl::OkStatus();
  if (nlohmann::json::accept(partial_)) {
    std::string line = std::move(partial_);
    partial_.clear();
    return Emit(line, on_line);
  }
  const std::size_t bytes = partial_.size();
  partial_.clear();
  return failure_ = MakeError(absl::StatusCode::kInternal,
                              absl::StrCat("the upstream stream ended in the middle of a line (",
                                           bytes, " bytes without a line end)"),
                              "upstream_stream_truncated");
}

}  // namespace copilot::gateway
