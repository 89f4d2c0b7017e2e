// A LimitStore that can never decide, like RedisLimitStore while Redis is unreachable.
#ifndef COPILOT_GATEWAY_TESTS_SERVER_LIMITS_UNREACHABLE_STORE_H_
#define COPILOT_GATEWAY_TESTS_SERVER_LIMITS_UNREACHABLE_STORE_H_

#include <string>
#include <utility>
#include <vector>

#include "server/limits/limit_store.h"

namespace copilot::gateway::testing {

class UnreachableStore final : public LimitStore {
 public:
  void TakeRate(const std::string&, const RateLimit&, StoreCallback<StepResult> done) override {
    std::move(done)(Refused());
  }
  void TakeWindows(const std::string&, const std::vector<WindowLimit>&,
                   StoreCallback<StepResult> done) override {
    std::move(done)(Refused());
  }
  void AcquireSlot(const std::string&, int64_t, absl::Duration,
                   StoreCallback<SlotResult> done) override {
    std::move(done)(Refused());
  }
  void ReleaseSlot(const std::string&, const std::string&) override {}
  void AddToCounters(const std::string&, const std::vector<CounterStep>&,
                     StoreCallback<CounterResult> done) override {
    std::move(done)(Refused());
  }

 private:
  static absl::Status Refused() { return absl::UnavailableError("redis: connection refused"); }
};

}  // namespace copilot::gateway::testing

#endif  // COPILOT_GATEWAY_TESTS_SERVER_LIMITS_UNREACHABLE_STORE_H_
