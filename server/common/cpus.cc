#include "server/common/cpus.h"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace copilot::gateway {
namespace {

int AffinityCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  const long online = sysconf(_SC_NPROCESSORS_ONLN);
  return online > 0 ? static_cast<int>(online) : 1;
}

// The cgroup v2 path of this process ("0::/kubepods/..." in /proc/self/cgroup).
std::optional<std::string> OwnCgroupPath() {
  std::ifstream in("/proc/self/cgroup");
  std::string line;
  while (std::getline(in, line)) {
    if (absl::StartsWith(line, "0::")) return line.substr(3);
  }
  return std::nullopt;
}

std::optional<int> CgroupQuotaCpus() {
  const std::optional<std::string> own = OwnCgroupPath();
  if (!own.has_value()) return std::nullopt;
  // The quota in force is the smallest on the way from this cgroup up to the root. Inside a
  // container the cgroup namespace usually makes the own path "/".
  std::optional<int> smallest;
  std::string path = *own;
  while (true) {
    std::ifstream in(absl::StrCat("/sys/fs/cgroup", path == "/" ? "" : path, "/cpu.max"));
    std::stringstream text;
    text << in.rdbuf();
    if (in) {
      if (std::optional<int> cpus = CpusFromCgroupCpuMax(text.str()); cpus.has_value()) {
        smallest = smallest.has_value() ? std::min(*smallest, *cpus) : *cpus;
      }
    }
    if (path.empty() || path == "/") break;
    const std::size_t slash = path.rfind('/');
    path = slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
  }
  return smallest;
}

}  // namespace

std::optional<int> CpusFromCgroupCpuMax(absl::string_view cpu_max) {
  std::vector<absl::string_view> fields =
      absl::StrSplit(absl::StripAsciiWhitespace(cpu_max), ' ', absl::SkipEmpty());
  if (fields.size() != 2 || fields[0] == "max") return std::nullopt;
  uint64_t quota = 0;
  uint64_t period = 0;
  if (!absl::SimpleAtoi(fields[0], &quota) || !absl::SimpleAtoi(fields[1], &period) ||
      period == 0 || quota == 0) {
    return std::nullopt;
  }
  const uint64_t cpus = (quota + period - 1) / period;
  return static_cast<int>(std::min<uint64_t>(cpus, 4096));
}

int UsableCpus() {
  int cpus = AffinityCpus();
  if (std::optional<int> quota = CgroupQuotaCpus(); quota.has_value())
    cpus = std::min(cpus, *quota);
  return std::max(1, cpus);
}

}  // namespace copilot::gateway
