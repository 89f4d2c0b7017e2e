// Admission of calls across a graceful shutdown: counts the calls in flight, refuses new ones
// once closed, and lets the shutdown wait until the last call has ended (or its drain time is
// up). gRPC's own Shutdown(deadline) cannot do this alone: it waits for idle client connections
// to go away too, so with any caller connected it would always take the whole drain time.
//
// It also counts each client connection's calls (by the peer address gRPC names it with), from
// the handler to gRPC's end of the call: a connection past its bound is reported once per 1,000
// calls over it, for the server to cut (HTTP/2 "rapid reset": a client that opens and resets
// streams without end is never held back by max_concurrent_streams, since a reset stream frees
// its slot at once, while gRPC 1.51 still starts each call; its calls piled up between Finish and
// gRPC's end of the call, 82,050 from one connection with max_concurrent_streams 10, gigabytes).
#ifndef COPILOT_GATEWAY_SERVER_OPS_CALL_GATE_H_
#define COPILOT_GATEWAY_SERVER_OPS_CALL_GATE_H_

#include <cstdint>
#include <functional>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace copilot::gateway {

// Thread-safe.
class CallGate {
 public:
  // Before any call: a connection with more than `max` calls in flight is passed to `over`
  // (called outside the lock, on the thread of the call that crossed the bound). 0: no bound.
  void LimitPerConnection(int64_t max, std::function<void(const std::string& peer)> over) {
    absl::MutexLock lock(&mu_);
    max_per_peer_ = max;
    over_ = std::move(over);
  }

  // A call starts (from the connection `peer`, as gRPC names it; empty: not counted by
  // connection): false when the gate is closed (refuse the call), otherwise the call counts as in
  // flight until Leave().
  bool Enter(absl::string_view peer = {}) {
    bool over = false;
    {
      absl::MutexLock lock(&mu_);
      if (closed_) return false;
      ++in_flight_;
      if (max_per_peer_ > 0 && !peer.empty()) {
        const int64_t calls = ++per_peer_[peer];
        over = calls > max_per_peer_ && (calls - max_per_peer_ - 1) % 1000 == 0;
      }
    }
    if (over && over_) over_(std::string(peer));
    return true;
  }
  // `peer` as given to Enter.
  void Leave(absl::string_view peer = {}) {
    absl::MutexLock lock(&mu_);
    --in_flight_;
    if (max_per_peer_ > 0 && !peer.empty()) {
      auto it = per_peer_.find(peer);
      if (it != per_peer_.end() && --it->second <= 0) per_peer_.erase(it);
    }
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
  int64_t max_per_peer_ ABSL_GUARDED_BY(mu_) = 0;
  std::function<void(const std::string&)> over_;  // Set before calls, then only read.
  // Connections with calls in flight (an entry goes with its last call).
  absl::flat_hash_map<std::string, int64_t> per_peer_ ABSL_GUARDED_BY(mu_);
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_OPS_CALL_GATE_H_
