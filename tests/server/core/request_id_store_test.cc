#include "server/core/request_id_store.h"

#include <malloc.h>

#include <cstddef>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/common/errors.h"
#include "tests/server/core/fake_haufe_api.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define COPILOT_SANITIZER_ALLOCATOR 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define COPILOT_SANITIZER_ALLOCATOR 1
#endif
#endif
#ifdef COPILOT_SANITIZER_ALLOCATOR
// From the sanitizer runtime (GCC's libasan/libtsan or clang's), declared here: GCC installs no
// <sanitizer/allocator_interface.h>.
extern "C" std::size_t __sanitizer_get_current_allocated_bytes();
#endif

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
  constexpr std::size_t kString = RequestIdStore::kStringOverheadBytes;
  // "key" twice, "fp", the entry, and the result.
  const std::size_t expected =
      2 * (3 + kString) + 2 + kString + RequestIdStore::kEntryOverheadBytes + 1000 + kString;
  EXPECT_EQ(store.bytes(), expected);
  EXPECT_EQ(store.tenant_bytes("t"), expected);
}

// Heap bytes in use by the whole process: glibc's count, or the sanitizer allocator's (which
// replaces glibc's malloc in sanitizer builds).
std::size_t HeapInUse() {
#ifdef COPILOT_SANITIZER_ALLOCATOR
  return __sanitizer_get_current_allocated_bytes();
#else
  return mallinfo2().uordblks;
#endif
}

// Issue #13, item 4: request_ids.max_bytes counted serialized bytes while the real memory was
// ~10x (64 MiB configured -> +600 MiB RSS). What the store counts is now checked against the heap
// it really takes, for results of no, small and large size: never less than 90% of it (so the
// budget bounds real memory) and at most twice it (so the budget is not wasted).
TEST(RequestIdStoreTest, TheBytesItCountsAreTheHeapItTakes) {
#ifdef COPILOT_THREAD_SANITIZER  // Set by CMake (the TSan tree undefines __SANITIZE_THREAD__).
  // Under TSan, mallinfo2 (which it intercepts) reports no heap in use: the growth measured is 0,
  // so the heap cannot be compared there. The default build (CI) and the ASan build run it.
  GTEST_SKIP() << "ThreadSanitizer keeps no count of the heap in use";
#endif
  const std::string fingerprint(64, 'f');  // A SHA-256 in hex, as the core makes them.
  for (const std::size_t result_bytes : {std::size_t{0}, std::size_t{100}, std::size_t{4000}}) {
    FakeClock clock;
    RequestIdStore store(clock, Limits(100000, std::size_t{1} << 32));
    const std::string result(result_bytes, 'x');
    const std::size_t before = HeapInUse();
    for (int i = 0; i < 20000; ++i) {
      RequestIdStore::Lookup lookup = store.Begin(
          "tenant-a", absl::StrCat("tenant-a:Run:", i, "-0f8fad5b-d9cb-469f-a165-70867728950e"),
          fingerprint, [](auto) {});
      ASSERT_EQ(lookup.kind, Kind::kStart);
      lookup.attempt->Complete(result);
    }
    const double real = static_cast<double>(HeapInUse() - before);
    const double counted = static_cast<double>(store.bytes());
    EXPECT_GE(counted, 0.9 * real) << result_bytes << "-byte results: counted " << counted
                                   << " bytes, the heap grew by " << real;
    EXPECT_LE(counted, 2.0 * real) << result_bytes << "-byte results: counted " << counted
                                   << " bytes, the heap grew by " << real;
  }
}

TEST(RequestIdStoreTest, BoundedByBytesAndAResultTooLargeIsNotRemembered) {
  FakeClock clock;
  constexpr std::size_t kString = RequestIdStore::kStringOverheadBytes;
  const std::size_t per_entry =
      2 * (1 + kString) + 2 + kString + RequestIdStore::kEntryOverheadBytes + 1000 + kString;
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
