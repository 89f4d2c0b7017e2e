#include "server/limits/tenant_waiter_admission.h"

#include <utility>

namespace copilot::gateway {
namespace {

// The waiter's hold on the tenant's limits: its Permit (concurrency slot).
class PermitLease final : public AdmissionLease {
 public:
  explicit PermitLease(std::unique_ptr<Permit> permit) : permit_(std::move(permit)) {}

 private:
  std::unique_ptr<Permit> permit_;
};

// Cancels the admission while it is still deciding.
class TicketCall final : public UpstreamCall {
 public:
  explicit TicketCall(std::shared_ptr<AdmissionTicket> ticket) : ticket_(std::move(ticket)) {}
  void Cancel() override { ticket_->Cancel(); }
  void Resume() override {}

 private:
  const std::shared_ptr<AdmissionTicket> ticket_;
};

}  // namespace

std::shared_ptr<UpstreamCall> TenantWaiterAdmission::Admit(const Tenant& tenant, bool answer,
                                                           absl::Time deadline, Done done) {
  return std::make_shared<TicketCall>(admission_.AdmitTenantOnly(
      tenant.id, tenant.limits, answer ? CallClass::kAnswer : CallClass::kOther, deadline,
      [done = std::move(done)](absl::StatusOr<std::unique_ptr<Permit>> permit) mutable {
        if (!permit.ok()) return std::move(done)(permit.status());
        std::move(done)(std::make_unique<PermitLease>(*std::move(permit)));
      }));
}

}  // namespace copilot::gateway
