// Time as a dependency: logic asks a Clock, never absl::Now() directly, so tests move time by
// hand and waiting code waits in the clock's time, not the machine's.
//
// Two timelines. Now() is the wall clock: timestamps, calendar quota periods, HTTP dates, and
// deadlines as gRPC hands them over. Monotonic() never steps (NTP, an operator's `date -s`): rate
// limits, windows, holds, TTLs and durations are measured on it. Both are absl::Time so the same
// arithmetic applies, but a value of one must never be compared with a value of the other; to
// carry a wall deadline over, convert the remaining duration (`Monotonic() + (d - Now())`).
#ifndef COPILOT_GATEWAY_SERVER_COMMON_CLOCK_H_
#define COPILOT_GATEWAY_SERVER_COMMON_CLOCK_H_

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace copilot::gateway {

// Implementations are thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  // The wall clock.
  virtual absl::Time Now() const = 0;
  // A clock that only moves forward, at the rate of real time; its epoch is arbitrary.
  virtual absl::Time Monotonic() const = 0;
  // Called with `mu` held: releases it until `condition` holds (re-evaluated whenever `mu` is
  // released by another thread) or until Monotonic() reaches `until`, then returns with `mu`
  // held and the condition's value, like absl::Mutex::AwaitWithDeadline. Code that waits for
  // time to pass waits here, so a fake clock's time decides when it wakes.
  virtual bool AwaitUntil(absl::Mutex& mu, const absl::Condition& condition,
                          absl::Time until) const = 0;
};

// The system's clocks: absl::Now() and std::chrono::steady_clock. Thread-safe; stateless (every
// instance shares one monotonic epoch, so their Monotonic() values compare).
class SystemClock final : public Clock {
 public:
  absl::Time Now() const override;
  absl::Time Monotonic() const override;
  bool AwaitUntil(absl::Mutex& mu, const absl::Condition& condition,
                  absl::Time until) const override;
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_COMMON_CLOCK_H_
