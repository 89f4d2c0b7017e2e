// Time sources for the emulator: wall time for timestamps shown to clients, monotonic time for
// timers. Injected everywhere so tests can control time.
#ifndef COPILOT_TESTS_EMULATOR_CLOCK_H_
#define COPILOT_TESTS_EMULATOR_CLOCK_H_

#include <string>

#include "absl/time/time.h"

namespace copilot::emulator {

// A source of wall and monotonic time. Implementations are thread-compatible (the emulator uses
// one from its single event-loop thread).
class Clock {
 public:
  virtual ~Clock() = default;
  // Wall-clock time, for timestamps in response bodies.
  virtual absl::Time Now() = 0;
  // Monotonic time since an arbitrary origin, for timers and intervals.
  virtual absl::Duration MonotonicNow() = 0;
};

// The real clocks (CLOCK_REALTIME and CLOCK_MONOTONIC). Thread-safe.
class SystemClock final : public Clock {
 public:
  absl::Time Now() override;
  absl::Duration MonotonicNow() override;
};

// A clock moved by hand, for unit tests. Thread-compatible.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::FromUnixSeconds(1767225600)) : now_(start) {}
  absl::Time Now() override { return now_; }
  absl::Duration MonotonicNow() override { return monotonic_; }
  void Advance(absl::Duration d) {
    now_ += d;
    monotonic_ += d;
  }

 private:
  absl::Time now_;
  absl::Duration monotonic_ = absl::ZeroDuration();
};

// ISO-8601 UTC with 6 fractional digits and a Z suffix, e.g. 2025-03-15T09:12:33.456789Z.
std::string FormatIsoMicros(absl::Time t);

}  // namespace copilot::emulator

#endif  // COPILOT_TESTS_EMULATOR_CLOCK_H_
