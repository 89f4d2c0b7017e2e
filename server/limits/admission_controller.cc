#include "server/limits/admission_controller.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/common/errors.h"

namespace copilot::gateway {
namespace {

// UNAVAILABLE, reason "limit_store_unavailable": the store holding `limit` (Redis, fail-closed)
// could not decide. The store's own text (its address, the socket or TLS error) is for the log
// only: it goes in the internal detail, which the call's log line shows and callers never see.
absl::Status StoreUnavailable(absl::string_view limit, const absl::Status& cause) {
  absl::Status status =
      MakeError(absl::StatusCode::kUnavailable,
                absl::StrCat(limit, " limits unavailable: the shared limit store did not answer"),
                "limit_store_unavailable", {{"limit", std::string(limit)}});
  SetInternalDetail(status, cause.message());
  return status;
}

}  // namespace

// One admission in progress. Its callback runs once (Finish), whichever thread gets there first.
struct AdmissionController::Pending {
  std::string tenant;
  TenantLimits limits;
  CallClass klass = CallClass::kOther;
  bool tenant_only = false;  // Skips the upstream budget (AdmitTenantOnly).
  std::string upstream_key;  // Which key's 429 hold applies.
  absl::Time give_up;        // min(deadline, arrival + max_wait), monotonic.
  absl::Time wait_start = absl::InfiniteFuture();

  absl::Mutex mu;
  AdmitCallback done ABSL_GUARDED_BY(mu);
  bool finished ABSL_GUARDED_BY(mu) = false;
  // The concurrency slot taken (released unless handed to a Permit). Key and lease are written
  // before slot_store is published under mu.
  LimitStore* slot_store ABSL_GUARDED_BY(mu) = nullptr;
  std::string slot_key;
  std::string lease;
};

class AdmissionController::Ticket final : public AdmissionTicket {
 public:
  Ticket(AdmissionController& controller, std::weak_ptr<Pending> pending)
      : controller_(controller), pending_(std::move(pending)) {}
  void Cancel() override {
    if (std::shared_ptr<Pending> pending = pending_.lock()) {
      controller_.Finish(*pending, CancelledByCaller());
    }
  }

 private:
  AdmissionController& controller_;
  const std::weak_ptr<Pending> pending_;
};

// Frees the call's concurrency slot (if it took one) when the call ends.
class AdmissionController::SlotPermit final : public Permit {
 public:
  SlotPermit(LimitStore* store, std::string key, std::string lease, AdmissionEvents* events,
             CallClass klass)
      : store_(store),
        key_(std::move(key)),
        lease_(std::move(lease)),
        events_(events),
        klass_(klass) {
    if (events_ != nullptr) events_->InFlight(klass_, 1);
  }
  ~SlotPermit() override {
    if (store_ != nullptr) store_->ReleaseSlot(key_, lease_);
    if (events_ != nullptr) events_->InFlight(klass_, -1);
  }

 private:
  LimitStore* const store_;
  const std::string key_;
  const std::string lease_;
  AdmissionEvents* const events_;
  const CallClass klass_;
};

AdmissionController::AdmissionController(LimitStore& store, const Clock& clock, BudgetConfig budget,
                                         AdmissionEvents* events, LimitStore* fallback,
                                         double fallback_share)
    : store_(store),
      clock_(clock),
      budget_(std::move(budget)),
      events_(events),
      fallback_(fallback),
      fallback_share_(fallback_share) {
  scheduler_ = std::thread([this] { SchedulerLoop(); });
}

AdmissionController::~AdmissionController() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  scheduler_.join();
  std::vector<std::shared_ptr<Pending>> waiting;
  {
    absl::MutexLock lock(&mu_);
    for (ClassQueue& queue : queues_) {
      for (auto& [tenant, calls] : queue.tenants) {
        waiting.insert(waiting.end(), calls.begin(), calls.end());
      }
      queue.tenants.clear();
    }
  }
  for (const std::shared_ptr<Pending>& pending : waiting) {
    Refuse(*pending, "upstream_budget", "upstream", "the gateway is shutting down",
           absl::Seconds(1));
  }
}

const std::vector<WindowLimit>& AdmissionController::Windows(CallClass klass) const {
  return klass == CallClass::kAnswer ? budget_.answer : budget_.other;
}

