// RedisRequestIds against a real redis-server: the claim and finish scripts, the lease, the
// delayed polls, and what happens when Redis does not answer.
#include "server/limits/redis_request_ids.h"

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/server/limits/redis_server.h"
#include "tests/testing/first_wake.h"

namespace copilot::gateway {
namespace {

using ::copilot::gateway::testing::RedisServer;
using Kind = SharedRequestIds::Lookup::Kind;

class RecordedEvents final : public SharedRequestIdEvents {
 public:
  void SharedRequestIdLookup(absl::string_view result) override {
    absl::MutexLock lock(&mu);
    results.emplace_back(result);
  }
  std::vector<std::string> Results() {
    absl::MutexLock lock(&mu);
    return results;
  }
  absl::Mutex mu;
  std::vector<std::string> results ABSL_GUARDED_BY(mu);
};

class RedisRequestIdsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<RedisServer>> server = RedisServer::Start();
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    RedisLimitStoreOptions options;
    options.port = server_->port();
    options.command_timeout = absl::Milliseconds(300);
    options.health_check_interval = absl::Milliseconds(100);
    absl::StatusOr<std::unique_ptr<RedisLimitStore>> store = RedisLimitStore::Create(options);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    const absl::Time deadline = absl::Now() + absl::Seconds(5);
    while (!store_->healthy() && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
    ASSERT_TRUE(store_->healthy());
    RedisRequestIdsOptions ids_options;
    ids_options.ttl = absl::Seconds(30);
    ids_options.max_result_bytes = 64;
    ids_ = std::make_unique<RedisRequestIds>(*store_, ids_options, &events_);
  }

  absl::StatusOr<SharedRequestIds::Lookup> Claim(const std::string& key,
                                                 const std::string& fingerprint = "fp-1",
                                                 absl::Duration lease = absl::Seconds(10),
                                                 absl::Duration delay = absl::ZeroDuration()) {
    auto done = std::make_shared<absl::Notification>();
    auto result = std::make_shared<absl::StatusOr<SharedRequestIds::Lookup>>(
        absl::UnknownError("never answered"));
    ids_->Claim(key, fingerprint, lease, delay,
                [done, result](absl::StatusOr<SharedRequestIds::Lookup> lookup) {
                  *result = std::move(lookup);
                  done->Notify();
                });
    if (!done->WaitForNotificationWithTimeout(absl::Seconds(5))) {
      return absl::DeadlineExceededError("no answer");
    }
    return *result;
  }

  // Queues the finish; a claim queued after it is answered after it (one connection, in order).
  void Finish(const std::string& key, const std::string& token,
              const absl::StatusOr<std::string>& result, bool unknown = false) {
    ids_->Finish(key, token, result, unknown);
  }

  RecordedEvents events_;
  std::unique_ptr<RedisServer> server_;
  std::unique_ptr<RedisLimitStore> store_;
  std::unique_ptr<RedisRequestIds> ids_;
};

TEST_F(RedisRequestIdsTest, TheFirstClaimStartsTheOthersSeeItInFlightThenItsResult) {
  absl::StatusOr<SharedRequestIds::Lookup> first = Claim("acme/Run/1");
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->kind, Kind::kStart);
  EXPECT_EQ(first->token.size(), 32u);
  absl::StatusOr<SharedRequestIds::Lookup> second = Claim("acme/Run/1");
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->kind, Kind::kInFlight);
  Finish("acme/Run/1", first->token, std::string("the\0result", 10));
  absl::StatusOr<SharedRequestIds::Lookup> third = Claim("acme/Run/1");
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(third->kind, Kind::kDone);
  EXPECT_EQ(third->result, std::string("the\0result", 10));  // Binary-safe.
  EXPECT_THAT(events_.Results(), ::testing::ElementsAre("claimed", "in_flight", "remembered"));
  // Only a hash of the key is in Redis, and it expires.
  absl::StatusOr<std::vector<std::string>> keys = server_->Command({"KEYS", "*"});
  ASSERT_TRUE(keys.ok());
  ASSERT_EQ(keys->size(), 1u);
  EXPECT_EQ((*keys)[0], ids_->RedisKey("acme/Run/1"));
  EXPECT_EQ((*keys)[0].find("acme"), std::string::npos);
  absl::StatusOr<std::vector<std::string>> ttl = server_->Command({"PTTL", (*keys)[0]});
  ASSERT_TRUE(ttl.ok());
  EXPECT_GT(std::stoll((*ttl)[0]), 20000);
  EXPECT_LE(std::stoll((*ttl)[0]), 30000);
}

