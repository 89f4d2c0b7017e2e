// Usage counters and quotas per tenant: answers generated and characters, per calendar day and
// month in a configured time zone. Kept in the LimitStore: in this process, or in Redis and
// then exact across replicas (one atomic script per step). An answer is reserved before its
// upstream call and given back when the call fails, so a quota of N admits N answers however
// many replicas race for the last one.
#ifndef COPILOT_GATEWAY_SERVER_LIMITS_QUOTA_LEDGER_H_
#define COPILOT_GATEWAY_SERVER_LIMITS_QUOTA_LEDGER_H_

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/common/clock.h"
#include "server/limits/limit_events.h"
#include "server/limits/limit_store.h"

namespace copilot::gateway {

// A calendar period: [start, end) in the ledger's time zone.
struct QuotaPeriod {
  std::string name;   // "day" or "month"
  std::string label;  // "2026-12-02" or "2026-12"
  absl::Time start;
  absl::Time end;
};

// The quota of `quotas` named `name` ("answers_per_day", ...), 0 for none or an unknown name.
int64_t QuotaNamed(const TenantQuotas& quotas, absl::string_view name);

// The day and the month that `now` falls in, in `zone`.
std::array<QuotaPeriod, 2> PeriodsAt(absl::Time now, const absl::TimeZone& zone);

// One period's figures for a tenant. Limits of 0 are no quota.
struct PeriodUsage {
  QuotaPeriod period;
  int64_t answers = 0;
  int64_t characters = 0;
  int64_t answers_limit = 0;
  int64_t characters_limit = 0;
};

// A tenant's usage in the current day and month.
struct UsageReport {
  std::array<PeriodUsage, 2> periods;  // day, month
  // Read from this replica's own counters because the shared store was unreachable.
  bool degraded = false;
};

// What a call reserved before its upstream request (Settle records its outcome). Plain data.
struct QuotaReservation {
  std::string tenant;
  std::array<QuotaPeriod, 2> periods;
  int64_t answers = 0;
  int64_t characters = 0;
  // Where it was reserved: the shared store, or this replica's fallback.
  LimitStore* store = nullptr;
};

// Thread-safe; never blocks: callbacks run inline (local store) or on the store's thread.
class QuotaLedger {
 public:
  // `store`, `clock`, `events` (may be null) and `fallback` (may be null) must outlive the
  // ledger. When `store` fails: with a `fallback`, decide there with `fallback_share` of each
  // quota (fail-open, like the rate limits); without, refuse with UNAVAILABLE (fail-closed).
  QuotaLedger(LimitStore& store, const Clock& clock, absl::TimeZone zone,
              AdmissionEvents* events = nullptr, LimitStore* fallback = nullptr,
              double fallback_share = 1.0);

  // Before an upstream call of `tenant`: reserves `answers` (0 or 1) and the caller's
  // `characters` in the current day and month. RESOURCE_EXHAUSTED (reason
  // tenant_quota_exceeded, QuotaFailure naming the quota, RetryInfo until the period ends)
  // when a quota is spent or would be passed; UNAVAILABLE when the store failed and there is
  // no fallback.
  void Reserve(const std::string& tenant, const TenantQuotas& quotas, int64_t answers,
               int64_t characters,
               absl::AnyInvocable<void(absl::StatusOr<QuotaReservation>) &&> done);
  // After the call: when it succeeded, adds the answer's characters (no quota can refuse
  // them: a quota is checked before a call, the last answer may pass it); when it failed,
  // gives the reservation back. Fire and forget.
  void Settle(const QuotaReservation& reservation, bool succeeded, int64_t answer_characters);
  // The tenant's usage in the current day and month.
  void Read(const std::string& tenant, const TenantQuotas& quotas,
            absl::AnyInvocable<void(absl::StatusOr<UsageReport>) &&> done);

  // The last figures seen per tenant and configured quota; a period that ended reads 0.
  std::vector<QuotaSample> Samples() const;

 private:
  // RESOURCE_EXHAUSTED naming every quota that refuses (`values` as they were), RetryInfo until
  // the last of their periods ends (none when the call alone needs more than a quota).
  absl::Status Refusal(const std::string& tenant, const std::array<QuotaPeriod, 2>& periods,
                       const std::array<int64_t, 4>& amounts, const std::array<int64_t, 4>& maxes,
                       const std::vector<int64_t>& values) const;
  void Remember(const std::string& tenant, const TenantQuotas& quotas,
                const std::array<QuotaPeriod, 2>& periods, const std::vector<int64_t>& values);
  // PeriodsAt(now, zone_), the last result kept while `now` is in its day (the time zone
  // lookups cost ~6,500 instructions, a call made them once or twice). Recomputed when `now`
  // leaves that day either way (the wall clock may be set back).
  std::array<QuotaPeriod, 2> CurrentPeriods(absl::Time now) const;

  LimitStore& store_;
  const Clock& clock_;
  const absl::TimeZone zone_;
  AdmissionEvents* const events_;
  LimitStore* const fallback_;
  const double fallback_share_;

  mutable absl::Mutex periods_mu_;
  // Empty ([0, 0)) until the first call.
  mutable std::array<QuotaPeriod, 2> periods_ ABSL_GUARDED_BY(periods_mu_);

  mutable absl::Mutex mu_;
  // "<tenant>\x1f<quota>" -> last sample.
  absl::flat_hash_map<std::string, QuotaSample> samples_ ABSL_GUARDED_BY(mu_);
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_LIMITS_QUOTA_LEDGER_H_
