// The number of CPUs this process may use, for sizing thread pools: the CPUs in its affinity
// mask, further limited by a cgroup v2 CPU quota (cpu.max, as Kubernetes sets from a container's
// CPU limit), rounded up. At least 1.
#ifndef COPILOT_GATEWAY_SERVER_COMMON_CPUS_H_
#define COPILOT_GATEWAY_SERVER_COMMON_CPUS_H_

#include <optional>

#include "absl/strings/string_view.h"

namespace copilot::gateway {

int UsableCpus();

// The CPUs a cgroup v2 `cpu.max` line allows ("200000 100000" -> 2, "150000 100000" -> 2,
// "max 100000" -> none). Exposed for tests.
std::optional<int> CpusFromCgroupCpuMax(absl::string_view cpu_max);

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_COMMON_CPUS_H_
