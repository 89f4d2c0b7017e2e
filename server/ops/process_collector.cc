#include "server/ops/process_collector.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <fstream>
#include <optional>
#include <sstream>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace copilot::gateway {
namespace {

std::optional<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

prometheus::MetricFamily Family(std::string name, std::string help, prometheus::MetricType type,
                                double value) {
  prometheus::MetricFamily family;
  family.name = std::move(name);
  family.help = std::move(help);
  family.type = type;
  prometheus::ClientMetric metric;
  if (type == prometheus::MetricType::Counter) {
    metric.counter.value = value;
  } else {
    metric.gauge.value = value;
  }
  family.metric.push_back(metric);
  return family;
}

// The system boot time (btime in /proc/stat), seconds since the epoch.
std::optional<double> BootTime() {
  std::optional<std::string> stat = ReadFile("/proc/stat");
  if (!stat.has_value()) return std::nullopt;
  for (absl::string_view line : absl::StrSplit(*stat, '\n')) {
    if (absl::ConsumePrefix(&line, "btime ")) {
      double value = 0;
      if (absl::SimpleAtod(line, &value)) return value;
    }
  }
  return std::nullopt;
}

}  // namespace

std::vector<prometheus::MetricFamily> ProcessCollector::Collect() const {
  using prometheus::MetricType;
  std::vector<prometheus::MetricFamily> families;
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  // /proc/PID/stat: "pid (comm) state ppid ..."; comm may hold spaces, so split after ')'.
  if (std::optional<std::string> stat = ReadFile(proc_dir_ + "/stat"); stat.has_value()) {
    const std::size_t close = stat->rfind(')');
    if (close != std::string::npos && close + 2 < stat->size()) {
      std::vector<absl::string_view> fields =
          absl::StrSplit(absl::string_view(*stat).substr(close + 2), ' ', absl::SkipEmpty());
      // Field numbers of proc(5) minus 3 (fields 1 and 2 are before ')').
      auto field = [&fields](std::size_t number) -> std::optional<double> {
        double value = 0;
        if (number < 3 || number - 3 >= fields.size()) return std::nullopt;
        if (!absl::SimpleAtod(fields[number - 3], &value)) return std::nullopt;
        return value;
      };
      const std::optional<double> utime = field(14);
      const std::optional<double> stime = field(15);
      if (utime && stime && ticks > 0) {
        families.push_back(Family("process_cpu_seconds_total",
                                  "Total user and system CPU time spent in seconds.",
                                  MetricType::Counter, (*utime + *stime) / ticks));
      }
      if (const std::optional<double> threads = field(20)) {
        families.push_back(Family("process_threads", "Number of OS threads in the process.",
                                  MetricType::Gauge, *threads));
      }
      const std::optional<double> start = field(22);
      const std::optional<double> boot = BootTime();
      if (start && boot && ticks > 0) {
        families.push_back(Family("process_start_time_seconds",
                                  "Start time of the process since unix epoch in seconds.",
                                  MetricType::Gauge, *boot + *start / ticks));
      }
      if (const std::optional<double> vsize = field(23)) {
        families.push_back(Family("process_virtual_memory_bytes", "Virtual memory size in bytes.",
                                  MetricType::Gauge, *vsize));
      }
      if (const std::optional<double> rss = field(24)) {
        families.push_back(Family("process_resident_memory_bytes", "Resident memory size in bytes.",
                                  MetricType::Gauge, *rss * page));
      }
    }
  }
  if (DIR* dir = opendir((proc_dir_ + "/fd").c_str()); dir != nullptr) {
    double count = 0;
    while (dirent* entry = readdir(dir)) {
      if (entry->d_name[0] != '.') ++count;
    }
    closedir(dir);
    // Reading our own fd directory holds one descriptor more than the process otherwise has.
    if (proc_dir_ == "/proc/self") count -= 1;
    families.push_back(
        Family("process_open_fds", "Number of open file descriptors.", MetricType::Gauge, count));
  }
  if (std::optional<std::string> limits = ReadFile(proc_dir_ + "/limits"); limits.has_value()) {
    for (absl::string_view line : absl::StrSplit(*limits, '\n')) {
      if (!absl::ConsumePrefix(&line, "Max open files")) continue;
      std::vector<absl::string_view> parts = absl::StrSplit(line, ' ', absl::SkipEmpty());
      double soft = 0;
      if (!parts.empty() && absl::SimpleAtod(parts[0], &soft)) {
        families.push_back(Family("process_max_fds", "Maximum number of open file descriptors.",
                                  MetricType::Gauge, soft));
      }
    }
  }
  return families;
}

}  // namespace copilot::gateway
