// The emulator's HTTP/1.1 request parser (tests/emulator/http_request.h) on a connection's
// bytes arriving in pieces, several requests back to back (keep-alive), and its query decoding.
//
// Properties: the requests and the final verdict do not depend on how the bytes were cut; a
// complete request consumes no more than it was given, its body has the Content-Length it
// announced, its path starts with '/', and its header names are lower-case with trimmed values.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "tests/emulator/http_request.h"
#include "tests/fuzz/fuzz_support.h"

namespace copilot::emulator {
namespace {

using Result = HttpRequestParser::Result;

struct Outcome {
  std::vector<std::string> requests;  // method, target, headers and body, flattened
  Result last = Result::kNeedMore;
};

void CheckRequest(const HttpRequest& request) {
  FUZZ_CHECK(!request.path.empty() && request.path[0] == '/', request.target);
  for (const auto& [name, value] : request.headers) {
    FUZZ_CHECK(name == absl::AsciiStrToLower(name), name);
    FUZZ_CHECK(value == absl::StripAsciiWhitespace(value), value);
  }
  if (auto length = request.Header("content-length")) {
    size_t announced = 0;
    FUZZ_CHECK(absl::SimpleAtoi(*length, &announced) && announced == request.body.size(),
               "body length differs from Content-Length");
  }
  request.KeepAlive();
  ParseQuery(request.query);
}

std::string Flatten(const HttpRequest& request) {
  std::string out = request.method + " " + request.target + "\n";
  for (const auto& [name, value] : request.headers) out += name + ": " + value + "\n";
  return out + "\n" + request.body;
}

// Feeds `pieces` the way the emulator's connection does: the parser always sees every byte
// received and not yet consumed.
Outcome Parse(const std::vector<std::string>& pieces, size_t max_header, size_t max_body) {
  HttpRequestParser parser(max_header, max_body);
  Outcome out;
  std::string buffer;
  for (const std::string& piece : pieces) {
    buffer += piece;
    for (;;) {
      out.last = parser.Parse(buffer);
      if (out.last != Result::kComplete) break;
      FUZZ_CHECK(parser.consumed() > 0 && parser.consumed() <= buffer.size(), "consumed");
      CheckRequest(parser.request());
      out.requests.push_back(Flatten(parser.request()));
      buffer.erase(0, parser.consumed());
      parser.Reset();
    }
    if (out.last != Result::kNeedMore && out.last != Result::kHeadersDone) break;
  }
  return out;
}

}  // namespace
}  // namespace copilot::emulator

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace em = copilot::emulator;
  FuzzedDataProvider input(data, size);
  const size_t max_header = input.ConsumeBool() ? 64 * 1024 : input.ConsumeIntegralInRange(1, 256);
  const size_t max_body = input.ConsumeBool() ? 1024 * 1024 : input.ConsumeIntegralInRange(0, 64);
  std::vector<std::string> pieces;
  std::string whole;
  while (input.remaining_bytes() > 0) {
    pieces.push_back(input.ConsumeBytesAsString(input.ConsumeIntegralInRange<size_t>(1, 64)));
    whole += pieces.back();
  }
  const em::Outcome cut = em::Parse(pieces, max_header, max_body);
  const em::Outcome once = em::Parse({whole}, max_header, max_body);
  FUZZ_CHECK(cut.requests == once.requests, "the requests depend on how the bytes were cut");
  FUZZ_CHECK(cut.last == once.last, "the verdict depends on how the bytes were cut");
  return 0;
}
