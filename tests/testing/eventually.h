// Waiting for something another thread or process does, without a fixed sleep.
#ifndef COPILOT_GATEWAY_TESTS_TESTING_EVENTUALLY_H_
#define COPILOT_GATEWAY_TESTS_TESTING_EVENTUALLY_H_

#include <functional>

#include "absl/time/time.h"

namespace copilot::gateway::testing {

// Polls `condition` every `poll` (real time) until it holds or `timeout` has passed; true when
// it held. It is always asked at least once, and once more at the timeout. Runs `condition` on
// the calling thread only.
bool Eventually(std::function<bool()> condition, absl::Duration timeout = absl::Seconds(5),
                absl::Duration poll = absl::Milliseconds(10));

}  // namespace copilot::gateway::testing

#endif  // COPILOT_GATEWAY_TESTS_TESTING_EVENTUALLY_H_
