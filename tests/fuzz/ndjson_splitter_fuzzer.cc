// The NDJSON splitter (server/upstream/ndjson_splitter.h) on a body cut into pieces anywhere.
//
// Properties: the lines and the final status do not depend on where the body was cut (the same
// bytes fed whole give the same result); every line is non-blank, has no '\n' and is within
// the limit; on success the lines are exactly the non-blank lines of the body, "\r\n" or "\n"
// removed (plus one whole unterminated JSON value); after an error the splitter stays failed.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "server/upstream/ndjson_splitter.h"
#include "tests/fuzz/fuzz_support.h"

namespace copilot::gateway {
namespace {

struct Outcome {
  std::vector<std::string> lines;
  absl::Status status;
};

Outcome Split(const std::vector<std::string>& pieces, std::size_t max_line_bytes) {
  NdjsonSplitter splitter(max_line_bytes);
  Outcome out;
  auto on_line = [&](absl::string_view line) {
    FUZZ_CHECK(line.find('\n') == absl::string_view::npos, "line with a line feed");
    FUZZ_CHECK(!absl::StripAsciiWhitespace(line).empty(), "blank line");
    FUZZ_CHECK(line.size() <= max_line_bytes, "line over the limit");
    out.lines.emplace_back(line);
  };
  for (const std::string& piece : pieces) {
    out.status = splitter.Feed(piece, on_line);
    FUZZ_CHECK(splitter.buffered_bytes() <= max_line_bytes + 1, "partial line over the limit");
    if (!out.status.ok()) break;
  }
  if (out.status.ok()) out.status = splitter.Finish(on_line);
  if (!out.status.ok()) {
    fuzz::CheckErrorIsBounded(out.status, "splitter");
    const std::size_t lines = out.lines.size();
    FUZZ_CHECK(splitter.Feed("{}\n", on_line) == out.status, "splitter recovered from an error");
    FUZZ_CHECK(splitter.Finish(on_line) == out.status, "splitter recovered from an error");
    FUZZ_CHECK(out.lines.size() == lines, "a line after an error");
  }
  return out;
}

// The documented result for a body that splits without error.
std::vector<std::string> ExpectedLines(absl::string_view body) {
  std::vector<std::string> lines = absl::StrSplit(body, '\n');
  std::string rest = lines.back();  // After the last '\n': unterminated.
  lines.pop_back();
  std::vector<std::string> out;
  auto add = [&out](std::string line) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!absl::StripAsciiWhitespace(line).empty()) out.push_back(std::move(line));
  };
  for (std::string& line : lines) add(std::move(line));
  if (!absl::StripAsciiWhitespace(rest).empty()) add(std::move(rest));
  return out;
}

}  // namespace
}  // namespace copilot::gateway

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace gw = copilot::gateway;
  FuzzedDataProvider input(data, size);
  // Small limits find the edges; the production limit is 1 MiB.
  const std::size_t max_line_bytes = input.ConsumeIntegralInRange<std::size_t>(1, 300);
  std::vector<std::string> pieces;
  std::string body;
  while (input.remaining_bytes() > 0) {
    const std::size_t length = input.ConsumeIntegralInRange<std::size_t>(0, 80);
    pieces.push_back(input.ConsumeBytesAsString(length));
    body += pieces.back();
  }

  const gw::Outcome cut = gw::Split(pieces, max_line_bytes);
  const gw::Outcome whole = gw::Split({body}, max_line_bytes);
  FUZZ_CHECK(cut.status == whole.status, "the status depends on where the body was cut");
  FUZZ_CHECK(cut.lines == whole.lines, "the lines depend on where the body was cut");
  if (whole.status.ok()) {
    FUZZ_CHECK(whole.lines == gw::ExpectedLines(body), "lines differ from the body's lines");
  }
  return 0;
}
