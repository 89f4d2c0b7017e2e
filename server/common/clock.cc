#include "server/common/clock.h"

#include <chrono>

#include "absl/time/clock.h"

namespace copilot::gateway {
namespace {

// One epoch for the process: the wall time when it was first asked for, so monotonic values
// read like times near the start (in logs and debuggers) and every SystemClock agrees.
struct MonotonicEpoch {
  absl::Time wall = absl::Now();
  std::chrono::steady_clock::time_point steady = std::chrono::steady_clock::now();
};

const MonotonicEpoch& Epoch() {
  static const MonotonicEpoch epoch;
  return epoch;
}

}  // namespace

absl::Time SystemClock::Now() const { return absl::Now(); }

absl::Time SystemClock::Monotonic() const {
  const MonotonicEpoch& epoch = Epoch();
  return epoch.wall + absl::FromChrono(std::chrono::steady_clock::now() - epoch.steady);
}

bool SystemClock::AwaitUntil(absl::Mutex& mu, const absl::Condition& condition,
                             absl::Time until) const {
  // absl waits on its own clock; the remaining interval is what carries over.
  return mu.AwaitWithTimeout(condition, until - Monotonic());
}

}  // namespace copilot::gateway
