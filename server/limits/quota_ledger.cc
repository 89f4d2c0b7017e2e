#include "server/limits/quota_ledger.h"

#include <cmath>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/common/errors.h"

namespace copilot::gateway {
namespace {

// The counters of one tenant, in this order: answers and characters of the day, then of the
// month.
constexpr const char* kQuotaNames[] = {"answers_per_day", "characters_per_day", "answers_per_month",
                                       "characters_per_month"};
constexpr int kCounters = 4;

std::array<int64_t, kCounters> LimitsOf(const TenantQuotas& quotas) {
  return {quotas.answers_per_day, quotas.characters_per_day, quotas.answers_per_month,
          quotas.characters_per_month};
}

const QuotaPeriod& PeriodOf(const std::array<QuotaPeriod, 2>& periods, int counter) {
  return periods[counter / 2];
}

std::string GroupOf(const std::string& tenant) { return absl::StrCat("quota:", tenant); }

// The counters of `periods` with `amounts` and `maxes`. Counters outlive their period by two
// days (a replica whose clock lags may still add to it; reads after the end see it).
std::vector<CounterStep> Steps(const std::array<QuotaPeriod, 2>& periods,
                               const std::array<int64_t, kCounters>& amounts,
                               const std::array<int64_t, kCounters>& maxes) {
  std::vector<CounterStep> steps;
  steps.reserve(kCounters);
  for (int i = 0; i < kCounters; ++i) {
    const QuotaPeriod& period = PeriodOf(periods, i);
    steps.push_back(CounterStep{
        absl::StrCat(i % 2 == 0 ? "answers:" : "chars:", period.name, ":", period.label),
        amounts[i], maxes[i], period.end + absl::Hours(48)});
  }
  return steps;
}

}  // namespace

int64_t QuotaNamed(const TenantQuotas& quotas, absl::string_view name) {
  const std::array<int64_t, kCounters> limits = LimitsOf(quotas);
  for (int i = 0; i < kCounters; ++i) {
    if (name == kQuotaNames[i]) return limits[i];
  }
  return 0;
}

std::array<QuotaPeriod, 2> PeriodsAt(absl::Time now, const absl::TimeZone& zone) {
  const absl::CivilDay day = absl::ToCivilDay(now, zone);
  const absl::CivilMonth month(day);
  return {QuotaPeriod{"day", absl::FormatCivilTime(day), absl::FromCivil(day, zone),
                      absl::FromCivil(day + 1, zone)},
          QuotaPeriod{"month", absl::FormatCivilTime(month), absl::FromCivil(month, zone),
                      absl::FromCivil(month + 1, zone)}};
}

QuotaLedger::QuotaLedger(LimitStore& store, const Clock& clock, absl::TimeZone zone,
                         AdmissionEvents* events, LimitStore* fallback, double fallback_share)
    : store_(store),
      clock_(clock),
      zone_(zone),
      events_(events),
      fallback_(fallback),
      fallback_share_(fallback_share) {}

std::array<QuotaPeriod, 2> QuotaLedger::CurrentPeriods(absl::Time now) const {
  absl::MutexLock lock(&periods_mu_);
  if (now < periods_[0].start || now >= periods_[0].end) periods_ = PeriodsAt(now, zone_);
  return periods_;
}

namespace {

// The maxima of a reservation's steps: each configured quota, scaled by `share` (a replica's
// share in fail-open mode, at least 1). A call generating no answer is not held by the answer
// quotas.
std::array<int64_t, kCounters> Maxes(const std::array<int64_t, kCounters>& limits, int64_t answers,
                                     double share) {
  std::array<int64_t, kCounters> maxes{};
  for (int i = 0; i < kCounters; ++i) {
    if (limits[i] <= 0 || (i % 2 == 0 && answers <= 0)) continue;
    maxes[i] = std::max<int64_t>(
        1, static_cast<int64_t>(std::ceil(static_cast<double>(limits[i]) * share)));
  }
  return maxes;
}

}  // namespace

void QuotaLedger::Reserve(const std::string& tenant, const TenantQuotas& quotas, int64_t answers,
                          int64_t characters,
                          absl::AnyInvocable<void(absl::StatusOr<QuotaReservation>) &&> done) {
  QuotaReservation reservation;
  reservation.tenant = tenant;
  reservation.periods = CurrentPeriods(clock_.Now());
  reservation.answers = answers;
  reservation.characters = characters;
  const std::array<int64_t, kCounters> limits = LimitsOf(quotas);
  const std::array<int64_t, kCounters> amounts = {answers, characters, answers, characters};
  const std::array<int64_t, kCounters> maxes = Maxes(limits, answers, 1.0);
  if (maxes == std::array<int64_t, kCounters>{}) {
    // No quota holds this call: it goes on at once (no round trip, and an unreachable store
    // refuses nothing); its usage is counted on the way, best effort.
    reservation.store = &store_;
    if (amounts != std::array<int64_t, kCounters>{}) {
      store_.AddToCounters(GroupOf(tenant), Steps(reservation.periods, amounts, {}),
                           [](const absl::StatusOr<CounterResult>& /*result*/) {});
    }
    std::move(done)(std::move(reservation));
    return;
  }
  struct State {
    QuotaReservation reservation;
    TenantQuotas quotas;
    std::array<int64_t, kCounters> amounts;
    std::array<int64_t, kCounters> limits;
    absl::AnyInvocable<void(absl::StatusOr<QuotaReservation>) &&> done;
  };
  auto state = std::make_shared<State>(
      State{std::move(reservation), quotas, amounts, limits, std::move(done)});
  // The outcome of the step in `store` (the fallback when `degraded`); may run on the store's
  // thread after Reserve returned: it uses `state` and members only.
  auto decide = [this, state](LimitStore& store, bool degraded,
                              const std::array<int64_t, kCounters>& maxes,
                              absl::StatusOr<CounterResult> result) {
    const std::string& tenant = state->reservation.tenant;
    if (!result.ok()) {
      if (events_ != nullptr) events_->Decided(tenant, "tenant_quota", "unavailable");
      absl::Status status = MakeError(absl::StatusCode::kUnavailable,
                                      "the quota store is unavailable; try again shortly",
                                      "quota_store_unavailable", {{"limit", "tenant_quota"}});
      SetRetryDelay(status, absl::Seconds(1));
      return std::move(state->done)(std::move(status));
    }
    // This replica's own counters (fail-open) are not the tenant's usage: not reported.
    if (!degraded) Remember(tenant, state->quotas, state->reservation.periods, result->values);
    if (!result->added) {
      return std::move(state->done)(
          Refusal(tenant, state->reservation.periods, state->amounts, maxes, result->values));
    }
    if (events_ != nullptr) {
      events_->Decided(tenant, "tenant_quota", degraded ? "degraded" : "allowed");
    }
    state->reservation.store = &store;
    std::move(state->done)(state->reservation);
  };
  store_.AddToCounters(
      GroupOf(tenant), Steps(state->reservation.periods, amounts, maxes),
      [this, state, decide, maxes](const absl::StatusOr<CounterResult>& result) mutable {
        if (result.ok() || fallback_ == nullptr) return decide(store_, false, maxes, result);
        const std::array<int64_t, kCounters> shared =
            Maxes(state->limits, state->reservation.answers, fallback_share_);
        fallback_->AddToCounters(
            GroupOf(state->reservation.tenant),
            Steps(state->reservation.periods, state->amounts, shared),
            [this, decide, shared](absl::StatusOr<CounterResult> local) mutable {
              decide(*fallback_, true, shared, std::move(local));
            });
      });
}

absl::Status QuotaLedger::Refusal(const std::string& tenant,
                                  const std::array<QuotaPeriod, 2>& periods,
                                  const std::array<int64_t, kCounters>& amounts,
                                  const std::array<int64_t, kCounters>& maxes,
                                  const std::vector<int64_t>& values) const {
  // Every quota that refuses is named; a retry can succeed when the last of their periods
  // ends, unless the call alone needs more than a whole quota (then never: no RetryInfo).
  std::vector<std::pair<std::string, std::string>> violations;  // quota, description
  absl::Time until = absl::InfinitePast();
  bool never = false;
  for (int i = 0; i < kCounters && i < static_cast<int>(values.size()); ++i) {
    if (maxes[i] <= 0 || (values[i] < maxes[i] && values[i] + amounts[i] <= maxes[i])) continue;
    const QuotaPeriod& period = PeriodOf(periods, i);
    never = never || amounts[i] > maxes[i];
    until = std::max(until, period.end);
    violations.emplace_back(
        kQuotaNames[i],
        absl::StrCat(
            kQuotaNames[i], ": ", values[i], " of ", maxes[i], " used",
            values[i] < maxes[i] ? absl::StrCat(", this call needs ", amounts[i]) : std::string(),
            "; the ", period.name, " ends at ",
            absl::FormatTime(absl::RFC3339_sec, period.end, zone_)));
  }
  if (violations.empty()) violations.emplace_back("unknown", "a quota refused the call");
  absl::Status status = MakeError(
      absl::StatusCode::kResourceExhausted,
      absl::StrCat("tenant quota exceeded: ", violations.front().second), "tenant_quota_exceeded",
      {{"limit", "tenant_quota"},
       {"quota", violations.front().first},
       {"period_end", absl::FormatTime(absl::RFC3339_sec, until, absl::UTCTimeZone())}});
  for (const auto& [quota, description] : violations) {
    AddQuotaViolation(status, absl::StrCat("tenant:", tenant), description);
  }
  if (!never) SetRetryDelay(status, std::max(until - clock_.Now(), absl::Seconds(1)));
  if (events_ != nullptr) events_->Decided(tenant, "tenant_quota", "limited");
  return status;
}

void QuotaLedger::Settle(const QuotaReservation& reservation, bool succeeded,
                         int64_t answer_characters) {
  if (reservation.store == nullptr) return;
  std::array<int64_t, kCounters> amounts{};
  if (succeeded) {
    amounts = {0, answer_characters, 0, answer_characters};
  } else {
    amounts = {-reservation.answers, -reservation.characters, -reservation.answers,
               -reservation.characters};
  }
  if (amounts == std::array<int64_t, kCounters>{}) return;
  reservation.store->AddToCounters(GroupOf(reservation.tenant),
                                   Steps(reservation.periods, amounts, {}),
                                   [](const absl::StatusOr<CounterResult>& /*result*/) {});
}

void QuotaLedger::Read(const std::string& tenant, const TenantQuotas& quotas,
                       absl::AnyInvocable<void(absl::StatusOr<UsageReport>) &&> done) {
  const std::array<QuotaPeriod, 2> periods = CurrentPeriods(clock_.Now());
  const std::array<int64_t, kCounters> limits = LimitsOf(quotas);
  auto report = [this, tenant, quotas, periods, limits](bool degraded,
                                                        const CounterResult& result) {
    if (!degraded) Remember(tenant, quotas, periods, result.values);
    UsageReport report;
    report.degraded = degraded;
    for (int p = 0; p < 2; ++p) {
      PeriodUsage& usage = report.periods[p];
      usage.period = periods[p];
      usage.answers = result.values[2 * p];
      usage.characters = result.values[2 * p + 1];
      usage.answers_limit = limits[2 * p];
      usage.characters_limit = limits[2 * p + 1];
    }
    return report;
  };
  store_.AddToCounters(
      GroupOf(tenant), Steps(periods, {}, {}),
      [this, tenant, periods, report,
       done = std::move(done)](absl::StatusOr<CounterResult> result) mutable {
        if (result.ok()) return std::move(done)(report(false, *result));
        if (fallback_ == nullptr) {
          return std::move(done)(MakeError(absl::StatusCode::kUnavailable,
                                           "the quota store is unavailable; try again shortly",
                                           "quota_store_unavailable", {{"limit", "tenant_quota"}}));
        }
        fallback_->AddToCounters(
            GroupOf(tenant), Steps(periods, {}, {}),
            [report, done = std::move(done)](absl::StatusOr<CounterResult> local) mutable {
              if (!local.ok()) return std::move(done)(local.status());
              std::move(done)(report(true, *local));
            });
      });
}

void QuotaLedger::Remember(const std::string& tenant, const TenantQuotas& quotas,
                           const std::array<QuotaPeriod, 2>& periods,
                           const std::vector<int64_t>& values) {
  const std::array<int64_t, kCounters> limits = LimitsOf(quotas);
  absl::MutexLock lock(&mu_);
  for (int i = 0; i < kCounters && i < static_cast<int>(values.size()); ++i) {
    const std::string key = absl::StrCat(tenant, "\x1f", kQuotaNames[i]);
    if (limits[i] <= 0) {
      samples_.erase(key);
      continue;
    }
    samples_[key] =
        QuotaSample{tenant, kQuotaNames[i], values[i], limits[i], PeriodOf(periods, i).end};
  }
}

std::vector<QuotaSample> QuotaLedger::Samples() const {
  const absl::Time now = clock_.Now();
  std::vector<QuotaSample> samples;
  absl::MutexLock lock(&mu_);
  for (const auto& [key, sample] : samples_) {
    samples.push_back(sample);
    if (now >= sample.period_end) samples.back().used = 0;
  }
  return samples;
}

}  // namespace copilot::gateway
