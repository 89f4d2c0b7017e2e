// LimitStore in this process: the default (one replica needs nothing else), and the fallback of
// the Redis store's fail-open mode.
#ifndef COPILOT_GATEWAY_SERVER_LIMITS_LOCAL_LIMIT_STORE_H_
#define COPILOT_GATEWAY_SERVER_LIMITS_LOCAL_LIMIT_STORE_H_

#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "server/common/clock.h"
#include "server/limits/limit_store.h"

namespace copilot::gateway {

// Thread-safe (one mutex; every step is O(window entries) at most). Callbacks run inline. Keys
// live as long as the process: their number is bounded by the configured tenants. Rates, windows
// and slot leases run on the clock's monotonic time (an NTP step neither frees nor blocks calls);
// counters expire at the wall-clock end of their calendar period.
class LocalLimitStore final : public LimitStore {
 public:
  // `clock` must outlive the store.
  explicit LocalLimitStore(const Clock& clock) : clock_(clock) {}

  void TakeRate(const std::string& key, const RateLimit& limit,
                StoreCallback<StepResult> done) override;
  void TakeWindows(const std::string& key, const std::vector<WindowLimit>& windows,
                   StoreCallback<StepResult> done) override;
  void AcquireSlot(const std::string& key, int64_t max, absl::Duration ttl,
                   StoreCallback<SlotResult> done) override;
  void ReleaseSlot(const std::string& key, const std::string& lease_id) override;
  void AddToCounters(const std::string& group, const std::vector<CounterStep>& steps,
                     StoreCallback<CounterResult> done) override;

  // The pure steps, for tests and for the Redis scripts' reference.
  static StepResult GcraStep(absl::Time now, const RateLimit& limit, absl::Time& tat);
  static StepResult WindowStep(absl::Time now, const std::vector<WindowLimit>& windows,
                               std::deque<absl::Time>& log);

 private:
  const Clock& clock_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, absl::Time> tats_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::deque<absl::Time>> logs_ ABSL_GUARDED_BY(mu_);
  // key -> lease -> expiry (monotonic).
  absl::flat_hash_map<std::string, std::map<std::string, absl::Time>> slots_ ABSL_GUARDED_BY(mu_);
  int64_t next_lease_ ABSL_GUARDED_BY(mu_) = 0;
  struct Counter {
    int64_t value = 0;
    absl::Time expires;  // Wall clock: the end of a calendar period.
  };
  // "<group>\x1f<key>" -> counter; expired counters are swept at most once a minute.
  absl::flat_hash_map<std::string, Counter> counters_ ABSL_GUARDED_BY(mu_);
  absl::Time next_sweep_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_LIMITS_LOCAL_LIMIT_STORE_H_
