// A Clock (server/common/clock.h) that tests move by hand: time passes only when the test says,
// so code that waits (the admission scheduler, TTLs, windows) is tested in simulated time.
#ifndef COPILOT_GATEWAY_TESTS_TESTING_FAKE_CLOCK_H_
#define COPILOT_GATEWAY_TESTS_TESTING_FAKE_CLOCK_H_

#include <algorithm>
#include <atomic>
#include <cstdint>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/common/clock.h"

namespace copilot::gateway::testing {

// Both timelines start at `start` and Advance moves them together; StepWall and Set move the wall
// clock alone (an NTP step), which limits and TTLs must not notice. Thread-safe: code under test
// reads it and waits on it on its own threads while the test moves it.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::FromUnixSeconds(1'800'000'000))
      : wall_(absl::ToUnixNanos(start)), monotonic_(absl::ToUnixNanos(start)) {}

  absl::Time Now() const override { return absl::FromUnixNanos(wall_.load()); }
  absl::Time Monotonic() const override { return absl::FromUnixNanos(monotonic_.load()); }

  // Waits until the condition holds or the fake monotonic time reaches `until`. The fake time
  // moves without touching `mu`, so the wait looks again at least every millisecond of real time;
  // when it wakes is decided by the fake time alone.
  bool AwaitUntil(absl::Mutex& mu, const absl::Condition& condition,
                  absl::Time until) const override {
    const int64_t until_nanos = absl::ToUnixNanos(until);
    struct Args {
      const absl::Condition* condition;
      const std::atomic<int64_t>* monotonic;
      int64_t until;
    } args{&condition, &monotonic_, until_nanos};
    const absl::Condition woken(
        +[](Args* a) { return a->condition->Eval() || a->monotonic->load() >= a->until; }, &args);
    while (!mu.AwaitWithTimeout(woken, absl::Milliseconds(1))) {
    }
    return condition.Eval();
  }

  // Moves both clocks forward by `by` (>= 0: monotonic time never goes back).
  void Advance(absl::Duration by) {
    const int64_t nanos = absl::ToInt64Nanoseconds(std::max(by, absl::ZeroDuration()));
    monotonic_.fetch_add(nanos);
    wall_.fetch_add(nanos);
  }
  // Steps the wall clock alone, either way, as NTP or an operator would.
  void StepWall(absl::Duration by) { wall_.fetch_add(absl::ToInt64Nanoseconds(by)); }
  // Sets the wall clock alone to `now`.
  void Set(absl::Time now) { wall_.store(absl::ToUnixNanos(now)); }

 private:
  std::atomic<int64_t> wall_;
  std::atomic<int64_t> monotonic_;
};

}  // namespace copilot::gateway::testing

#endif  // COPILOT_GATEWAY_TESTS_TESTING_FAKE_CLOCK_H_
