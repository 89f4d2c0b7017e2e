// The stream decoder inside HaufeClient (StreamRun / StreamComplete) over a fake transport
// that answers with a fuzzed status line and body, cut into pieces at fuzzed offsets, while the
// sink pauses and the caller resumes or cancels at fuzzed moments.
//
// Properties (the ChunkSink contract, server/upstream/haufe_api.h): OnDone exactly once and
// nothing after it; an OK end only for a 2xx answer whose every non-blank line became a chunk,
// in order; every chunk has its message_id; every error keeps errors.h's bounds; one made from
// an error body or error line never contains the API key or licence the call sent.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"
#include "server/upstream/haufe_client.h"
#include "tests/fuzz/fake_transport.h"
#include "tests/fuzz/fuzz_support.h"

namespace copilot::gateway {
namespace {

// Records what the decoder hands over and checks the contract as it goes. Pause decisions come
// from the fuzz input.
class RecordingSink final : public ChunkSink {
 public:
  explicit RecordingSink(FuzzedDataProvider& input) : input_(input) {}
  bool OnChunk(copilot::v1::MessageChunk chunk) override {
    FUZZ_CHECK(!done, "OnChunk after OnDone");
    FUZZ_CHECK(!chunk.message_id().empty(), "chunk without message_id");
    const std::string text = chunk.SerializeAsString();
    FUZZ_CHECK(text.find("fuzz-api-key") == std::string::npos, "the API key in a chunk");
    FUZZ_CHECK(text.find("fuzz-licence") == std::string::npos, "the licence in a chunk");
    ++chunks;
    return input_.remaining_bytes() == 0 || input_.ConsumeIntegralInRange(0, 3) != 0;
  }
  void OnDone(absl::Status status) override {
    FUZZ_CHECK(!done, "OnDone twice");
    done = true;
    final_status = std::move(status);
  }
  int chunks = 0;
  bool done = false;
  absl::Status final_status;

 private:
  FuzzedDataProvider& input_;
};

std::size_t NonBlankLines(absl::string_view body) {
  std::size_t count = 0;
  for (absl::string_view line : absl::StrSplit(body, '\n')) {
    if (!absl::StripAsciiWhitespace(line).empty()) ++count;
  }
  return count;
}

}  // namespace
}  // namespace copilot::gateway

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace gw = copilot::gateway;
  namespace fuzz = copilot::gateway::fuzz;
  FuzzedDataProvider input(data, size);
  gw::HaufeClientConfig config;
  config.base_url = "http://upstream.test/agents";
  if (input.ConsumeBool()) {
    config.max_ndjson_line_bytes = input.ConsumeIntegralInRange<std::size_t>(1, 512);
  }
  auto transport = std::make_shared<fuzz::FakeTransport>();
  gw::HaufeClient client(config, transport, [] { return absl::FromUnixSeconds(1700000000); });
  auto sink = std::make_shared<gw::RecordingSink>(input);
  gw::UpstreamCallOptions options;
  options.api_key = "fuzz-api-key";
  options.licence = "fuzz-licence";
  std::shared_ptr<gw::UpstreamCall> call;
  if (input.ConsumeBool()) {
    call = client.StreamRun(options, gw::RunParams{.thread_id = "t-1"}, sink);
  } else {
    call = client.StreamComplete(options, gw::CompletionParams{.assistant_id = "a-1"}, sink);
  }
  FUZZ_CHECK(transport->handler != nullptr, "no transfer started");
  fuzz::FakeTransfer& transfer = *transport->transfer;
  gw::HttpTransferHandler& handler = *transport->handler;

  gw::HttpResponseHead head;
  head.status =
      input.ConsumeIntegralInRange(0, 7) != 0 ? 200 : input.ConsumeIntegralInRange(0, 599);
  if (input.ConsumeBool()) head.headers.emplace_back("retry-after", "5");
  handler.OnHeaders(head);

  // The body in pieces; between pieces the caller may resume a paused stream or cancel.
  std::string body;
  while (input.remaining_bytes() > 0 && !transfer.cancelled) {
    if (transfer.paused) {
      if (input.ConsumeIntegralInRange(0, 15) == 0) {
        call->Cancel();
        break;
      }
      call->Resume();
      if (!handler.OnData("")) transfer.paused = true;
      continue;
    }
    const std::size_t length = input.ConsumeIntegralInRange<std::size_t>(0, 128);
    const std::string piece = input.ConsumeBytesAsString(length);
    body += piece;
    if (!handler.OnData(piece)) transfer.paused = true;
  }
  // The transport never completes a transfer its handler holds paused: the caller resumes it
  // (each resume lets at least one line through) or it was cancelled.
  while (transfer.paused && !transfer.cancelled) {
    call->Resume();
    if (!handler.OnData("")) transfer.paused = true;
  }
  const bool cancelled = transfer.cancelled;
  const bool transport_failed = !cancelled && input.ConsumeIntegralInRange(0, 15) == 0;
  if (cancelled) {
    handler.OnComplete(fuzz::Cancelled());
  } else if (transport_failed) {
    handler.OnComplete(fuzz::TransportFailure(input.ConsumeIntegral<int>()));
  } else {
    handler.OnComplete(absl::OkStatus());
  }
  FUZZ_CHECK(sink->done, "no OnDone after OnComplete");
  handler.OnComplete(absl::OkStatus());  // Late events change nothing.
  handler.OnData("{\"message_id\":\"late\"}\n");

  if (sink->final_status.ok()) {
    FUZZ_CHECK(head.status >= 200 && head.status < 300, "OK for a non-2xx answer");
    FUZZ_CHECK(!cancelled && !transport_failed, "OK for a failed transfer");
    FUZZ_CHECK(static_cast<std::size_t>(sink->chunks) == gw::NonBlankLines(body),
               "OK but not every line became a chunk");
  } else {
    fuzz::CheckErrorIsBounded(sink->final_status, "stream");
    // Everything the upstream wrote is redacted (server/common/secrets.h): error bodies,
    // error lines, bad-line messages, chunks (checked in OnChunk).
    const std::string text = gw::ToRpcStatus(sink->final_status).SerializeAsString();
    FUZZ_CHECK(text.find(options.api_key) == std::string::npos, "the API key in an error");
    FUZZ_CHECK(text.find(options.licence) == std::string::npos, "the licence in an error");
  }
  return 0;
}
