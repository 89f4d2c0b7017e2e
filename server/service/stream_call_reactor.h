// Serves one server-streaming gRPC call fed by a core use case's chunks.
#ifndef COPILOT_GATEWAY_SERVER_SERVICE_STREAM_CALL_REACTOR_H_
#define COPILOT_GATEWAY_SERVER_SERVICE_STREAM_CALL_REACTOR_H_

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/server_callback.h>

#include <cstddef>
#include <deque>
#include <memory>
#include <optional>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "server/common/async_call.h"
#include "server/common/errors.h"
#include "server/common/grpc_status.h"
#include "server/ops/call_observer.h"
#include "server/service/inline_reactions.h"
#include "server/service/request_parser.h"

namespace copilot::gateway {

// A ServerWriteReactor forwarding each upstream chunk as one response message the moment it
// arrives. One StartWrite is in flight at a time; chunks arriving meanwhile wait in a small
// queue. When the queue holds `max_queued` chunks, OnChunk returns false and the upstream
// transfer pauses until the queue has drained (flow control for a slow reader). The call ends
// after the queue drained and the upstream finished: OK for a complete stream, the upstream's
// error otherwise (never a silent OK). OnCancel (also on deadline) cancels the upstream.
//
// Thread-safety and lifetime: the reactor (gRPC threads) and its sink (the upstream's event loop
// thread) share a State under a mutex. Decisions are made under the mutex; StartWrite, Finish,
// Cancel and Resume are called after releasing it. The reactor is touched only by the holder of
// the single write slot or by the one thread that sets `finished` while no write is in flight, so
// Finish happens once and nothing touches the reactor after it. OnDone deletes the reactor; the
// sink holds only the State. No reaction blocks.
//
// The method is a raw one (request_parser.h): each chunk is wrapped in a `Response` and
// serialized when it is queued.
template <typename Response>
class StreamCallReactor final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  using Starter = absl::AnyInvocable<std::shared_ptr<UpstreamCall>(std::shared_ptr<ChunkSink>) &&>;

  // Creates the reactor, runs `start` with the sink that feeds it, and returns the reactor for
  // the method handler to return. `observer` (not null) sees each message and the end.
  static grpc::ServerWriteReactor<grpc::ByteBuffer>* Start(Starter start, std::size_t max_queued,
                                                           std::shared_ptr<CallObserver> observer) {
    auto* reactor = new StreamCallReactor(max_queued, std::move(observer));
    std::shared_ptr<State> state = reactor->state_;
    std::shared_ptr<UpstreamCall> call = std::move(start)(std::make_shared<Sink>(state));
    bool cancel_now = false;
    bool resume_now = false;
    {
      absl::MutexLock lock(&state->mu);
      if (state->cancelled) {
        cancel_now = true;
      } else if (!state->upstream_done) {
        state->call = call;
        resume_now = state->resume_pending;
        state->resume_pending = false;
      }
    }
    if (cancel_now) call->Cancel();
    if (resume_now) call->Resume();
    return reactor;
  }

  void OnWriteDone(bool ok) override {
    Actions actions;
    {
      absl::MutexLock lock(&state_->mu);
      state_->write_in_flight = false;
      if (!ok) {  // The stream is broken: the caller is gone.
        state_->cancelled = true;
        state_->queue.clear();
        actions.cancel = std::move(state_->call);
      }
      state_->NextStep(actions);
    }
    actions.Run(this);
  }

  void OnCancel() override {
    Actions actions;
    {
      absl::MutexLock lock(&state_->mu);
      state_->cancelled = true;
      state_->queue.clear();
      actions.cancel = std::move(state_->call);
      state_->NextStep(actions);
    }
    actions.Run(this);
  }

  void OnDone() override {
    observer_->Done();
    delete this;
  }

  // gRPC may run OnDone and OnCancel on the thread that completes the call (see
  // kInlineReactions); OnWriteDone always goes to its executor thread.
  bool InternalInlineable() override { return kInlineReactions; }

 private:
  // What to do once the mutex is released.
  struct Actions {
    const grpc::ByteBuffer* write = nullptr;
    std::optional<absl::Status> finish;
    std::shared_ptr<UpstreamCall> cancel;
    std::shared_ptr<UpstreamCall> resume;