std::vector<WindowLimit> AdmissionController::Share(const std::vector<WindowLimit>& windows) const {
  std::vector<WindowLimit> shared = windows;
  for (WindowLimit& window : shared) {
    if (window.max_requests > 0) {
      window.max_requests = std::max<int64_t>(
          1, static_cast<int64_t>(std::floor(window.max_requests * fallback_share_)));
    }
  }
  return shared;
}

RateLimit AdmissionController::Share(const RateLimit& limit) const {
  RateLimit shared = limit;
  shared.per_second = limit.per_second * fallback_share_;
  shared.burst =
      std::max<int64_t>(1, static_cast<int64_t>(std::floor(limit.burst * fallback_share_)));
  return shared;
}

std::shared_ptr<AdmissionTicket> AdmissionController::Admit(const std::string& tenant,
                                                            const TenantLimits& limits,
                                                            CallClass klass, absl::Time deadline,
                                                            AdmitCallback done,
                                                            const std::string& upstream_key) {
  return Start(tenant, limits, klass, deadline, /*tenant_only=*/false, std::move(done),
               upstream_key);
}

std::shared_ptr<AdmissionTicket> AdmissionController::AdmitTenantOnly(const std::string& tenant,
                                                                      const TenantLimits& limits,
                                                                      CallClass klass,
                                                                      absl::Time deadline,
                                                                      AdmitCallback done) {
  return Start(tenant, limits, klass, deadline, /*tenant_only=*/true, std::move(done), "");
}

std::shared_ptr<AdmissionTicket> AdmissionController::Start(const std::string& tenant,
                                                            const TenantLimits& limits,
                                                            CallClass klass, absl::Time deadline,
                                                            bool tenant_only, AdmitCallback done,
                                                            const std::string& upstream_key) {
  auto pending = std::make_shared<Pending>();
  pending->upstream_key = upstream_key;
  pending->tenant = tenant;
  pending->limits = limits;
  pending->klass = klass;
  pending->tenant_only = tenant_only;
  // The deadline is wall time (as gRPC gives it); what is left of it carries over to the
  // monotonic clock every wait here is measured on.
  pending->give_up = clock_.Monotonic() + std::min(deadline - clock_.Now(), budget_.max_wait);
  {
    absl::MutexLock lock(&pending->mu);
    pending->done = std::move(done);
  }
  auto ticket = std::make_shared<Ticket>(*this, pending);
  CheckRate(std::move(pending));
  return ticket;
}

bool AdmissionController::Ended(Pending& pending) {
  absl::MutexLock lock(&pending.mu);
  return pending.finished;
}

void AdmissionController::Decided(const Pending& pending, absl::string_view limit,
                                  absl::string_view decision) {
  if (events_ != nullptr) events_->Decided(pending.tenant, limit, decision);
}

void AdmissionController::CheckRate(std::shared_ptr<Pending> pending) {
  const RateLimit& limit = pending->klass == CallClass::kAnswer ? pending->limits.answer_rate
                                                                : pending->limits.other_rate;
  if (limit.per_second <= 0) return CheckConcurrency(std::move(pending));
  const std::string key =
      absl::StrCat("tenant:", pending->tenant, ":", CallClassName(pending->klass));
  auto decide = [this, pending, limit](absl::StatusOr<StepResult> result, bool degraded) {
    if (Ended(*pending)) return;  // Cancelled while the store answered: no further step.
    if (!result.ok()) {
      Finish(*pending, StoreUnavailable("tenant_rate", result.status()));
      return;
    }
    if (!result->allowed) {
      Refuse(*pending, "tenant_rate", absl::StrCat("tenant:", pending->tenant),
             absl::StrCat("rate limit of ", limit.per_second, " ", CallClassName(pending->klass),
                          " calls per second (burst ", limit.burst, ") exceeded"),
             result->retry_after);
      return;
    }
    Decided(*pending, "tenant_rate", degraded ? "degraded" : "allowed");
    CheckConcurrency(pending);
  };
  store_.TakeRate(
      key, limit, [this, key, limit, decide](absl::StatusOr<StepResult> result) mutable {
        if (result.ok() || fallback_ == nullptr) return decide(std::move(result), false);
        fallback_->TakeRate(key, Share(limit), [decide](absl::StatusOr<StepResult> local) mutable {
          decide(std::move(local), true);
        });
      });
}

