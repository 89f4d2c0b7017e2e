// Reads values out of collected Prometheus metric families, for the ops tests.
#ifndef COPILOT_TESTS_SERVER_OPS_METRIC_VALUES_H_
#define COPILOT_TESTS_SERVER_OPS_METRIC_VALUES_H_

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace copilot::gateway::ops_testing {

using LabelMap = std::map<std::string, std::string>;

// One Collect() of a registry or collector, frozen. Thread-compatible.
class MetricValues {
 public:
  explicit MetricValues(const prometheus::Collectable& source) : families_(source.Collect()) {}

  const std::vector<prometheus::MetricFamily>& families() const { return families_; }

  // The family called `name`, or null.
  const prometheus::MetricFamily* Family(const std::string& name) const {
    for (const prometheus::MetricFamily& family : families_) {
      if (family.name == name) return &family;
    }
    return nullptr;
  }

  // The series of family `name` whose labels are exactly `labels`, or null.
  const prometheus::ClientMetric* Series(const std::string& name, const LabelMap& labels) const {
    const prometheus::MetricFamily* family = Family(name);
    if (family == nullptr) return nullptr;
    for (const prometheus::ClientMetric& metric : family->metric) {
      if (Labels(metric) == labels) return &metric;
    }
    return nullptr;
  }

  // The value of a counter or gauge series; nullopt when it does not exist.
  std::optional<double> Counter(const std::string& name, const LabelMap& labels = {}) const {
    const prometheus::ClientMetric* metric = Series(name, labels);
    if (metric == nullptr) return std::nullopt;
    return metric->counter.value;
  }
  std::optional<double> Gauge(const std::string& name, const LabelMap& labels = {}) const {
    const prometheus::ClientMetric* metric = Series(name, labels);
    if (metric == nullptr) return std::nullopt;
    return metric->gauge.value;
  }
  // A histogram series; nullopt when it does not exist.
  std::optional<prometheus::ClientMetric::Histogram> Histogram(const std::string& name,
                                                               const LabelMap& labels) const {
    const prometheus::ClientMetric* metric = Series(name, labels);
    if (metric == nullptr) return std::nullopt;
    return metric->histogram;
  }

  static LabelMap Labels(const prometheus::ClientMetric& metric) {
    LabelMap labels;
    for (const prometheus::ClientMetric::Label& label : metric.label) {
      labels[label.name] = label.value;
    }
    return labels;
  }

 private:
  std::vector<prometheus::MetricFamily> families_;
};

}  // namespace copilot::gateway::ops_testing

#endif  // COPILOT_TESTS_SERVER_OPS_METRIC_VALUES_H_