    void Run(StreamCallReactor* reactor) {
      if (cancel != nullptr) cancel->Cancel();
      if (resume != nullptr) resume->Resume();
      if (write == nullptr && !finish.has_value()) return;
      if (write != nullptr) {
        reactor->observer_->MessageSent();
        reactor->StartWrite(write);
      }
      if (finish.has_value()) {
        reactor->observer_->Finished(*finish);
        reactor->Finish(ToGrpcStatus(*finish));
      }
    }
  };

  struct State {
    explicit State(std::size_t max_queued) : max_queued(max_queued) {}

    // Starts the next write, or finishes, or resumes the upstream, as the state allows.
    void NextStep(Actions& actions) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
      if (finished || write_in_flight) return;
      if (!queue.empty()) {
        writing.Swap(&queue.front());
        queue.pop_front();
        write_in_flight = true;
        actions.write = &writing;
      } else if (cancelled) {
        finished = true;
        actions.finish = CancelledByCaller();
      } else if (upstream_done) {
        finished = true;
        actions.finish = upstream_status;
      }
      if (paused && queue.empty() && !cancelled && !upstream_done) {
        paused = false;
        if (call != nullptr) {
          actions.resume = call;
        } else {
          resume_pending = true;
        }
      }
    }

    const std::size_t max_queued;
    absl::Mutex mu;
    std::deque<grpc::ByteBuffer> queue ABSL_GUARDED_BY(mu);
    // The message being written; untouched while write_in_flight.
    grpc::ByteBuffer writing;
    bool write_in_flight ABSL_GUARDED_BY(mu) = false;
    bool upstream_done ABSL_GUARDED_BY(mu) = false;
    absl::Status upstream_status ABSL_GUARDED_BY(mu);
    bool cancelled ABSL_GUARDED_BY(mu) = false;
    bool finished ABSL_GUARDED_BY(mu) = false;
    bool paused ABSL_GUARDED_BY(mu) = false;
    bool resume_pending ABSL_GUARDED_BY(mu) = false;
    std::shared_ptr<UpstreamCall> call ABSL_GUARDED_BY(mu);
    StreamCallReactor* reactor = nullptr;  // Set once at creation.
  };

  // The use case's end of the stream. Called on the upstream's event loop thread.
  class Sink final : public ChunkSink {
   public:
    explicit Sink(std::shared_ptr<State> state) : state_(std::move(state)) {}

    bool OnChunk(copilot::v1::MessageChunk chunk) override {
      Actions actions;
      bool more = true;
      // Serialized before the lock: the reactor's threads only ever see bytes.
      Response response;
      *response.mutable_chunk() = std::move(chunk);
      grpc::ByteBuffer bytes;
      const absl::Status serialized = SerializeResponse(response, bytes);
      {
        absl::MutexLock lock(&state_->mu);
        if (state_->finished || state_->cancelled) return true;  // Dropped; being cancelled.
        if (!serialized.ok()) return true;  // Cannot happen for a valid message; dropped.
        state_->queue.push_back(std::move(bytes));
        state_->NextStep(actions);
        if (state_->queue.size() >= state_->max_queued) {
          state_->paused = true;
          more = false;
        }
      }
      actions.Run(state_->reactor);
      return more;
    }

    void OnDone(absl::Status status) override {
      Actions actions;
      {
        absl::MutexLock lock(&state_->mu);
        state_->upstream_done = true;
        state_->upstream_status = std::move(status);
        state_->call.reset();
        state_->NextStep(actions);
      }
      actions.Run(state_->reactor);
    }

   private:
    std::shared_ptr<State> state_;
  };

  StreamCallReactor(std::size_t max_queued, std::shared_ptr<CallObserver> observer)
      : state_(std::make_shared<State>(max_queued)), observer_(std::move(observer)) {
    state_->reactor = this;
  }

  const std::shared_ptr<State> state_;
  const std::shared_ptr<CallObserver> observer_;
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_SERVICE_STREAM_CALL_REACTOR_H_