void AdmissionController::CheckConcurrency(std::shared_ptr<Pending> pending) {
  const int64_t max = pending->limits.max_concurrent_answers;
  if (pending->klass != CallClass::kAnswer || max <= 0) {
    if (pending->tenant_only) return Admitted(*pending);
    return CheckBudget(std::move(pending));
  }
  const std::string key = absl::StrCat("tenant:", pending->tenant, ":answer");
  auto decide = [this, pending, key, max](absl::StatusOr<SlotResult> result, LimitStore* store) {
    if (!result.ok()) {
      Finish(*pending, StoreUnavailable("tenant_concurrency", result.status()));
      return;
    }
    if (!result->acquired) {
      Refuse(*pending, "tenant_concurrency", absl::StrCat("tenant:", pending->tenant),
             absl::StrCat("at most ", max, " answer generations in flight"), absl::Seconds(1));
      return;
    }
    bool ended = false;
    {
      absl::MutexLock lock(&pending->mu);
      // Cancelled while the store answered (Redis answers on its own thread): Finish has run
      // and will not release a slot recorded now, so the slot goes back at once. Recorded
      // instead, it stayed taken until its lease expired (slot_ttl, 6 minutes), on every
      // replica, once the budget then refused or queued the ended call.
      ended = pending->finished;
      if (!ended) {
        pending->slot_key = key;
        pending->lease = result->lease_id;
        pending->slot_store = store;
      }
    }
    if (ended) {
      store->ReleaseSlot(key, result->lease_id);
      return;
    }
    Decided(*pending, "tenant_concurrency", store == &store_ ? "allowed" : "degraded");
    if (pending->tenant_only) return Admitted(*pending);
    CheckBudget(pending);
  };
  store_.AcquireSlot(
      key, max, budget_.slot_ttl,
      [this, key, max, decide](absl::StatusOr<SlotResult> result) mutable {
        if (result.ok() || fallback_ == nullptr) return decide(std::move(result), &store_);
        const int64_t share =
            std::max<int64_t>(1, static_cast<int64_t>(std::floor(max * fallback_share_)));
        fallback_->AcquireSlot(key, share, budget_.slot_ttl,
                               [this, decide](absl::StatusOr<SlotResult> local) mutable {
                                 decide(std::move(local), fallback_);
                               });
      });
}

void AdmissionController::CheckBudget(std::shared_ptr<Pending> pending) {
  const CallClass klass = pending->klass;
  bool queue_up = false;
  absl::Time earliest = clock_.Monotonic();
  {
    absl::MutexLock lock(&mu_);
    ClassQueue& queue = queues_[static_cast<int>(klass)];
    bool waiters = false;
    for (const auto& [tenant, calls] : queue.tenants) waiters = waiters || !calls.empty();
    const absl::Time held = queue.HeldUntil(pending->upstream_key);
    if (waiters || held > earliest) {
      // Behind those already waiting (fairness), or while the upstream asked us to hold.
      queue_up = true;
      earliest = std::max({earliest, held, queue.next_try});
    }
  }
  if (queue_up) return WaitOrRefuse(std::move(pending), earliest);
  const std::string key = absl::StrCat("upstream:", CallClassName(klass));
  auto decide = [this, pending](absl::StatusOr<StepResult> result, bool degraded) mutable {
    if (!result.ok()) {
      Finish(*pending, StoreUnavailable("upstream_budget", result.status()));
      return;
    }
    if (result->allowed) {
      Decided(*pending, "upstream_budget", degraded ? "degraded" : "allowed");
      return Admitted(*pending);
    }
    const absl::Time next = clock_.Monotonic() + result->retry_after;
    {
      absl::MutexLock lock(&mu_);
      ClassQueue& queue = queues_[static_cast<int>(pending->klass)];
      queue.next_try = std::max(queue.next_try, next);
    }
    WaitOrRefuse(std::move(pending), next);
  };
  store_.TakeWindows(
      key, Windows(klass), [this, key, klass, decide](absl::StatusOr<StepResult> result) mutable {
        if (result.ok() || fallback_ == nullptr) {
          return decide(std::move(result), false);
        }
        fallback_->TakeWindows(
            key, Share(Windows(klass)),
            [decide](absl::StatusOr<StepResult> local) mutable { decide(std::move(local), true); });
      });
}