TEST_F(RedisRequestIdsTest, AnotherBodyUnderTheSameKeyIsReused) {
  ASSERT_EQ(Claim("k", "fp-1")->kind, Kind::kStart);
  EXPECT_EQ(Claim("k", "fp-2")->kind, Kind::kReused);
}

TEST_F(RedisRequestIdsTest, AFailureIsForgottenSoTheNextClaimStartsAgain) {
  absl::StatusOr<SharedRequestIds::Lookup> first = Claim("k");
  Finish("k", first->token, absl::UnavailableError("down"));
  absl::StatusOr<SharedRequestIds::Lookup> second = Claim("k");
  EXPECT_EQ(second->kind, Kind::kStart);
  EXPECT_NE(second->token, first->token);
}

TEST_F(RedisRequestIdsTest, AResultTooLargeIsForgotten) {
  absl::StatusOr<SharedRequestIds::Lookup> first = Claim("k");
  Finish("k", first->token, std::string(65, 'x'));
  EXPECT_EQ(Claim("k")->kind, Kind::kStart);
}

TEST_F(RedisRequestIdsTest, AnUnknownOutcomeStaysUnknown) {
  absl::StatusOr<SharedRequestIds::Lookup> first = Claim("k");
  Finish("k", first->token, absl::InternalError("reset"), /*unknown=*/true);
  EXPECT_EQ(Claim("k")->kind, Kind::kUnknown);
  EXPECT_EQ(Claim("k")->kind, Kind::kUnknown);
}

TEST_F(RedisRequestIdsTest, OnlyTheOwnerFinishes) {
  absl::StatusOr<SharedRequestIds::Lookup> first = Claim("k");
  Finish("k", "not-the-owner", std::string("forged"));
  EXPECT_EQ(Claim("k")->kind, Kind::kInFlight);
  Finish("k", "not-the-owner", absl::InternalError("x"));
  EXPECT_EQ(Claim("k")->kind, Kind::kInFlight);
}

// The replica running the attempt stopped: after its lease, the outcome is unknown (never
// claimed again: the upstream may have carried it out).
TEST_F(RedisRequestIdsTest, AClaimWhoseLeaseRanOutIsUnknown) {
  // One untimed round trip first: under ThreadSanitizer the store's first wake-ups take longer
  // than the 200 ms lease.
  ASSERT_EQ(Claim("warm-up")->kind, Kind::kStart);
  ASSERT_EQ(Claim("k", "fp-1", absl::Milliseconds(200))->kind, Kind::kStart);
  EXPECT_EQ(Claim("k")->kind, Kind::kInFlight);
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_EQ(Claim("k")->kind, Kind::kUnknown);
}

TEST_F(RedisRequestIdsTest, ADelayedClaimIsSentAfterItsDelay) {
  ASSERT_EQ(Claim("k")->kind, Kind::kStart);
  const absl::Time start = absl::Now();
  EXPECT_EQ(Claim("k", "fp-1", absl::Seconds(10), absl::Milliseconds(300))->kind, Kind::kInFlight);
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(290));
  // A claim without delay queued meanwhile is not held behind it.
  auto delayed = std::make_shared<absl::Notification>();
  ids_->Claim("k", "fp-1", absl::Seconds(10), absl::Seconds(2),
              [delayed](absl::StatusOr<SharedRequestIds::Lookup>) { delayed->Notify(); });
  const absl::Time prompt = absl::Now();
  EXPECT_EQ(Claim("other")->kind, Kind::kStart);
  EXPECT_LT(absl::Now() - prompt, absl::Milliseconds(500));
  EXPECT_FALSE(delayed->HasBeenNotified());
  // Stopping the store answers the delayed claim at once.
  store_->Stop();
  EXPECT_TRUE(delayed->WaitForNotificationWithTimeout(absl::Seconds(1)));
}

TEST_F(RedisRequestIdsTest, RedisDownIsUnavailableAndCounted) {
  server_->Kill();
  absl::StatusOr<SharedRequestIds::Lookup> claim = Claim("k");
  EXPECT_EQ(claim.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(claim.status().message()),
              ::testing::HasSubstr("request_id de-duplication across replicas unavailable"));
  EXPECT_THAT(events_.Results(), ::testing::Contains("unavailable"));
  ASSERT_TRUE(server_->Restart().ok());
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  absl::StatusOr<SharedRequestIds::Lookup> again = Claim("k");
  while (!again.ok() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(50));
    again = Claim("k");
  }
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->kind, Kind::kStart);
}

}  // namespace
}  // namespace copilot::gateway
