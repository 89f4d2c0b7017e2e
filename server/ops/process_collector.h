// The standard process_* metrics of the Prometheus client libraries (CPU, memory, file
// descriptors, threads, start time), which prometheus-cpp lacks, read from /proc/self on every
// scrape.
#ifndef COPILOT_GATEWAY_SERVER_OPS_PROCESS_COLLECTOR_H_
#define COPILOT_GATEWAY_SERVER_OPS_PROCESS_COLLECTOR_H_

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include <string>
#include <vector>

namespace copilot::gateway {

// Thread-safe (stateless apart from `proc_dir`). A value that cannot be read is left out.
class ProcessCollector final : public prometheus::Collectable {
 public:
  // `proc_dir`: the process's /proc directory (tests may point it at another process).
  explicit ProcessCollector(std::string proc_dir = "/proc/self") : proc_dir_(std::move(proc_dir)) {}

  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  const std::string proc_dir_;
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_OPS_PROCESS_COLLECTOR_H_