void AdmissionController::WaitOrRefuse(std::shared_ptr<Pending> pending, absl::Time earliest) {
  const absl::Time now = clock_.Monotonic();
  if (earliest > pending->give_up) {
    Refuse(*pending, "upstream_budget", "upstream",
           absl::StrCat("upstream budget for ", CallClassName(pending->klass),
                        " calls spent (the upstream tier's limit)"),
           std::max(earliest - now, absl::Milliseconds(1)));
    return;
  }
  absl::MutexLock lock(&mu_);
  ClassQueue& queue = queues_[static_cast<int>(pending->klass)];
  std::deque<std::shared_ptr<Pending>>& calls = queue.tenants[pending->tenant];
  if (calls.empty()) {
    // A tenant that starts waiting joins at the current virtual time: no credit for idleness.
    double& pass = queue.pass[pending->tenant];
    pass = std::max(pass, queue.virtual_time);
  }
  if (pending->wait_start == absl::InfiniteFuture()) pending->wait_start = now;
  calls.push_back(std::move(pending));
  wake_ = true;
}

void AdmissionController::Refuse(Pending& pending, absl::string_view limit,
                                 absl::string_view subject, absl::string_view description,
                                 absl::Duration retry_after) {
  absl::Status status =
      MakeError(absl::StatusCode::kResourceExhausted, description, absl::StrCat(limit, "_exceeded"),
                {{"limit", std::string(limit)}});
  AddQuotaViolation(status, subject, description);
  SetRetryDelay(status, std::max(retry_after, absl::Milliseconds(1)));
  Decided(pending, limit, "limited");
  Finish(pending, std::move(status));
}

void AdmissionController::Admitted(Pending& pending) {
  LimitStore* slot_store;
  {
    absl::MutexLock lock(&pending.mu);
    slot_store = pending.slot_store;
    pending.slot_store = nullptr;  // The permit releases it now.
  }
  std::unique_ptr<Permit> permit =
      std::make_unique<SlotPermit>(slot_store, pending.slot_key, pending.lease,
                                   pending.tenant_only ? nullptr : events_, pending.klass);
  Finish(pending, std::move(permit));
}

void AdmissionController::Finish(Pending& pending, absl::StatusOr<std::unique_ptr<Permit>> result) {
  AdmitCallback done;
  LimitStore* release = nullptr;
  {
    absl::MutexLock lock(&pending.mu);
    if (pending.finished) return;  // A permit handed to nobody releases its slot by itself.
    pending.finished = true;
    done = std::move(pending.done);
    if (!result.ok()) std::swap(release, pending.slot_store);
  }
  if (release != nullptr) release->ReleaseSlot(pending.slot_key, pending.lease);
  if (events_ != nullptr && pending.wait_start != absl::InfiniteFuture()) {
    events_->Waited(pending.klass, clock_.Monotonic() - pending.wait_start);
  }
  std::move(done)(std::move(result));
}

void AdmissionController::HoldBudget(CallClass klass, absl::Duration retry_after,
                                     const std::string& upstream_key) {
  const absl::Time now = clock_.Monotonic();
  const absl::Duration hold =
      std::clamp(retry_after, absl::ZeroDuration(), budget_.max_retry_after);
  absl::MutexLock lock(&mu_);
  ClassQueue& queue = queues_[static_cast<int>(klass)];
  // Holds that are over go (one entry per upstream key at most).
  for (auto it = queue.held_until.begin(); it != queue.held_until.end();) {
    it = it->second <= now ? queue.held_until.erase(it) : std::next(it);
  }
  absl::Time& until =
      queue.held_until.try_emplace(upstream_key, absl::InfinitePast()).first->second;
  until = std::max(until, now + hold);
  wake_ = true;
}

int AdmissionController::holds() const {
  const absl::Time now = clock_.Monotonic();
  absl::MutexLock lock(&mu_);
  int held = 0;
  for (const ClassQueue& queue : queues_) {
    for (const auto& [key, until] : queue.held_until) held += until > now ? 1 : 0;
  }
  return held;
}

