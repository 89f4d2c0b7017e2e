// WaiterAdmission (server/core/waiter_admission.h) over the AdmissionController: a request_id
// retry that waits for its first attempt takes the tenant's rate for its class and, for answer
// generation, one of its concurrency slots until the wait ends; never the upstream budget.
#ifndef COPILOT_GATEWAY_SERVER_LIMITS_TENANT_WAITER_ADMISSION_H_
#define COPILOT_GATEWAY_SERVER_LIMITS_TENANT_WAITER_ADMISSION_H_

#include <memory>

#include "server/core/waiter_admission.h"
#include "server/limits/admission_controller.h"

namespace copilot::gateway {

// Thread-safe; never blocks. `admission` must outlive it.
class TenantWaiterAdmission final : public WaiterAdmission {
 public:
  explicit TenantWaiterAdmission(AdmissionController& admission) : admission_(admission) {}
  std::shared_ptr<UpstreamCall> Admit(const Tenant& tenant, bool answer, absl::Time deadline,
                                      Done done) override;

 private:
  AdmissionController& admission_;
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_LIMITS_TENANT_WAITER_ADMISSION_H_
