// Where limit state lives, one atomic step per decision: in this process (LocalLimitStore) or in
// Redis (RedisLimitStore, shared by every replica). The admission logic above it
// (server/limits/admission_controller.h) is the same for both.
#ifndef COPILOT_GATEWAY_SERVER_LIMITS_LIMIT_STORE_H_
#define COPILOT_GATEWAY_SERVER_LIMITS_LIMIT_STORE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/common/limit_types.h"

namespace copilot::gateway {

// The outcome of one step. When !allowed, retry_after says when the same step can succeed
// (exactly, for GCRA and sliding windows; a lower bound for concurrency).
struct StepResult {
  bool allowed = false;
  absl::Duration retry_after = absl::ZeroDuration();
};

// A concurrency slot: `acquired` with the lease to release, or not (the key is at its maximum).
struct SlotResult {
  bool acquired = false;
  std::string lease_id;
};

// One counter of an AddToCounters step (usage and quotas: answers and characters per period).
struct CounterStep {
  // The counter's name (unique within the step's group).
  std::string key;
  // Added to the counter; negative gives back (a counter never goes below 0).
  int64_t amount = 0;
  // With max > 0 the whole step is refused when this counter is already at max or would pass
  // it (so a step adding 0 is refused exactly when the counter is spent). 0: no maximum.
  int64_t max = 0;
  // The counter is forgotten after this time (the end of its period, plus a margin).
  absl::Time expires = absl::InfiniteFuture();
};

// The outcome of AddToCounters: every counter's value after the step (or unchanged when it
// was refused), in the order of the steps.
struct CounterResult {
  bool added = false;
  // The first step that refused, or -1.
  int refused = -1;
  std::vector<int64_t> values;
};

template <typename T>
using StoreCallback = absl::AnyInvocable<void(absl::StatusOr<T>) &&>;

// Thread-safe. Each method runs `done` exactly once, inline or on the store's own thread, never
// blocking the caller's thread. An error status (UNAVAILABLE) means the store could not decide
// (Redis unreachable): the caller applies its degraded mode.
class LimitStore {
 public:
  virtual ~LimitStore() = default;

  // One GCRA step for `key`: takes one unit if the call conforms to `limit`.
  virtual void TakeRate(const std::string& key, const RateLimit& limit,
                        StoreCallback<StepResult> done) = 0;
  // One step over all `windows` of `key` at once: records the call only if every window has
  // room (so a refused call uses up nothing).
  virtual void TakeWindows(const std::string& key, const std::vector<WindowLimit>& windows,
                           StoreCallback<StepResult> done) = 0;
  // Acquires one of `max` concurrency slots of `key`. The lease expires after `ttl` unless
  // released (a replica that dies frees its slots that way).
  virtual void AcquireSlot(const std::string& key, int64_t max, absl::Duration ttl,
                           StoreCallback<SlotResult> done) = 0;
  // Releases a slot acquired before. Fire and forget; unknown leases are ignored.
  virtual void ReleaseSlot(const std::string& key, const std::string& lease_id) = 0;
  // Adds to several counters of `group` (e.g. one tenant's) at once: either every amount is
  // added or, when a step's max refuses, none. Steps adding 0 with no max read the counters.
  virtual void AddToCounters(const std::string& group, const std::vector<CounterStep>& steps,
                             StoreCallback<CounterResult> done) = 0;
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_LIMITS_LIMIT_STORE_H_
