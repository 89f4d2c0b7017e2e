// Admission of upstream calls: a tenant's rate limit per class of call, its cap on concurrent
// answer generations, then the global upstream budget (the upstream tier's RPS and RPM windows).
// When only the budget is momentarily spent, a call waits (bounded by max_wait and its deadline)
// and waiting calls are served fairly between tenants, by weight: one tenant's burst cannot
// starve another. An upstream 429 holds its class's budget until Retry-After.
#ifndef COPILOT_GATEWAY_SERVER_LIMITS_ADMISSION_CONTROLLER_H_
#define COPILOT_GATEWAY_SERVER_LIMITS_ADMISSION_CONTROLLER_H_

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/common/clock.h"
#include "server/limits/limit_events.h"
#include "server/limits/limit_store.h"

namespace copilot::gateway {

// The global upstream budget. Defaults: haufe-api.md section 9 (trial tier 0).
struct BudgetConfig {
  std::vector<WindowLimit> answer = {{15, absl::Seconds(1)}, {60, absl::Seconds(60)}};
  std::vector<WindowLimit> other = {{60, absl::Seconds(1)}, {180, absl::Seconds(60)}};
  // A call waits at most this long for the budget (and never past its deadline).
  absl::Duration max_wait = absl::Seconds(10);
  // Lifetime of a concurrency lease (frees the slots of a replica that died); above the
  // longest call.
  absl::Duration slot_ttl = absl::Minutes(6);
  // An upstream 429's Retry-After holds calls at most this long (a hostile or broken upstream
  // could ask for years).
  absl::Duration max_retry_after = absl::Seconds(60);
};

// Held by an admitted call while it runs; destroying it frees its concurrency slot.
class Permit {
 public:
  virtual ~Permit() = default;
};

using AdmitCallback = absl::AnyInvocable<void(absl::StatusOr<std::unique_ptr<Permit>>) &&>;

// Cancels an admission that is still deciding or waiting (its callback then gets CANCELLED).
class AdmissionTicket {
 public:
  virtual ~AdmissionTicket() = default;
  virtual void Cancel() = 0;
};

// Thread-safe; never blocks its callers: decisions run inline (local store) or on the store's
// thread, and waiting calls are woken by the controller's one scheduler thread.
class AdmissionController {
 public:
  // `store`, `clock` and `events` (may be null) must outlive the controller. `fallback` (may be
  // null) decides instead of `store` when it fails (fail-open with the replica's share of each
  // limit, `fallback_share`); without it a failing store refuses calls (fail-closed).
  AdmissionController(LimitStore& store, const Clock& clock, BudgetConfig budget,
                      AdmissionEvents* events = nullptr, LimitStore* fallback = nullptr,
                      double fallback_share = 1.0);
  // Stops the scheduler; calls still waiting get RESOURCE_EXHAUSTED.
  ~AdmissionController();
  AdmissionController(const AdmissionController&) = delete;
  AdmissionController& operator=(const AdmissionController&) = delete;

  // Admits one call of `tenant` (a configured ID) and `klass` that must start before
  // `deadline`, to be sent with the upstream API key identified by `upstream_key` (a digest, see
  // UpstreamKeyId; only a 429 hold is per key). `done` runs exactly once: with a Permit, or
  // RESOURCE_EXHAUSTED with QuotaFailure (which limit) and RetryInfo (when a retry can succeed), or
  // UNAVAILABLE when the shared store is unreachable and the mode is fail-closed.
  std::shared_ptr<AdmissionTicket> Admit(const std::string& tenant, const TenantLimits& limits,
                                         CallClass klass, absl::Time deadline, AdmitCallback done,
                                         const std::string& upstream_key = "");
  // Like Admit, against the tenant's own limits only (its rate for `klass`, its answer
  // concurrency slot), never the upstream budget: for a call that makes no upstream request
  // (a request_id retry waiting for its first attempt). Not counted as admitted in flight.
  std::shared_ptr<AdmissionTicket> AdmitTenantOnly(const std::string& tenant,
                                                   const TenantLimits& limits, CallClass klass,
                                                   absl::Time deadline, AdmitCallback done);

  // The upstream answered 429 to a call made with `upstream_key`: no call of `klass` with that
  // key goes upstream for `retry_after`, capped at BudgetConfig::max_retry_after. Calls with
  // other keys (tenants with keys of their own) are not held.
  void HoldBudget(CallClass klass, absl::Duration retry_after,
                  const std::string& upstream_key = "");
  // The 429 holds in force now, one per call class and upstream key held
  // (copilot_gateway_upstream_holds).
  int holds() const;

 private:
  struct Pending;
  class Ticket;
  class SlotPermit;
  struct ClassQueue {
    std::map<std::string, std::deque<std::shared_ptr<Pending>>> tenants;
    std::map<std::string, double> pass;  // Weighted fair queueing: next is the lowest pass.
    double virtual_time = 0;
    absl::Time next_try = absl::InfinitePast();
    // Upstream key -> end of its 429 hold.
    std::map<std::string, absl::Time> held_until;
    absl::Time HeldUntil(const std::string& key) const {
      auto it = held_until.find(key);
      return it == held_until.end() ? absl::InfinitePast() : it->second;
    }
    bool probing = false;
  };

  // The steps, each continuing in the store's callback.
  void CheckRate(std::shared_ptr<Pending> pending);
  void CheckConcurrency(std::shared_ptr<Pending> pending);
  void CheckBudget(std::shared_ptr<Pending> pending);
  // Queues `pending` for the budget when it may wait until `earliest`; refuses it otherwise.
  void WaitOrRefuse(std::shared_ptr<Pending> pending, absl::Time earliest);
  void Refuse(Pending& pending, absl::string_view limit, absl::string_view subject,
              absl::string_view description, absl::Duration retry_after);
  void Admitted(Pending& pending);
  std::shared_ptr<AdmissionTicket> Start(const std::string& tenant, const TenantLimits& limits,
                                         CallClass klass, absl::Time deadline, bool tenant_only,
                                         AdmitCallback done, const std::string& upstream_key);
  void Finish(Pending& pending, absl::StatusOr<std::unique_ptr<Permit>> result);
  // The admission has finished (the caller cancelled, or a step decided): no later step runs.
  static bool Ended(Pending& pending);
  const std::vector<WindowLimit>& Windows(CallClass klass) const;
  std::vector<WindowLimit> Share(const std::vector<WindowLimit>& windows) const;
  RateLimit Share(const RateLimit& limit) const;
  void Decided(const Pending& pending, absl::string_view limit, absl::string_view decision);
  void SchedulerLoop();
  // Under mu_: starts one budget probe for the fairest waiter of `klass` whose key is not held;
  // otherwise returns when the first hold ends.
  absl::Time ProbeLocked(CallClass klass) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnProbe(CallClass klass, std::shared_ptr<Pending> pending, StepResult result);

  LimitStore& store_;
  const Clock& clock_;
  const BudgetConfig budget_;
  AdmissionEvents* const events_;
  LimitStore* const fallback_;
  const double fallback_share_;

  mutable absl::Mutex mu_;
  ClassQueue queues_[2] ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool wake_ ABSL_GUARDED_BY(mu_) = false;
  std::thread scheduler_;
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_LIMITS_ADMISSION_CONTROLLER_H_
