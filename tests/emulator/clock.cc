#include "tests/emulator/clock.h"

#include <ctime>

#include "absl/time/clock.h"

namespace copilot::emulator {

absl::Time SystemClock::Now() { return ::absl::Now(); }

absl::Duration SystemClock::MonotonicNow() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return absl::DurationFromTimespec(ts);
}

std::string FormatIsoMicros(absl::Time t) {
  return absl::FormatTime("%Y-%m-%d%ET%H:%M:%E6SZ", t, absl::UTCTimeZone());
}

}  // namespace copilot::emulator
