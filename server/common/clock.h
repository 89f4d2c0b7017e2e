// Time as a dependency: logic asks a Clock, never absl::Now() directly, so tests move time by
// hand.
#ifndef COPILOT_GATEWAY_SERVER_COMMON_CLOCK_H_
#define COPILOT_GATEWAY_SERVER_COMMON_CLOCK_H_

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace copilot::gateway {

// The current time. Implementations are thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
};

// The system's wall clock. Thread-safe; stateless.
class SystemClock final : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_COMMON_CLOCK_H_
