// Admission of calls across a graceful shutdown: counts the calls in flight, refuses new ones
// once closed, and lets the shutdown wait until the last call has ended (or its drain time is
// up). gRPC's own Shutdown(deadline) cannot do this alone: it waits for idle client connections
// to go away too, so with any caller connected it would always take the whole drain time.
#ifndef COPILOT_GATEWAY_SERVER_OPS_CALL_GATE_H_
#define COPILOT_GATEWAY_SERVER_OPS_CALL_GATE_H_

#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace copilot::gateway {

// Thread-safe.
class CallGate {
 public:
  // A call starts: false when the gate is closed (refuse the call), otherwise the call counts as
  // in flight until Leave().
  bool Enter() {
    absl::MutexLock lock(&mu_);
    if (closed_) return false;
    ++in_flight_;
    return true;
  }
  void Leave() {
    absl::MutexLock lock(&mu_);
    --in_flight_;
  }
  // No call enters from now on.
  void Close() {
    absl::MutexLock lock(&mu_);
    closed_ = true;
  }
  bool closed() const {
    absl::MutexLock lock(&mu_);
    return closed_;
  }
  int64_t in_flight() const {
    absl::MutexLock lock(&mu_);
    return in_flight_;
  }
  // Blocks until no call is in flight or `deadline` passed; true when none is.
  bool WaitIdle(absl::Time deadline) {
    absl::MutexLock lock(&mu_);
    auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return in_flight_ == 0; };
    return mu_.AwaitWithDeadline(absl::Condition(&idle), deadline);
  }

 private:
  mutable absl::Mutex mu_;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  int64_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_OPS_CALL_GATE_H_
