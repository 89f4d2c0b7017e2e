// Observes one incoming call of copilot.v1.CopilotService from its start to its Finish: the
// go-grpc-prometheus families, the gateway's overhead, the tenant counter, and one structured
// log line at info (method, tenant, code, duration, upstream status, request ID; never secrets
// or message content).
#ifndef COPILOT_GATEWAY_SERVER_OPS_CALL_OBSERVER_H_
#define COPILOT_GATEWAY_SERVER_OPS_CALL_OBSERVER_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "server/common/call_trace.h"
#include "server/ops/call_gate.h"
#include "server/ops/gateway_metrics.h"

namespace copilot::gateway {

// The call's x-request-id: the caller's when it is 1-128 characters of [A-Za-z0-9._:/+=-],
// otherwise a new random one (32 hex digits).
std::string RequestIdFor(std::optional<absl::string_view> from_caller);

// The W3C traceparent sent upstream: the caller's trace (version 00, valid IDs) continued with a
// new span ID as the parent, or a new trace (not sampled) when the caller sent none or a bad one.
std::string TraceparentFor(std::optional<absl::string_view> from_caller);

// Thread-safe: Finished() runs once, from whichever thread finishes the call; MessageSent()
// from the thread starting a write.
class CallObserver {
 public:
  // Counts the call started and its request message received, and enters it at `gate`.
  // `metrics` and `gate` may be null; they must outlive this object.
  CallObserver(GatewayMetrics* metrics, absl::string_view method, bool server_stream,
               std::shared_ptr<CallTrace> trace, std::string peer, CallGate* gate = nullptr);
  // Leaves the gate if Done() was never called: a call never stays in flight past its observer.
  ~CallObserver() { Done(); }
  CallObserver(const CallObserver&) = delete;
  CallObserver& operator=(const CallObserver&) = delete;

  const std::shared_ptr<CallTrace>& trace() const { return trace_; }
  // The gate was closed when the call started: it must be refused (UNAVAILABLE).
  bool refused() const { return refused_; }

  // A response message is being sent (streams).
  void MessageSent();
  // The call ends with `status` (its ErrorInfo reason goes to the log line): the reactor calls
  // this right before Finish(ToGrpcStatus(status)).
  void Finished(const absl::Status& status);
  // gRPC is done with the call (the reactor's OnDone): it leaves the gate. Once.
  void Done();

 private:
  GatewayMetrics* const metrics_;
  const GatewayMetrics::Method* const method_;
  const std::string method_name_;
  const bool server_stream_;
  const std::shared_ptr<CallTrace> trace_;
  const std::string peer_;
  const std::chrono::steady_clock::time_point start_;
  CallGate* const gate_;
  const bool refused_;
  std::atomic<bool> finished_{false};
  std::atomic<bool> done_{false};
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_OPS_CALL_OBSERVER_H_
