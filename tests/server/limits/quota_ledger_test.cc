// Quotas and usage counters with a clock moved by hand: exact at the boundary, refusals that
// name the quota and say when it resets, calendar periods in a time zone, rollover, failed calls
// given back, the fail-open and fail-closed modes; and QuotaHaufeApi: a tenant over quota never
// reaches the API behind it.
#include "server/limits/quota_ledger.h"

#include <optional>
#include <vector>

#include "gtest/gtest.h"
#include "server/common/errors.h"
#include "server/limits/local_limit_store.h"
#include "server/limits/quota_haufe_api.h"
#include "server/transport/http_transport.h"
#include "tests/server/core/fake_haufe_api.h"
#include "tests/server/limits/deferred_store.h"
#include "tests/server/limits/unreachable_store.h"

namespace copilot::gateway {
namespace {

using ::copilot::gateway::testing::DeferredStore;
using ::copilot::gateway::testing::FakeClock;
using ::copilot::gateway::testing::FakeHaufeApi;
using ::copilot::gateway::testing::UnreachableStore;

// 2026-12-31 23:00:00 UTC.
const absl::Time kNewYearsEve =
    absl::FromCivil(absl::CivilSecond(2026, 12, 31, 23, 0, 0), absl::UTCTimeZone());

// The options of a call of `tenant`, whose quota is one answer a day.
UpstreamCallOptions OneAnswerADay(const std::string& tenant) {
  UpstreamCallOptions options;
  options.tenant_id = tenant;
  options.limits.quotas.answers_per_day = 1;
  return options;
}

absl::StatusOr<QuotaReservation> Reserve(QuotaLedger& ledger, const TenantQuotas& quotas,
                                         int64_t answers, int64_t characters,
                                         const std::string& tenant = "acme") {
  std::optional<absl::StatusOr<QuotaReservation>> out;
  ledger.Reserve(tenant, quotas, answers, characters,
                 [&](absl::StatusOr<QuotaReservation> result) { out = std::move(result); });
  EXPECT_TRUE(out.has_value());  // The local store decides inline.
  return out.has_value() ? *std::move(out) : absl::InternalError("no decision");
}

UsageReport Read(QuotaLedger& ledger, const TenantQuotas& quotas,
                 const std::string& tenant = "acme") {
  std::optional<absl::StatusOr<UsageReport>> out;
  ledger.Read(tenant, quotas, [&](absl::StatusOr<UsageReport> result) { out = std::move(result); });
  EXPECT_TRUE(out.has_value() && out->ok());
  return out.has_value() && out->ok() ? **out : UsageReport{};
}

TEST(QuotaPeriodsTest, DayAndMonthInTheTimeZone) {
  std::array<QuotaPeriod, 2> utc = PeriodsAt(kNewYearsEve, absl::UTCTimeZone());
  EXPECT_EQ(utc[0].name, "day");
  EXPECT_EQ(utc[0].label, "2026-12-31");
  EXPECT_EQ(utc[0].end, kNewYearsEve + absl::Hours(1));
  EXPECT_EQ(utc[1].label, "2026-12");
  EXPECT_EQ(utc[1].start, absl::FromCivil(absl::CivilDay(2026, 12, 1), absl::UTCTimeZone()));
  EXPECT_EQ(utc[1].end, kNewYearsEve + absl::Hours(1));
  // One hour east of UTC it is already the new year.
  std::array<QuotaPeriod, 2> east = PeriodsAt(kNewYearsEve, absl::FixedTimeZone(3600));
  EXPECT_EQ(east[0].label, "2027-01-01");
  EXPECT_EQ(east[0].start, kNewYearsEve);
  EXPECT_EQ(east[0].end, kNewYearsEve + absl::Hours(24));
  EXPECT_EQ(east[1].label, "2027-01");
  EXPECT_EQ(east[1].end, absl::FromCivil(absl::CivilDay(2027, 2, 1), absl::FixedTimeZone(3600)));
}

TEST(QuotaLedgerTest, AnswersAreExactAtTheBoundaryAndTheRefusalSaysWhichAndUntilWhen) {
  FakeClock clock(kNewYearsEve - absl::Hours(12));  // 11:00 UTC.
  LocalLimitStore store(clock);
  QuotaLedger ledger(store, clock, absl::UTCTimeZone());
  const TenantQuotas quotas{.answers_per_day = 3};
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(Reserve(ledger, quotas, 1, 0).ok()) << i;
  absl::StatusOr<QuotaReservation> refused = Reserve(ledger, quotas, 1, 0);
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  std::optional<google::rpc::ErrorInfo> info = GetErrorInfo(refused.status());
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->reason(), "tenant_quota_exceeded");
  EXPECT_EQ(info->metadata().at("quota"), "answers_per_day");
  std::optional<google::rpc::QuotaFailure> failure = GetQuotaFailure(refused.status());
  ASSERT_TRUE(failure.has_value());
  ASSERT_EQ(failure->violations_size(), 1);
  EXPECT_EQ(failure->violations(0).subject(), "tenant:acme");
  EXPECT_NE(failure->violations(0).description().find("answers_per_day: 3 of 3 used"),
            std::string::npos)
      << failure->violations(0).description();
  std::optional<google::rpc::RetryInfo> retry = GetRetryInfo(refused.status());
  ASSERT_TRUE(retry.has_value());
  EXPECT_EQ(retry->retry_delay().seconds(), 13 * 3600);  // Until midnight UTC.
  // Another tenant has its own counters.
  EXPECT_TRUE(Reserve(ledger, quotas, 1, 0, "other").ok());
  // A call generating no answer (AddMessage) is not held by the answer quota.
  EXPECT_TRUE(Reserve(ledger, quotas, 0, 10).ok());
}

TEST(QuotaLedgerTest, AFailedCallIsGivenBackAndASuccessAddsTheAnswersCharacters) {
  FakeClock clock(kNewYearsEve - absl::Hours(12));
  LocalLimitStore store(clock);
  QuotaLedger ledger(store, clock, absl::UTCTimeZone());
  const TenantQuotas quotas{.answers_per_day = 1, .characters_per_month = 100};
  absl::StatusOr<QuotaReservation> first = Reserve(ledger, quotas, 1, 30);
  ASSERT_TRUE(first.ok());
  EXPECT_FALSE(Reserve(ledger, quotas, 1, 0).ok());
  ledger.Settle(*first, /*succeeded=*/false, 0);
  absl::StatusOr<QuotaReservation> second = Reserve(ledger, quotas, 1, 30);
  ASSERT_TRUE(second.ok()) << second.status();
  ledger.Settle(*second, /*succeeded=*/true, 50);
  UsageReport report = Read(ledger, quotas);
  EXPECT_EQ(report.periods[0].answers, 1);
  EXPECT_EQ(report.periods[0].characters, 80);
  EXPECT_EQ(report.periods[1].characters, 80);
  EXPECT_EQ(report.periods[1].characters_limit, 100);
  EXPECT_EQ(report.periods[0].answers_limit, 1);
  // Characters: 80 of 100; 30 more would pass the quota, 20 fit; then it is spent and even a
  // call sending nothing (Run) is refused.
  absl::StatusOr<QuotaReservation> too_many = Reserve(ledger, quotas, 0, 30);
  ASSERT_EQ(too_many.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(GetErrorInfo(too_many.status())->metadata().at("quota"), "characters_per_month");
  EXPECT_TRUE(Reserve(ledger, quotas, 0, 20).ok());
  clock.Advance(absl::Hours(13));  // A new day: answers reset, January's characters too.
  EXPECT_TRUE(Reserve(ledger, quotas, 1, 0).ok());
}

TEST(QuotaLedgerTest, TheDayRollsOverAndTheMonthKeepsCounting) {
  FakeClock clock(kNewYearsEve - absl::Hours(24 * 5));  // 26 December, 23:00 UTC.
  LocalLimitStore store(clock);
  QuotaLedger ledger(store, clock, absl::UTCTimeZone());
  const TenantQuotas quotas{.answers_per_day = 2, .answers_per_month = 5};
  for (int day = 0; day < 3; ++day) {
    EXPECT_TRUE(Reserve(ledger, quotas, 1, 0).ok()) << day;
    EXPECT_TRUE(Reserve(ledger, quotas, 1, 0).ok() == (day < 2)) << day;  // 5 in the month.
    EXPECT_FALSE(Reserve(ledger, quotas, 1, 0).ok()) << day;
    clock.Advance(absl::Hours(24));
  }
  // 29 December: the month is spent, though the day is new.
  absl::StatusOr<QuotaReservation> refused = Reserve(ledger, quotas, 1, 0);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(GetErrorInfo(refused.status())->metadata().at("quota"), "answers_per_month");
  UsageReport report = Read(ledger, quotas);
  EXPECT_EQ(report.periods[0].answers, 0);
  EXPECT_EQ(report.periods[1].answers, 5);
  // January: both reset.
  clock.Advance(absl::Hours(24 * 3));
  EXPECT_TRUE(Reserve(ledger, quotas, 1, 0).ok());
  report = Read(ledger, quotas);
  EXPECT_EQ(report.periods[1].period.label, "2027-01");
  EXPECT_EQ(report.periods[1].answers, 1);
}

// The ledger keeps the day's periods while the clock stays in that day; a wall clock set back
// across midnight (or forward) counts in the day it now reads.
TEST(QuotaLedgerTest, AClockSetBackAcrossMidnightCountsInTheEarlierDay) {
  FakeClock clock(kNewYearsEve + absl::Minutes(90));  // 1 January 2027, 00:30 UTC.
  LocalLimitStore store(clock);
  QuotaLedger ledger(store, clock, absl::UTCTimeZone());
  const TenantQuotas quotas{.answers_per_day = 1};
  ASSERT_TRUE(Reserve(ledger, quotas, 1, 0).ok());
  EXPECT_FALSE(Reserve(ledger, quotas, 1, 0).ok());
  EXPECT_EQ(Read(ledger, quotas).periods[0].period.label, "2027-01-01");
  clock.Set(kNewYearsEve);  // Back to 31 December, 23:00.
  UsageReport report = Read(ledger, quotas);
  EXPECT_EQ(report.periods[0].period.label, "2026-12-31");
  EXPECT_EQ(report.periods[1].period.label, "2026-12");
  EXPECT_EQ(report.periods[0].answers, 0);
  ASSERT_TRUE(Reserve(ledger, quotas, 1, 0).ok());  // 31 December's answer.
  EXPECT_FALSE(Reserve(ledger, quotas, 1, 0).ok());
  clock.Set(kNewYearsEve + absl::Minutes(90));  // Forward again: 1 January's is spent.
  EXPECT_EQ(Read(ledger, quotas).periods[0].period.label, "2027-01-01");
  EXPECT_FALSE(Reserve(ledger, quotas, 1, 0).ok());
}

TEST(QuotaLedgerTest, SamplesFeedTheGaugesAndAnEndedPeriodReadsZero) {
  FakeClock clock(kNewYearsEve - absl::Hours(2));
  LocalLimitStore store(clock);
  QuotaLedger ledger(store, clock, absl::UTCTimeZone());
  const TenantQuotas quotas{.answers_per_day = 10};
  for (int i = 0; i < 8; ++i) ASSERT_TRUE(Reserve(ledger, quotas, 1, 0).ok());
  std::vector<QuotaSample> samples = ledger.Samples();
  ASSERT_EQ(samples.size(), 1u);  // Only configured quotas.
  EXPECT_EQ(samples[0].quota, "answers_per_day");
  EXPECT_EQ(samples[0].used, 8);
  EXPECT_EQ(samples[0].limit, 10);
  clock.Advance(absl::Hours(3));
  EXPECT_EQ(ledger.Samples()[0].used, 0);
}

TEST(QuotaLedgerTest, FailOpenDecidesWithThisReplicasShareFailClosedRefuses) {
  FakeClock clock(kNewYearsEve - absl::Hours(12));
  UnreachableStore redis;
  LocalLimitStore fallback(clock);
  QuotaLedger open(redis, clock, absl::UTCTimeZone(), nullptr, &fallback, 1.0 / 3);
  const TenantQuotas quotas{.answers_per_day = 9};
  int admitted = 0;
  for (int i = 0; i < 10; ++i) {
    absl::StatusOr<QuotaReservation> reservation = Reserve(open, quotas, 1, 0);
    if (reservation.ok()) {
      ++admitted;
      EXPECT_EQ(reservation->store, &fallback);
    }
  }
  EXPECT_EQ(admitted, 3);
  QuotaLedger closed(redis, clock, absl::UTCTimeZone());
  absl::StatusOr<QuotaReservation> refused = Reserve(closed, quotas, 1, 0);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(GetErrorInfo(refused.status())->reason(), "quota_store_unavailable");
}

TEST(LocalCountersTest, AllOrNothingNeverBelowZeroAndForgottenAfterExpiry) {
  FakeClock clock;
  LocalLimitStore store(clock);
  auto add = [&](std::vector<CounterStep> steps) {
    std::optional<absl::StatusOr<CounterResult>> out;
    store.AddToCounters("g", steps, [&](absl::StatusOr<CounterResult> r) { out = std::move(r); });
    return **out;
  };
  const absl::Time expires = clock.Now() + absl::Hours(1);
  // Many counters at once (each insertion may move the others in memory).
  std::vector<CounterStep> many;
  for (int i = 0; i < 64; ++i) many.push_back({absl::StrCat("k", i), i, 0, expires});
  CounterResult result = add(many);
  ASSERT_TRUE(result.added);
  for (int i = 0; i < 64; ++i) EXPECT_EQ(result.values[i], i);
  // k10 at 10 with max 10 refuses; nothing of the step is added.
  result = add({{"k1", 5, 0, expires}, {"k10", 1, 10, expires}});
  EXPECT_FALSE(result.added);
  EXPECT_EQ(result.refused, 1);
  EXPECT_EQ(add({{"k1", 0, 0, expires}}).values[0], 1);
  EXPECT_EQ(add({{"k1", -7, 0, expires}}).values[0], 0);
  clock.Advance(absl::Hours(1));
  EXPECT_EQ(add({{"k63", 0, 0, expires}}).values[0], 0);
}

// Takes every chunk and the end, and keeps nothing.
class DiscardingSink final : public ChunkSink {
 public:
  bool OnChunk(copilot::v1::MessageChunk) override { return true; }
  void OnDone(absl::Status) override {}
};

// A QuotaHaufeApi over a fake upstream, its ledger on a local store, half a day before New Year.
struct QuotaApiHarness {
  FakeClock clock{kNewYearsEve - absl::Hours(12)};
  LocalLimitStore store{clock};
  QuotaLedger ledger{store, clock, absl::UTCTimeZone()};
  FakeHaufeApi inner;
  QuotaHaufeApi api{inner, ledger};
};

TEST(QuotaHaufeApiTest, ATenantOverQuotaNeverReachesTheApiAndFailuresAreGivenBack) {
  QuotaApiHarness h;
  UpstreamCallOptions options = OneAnswerADay("acme");
  CompletionParams params;
  params.assistant_id = "a";
  params.messages.emplace_back();
  params.messages.back().set_content("hällo");  // 5 characters.
  std::vector<absl::StatusOr<copilot::v1::Message>> results;
  auto record = [&](absl::StatusOr<copilot::v1::Message> result) { results.push_back(result); };
  h.api.Complete(options, params, record);
  ASSERT_EQ(h.inner.call_count(), 1);
  // The upstream fails: the answer is given back, so the next call goes through.
  h.inner.WaitForCall(0)->Fail(absl::UnavailableError("upstream down"));
  h.api.Complete(options, params, record);
  ASSERT_EQ(h.inner.call_count(), 2);
  copilot::v1::Message answer;
  answer.set_content("ok ok");
  h.inner.WaitForCall(1)->FinishMessage(answer);
  // Now the day's answer is used: refused here, the API behind never called.
  h.api.Complete(options, params, record);
  h.api.Run(options, RunParams{"t", {}}, record);
  EXPECT_EQ(h.inner.call_count(), 2);
  ASSERT_EQ(results.size(), 4u);
  EXPECT_EQ(results[2].status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(results[3].status().code(), absl::StatusCode::kResourceExhausted);
  UsageReport report = Read(h.ledger, options.limits.quotas);
  EXPECT_EQ(report.periods[0].answers, 1);
  EXPECT_EQ(report.periods[0].characters, 10);  // 5 sent, 5 answered.
}

TEST(QuotaLedgerTest, FailOpenDecidedAfterReserveReturnedStillUsesTheQuotas) {
  // Redis answers (fails) on its own thread after Reserve has returned: the fallback's share
  // must come from the reservation, not from Reserve's stack.
  FakeClock clock(kNewYearsEve - absl::Hours(12));
  UnreachableStore unreachable;
  DeferredStore redis(unreachable, DeferredStore::kCounters);
  LocalLimitStore fallback(clock);
  QuotaLedger ledger(redis, clock, absl::UTCTimeZone(), nullptr, &fallback, 1.0 / 3);
  std::vector<absl::StatusOr<QuotaReservation>> results;
  for (int i = 0; i < 10; ++i) {
    const TenantQuotas quotas{.answers_per_day = 9};
    ledger.Reserve("acme", quotas, 1, 0,
                   [&](absl::StatusOr<QuotaReservation> r) { results.push_back(std::move(r)); });
  }
  EXPECT_TRUE(results.empty());
  EXPECT_EQ(redis.RunPending(), 10);
  ASSERT_EQ(results.size(), 10u);
  int admitted = 0;
  for (const auto& result : results) admitted += result.ok() ? 1 : 0;
  EXPECT_EQ(admitted, 3);
}

TEST(QuotaLedgerTest, EveryRefusingQuotaIsNamedAndRetryInfoWaitsForTheLastPeriod) {
  FakeClock clock(kNewYearsEve - absl::Hours(24 * 5));  // 26 December, 23:00 UTC.
  LocalLimitStore store(clock);
  QuotaLedger ledger(store, clock, absl::UTCTimeZone());
  const TenantQuotas quotas{.answers_per_day = 1, .answers_per_month = 1};
  ASSERT_TRUE(Reserve(ledger, quotas, 1, 0).ok());
  absl::StatusOr<QuotaReservation> refused = Reserve(ledger, quotas, 1, 0);
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  std::optional<google::rpc::QuotaFailure> failure = GetQuotaFailure(refused.status());
  ASSERT_TRUE(failure.has_value());
  ASSERT_EQ(failure->violations_size(), 2);
  EXPECT_NE(failure->violations(0).description().find("answers_per_day"), std::string::npos);
  EXPECT_NE(failure->violations(1).description().find("answers_per_month"), std::string::npos);
  // Not midnight (the month is spent too) but the end of the month: 5 days and 1 hour.
  EXPECT_EQ(GetRetryInfo(refused.status())->retry_delay().seconds(), (5 * 24 + 1) * 3600);
  EXPECT_EQ(GetErrorInfo(refused.status())->metadata().at("period_end"),
            "2027-01-01T00:00:00+00:00");
}

TEST(QuotaLedgerTest, ACallNeedingMoreThanAWholeQuotaGetsNoRetryInfo) {
  FakeClock clock(kNewYearsEve - absl::Hours(12));
  LocalLimitStore store(clock);
  QuotaLedger ledger(store, clock, absl::UTCTimeZone());
  absl::StatusOr<QuotaReservation> refused =
      Reserve(ledger, TenantQuotas{.characters_per_day = 100}, 0, 101);
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_FALSE(GetRetryInfo(refused.status()).has_value());
}

TEST(QuotaLedgerTest, ATenantWithoutQuotasIsNotHeldByAnUnreachableStore) {
  FakeClock clock(kNewYearsEve - absl::Hours(12));
  UnreachableStore redis;
  QuotaLedger closed(redis, clock, absl::UTCTimeZone());  // Fail-closed.
  EXPECT_TRUE(Reserve(closed, TenantQuotas{}, 1, 50).ok());
  EXPECT_EQ(Reserve(closed, TenantQuotas{.answers_per_month = 5}, 1, 0).status().code(),
            absl::StatusCode::kUnavailable);
}

TEST(QuotaHaufeApiTest, ACancelWhileTheStoreDecidesNeverStartsTheCall) {
  FakeClock clock(kNewYearsEve - absl::Hours(12));
  LocalLimitStore local(clock);
  DeferredStore store(local, DeferredStore::kCounters);
  QuotaLedger ledger(store, clock, absl::UTCTimeZone());
  FakeHaufeApi inner;
  QuotaHaufeApi api(inner, ledger);
  UpstreamCallOptions options = OneAnswerADay("acme");
  std::optional<absl::Status> status;
  std::shared_ptr<UpstreamCall> call =
      api.Run(options, RunParams{"t", {}},
              [&](absl::StatusOr<copilot::v1::Message> result) { status = result.status(); });
  call->Cancel();
  EXPECT_FALSE(status.has_value());
  store.RunPending();  // The reservation is decided, then given back.
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(inner.call_count(), 0);
  std::optional<absl::StatusOr<UsageReport>> report;
  ledger.Read("acme", options.limits.quotas,
              [&](absl::StatusOr<UsageReport> r) { report = std::move(r); });
  store.RunPending();
  ASSERT_TRUE(report.has_value() && report->ok());
  EXPECT_EQ((*report)->periods[0].answers, 0);
}

TEST(QuotaHaufeApiTest, AStreamCancelledAfterItsTextArrivedStillCounts) {
  QuotaApiHarness h;
  UpstreamCallOptions options = OneAnswerADay("acme");
  CompletionParams params;
  params.messages.emplace_back();
  params.messages.back().set_content("abc");
  h.api.StreamComplete(options, params, std::make_shared<DiscardingSink>());
  copilot::v1::MessageChunk chunk;
  chunk.mutable_delta()->set_content("the whole answer");
  h.inner.WaitForCall(0)->Chunk(chunk);
  h.inner.WaitForCall(0)->EndStream(absl::CancelledError("the caller went away"));
  // The caller had the answer: it counts, and the day's quota is spent.
  UsageReport report = Read(h.ledger, options.limits.quotas);
  EXPECT_EQ(report.periods[0].answers, 1);
  EXPECT_EQ(report.periods[0].characters, 3 + 16);
  h.api.StreamComplete(options, params, std::make_shared<DiscardingSink>());
  EXPECT_EQ(h.inner.call_count(), 1);
  // A stream that failed before any text is given back.
  options.tenant_id = "other";
  h.api.StreamComplete(options, params, std::make_shared<DiscardingSink>());
  h.inner.WaitForCall(1)->EndStream(absl::UnavailableError("upstream down"));
  EXPECT_EQ(Read(h.ledger, options.limits.quotas, "other").periods[0].answers, 0);
}

// A call whose request reached the upstream counts, though its caller cancelled or ran out of
// time before the answer arrived: the upstream made the answer (or stored the message) all the
// same, and the caller can read it from the thread. Before, every failed call was given back, so
// a tenant with a deadline shorter than the upstream's work had answers and characters free.
TEST(QuotaHaufeApiTest, ACallTheUpstreamMayHaveCarriedOutCounts) {
  QuotaApiHarness h;
  UpstreamCallOptions options = OneAnswerADay("acme");
  options.limits.quotas.characters_per_day = 1000;
  auto ignore = [](absl::StatusOr<copilot::v1::Message>) {};
  // Cancelled, the request never sent: given back.
  h.api.Run(options, RunParams{"t", {}}, ignore);
  h.inner.WaitForCall(0)->Fail(TransferCancelledStatus(/*request_sent=*/false));
  EXPECT_EQ(Read(h.ledger, options.limits.quotas).periods[0].answers, 0);
  // Cancelled after the request was sent: counts, and the day's one answer is spent.
  h.api.Run(options, RunParams{"t", {}}, ignore);
  h.inner.WaitForCall(1)->Fail(TransferCancelledStatus(/*request_sent=*/true));
  EXPECT_EQ(Read(h.ledger, options.limits.quotas).periods[0].answers, 1);
  std::optional<absl::Status> refused;
  h.api.Run(options, RunParams{"t", {}},
            [&](absl::StatusOr<copilot::v1::Message> result) { refused = result.status(); });
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(refused->code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(h.inner.call_count(), 2);
  // A message added, then the deadline passed while the upstream had it: its characters count.
  copilot::v1::MessageInput message;
  message.set_content(std::string(30, 'm'));
  h.api.AddMessage(options, "t", message, ignore);
  h.inner.WaitForCall(2)->Fail(MakeError(absl::StatusCode::kDeadlineExceeded, "x",
                                         "upstream_timeout", {{"request_sent", "true"}}));
  EXPECT_EQ(Read(h.ledger, options.limits.quotas).periods[0].characters, 30);
  // An error the upstream answered with (no request_sent): given back.
  h.api.AddMessage(options, "t", message, ignore);
  h.inner.WaitForCall(3)->Fail(absl::InternalError("upstream answered 500"));
  EXPECT_EQ(Read(h.ledger, options.limits.quotas).periods[0].characters, 30);
  // Cut by the transport's shutdown (the drain's grace over) after it was sent: counts.
  h.api.AddMessage(options, "t", message, ignore);
  h.inner.WaitForCall(4)->Fail(TransportShutdownStatus(/*request_sent=*/true));
  EXPECT_EQ(Read(h.ledger, options.limits.quotas).periods[0].characters, 60);
  // A stream cancelled after its request was sent, before any text: counts.
  options.tenant_id = "other";
  h.api.StreamRun(options, RunParams{"t", {}}, std::make_shared<DiscardingSink>());
  h.inner.WaitForCall(5)->EndStream(TransferCancelledStatus(/*request_sent=*/true));
  EXPECT_EQ(Read(h.ledger, options.limits.quotas, "other").periods[0].answers, 1);
}

}  // namespace
}  // namespace copilot::gateway
