// Serves one unary gRPC call whose answer comes later from a core use case.
#ifndef COPILOT_GATEWAY_SERVER_SERVICE_UNARY_CALL_REACTOR_H_
#define COPILOT_GATEWAY_SERVER_SERVICE_UNARY_CALL_REACTOR_H_

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/server_callback.h>

#include <memory>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/common/async_call.h"
#include "server/common/errors.h"
#include "server/common/grpc_status.h"
#include "server/core/copilot_core.h"
#include "server/ops/call_observer.h"
#include "server/service/inline_reactions.h"
#include "server/service/request_parser.h"

namespace copilot::gateway {

// A ServerUnaryReactor that finishes the call exactly once: with the use case's result (which
// arrives on the upstream's event loop thread, or inline), or with CANCELLED when gRPC reports
// the call cancelled (OnCancel, also on deadline), which also cancels the upstream call. The
// method is a raw one (request_parser.h): the result is serialized into gRPC's response buffer.
//
// Thread-safety and lifetime: the reactor and the use case's callback share a State under a
// mutex. Whoever first sets State::finished owns the one Finish() call and makes it after
// releasing the mutex; after that nobody touches the reactor. gRPC deletes nothing: OnDone
// deletes the reactor, and it only comes after Finish. The callback holds the State, never the
// reactor, so a late callback is a no-op. No reaction blocks.
template <typename Response>
class UnaryCallReactor final : public grpc::ServerUnaryReactor {
 public:
  using Starter = absl::AnyInvocable<std::shared_ptr<UpstreamCall>(CoreCallback<Response>) &&>;

  // Creates the reactor, runs `start` (which begins the use case), and returns the reactor for
  // the method handler to return. `response` is gRPC's, valid until OnDone. `observer` (not
  // null) learns how the call finishes.
  static grpc::ServerUnaryReactor* Start(grpc::ByteBuffer* response,
                                         std::shared_ptr<CallObserver> observer, Starter start) {
    auto* reactor = new UnaryCallReactor(response, std::move(observer));
    std::shared_ptr<State> state = reactor->state_;
    std::shared_ptr<UpstreamCall> call = std::move(start)(
        [state](absl::StatusOr<Response> result) { Complete(*state, std::move(result)); });
    bool cancel_now = false;
    {
      absl::MutexLock lock(&state->mu);
      if (state->cancelled) {
        cancel_now = true;
      } else if (!state->finished) {
        state->call = call;
      }
    }
    if (cancel_now) call->Cancel();
    return reactor;
  }

  void OnCancel() override {
    std::shared_ptr<UpstreamCall> call;
    bool finish = false;
    {
      absl::MutexLock lock(&state_->mu);
      state_->cancelled = true;
      call = std::move(state_->call);
      if (!state_->finished) {
        state_->finished = true;
        finish = true;
      }
    }
    if (call != nullptr) call->Cancel();
    if (finish) {
      const absl::Status status = CancelledByCaller();
      state_->observer->Finished(status);
      Finish(ToGrpcStatus(status));
    }
  }

  void OnDone() override {
    state_->observer->Done();
    delete this;
  }

  // gRPC may run OnDone and OnCancel on the thread that completes the call (see
  // kInlineReactions) instead of handing them to its executor thread.
  bool InternalInlineable() override { return kInlineReactions; }

 private:
  struct State {
    State(UnaryCallReactor* reactor, grpc::ByteBuffer* response,
          std::shared_ptr<CallObserver> observer)
        : reactor(reactor), response(response), observer(std::move(observer)) {}
    absl::Mutex mu;
    UnaryCallReactor* const reactor;   // Valid until Finish has been called.
    grpc::ByteBuffer* const response;  // gRPC's; valid until OnDone.
    const std::shared_ptr<CallObserver> observer;
    bool finished ABSL_GUARDED_BY(mu) = false;
    bool cancelled ABSL_GUARDED_BY(mu) = false;
    std::shared_ptr<UpstreamCall> call ABSL_GUARDED_BY(mu);
  };

  UnaryCallReactor(grpc::ByteBuffer* response, std::shared_ptr<CallObserver> observer)
      : state_(std::make_shared<State>(this, response, std::move(observer))) {}

  static void Complete(State& state, absl::StatusOr<Response> result) {
    absl::Status outcome = result.status();
    {
      absl::MutexLock lock(&state.mu);
      if (state.finished) return;
      state.finished = true;
      state.call.reset();
      if (result.ok()) outcome = SerializeResponse(*result, *state.response);
    }
    state.observer->Finished(outcome);
    state.reactor->Finish(ToGrpcStatus(outcome));
  }

  const std::shared_ptr<State> state_;
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_SERVICE_UNARY_CALL_REACTOR_H_
