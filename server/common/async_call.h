// The asynchronous call seam shared by every layer that starts, forwards or finishes an upstream
// call: the handle of a call in progress, the sink of a streamed answer, and the callbacks of a
// unary one. The service reactors hold these without knowing the upstream API (HaufeApi,
// server/upstream/haufe_api.h) that produced them.
#ifndef COPILOT_GATEWAY_SERVER_COMMON_ASYNC_CALL_H_
#define COPILOT_GATEWAY_SERVER_COMMON_ASYNC_CALL_H_

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "copilot/v1/resources.pb.h"

namespace copilot::gateway {

// An upstream call in progress. Thread-safe; calls after completion are no-ops.
class UpstreamCall {
 public:
  virtual ~UpstreamCall() = default;
  // Aborts the call at once; its callback or sink then gets CANCELLED.
  virtual void Cancel() = 0;
  // Resumes a stream paused by ChunkSink::OnChunk returning false.
  virtual void Resume() = 0;
};

// An UpstreamCall that is already over (answered without an upstream transfer). Thread-safe;
// does nothing.
class FinishedCall final : public UpstreamCall {
 public:
  void Cancel() override {}
  void Resume() override {}
};

// Receives a streamed answer. Called on the transport's event loop thread, in order: OnChunk
// zero or more times, then OnDone exactly once. Must not block.
class ChunkSink {
 public:
  virtual ~ChunkSink() = default;
  // One upstream NDJSON line as soon as it is complete. Return false to pause the stream until
  // UpstreamCall::Resume() (the caller reads slowly).
  virtual bool OnChunk(copilot::v1::MessageChunk chunk) = 0;
  // OK after the last chunk of a complete stream; otherwise why the stream failed (including an
  // error line from the upstream, or a stream cut mid-line: never a silent OK).
  virtual void OnDone(absl::Status status) = 0;
};

template <typename T>
using UpstreamCallback = absl::AnyInvocable<void(absl::StatusOr<T>) &&>;
using UpstreamDoneCallback = absl::AnyInvocable<void(absl::Status) &&>;

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_COMMON_ASYNC_CALL_H_
