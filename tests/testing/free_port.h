// A free TCP port on 127.0.0.1 for servers tests start (redis-server, a forward proxy): bound
// and released, so another process could take it meanwhile; launchers retry on a failed bind.
#ifndef COPILOT_GATEWAY_TESTS_TESTING_FREE_PORT_H_
#define COPILOT_GATEWAY_TESTS_TESTING_FREE_PORT_H_

#include "absl/status/statusor.h"

namespace copilot::gateway::testing {

absl::StatusOr<int> FreeLoopbackPort();

}  // namespace copilot::gateway::testing

#endif  // COPILOT_GATEWAY_TESTS_TESTING_FREE_PORT_H_