void AdmissionController::SchedulerLoop() {
  absl::MutexLock lock(&mu_);
  while (!stop_) {
    const absl::Time now = clock_.Monotonic();
    // Give up on calls that cannot wait any longer, and drop cancelled ones.
    std::vector<std::pair<std::shared_ptr<Pending>, absl::Duration>> expired;
    absl::Time wake = now + absl::Seconds(1);
    for (ClassQueue& queue : queues_) {
      for (auto& [tenant, calls] : queue.tenants) {
        for (auto it = calls.begin(); it != calls.end();) {
          bool finished;
          {
            absl::MutexLock pending_lock(&(*it)->mu);
            finished = (*it)->finished;
          }
          if (finished) {
            it = calls.erase(it);
          } else if ((*it)->give_up <= now) {
            const absl::Time due = std::max(queue.next_try, queue.HeldUntil((*it)->upstream_key));
            expired.emplace_back(*it, std::max(due - now, absl::Milliseconds(1)));
            it = calls.erase(it);
          } else {
            wake = std::min(wake, (*it)->give_up);
            ++it;
          }
        }
      }
    }
    for (int klass = 0; klass < 2; ++klass) {
      ClassQueue& queue = queues_[klass];
      if (queue.probing) continue;
      bool waiters = false;
      for (const auto& [tenant, calls] : queue.tenants) waiters = waiters || !calls.empty();
      if (!waiters) continue;
      if (queue.next_try <= now) {
        // Returns when a held waiter could go, when it found none to probe.
        wake = std::min(wake, ProbeLocked(static_cast<CallClass>(klass)));
      } else {
        wake = std::min(wake, queue.next_try);
      }
    }
    if (!expired.empty()) {
      mu_.Unlock();
      for (auto& [pending, retry_after] : expired) {
        Refuse(*pending, "upstream_budget", "upstream",
               absl::StrCat("upstream budget for ", CallClassName(pending->klass),
                            " calls spent; waited as long as the call allowed"),
               retry_after);
      }
      mu_.Lock();
      continue;
    }
    if (wake_) {
      wake_ = false;
      continue;
    }
    // Sleep until the clock reaches `wake` (a fake clock's time, in tests) or a call wakes us.
    auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_ || wake_; };
    clock_.AwaitUntil(mu_, absl::Condition(&woken), std::max(wake, now + absl::Milliseconds(1)));
  }
}

absl::Time AdmissionController::ProbeLocked(CallClass klass) {
  ClassQueue& queue = queues_[static_cast<int>(klass)];
  const absl::Time now = clock_.Monotonic();
  // The waiting tenant with the lowest pass goes next (weighted fair queueing), among those
  // whose next call's upstream key is not held by a 429.
  std::string chosen;
  double lowest = 0;
  absl::Time first_release = absl::InfiniteFuture();
  for (const auto& [tenant, calls] : queue.tenants) {
    if (calls.empty()) continue;
    const absl::Time held = queue.HeldUntil(calls.front()->upstream_key);
    if (held > now) {
      first_release = std::min(first_release, held);
      continue;
    }
    const double pass = queue.pass[tenant];
    if (chosen.empty() || pass < lowest) {
      chosen = tenant;
      lowest = pass;
    }
  }
  if (chosen.empty()) return first_release;
  std::shared_ptr<Pending> pending = queue.tenants[chosen].front();
  queue.tenants[chosen].pop_front();
  queue.probing = true;
  const std::string key = absl::StrCat("upstream:", CallClassName(klass));
  // The store may answer inline: call it without the lock.
  mu_.Unlock();
  store_.TakeWindows(
      key, Windows(klass), [this, klass, pending](absl::StatusOr<StepResult> result) mutable {
        if (result.ok() || fallback_ == nullptr) {
          return OnProbe(klass, std::move(pending),
                         result.ok() ? *result : StepResult{false, absl::Seconds(1)});
        }
        fallback_->TakeWindows(absl::StrCat("upstream:", CallClassName(klass)),
                               Share(Windows(klass)),
                               [this, klass, pending](absl::StatusOr<StepResult> local) mutable {
                                 OnProbe(klass, std::move(pending),
                                         local.ok() ? *local : StepResult{false, absl::Seconds(1)});
                               });
      });
  mu_.Lock();
  return absl::InfiniteFuture();  // OnProbe wakes the loop.
}

void AdmissionController::OnProbe(CallClass klass, std::shared_ptr<Pending> pending,
                                  StepResult result) {
  {
    absl::MutexLock lock(&mu_);
    ClassQueue& queue = queues_[static_cast<int>(klass)];
    queue.probing = false;
    wake_ = true;
    if (result.allowed) {
      double& pass = queue.pass[pending->tenant];
      queue.virtual_time = std::max(queue.virtual_time, pass);
      pass += 1.0 / std::max(pending->limits.weight, 1e-6);
    } else {
      queue.next_try = std::max(queue.next_try, clock_.Monotonic() + result.retry_after);
      std::deque<std::shared_ptr<Pending>>& calls = queue.tenants[pending->tenant];
      calls.push_front(std::move(pending));
      return;
    }
  }
  Decided(*pending, "upstream_budget", "allowed");
  Admitted(*pending);
}

}  // namespace copilot::gateway
