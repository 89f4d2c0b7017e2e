#include "server/core/request_id_store.h"

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/common/errors.h"
#include "tests/server/core/fake_haufe_api.h"

namespace copilot::gateway {
namespace {

using ::copilot::gateway::testing::FakeClock;
using Kind = RequestIdStore::Lookup::Kind;

RequestIdLimits Limits(std::size_t max_entries, std::size_t max_bytes, double share = 1.0) {
  RequestIdLimits limits;
  limits.ttl = absl::Minutes(1);
  limits.max_entries = max_entries;
  limits.max_bytes = max_bytes;
  limits.max_tenant_share = share;
  return limits;
}

// Looks `key` up and, when it may start, completes it at once with `result`.
Kind Remember(RequestIdStore& store, const std::string& tenant, const std::string& key,
              const std::string& result = "answer") {
  RequestIdStore::Lookup lookup = store.Begin(tenant, key, "fp", [](auto) {});
  if (lookup.kind == Kind::kStart && lookup.attempt != nullptr) lookup.attempt->Complete(result);
  return lookup.kind;
}

// What a later lookup of `key` finds.
Kind Find(RequestIdStore& store, const std::string& tenant, const std::string& key) {
  return store.Begin(tenant, key, "fp", [](auto) {}).kind;
}

TEST(RequestIdStoreTest, RemembersASuccessAndReturnsIt) {
  FakeClock clock;
  RequestIdStore store(clock, Limits(10, 1 << 20));
  RequestIdStore::Lookup first = store.Begin("t", "k", "fp", [](auto) {});
  ASSERT_EQ(first.kind, Kind::kStart);
  first.attempt->Complete(std::string("serialized"));
  RequestIdStore::Lookup again = store.Begin("t", "k", "fp", [](auto) {});
  EXPECT_EQ(again.kind, Kind::kRemembered);
  EXPECT_EQ(*again.result, "serialized");
}

TEST(RequestIdStoreTest, ForgetsAfterTheTtlAndNeverRemembersFailures) {
  FakeClock clock;
  RequestIdStore store(clock, Limits(10, 1 << 20));
  Remember(store, "t", "k");
  clock.Advance(absl::Minutes(1));
  EXPECT_EQ(Find(store, "t", "k"), Kind::kStart);
  RequestIdStore::Lookup failing = store.Begin("t", "f", "fp", [](auto) {});
  failing.attempt->Complete(absl::UnavailableError("down"));
  EXPECT_EQ(Find(store, "t", "f"), Kind::kStart);
}

TEST(RequestIdStoreTest, ReusedKeyWithAnotherBodyIsRefused) {
  FakeClock clock;
  RequestIdStore store(clock, Limits(10, 1 << 20));
  Remember(store, "t", "k");
  RequestIdStore::Lookup other = store.Begin("t", "k", "other-fp", [](auto) {});
  ASSERT_EQ(other.kind, Kind::kRefused);
  EXPECT_EQ(other.result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(GetErrorInfo(other.result.status())->reason(), "REQUEST_ID_REUSED");
}

TEST(RequestIdStoreTest, BoundedByEntriesForgettingTheOldestCompletedFirst) {
  FakeClock clock;
  RequestIdStore store(clock, Limits(2, 1 << 20));
  Remember(store, "t", "a");
  Remember(store, "t", "b");
  Remember(store, "t", "c");  // Forgets "a".
  EXPECT_EQ(store.entries(), 2u);
  EXPECT_EQ(Find(store, "t", "c"), Kind::kRemembered);
  EXPECT_EQ(Find(store, "t", "b"), Kind::kRemembered);
  EXPECT_EQ(Find(store, "t", "a"), Kind::kStart);
}

TEST(RequestIdStoreTest, FullOfAttemptsInFlightRunsWithoutRemembering) {
  FakeClock clock;
  RequestIdStore store(clock, Limits(1, 1 << 20));
  RequestIdStore::Lookup a = store.Begin("t", "a", "fp", [](auto) {});
  RequestIdStore::Lookup b = store.Begin("t", "b", "fp", [](auto) {});
  EXPECT_EQ(a.kind, Kind::kStart);
  EXPECT_NE(a.attempt, nullptr);
  EXPECT_EQ(b.kind, Kind::kStart);
  EXPECT_EQ(b.attempt, nullptr);  // Not remembered.
  EXPECT_EQ(store.entries(), 1u);
}

// Issue #13: the budget counts what the memory really holds (the serialized result, the key,
// the fingerprint and a fixed overhead), not a protobuf's serialized size.
TEST(RequestIdStoreTest, CountsTheBytesItHolds) {
  FakeClock clock;
  RequestIdStore store(clock, Limits(10, 1 << 20));
  Remember(store, "t", "key", std::string(1000, 'x'));
  const std::size_t expected = 3 + 2 + RequestIdStore::kEntryOverheadBytes + 1000 + 32;
  EXPECT_EQ(store.bytes(), expected);
  EXPECT_EQ(store.tenant_bytes("t"), expected);
}

TEST(RequestIdStoreTest, BoundedByBytesAndAResultTooLargeIsNotRemembered) {
  FakeClock clock;
  const std::size_t per_entry = 1 + 2 + RequestIdStore::kEntryOverheadBytes + 1000 + 32;
  RequestIdStore store(clock, Limits(100, 2 * per_entry));
  Remember(store, "t", "a", std::string(1000, 'x'));
  Remember(store, "t", "b", std::string(1000, 'x'));
  Remember(store, "t", "c", std::string(1000, 'x'));  // Forgets "a".
  EXPECT_LE(store.bytes(), 2 * per_entry);
  EXPECT_EQ(Find(store, "t", "a"), Kind::kStart);
  EXPECT_EQ(Find(store, "t", "c"), Kind::kRemembered);
  Remember(store, "t", "huge", std::string(10 * per_entry, 'x'));
  EXPECT_EQ(Find(store, "t", "huge"), Kind::kStart);
  EXPECT_LE(store.bytes(), 2 * per_entry);
}

// Issue #13: one tenant's flood of request_ids evicted another tenant's entry, whose retry then
// ran twice. Now a tenant holds at most its share and evicts only its own entries.
TEST(RequestIdStoreTest, OneTenantsFloodNeverEvictsAnotherTenantsEntries) {
  FakeClock clock;
  RequestIdStore store(clock, Limits(100, 64 * 1024, 0.25));
  ASSERT_EQ(Remember(store, "victim", "victim:Run:1"), Kind::kStart);
  for (int i = 0; i < 10000; ++i) Remember(store, "flood", absl::StrCat("flood:Run:", i));
  EXPECT_EQ(Find(store, "victim", "victim:Run:1"), Kind::kRemembered);
  EXPECT_LE(store.tenant_entries("flood"), 25u);
  EXPECT_LE(store.tenant_bytes("flood"), 16u * 1024);
  // The flooder's newest entries are the ones kept.
  EXPECT_EQ(Find(store, "flood", "flood:Run:9999"), Kind::kRemembered);
  EXPECT_EQ(Find(store, "flood", "flood:Run:0"), Kind::kStart);
}

TEST(RequestIdStoreTest, AFullStoreEvictsFromTheTenantHoldingTheMost) {
  FakeClock clock;
  // Every tenant may hold everything; the store holds 4 entries.
  RequestIdStore store(clock, Limits(4, 1 << 20, 1.0));
  Remember(store, "small", "small:1");
  Remember(store, "big", "big:1");
  Remember(store, "big", "big:2");
  Remember(store, "big", "big:3");
  Remember(store, "other", "other:1");  // Evicts big:1, not small:1 (older, but smaller tenant).
  EXPECT_EQ(Find(store, "small", "small:1"), Kind::kRemembered);
  EXPECT_EQ(Find(store, "big", "big:1"), Kind::kStart);
  EXPECT_EQ(Find(store, "other", "other:1"), Kind::kRemembered);
}

TEST(RequestIdStoreTest, WaitersGetTheFirstAttemptsResult) {
  FakeClock clock;
  RequestIdStore store(clock, Limits(10, 1 << 20));
  RequestIdStore::Lookup first = store.Begin("t", "k", "fp", [](auto) {});
  std::optional<absl::StatusOr<std::string>> got;
  RequestIdStore::Lookup waiting =
      store.Begin("t", "k", "fp", [&got](absl::StatusOr<std::string> r) { got = std::move(r); });
  ASSERT_EQ(waiting.kind, Kind::kWaiting);
  EXPECT_EQ(store.waiters(), 1);
  first.attempt->Complete(std::string("result"));
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(**got, "result");
  EXPECT_EQ(store.waiters(), 0);
}

TEST(RequestIdStoreTest, WaitersOfACancelledAttemptAreToldToRetry) {
  FakeClock clock;
  RequestIdStore store(clock, Limits(10, 1 << 20));
  RequestIdStore::Lookup first = store.Begin("t", "k", "fp", [](auto) {});
  std::optional<absl::StatusOr<std::string>> got;
  store.Begin("t", "k", "fp", [&got](absl::StatusOr<std::string> r) { got = std::move(r); });
  first.attempt->Complete(absl::CancelledError("gone"));
  EXPECT_EQ(got->status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(GetErrorInfo(got->status())->reason(), "REQUEST_ABORTED");
}

TEST(RequestIdStoreTest, WaitersAreBoundedPerRequestAndPerTenant) {
  FakeClock clock;
  RequestIdLimits limits = Limits(10, 1 << 20);
  limits.max_waiters_per_request = 2;
  limits.max_waiters_per_tenant = 3;
  RequestIdStore store(clock, limits);
  // The first attempts stay in flight while these are held.
  RequestIdStore::Lookup a = store.Begin("t", "a", "fp", [](auto) {});
  RequestIdStore::Lookup b = store.Begin("t", "b", "fp", [](auto) {});
  EXPECT_EQ(store.Begin("t", "a", "fp", [](auto) {}).kind, Kind::kWaiting);
  EXPECT_EQ(store.Begin("t", "a", "fp", [](auto) {}).kind, Kind::kWaiting);
  RequestIdStore::Lookup third = store.Begin("t", "a", "fp", [](auto) {});
  ASSERT_EQ(third.kind, Kind::kRefused);
  EXPECT_EQ(third.result.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(GetErrorInfo(third.result.status())->reason(), "request_id_waiters_exceeded");
  EXPECT_EQ(GetQuotaFailure(third.result.status())->violations(0).subject(), "tenant:t");
  EXPECT_EQ(store.Begin("t", "b", "fp", [](auto) {}).kind, Kind::kWaiting);
  EXPECT_EQ(store.Begin("t", "b", "fp", [](auto) {}).kind, Kind::kRefused);  // Tenant: 3.
  // Another tenant is not affected by this one's waiters.
  RequestIdStore::Lookup c = store.Begin("u", "c", "fp", [](auto) {});
  EXPECT_EQ(store.Begin("u", "c", "fp", [](auto) {}).kind, Kind::kWaiting);
}

class CountingLease final : public AdmissionLease {
 public:
  explicit CountingLease(int& held) : held_(held) { ++held_; }
  ~CountingLease() override { --held_; }

 private:
  int& held_;
};

TEST(RequestIdStoreTest, AWaitersLeaseIsHeldUntilItIsAnswered) {
  FakeClock clock;
  RequestIdStore store(clock, Limits(10, 1 << 20));
  RequestIdStore::Lookup first = store.Begin("t", "k", "fp", [](auto) {});
  RequestIdStore::Lookup waiting = store.Begin("t", "k", "fp", [](auto) {});
  int held = 0;
  waiting.waiter->Hold(std::make_unique<CountingLease>(held));
  EXPECT_EQ(held, 1);
  first.attempt->Complete(std::string("r"));
  EXPECT_EQ(held, 0);
  // A lease arriving after the answer is released at once.
  waiting.waiter->Hold(std::make_unique<CountingLease>(held));
  EXPECT_EQ(held, 0);
}

TEST(RequestIdStoreTest, FailAndCancelEndTheWaitOnce) {
  FakeClock clock;
  RequestIdStore store(clock, Limits(10, 1 << 20));
  RequestIdStore::Lookup first = store.Begin("t", "k", "fp", [](auto) {});
  int calls = 0;
  std::optional<absl::Status> status;
  RequestIdStore::Lookup waiting = store.Begin("t", "k", "fp", [&](absl::StatusOr<std::string> r) {
    ++calls;
    status = r.status();
  });
  waiting.waiter->Fail(absl::ResourceExhaustedError("limit"));
  waiting.waiter->Cancel();
  first.attempt->Complete(std::string("r"));
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(status->code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(store.waiters(), 0);
}

TEST(RequestIdStoreTest, AnAttemptDroppedWithoutAResultReleasesItsEntryAndWaiters) {
  FakeClock clock;
  RequestIdStore store(clock, Limits(10, 1 << 20));
  std::optional<absl::StatusOr<std::string>> got;
  {
    RequestIdStore::Lookup first = store.Begin("t", "k", "fp", [](auto) {});
    store.Begin("t", "k", "fp", [&got](absl::StatusOr<std::string> r) { got = std::move(r); });
  }
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(store.entries(), 0u);
  EXPECT_EQ(store.waiters(), 0);
}

TEST(RequestIdStoreTest, ZeroEntriesDisablesRemembering) {
  FakeClock clock;
  RequestIdStore store(clock, Limits(0, 1 << 20));
  RequestIdStore::Lookup lookup = store.Begin("t", "k", "fp", [](auto) {});
  EXPECT_EQ(lookup.kind, Kind::kStart);
  EXPECT_EQ(lookup.attempt, nullptr);
}

}  // namespace
}  // namespace copilot::gateway
