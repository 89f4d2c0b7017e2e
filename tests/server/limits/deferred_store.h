// A LimitStore whose chosen steps run later, when the test says: like Redis, which answers on its
// own thread after the caller returned. The other steps go to the inner store at once.
#ifndef COPILOT_GATEWAY_TESTS_SERVER_LIMITS_DEFERRED_STORE_H_
#define COPILOT_GATEWAY_TESTS_SERVER_LIMITS_DEFERRED_STORE_H_

#include <cstdint>
#include <deque>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"
#include "server/limits/limit_store.h"

namespace copilot::gateway::testing {

class DeferredStore final : public LimitStore {
 public:
  // Which steps wait for RunPending (bits).
  enum Step : unsigned { kRate = 1, kWindows = 2, kSlot = 4, kCounters = 8 };

  DeferredStore(LimitStore& inner, unsigned deferred) : inner_(inner), deferred_(deferred) {}

  void TakeRate(const std::string& key, const RateLimit& limit,
                StoreCallback<StepResult> done) override {
    Run(kRate, [this, key, limit, done = std::move(done)]() mutable {
      inner_.TakeRate(key, limit, std::move(done));
    });
  }
  void TakeWindows(const std::string& key, const std::vector<WindowLimit>& windows,
                   StoreCallback<StepResult> done) override {
    Run(kWindows, [this, key, windows, done = std::move(done)]() mutable {
      inner_.TakeWindows(key, windows, std::move(done));
    });
  }
  void AcquireSlot(const std::string& key, int64_t max, absl::Duration ttl,
                   StoreCallback<SlotResult> done) override {
    Run(kSlot, [this, key, max, ttl, done = std::move(done)]() mutable {
      inner_.AcquireSlot(key, max, ttl, std::move(done));
    });
  }
  void ReleaseSlot(const std::string& key, const std::string& lease_id) override {
    inner_.ReleaseSlot(key, lease_id);
  }
  void AddToCounters(const std::string& group, const std::vector<CounterStep>& steps,
                     StoreCallback<CounterResult> done) override {
    Run(kCounters, [this, group, steps, done = std::move(done)]() mutable {
      inner_.AddToCounters(group, steps, std::move(done));
    });
  }

  // Runs the waiting steps (and those they queue), in order; returns how many ran.
  int RunPending() {
    int ran = 0;
    while (true) {
      absl::AnyInvocable<void() &&> step;
      {
        absl::MutexLock lock(&mu_);
        if (pending_.empty()) return ran;
        step = std::move(pending_.front());
        pending_.pop_front();
      }
      std::move(step)();
      ++ran;
    }
  }

 private:
  void Run(Step step, absl::AnyInvocable<void() &&> run) {
    if ((deferred_ & step) == 0) return std::move(run)();
    absl::MutexLock lock(&mu_);
    pending_.push_back(std::move(run));
  }

  LimitStore& inner_;
  const unsigned deferred_;
  absl::Mutex mu_;
  std::deque<absl::AnyInvocable<void() &&>> pending_ ABSL_GUARDED_BY(mu_);
};

}  // namespace copilot::gateway::testing

#endif  // COPILOT_GATEWAY_TESTS_SERVER_LIMITS_DEFERRED_STORE_H_
