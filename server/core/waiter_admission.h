// Admission of a request_id retry that waits for its first attempt (RequestIdStore): such a
// retry makes no upstream call, but it is still a call of its tenant, so it counts against the
// tenant's own limits: its rate for the class of call and, for answer generation, a concurrency
// slot held while it waits. Never against the upstream budget.
#ifndef COPILOT_GATEWAY_SERVER_CORE_WAITER_ADMISSION_H_
#define COPILOT_GATEWAY_SERVER_CORE_WAITER_ADMISSION_H_

#include <memory>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/common/tenant.h"
#include "server/core/request_id_store.h"
#include "server/upstream/haufe_api.h"

namespace copilot::gateway {

// Implementations are thread-safe and never block (server/limits/tenant_waiter_admission.h).
class WaiterAdmission {
 public:
  using Done = absl::AnyInvocable<void(absl::StatusOr<std::unique_ptr<AdmissionLease>>) &&>;
  virtual ~WaiterAdmission() = default;
  // Admits one waiting retry of `tenant` (`answer`: Run or Complete, else CreateThread or
  // AddMessage) that must be decided before `deadline`. `done` runs exactly once, possibly
  // inline: with the lease to hold while waiting, or the refusal (RESOURCE_EXHAUSTED with
  // QuotaFailure and RetryInfo). The returned call cancels a pending decision.
  virtual std::shared_ptr<UpstreamCall> Admit(const Tenant& tenant, bool answer,
                                              absl::Time deadline, Done done) = 0;
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_CORE_WAITER_ADMISSION_H_
