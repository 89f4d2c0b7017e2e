// Recorders for what an asynchronous call delivers: a unary result, a streamed answer's chunks,
// an HTTP transfer's events. Each test used to keep its own copy.
#ifndef COPILOT_GATEWAY_TESTS_TESTING_RECORDERS_H_
#define COPILOT_GATEWAY_TESTS_TESTING_RECORDERS_H_

#include <cstddef>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "copilot/v1/resources.pb.h"
#include "gtest/gtest.h"
#include "server/common/async_call.h"
#include "server/transport/http_transport.h"

namespace copilot::gateway::testing {

// The result of one unary call, once its callback ran (UpstreamCallback and CoreCallback are the
// same type). Not thread-safe: read it after the callback ran.
template <typename T>
struct Result {
  std::optional<absl::StatusOr<T>> value;
  absl::AnyInvocable<void(absl::StatusOr<T>) &&> Callback() {
    return [this](absl::StatusOr<T> v) { value = std::move(v); };
  }
};

// Records a stream's chunks and its end, and fails the test on a chunk after OnDone or a second
// OnDone. Pauses after every `pause_every` chunks (0: never).
class RecordingSink final : public ChunkSink {
 public:
  bool OnChunk(copilot::v1::MessageChunk chunk) override {
    EXPECT_FALSE(done.has_value()) << "chunk after OnDone";
    chunks.push_back(std::move(chunk));
    return pause_every == 0 || chunks.size() % pause_every != 0;
  }
  void OnDone(absl::Status status) override {
    EXPECT_FALSE(done.has_value()) << "OnDone twice";
    done = std::move(status);
  }
  // The chunks' text, in order.
  std::string Text() const {
    std::string text;
    for (const auto& chunk : chunks) text += chunk.delta().content();
    return text;
  }

  std::vector<copilot::v1::MessageChunk> chunks;
  std::optional<absl::Status> done;
  std::size_t pause_every = 0;
};

// Records the events of an HTTP transfer; OnData answers `data_result`.
class RecordingHandler final : public HttpTransferHandler {
 public:
  void OnHeaders(const HttpResponseHead& head) override { heads.push_back(head); }
  bool OnData(absl::string_view piece) override {
    pieces.emplace_back(piece);
    return data_result;
  }
  void OnComplete(absl::Status status) override { completions.push_back(std::move(status)); }
  void OnUpstreamTime(absl::Duration elapsed) override { upstream_times.push_back(elapsed); }

  bool data_result = true;
  std::vector<absl::Duration> upstream_times;
  std::vector<HttpResponseHead> heads;
  std::vector<std::string> pieces;
  std::vector<absl::Status> completions;
};

}  // namespace copilot::gateway::testing

#endif  // COPILOT_GATEWAY_TESTS_TESTING_RECORDERS_H_
