// A Clock (server/common/clock.h) that tests move by hand.
#ifndef COPILOT_GATEWAY_TESTS_TESTING_FAKE_CLOCK_H_
#define COPILOT_GATEWAY_TESTS_TESTING_FAKE_CLOCK_H_

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/common/clock.h"

namespace copilot::gateway::testing {

// Starts at `start` and moves only when told. Thread-safe: code under test may read it on its
// own threads while the test moves it.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::FromUnixSeconds(1'800'000'000)) : now_(start) {}

  absl::Time Now() const override {
    absl::MutexLock lock(&mu_);
    return now_;
  }
  // Moves the clock by `by` (which may be negative: a clock stepped back).
  void Advance(absl::Duration by) {
    absl::MutexLock lock(&mu_);
    now_ += by;
  }
  // Sets the clock to `now`.
  void Set(absl::Time now) {
    absl::MutexLock lock(&mu_);
    now_ = now;
  }

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
};

}  // namespace copilot::gateway::testing

#endif  // COPILOT_GATEWAY_TESTS_TESTING_FAKE_CLOCK_H_
