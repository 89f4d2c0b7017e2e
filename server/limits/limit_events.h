// What the limits report to operations (GatewayMetrics implements and reads these), apart from
// the controller and the ledger that produce them, so that metrics need not include either.
#ifndef COPILOT_GATEWAY_SERVER_LIMITS_LIMIT_EVENTS_H_
#define COPILOT_GATEWAY_SERVER_LIMITS_LIMIT_EVENTS_H_

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/common/limit_types.h"

namespace copilot::gateway {

// What the controller reports (GatewayMetrics implements it). Thread-safe implementations.
class AdmissionEvents {
 public:
  virtual ~AdmissionEvents() = default;
  // `limit`: tenant_rate, tenant_concurrency, upstream_budget; `decision`: allowed, limited,
  // degraded (decided without the shared store).
  virtual void Decided(const std::string& tenant, absl::string_view limit,
                       absl::string_view decision) = 0;
  // A call waited this long for the budget (admitted or not).
  virtual void Waited(CallClass klass, absl::Duration wait) = 0;
  // Admitted calls of `klass` in flight changed by `delta`.
  virtual void InFlight(CallClass klass, int delta) = 0;
};

// What the request_id store shared by the replicas reports (RedisRequestIds; GatewayMetrics
// implements it). Thread-safe implementations.
class SharedRequestIdEvents {
 public:
  virtual ~SharedRequestIdEvents() = default;
  // A claim's answer: claimed, remembered, in_flight, reused, unknown or unavailable.
  virtual void SharedRequestIdLookup(absl::string_view result) = 0;
};

// The last figures seen for one of a tenant's quotas (for gauges and alerts).
struct QuotaSample {
  std::string tenant;
  std::string quota;  // "answers_per_day", "characters_per_month", ...
  int64_t used = 0;
  int64_t limit = 0;
  absl::Time period_end;
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_LIMITS_LIMIT_EVENTS_H_
