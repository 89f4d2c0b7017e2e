// Where GetUsage reads a tenant's usage and quotas from (the quota ledger, server/limits/).
#ifndef COPILOT_GATEWAY_SERVER_CORE_USAGE_READER_H_
#define COPILOT_GATEWAY_SERVER_CORE_USAGE_READER_H_

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "copilot/v1/copilot_service.pb.h"
#include "server/common/tenant.h"

namespace copilot::gateway {

// Thread-safe; never blocks. `done` runs exactly once, inline or on the store's thread.
class UsageReader {
 public:
  virtual ~UsageReader() = default;
  // `tenant`'s usage in the current day and month (tenant_id left for the caller to set).
  virtual void ReadUsage(
      const Tenant& tenant,
      absl::AnyInvocable<void(absl::StatusOr<copilot::v1::GetUsageResponse>) &&> done) = 0;
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_CORE_USAGE_READER_H_
