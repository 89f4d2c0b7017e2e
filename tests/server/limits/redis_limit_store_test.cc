#include "server/limits/redis_limit_store.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/limits/local_limit_store.h"
#include "tests/server/limits/redis_server.h"
#include "tests/testing/first_wake.h"

namespace copilot::gateway {
namespace {

using ::copilot::gateway::testing::FreeLoopbackPort;
using ::copilot::gateway::testing::RedisServer;
using ::copilot::gateway::testing::RedisTlsFiles;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::UnorderedElementsAre;

using SteadyClock = std::chrono::steady_clock;

constexpr absl::Duration kCallbackWait = absl::Seconds(5);

// The outcome of one call, filled by its callback (which may run on any thread).
template <typename T>
struct Outcome {
  absl::Notification done;
  absl::StatusOr<T> result = absl::UnknownError("not called");
  std::atomic<int> calls{0};
};

template <typename T>
StoreCallback<T> Into(std::shared_ptr<Outcome<T>> outcome) {
  return [outcome](absl::StatusOr<T> result) {
    if (outcome->calls.fetch_add(1) == 0) {
      outcome->result = std::move(result);
      outcome->done.Notify();
    }
  };
}

template <typename T>
absl::StatusOr<T> Await(const std::shared_ptr<Outcome<T>>& outcome) {
  if (!outcome->done.WaitForNotificationWithTimeout(kCallbackWait)) {
    return absl::DeadlineExceededError("the callback never ran");
  }
  return outcome->result;
}

absl::StatusOr<StepResult> TakeRate(LimitStore& store, const std::string& key,
                                    const RateLimit& limit) {
  auto outcome = std::make_shared<Outcome<StepResult>>();
  store.TakeRate(key, limit, Into(outcome));
  return Await(outcome);
}

absl::StatusOr<StepResult> TakeWindows(LimitStore& store, const std::string& key,
                                       const std::vector<WindowLimit>& windows) {
  auto outcome = std::make_shared<Outcome<StepResult>>();
  store.TakeWindows(key, windows, Into(outcome));
  return Await(outcome);
}

absl::StatusOr<SlotResult> AcquireSlot(LimitStore& store, const std::string& key, int64_t max,
                                       absl::Duration ttl) {
  auto outcome = std::make_shared<Outcome<SlotResult>>();
  store.AcquireSlot(key, max, ttl, Into(outcome));
  return Await(outcome);
}

RedisLimitStoreOptions OptionsFor(int port) {
  RedisLimitStoreOptions options;
  options.port = port;
  options.connect_timeout = absl::Milliseconds(500);
  options.command_timeout = absl::Milliseconds(300);
  options.health_check_interval = absl::Milliseconds(200);
  return options;
}

// A file made by tests/certs/make-test-certs.sh.
std::string Cert(absl::string_view name) { return absl::StrCat(COPILOT_TEST_CERTS_DIR, "/", name); }

// A TLS redis-server's files: `cert` ("server": SAN localhost and 127.0.0.1), signed by the
// test CA.
RedisTlsFiles ServerTls(absl::string_view cert = "server", bool require_client_cert = false) {
  return RedisTlsFiles{.cert_file = Cert(absl::StrCat(cert, ".pem")),
                       .key_file = Cert(absl::StrCat(cert, ".key")),
                       .ca_file = Cert("ca.pem"),
                       .require_client_certificate = require_client_cert};
}

// OptionsFor over TLS ("rediss://127.0.0.1:<port>"), trusting the test CA.
RedisLimitStoreOptions TlsOptionsFor(int port) {
  RedisLimitStoreOptions options = OptionsFor(port);
  options.tls.enabled = true;
  options.tls.ca_file = Cert("ca.pem");
  return options;
}

// What the store talks to Redis over: the suites below run both ways.
enum class Wire { kPlain, kTls };

std::string WireName(const ::testing::TestParamInfo<Wire>& info) {
  return info.param == Wire::kTls ? "Tls" : "Plain";
}

// A redis-server for `wire` (plain, or TLS with the "server" certificate) on `port` (the port
// the store connects to; a free one when 0).
absl::StatusOr<std::unique_ptr<RedisServer>> StartServer(Wire wire, int port = 0,
                                                         std::vector<std::string> args = {}) {
  return wire == Wire::kTls ? RedisServer::StartTls(ServerTls(), port, std::move(args))
                            : RedisServer::Start(port, std::move(args));
}

// The port a store for `wire` connects to.
int StorePort(Wire wire, const RedisServer& server) {
  return wire == Wire::kTls ? server.tls_port() : server.port();
}

RedisLimitStoreOptions OptionsOver(Wire wire, int port) {
  return wire == Wire::kTls ? TlsOptionsFor(port) : OptionsFor(port);
}

std::unique_ptr<RedisLimitStore> MakeStore(const RedisLimitStoreOptions& options) {
  absl::StatusOr<std::unique_ptr<RedisLimitStore>> store = RedisLimitStore::Create(options);
  EXPECT_TRUE(store.ok()) << store.status();
  return store.ok() ? *std::move(store) : nullptr;
}

// One round trip before a test measures any: the first time a thread is woken costs ThreadSanitizer
// hundreds of milliseconds in a new process (it symbolizes abseil's suppressed futex report,
// tests/server/integration/tsan.supp), which would stretch the first timed step past the
// windows these tests measure against. Nothing in a plain build.
void WarmUp(RedisLimitStore& store) {
  auto outcome = std::make_shared<Outcome<StepResult>>();
  store.TakeRate("warm-up", RateLimit{.per_second = 1000, .burst = 1000}, Into(outcome));
  EXPECT_TRUE(Await(outcome).ok());
}

bool WaitUntilHealthy(const RedisLimitStore& store, bool healthy,
                      absl::Duration timeout = absl::Seconds(5)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (store.healthy() != healthy) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return true;
}

// The text between the first '{' and the next '}': what Redis Cluster hashes.
std::string HashTag(const std::string& key) {
  const size_t open = key.find('{');
  if (open == std::string::npos) return key;
  const size_t close = key.find('}', open + 1);
  if (close == std::string::npos || close == open + 1) return key;
  return key.substr(open + 1, close - open - 1);
}

absl::Duration Since(SteadyClock::time_point start) {
  return absl::FromChrono(SteadyClock::now() - start);
}

// A step's outcome, with when it was sent and answered (since an origin), for replaying the
// same sequence on LocalLimitStore's pure steps. Redis took the step somewhere in between.
struct TimedStep {
  absl::Duration sent;
  absl::Duration received;
  StepResult result;

  absl::Duration at() const { return sent + (received - sent) / 2; }
  absl::Duration round_trip() const { return received - sent; }
};

template <typename Call>
TimedStep Timed(SteadyClock::time_point origin, Call call) {
  const absl::Duration sent = Since(origin);
  absl::StatusOr<StepResult> result = call();
  const absl::Duration received = Since(origin);
  EXPECT_TRUE(result.ok()) << result.status();
  return TimedStep{sent, received, result.ok() ? *result : StepResult{}};
}

// Redis decides with its own clock, the replay with the client's at the middle of each round
// trip: a retry_after depends on two steps' times (the step's own and an earlier one's), each
// known to half its round trip. On an idle machine that is well under a millisecond; a loaded
// one stretches round trips, and the bound with them.
absl::Duration ClockSlack(const std::vector<TimedStep>& steps) {
  absl::Duration longest = absl::ZeroDuration();
  for (const TimedStep& step : steps) longest = std::max(longest, step.round_trip());
  return longest + absl::Milliseconds(1);
}

// ----------------------------------------------------------------------------------------------
// Options and URLs.

TEST(RedisUrlTest, ParsesEveryPart) {
  absl::StatusOr<RedisLimitStoreOptions> options =
      ParseRedisUrl("redis://gateway:p%40ss%3Aword@redis.internal:6380/3");
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->host, "redis.internal");
  EXPECT_EQ(options->port, 6380);
  EXPECT_EQ(options->username, "gateway");
  EXPECT_EQ(options->password, "p@ss:word");
  EXPECT_EQ(options->database, 3);
}

TEST(RedisUrlTest, KeepsDefaultsAndTheBaseOptions) {
  RedisLimitStoreOptions base;
  base.key_prefix = "gw";
  base.command_timeout = absl::Milliseconds(50);
  absl::StatusOr<RedisLimitStoreOptions> options = ParseRedisUrl("redis://:secret@[::1]", base);
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->host, "::1");
  EXPECT_EQ(options->port, 6379);
  EXPECT_EQ(options->username, "");
  EXPECT_EQ(options->password, "secret");
  EXPECT_EQ(options->database, 0);
  EXPECT_EQ(options->key_prefix, "gw");
  EXPECT_EQ(options->command_timeout, absl::Milliseconds(50));

  options = ParseRedisUrl("redis://localhost");
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->host, "localhost");
  EXPECT_EQ(options->port, 6379);
}

TEST(RedisUrlTest, RedissMeansTlsAndTheSchemeDecides) {
  RedisLimitStoreOptions base;
  base.tls.ca_file = "/etc/redis-ca.pem";
  absl::StatusOr<RedisLimitStoreOptions> options =
      ParseRedisUrl("rediss://gateway:pw@redis.example.com:6380/1", base);
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_TRUE(options->tls.enabled);
  EXPECT_EQ(options->tls.ca_file, "/etc/redis-ca.pem");
  EXPECT_EQ(options->host, "redis.example.com");
  EXPECT_EQ(options->port, 6380);
  EXPECT_EQ(options->username, "gateway");
  EXPECT_EQ(options->password, "pw");
  EXPECT_EQ(options->database, 1);

  options = ParseRedisUrl("rediss://[::1]");
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_TRUE(options->tls.enabled);
  EXPECT_EQ(options->host, "::1");
  EXPECT_EQ(options->port, 6379);

  // Not TLS because a base said so: only the scheme turns it on.
  options->host = "unused";
  options = ParseRedisUrl("redis://localhost", *options);
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_FALSE(options->tls.enabled);
  EXPECT_EQ(options->host, "localhost");
}

TEST(RedisUrlTest, RejectsMalformedUrlsNamingThePart) {
  const std::pair<const char*, const char*> cases[] = {
      {"http://localhost", "redis://"},          {"redis://:6379", "host"},
      {"redis://localhost:0", "port"},           {"redis://localhost:99999", "port"},
      {"redis://localhost:abc", "port"},         {"redis://localhost/x", "database"},
      {"redis://localhost/-1", "database"},      {"redis://secret@localhost", "userinfo"},
      {"redis://:bad%zz@localhost", "password"}, {"redis://[::1", "["},
      {"redis://localhost?timeout=1", "query"},  {"rediss://:6379", "host"},
      {"redis+tls://localhost", "rediss://"},    {"REDISS://localhost", "rediss://"},
  };
  for (const auto& [url, part] : cases) {
    absl::StatusOr<RedisLimitStoreOptions> options = ParseRedisUrl(url);
    EXPECT_EQ(options.status().code(), absl::StatusCode::kInvalidArgument) << url;
    EXPECT_THAT(std::string(options.status().message()), HasSubstr(part)) << url;
  }
}

TEST(RedisLimitStoreCreateTest, RejectsInvalidOptionsNamingTheField) {
  auto with = [](auto change) {
    RedisLimitStoreOptions options;
    change(options);
    return RedisLimitStore::Create(options).status();
  };
  EXPECT_THAT(std::string(with([](auto& o) { o.host = ""; }).message()), HasSubstr("redis.host"));
  EXPECT_THAT(std::string(with([](auto& o) { o.port = 0; }).message()), HasSubstr("redis.port"));
  EXPECT_THAT(
      std::string(with([](auto& o) { o.command_timeout = absl::ZeroDuration(); }).message()),
      HasSubstr("redis.command_timeout"));
  EXPECT_THAT(std::string(with([](auto& o) { o.key_prefix = "a{b}"; }).message()),
              HasSubstr("redis.key_prefix"));
  EXPECT_THAT(std::string(with([](auto& o) { o.max_backoff = absl::Milliseconds(1); }).message()),
              HasSubstr("redis.max_backoff"));
  EXPECT_EQ(with([](auto& o) { o.max_pipeline = 0; }).code(), absl::StatusCode::kInvalidArgument);
}

TEST(RedisLimitStoreCreateTest, RejectsUnusableTlsSettingsNamingTheField) {
  auto with = [](auto change) {
    RedisLimitStoreOptions options = TlsOptionsFor(6379);
    change(options);
    return RedisLimitStore::Create(options).status();
  };
  auto expect_invalid = [](const absl::Status& status, absl::string_view field,
                           absl::string_view why) {
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_THAT(std::string(status.message()), AllOf(HasSubstr(field), HasSubstr(why)));
  };
  expect_invalid(with([](auto& o) { o.tls.ca_file = Cert("no-such-ca.pem"); }), "redis.ca_file",
                 "no-such-ca.pem");
  // A key is not a certificate.
  expect_invalid(with([](auto& o) { o.tls.ca_file = Cert("ca.key"); }), "redis.ca_file", "ca.key");
  expect_invalid(with([](auto& o) { o.tls.cert_file = Cert("tenant-a.pem"); }), "redis.key_file",
                 "required with cert_file");
  expect_invalid(with([](auto& o) { o.tls.key_file = Cert("tenant-a.key"); }), "redis.cert_file",
                 "required with key_file");
  expect_invalid(with([](auto& o) {
                   o.tls.cert_file = Cert("tenant-a.key");
                   o.tls.key_file = Cert("tenant-a.key");
                 }),
                 "redis.cert_file", "tenant-a.key");
  expect_invalid(with([](auto& o) {
                   o.tls.cert_file = Cert("tenant-a.pem");
                   o.tls.key_file = Cert("tenant-b.key");
                 }),
                 "redis.key_file", "key values mismatch");
  // TLS files without TLS: the operator believes the connection is encrypted; it would not be.
  expect_invalid(with([](auto& o) { o.tls.enabled = false; }), "redis.ca_file", "rediss://");

  // Usable: the test CA, the system's trust store, a client certificate with its key.
  EXPECT_TRUE(with([](auto&) {}).ok());
  EXPECT_TRUE(with([](auto& o) { o.tls.ca_file.clear(); }).ok());
  EXPECT_TRUE(with([](auto& o) {
                o.tls.cert_file = Cert("tenant-a.pem");
                o.tls.key_file = Cert("tenant-a.key");
              }).ok());
}

TEST(RedisLimitStoreCreateTest, LimitsThatLimitNothingAreDecidedWithoutRedis) {
  absl::StatusOr<int> port = FreeLoopbackPort();  // Nothing listens there.
  ASSERT_TRUE(port.ok());
  std::unique_ptr<RedisLimitStore> store = MakeStore(OptionsFor(*port));
  ASSERT_NE(store, nullptr);
  absl::StatusOr<StepResult> rate = TakeRate(*store, "k", RateLimit{.per_second = 0});
  ASSERT_TRUE(rate.ok()) << rate.status();
  EXPECT_TRUE(rate->allowed);
  absl::StatusOr<StepResult> windows = TakeWindows(*store, "k", {WindowLimit{.max_requests = 0}});
  ASSERT_TRUE(windows.ok()) << windows.status();
  EXPECT_TRUE(windows->allowed);
  absl::StatusOr<SlotResult> slot = AcquireSlot(*store, "k", 0, absl::Seconds(1));
  ASSERT_TRUE(slot.ok()) << slot.status();
  EXPECT_TRUE(slot->acquired);
  store->ReleaseSlot("k", slot->lease_id);
}

// ----------------------------------------------------------------------------------------------
// Semantics against one redis-server per wire shared by the suite (flushed before each test):
// every decision is the same over plain TCP and over TLS.

class RedisLimitStoreTest : public ::testing::TestWithParam<Wire> {
 protected:
  static void SetUpTestSuite() {
    for (Wire wire : {Wire::kPlain, Wire::kTls}) {
      absl::StatusOr<std::unique_ptr<RedisServer>> server = StartServer(wire);
      ASSERT_TRUE(server.ok()) << server.status();
      servers_[static_cast<int>(wire)] = server->release();
    }
  }
  static void TearDownTestSuite() {
    for (RedisServer*& server : servers_) {
      delete server;
      server = nullptr;
    }
  }
  void SetUp() override {
    server_ = servers_[static_cast<int>(GetParam())];
    ASSERT_NE(server_, nullptr);
    ASSERT_TRUE(server_->Command({"FLUSHALL"}).ok());
    store_ = MakeStore(Options());
    ASSERT_NE(store_, nullptr);
    ASSERT_TRUE(WaitUntilHealthy(*store_, true));
    WarmUp(*store_);
    // The warm-up's key lives a millisecond, which a fast test can still see in KEYS * (one did
    // in CI): tests start on an empty database. FLUSHALL keeps the loaded scripts.
    ASSERT_TRUE(server_->Command({"FLUSHALL"}).ok());
  }

  // Options for another store on this test's server and wire.
  RedisLimitStoreOptions Options() const {
    return OptionsOver(GetParam(), StorePort(GetParam(), *server_));
  }

  std::vector<std::string> Query(const std::vector<std::string>& args) {
    absl::StatusOr<std::vector<std::string>> reply = server_->Command(args);
    EXPECT_TRUE(reply.ok()) << reply.status();
    return reply.ok() ? *reply : std::vector<std::string>{};
  }

  static RedisServer* servers_[2];  // By Wire.
  RedisServer* server_ = nullptr;
  std::unique_ptr<RedisLimitStore> store_;
};

RedisServer* RedisLimitStoreTest::servers_[2] = {nullptr, nullptr};

INSTANTIATE_TEST_SUITE_P(Wires, RedisLimitStoreTest, ::testing::Values(Wire::kPlain, Wire::kTls),
                         WireName);

TEST_P(RedisLimitStoreTest, GcraBurstThenRefusalMatchesLocalStep) {
  const RateLimit limit{.per_second = 1, .burst = 5};
  const SteadyClock::time_point origin = SteadyClock::now();
  std::vector<TimedStep> steps;
  for (int i = 0; i < 7; ++i) {
    steps.push_back(Timed(origin, [&] { return TakeRate(*store_, "tenant:a:answer", limit); }));
  }
  // The same sequence through LocalLimitStore's step, at the same (client) times.
  const absl::Time start = absl::FromUnixSeconds(1'800'000'000);
  absl::Time tat = absl::InfinitePast();
  for (int i = 0; i < 7; ++i) {
    const StepResult local = LocalLimitStore::GcraStep(start + steps[i].at(), limit, tat);
    EXPECT_EQ(steps[i].result.allowed, local.allowed) << "step " << i;
    EXPECT_LE(absl::AbsDuration(steps[i].result.retry_after - local.retry_after), ClockSlack(steps))
        << "step " << i << ": redis " << steps[i].result.retry_after << ", local "
        << local.retry_after;
  }
  // Burst of 5, then refusal with retry_after ~ 1/rate minus the time the burst took.
  EXPECT_TRUE(steps[4].result.allowed);
  EXPECT_FALSE(steps[5].result.allowed);
  EXPECT_GE(steps[5].result.retry_after,
            absl::Seconds(1) - (steps[5].received - steps[0].sent) - absl::Milliseconds(1));
  EXPECT_LE(steps[5].result.retry_after, absl::Seconds(1));
}

TEST_P(RedisLimitStoreTest, GcraRetryAfterIsAccurateToAFewMilliseconds) {
  const RateLimit limit{.per_second = 2, .burst = 1};  // One call per 500 ms.
  const SteadyClock::time_point origin = SteadyClock::now();
  const TimedStep taken = Timed(origin, [&] { return TakeRate(*store_, "k", limit); });
  ASSERT_TRUE(taken.result.allowed);
  const TimedStep first = Timed(origin, [&] { return TakeRate(*store_, "k", limit); });
  ASSERT_FALSE(first.result.allowed);
  EXPECT_LE(first.result.retry_after, absl::Milliseconds(500));
  EXPECT_GE(first.result.retry_after,
            absl::Milliseconds(500) - (first.received - taken.sent) - absl::Milliseconds(1));

  // Part of the wait later, the promise has shrunk by exactly the time that passed.
  absl::SleepFor(first.result.retry_after - absl::Milliseconds(200));
  const TimedStep second = Timed(origin, [&] { return TakeRate(*store_, "k", limit); });
  ASSERT_FALSE(second.result.allowed);
  const absl::Duration passed = second.at() - first.at();
  EXPECT_LE(absl::AbsDuration(first.result.retry_after - second.result.retry_after - passed),
            ClockSlack({first, second}))
      << "first " << first.result.retry_after << ", second " << second.result.retry_after
      << ", passed " << passed;

  // And it is kept: after retry_after (plus a millisecond of slack) the call conforms.
  absl::SleepFor(second.result.retry_after + absl::Milliseconds(1));
  EXPECT_TRUE(TakeRate(*store_, "k", limit)->allowed);
}

TEST_P(RedisLimitStoreTest, SlidingWindowsMatchLocalStep) {
  const std::vector<WindowLimit> windows = {{.max_requests = 2, .window = absl::Milliseconds(400)},
                                            {.max_requests = 3, .window = absl::Seconds(10)}};
  const SteadyClock::time_point origin = SteadyClock::now();
  auto take = [&] { return TakeWindows(*store_, "tenant:a:answer", windows); };
  std::vector<TimedStep> steps;
  steps.push_back(Timed(origin, take));  // allowed
  steps.push_back(Timed(origin, take));  // allowed
  steps.push_back(Timed(origin, take));  // refused by the 400 ms window
  ASSERT_FALSE(steps.back().result.allowed);
  absl::SleepFor(steps.back().result.retry_after + absl::Milliseconds(30));
  steps.push_back(Timed(origin, take));  // allowed
  steps.push_back(Timed(origin, take));  // refused by the 10 s window

  const absl::Time start = absl::FromUnixSeconds(1'800'000'000);
  std::deque<absl::Time> log;
  for (size_t i = 0; i < steps.size(); ++i) {
    const StepResult local = LocalLimitStore::WindowStep(start + steps[i].at(), windows, log);
    EXPECT_EQ(steps[i].result.allowed, local.allowed) << "step " << i;
    EXPECT_LE(absl::AbsDuration(steps[i].result.retry_after - local.retry_after), ClockSlack(steps))
        << "step " << i << ": redis " << steps[i].result.retry_after << ", local "
        << local.retry_after;
  }
  std::vector<bool> allowed;
  for (const TimedStep& step : steps) allowed.push_back(step.result.allowed);
  EXPECT_THAT(allowed, ElementsAre(true, true, false, true, false));
  EXPECT_LE(steps[2].result.retry_after, absl::Milliseconds(400));
  EXPECT_GE(steps[2].result.retry_after,
            absl::Milliseconds(400) - (steps[2].received - steps[0].sent) - absl::Milliseconds(1));
  EXPECT_LE(steps[4].result.retry_after, absl::Seconds(10));
  EXPECT_GE(steps[4].result.retry_after,
            absl::Seconds(10) - (steps[4].received - steps[0].sent) - absl::Milliseconds(1));
  // Three calls were allowed; the two refused ones are not in the log.
  EXPECT_THAT(Query({"ZCARD", "copilot:{tenant:a:answer}:win"}), ElementsAre("3"));
}

TEST_P(RedisLimitStoreTest, RefusedWindowCallsRecordNothing) {
  const std::vector<WindowLimit> windows = {{.max_requests = 1, .window = absl::Milliseconds(300)}};
  ASSERT_TRUE(TakeWindows(*store_, "k", windows)->allowed);
  absl::Duration last_retry;
  for (int i = 0; i < 10; ++i) {
    absl::StatusOr<StepResult> refused = TakeWindows(*store_, "k", windows);
    ASSERT_TRUE(refused.ok()) << refused.status();
    EXPECT_FALSE(refused->allowed);
    last_retry = refused->retry_after;
  }
  EXPECT_THAT(Query({"ZCARD", "copilot:{k}:win"}), ElementsAre("1"));
  // Had the refusals been recorded, the window would still be full after the first call's
  // entry left it.
  absl::SleepFor(last_retry + absl::Milliseconds(5));
  EXPECT_TRUE(TakeWindows(*store_, "k", windows)->allowed);
}

// Fires `count` steps from two stores ("replicas") and two threads at once; returns how many
// were allowed.
template <typename Fire>
int CountAllowed(RedisLimitStore& a, RedisLimitStore& b, int count, Fire fire) {
  std::vector<std::shared_ptr<Outcome<StepResult>>> outcomes;
  for (int i = 0; i < count; ++i) outcomes.push_back(std::make_shared<Outcome<StepResult>>());
  std::thread second([&] {
    for (int i = 1; i < count; i += 2) fire(b, Into(outcomes[i]));
  });
  for (int i = 0; i < count; i += 2) fire(a, Into(outcomes[i]));
  second.join();
  int allowed = 0;
  for (const auto& outcome : outcomes) {
    absl::StatusOr<StepResult> result = Await(outcome);
    EXPECT_TRUE(result.ok()) << result.status();
    if (result.ok() && result->allowed) ++allowed;
  }
  return allowed;
}

TEST_P(RedisLimitStoreTest, TwoReplicasNeverAdmitMoreThanTheLimitTogether) {
  std::unique_ptr<RedisLimitStore> other = MakeStore(Options());
  ASSERT_NE(other, nullptr);
  ASSERT_TRUE(WaitUntilHealthy(*other, true));

  const std::vector<WindowLimit> windows = {{.max_requests = 20, .window = absl::Seconds(10)}};
  EXPECT_EQ(CountAllowed(*store_, *other, 50,
                         [&](RedisLimitStore& store, StoreCallback<StepResult> done) {
                           store.TakeWindows("tenant:a:answer", windows, std::move(done));
                         }),
            20);
  EXPECT_THAT(Query({"ZCARD", "copilot:{tenant:a:answer}:win"}), ElementsAre("20"));

  const RateLimit rate{.per_second = 0.1, .burst = 10};
  EXPECT_EQ(CountAllowed(*store_, *other, 40,
                         [&](RedisLimitStore& store, StoreCallback<StepResult> done) {
                           store.TakeRate("tenant:a:answer", rate, std::move(done));
                         }),
            10);

  std::vector<std::shared_ptr<Outcome<SlotResult>>> slots;
  for (int i = 0; i < 30; ++i) {
    slots.push_back(std::make_shared<Outcome<SlotResult>>());
    (i % 2 == 0 ? *store_ : *other)
        .AcquireSlot("tenant:a:answer", 5, absl::Seconds(10), Into(slots.back()));
  }
  int acquired = 0;
  for (const auto& slot : slots) {
    absl::StatusOr<SlotResult> result = Await(slot);
    ASSERT_TRUE(result.ok()) << result.status();
    acquired += result->acquired ? 1 : 0;
  }
  EXPECT_EQ(acquired, 5);
}

TEST_P(RedisLimitStoreTest, CountersAreAllOrNothingLikeTheLocalStoreAndExactAcrossReplicas) {
  const absl::Time expires = absl::Now() + absl::Hours(1);
  auto add = [](LimitStore& store, std::vector<CounterStep> steps) {
    auto outcome = std::make_shared<Outcome<CounterResult>>();
    store.AddToCounters("quota:acme", steps, Into(outcome));
    return Await(outcome);
  };
  absl::StatusOr<CounterResult> result =
      add(*store_, {{"answers:day:x", 2, 0, expires}, {"chars:day:x", 40, 0, expires}});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->added);
  EXPECT_EQ(result->refused, -1);
  EXPECT_EQ(result->values, (std::vector<int64_t>{2, 40}));
  // The second counter would pass its max: refused, nothing added (values as they are).
  result = add(*store_, {{"answers:day:x", 1, 5, expires}, {"chars:day:x", 11, 50, expires}});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_FALSE(result->added);
  EXPECT_EQ(result->refused, 1);
  EXPECT_EQ(result->values, (std::vector<int64_t>{2, 40}));
  // Never below zero; keys of one group share a hash tag and expire when asked.
  result = add(*store_, {{"answers:day:x", -5, 0, expires}});
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->values, (std::vector<int64_t>{0}));
  EXPECT_THAT(Query({"GET", "copilot:{quota:acme}:chars:day:x"}), ElementsAre("40"));
  std::vector<std::string> ttl = Query({"PTTL", "copilot:{quota:acme}:chars:day:x"});
  ASSERT_EQ(ttl.size(), 1u);
  int64_t pttl = 0;
  ASSERT_TRUE(absl::SimpleAtoi(ttl[0], &pttl));
  EXPECT_GT(pttl, 3500 * 1000);
  EXPECT_LE(pttl, 3600 * 1000);

  // Two replicas racing for the last of a quota of 25: exactly 25.
  std::unique_ptr<RedisLimitStore> other = MakeStore(Options());
  ASSERT_NE(other, nullptr);
  ASSERT_TRUE(WaitUntilHealthy(*other, true));
  std::vector<std::shared_ptr<Outcome<CounterResult>>> outcomes;
  for (int i = 0; i < 60; ++i) {
    outcomes.push_back(std::make_shared<Outcome<CounterResult>>());
    (i % 2 == 0 ? *store_ : *other)
        .AddToCounters("quota:acme", {{"answers:month:x", 1, 25, expires}}, Into(outcomes.back()));
  }
  int added = 0;
  for (const auto& outcome : outcomes) {
    absl::StatusOr<CounterResult> r = Await(outcome);
    ASSERT_TRUE(r.ok()) << r.status();
    added += r->added ? 1 : 0;
  }
  EXPECT_EQ(added, 25);
  EXPECT_THAT(Query({"GET", "copilot:{quota:acme}:answers:month:x"}), ElementsAre("25"));
}

TEST_P(RedisLimitStoreTest, SlotsCapConcurrencyUntilOneIsReleased) {
  std::vector<std::string> leases;
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<SlotResult> slot = AcquireSlot(*store_, "k", 3, absl::Seconds(30));
    ASSERT_TRUE(slot.ok()) << slot.status();
    ASSERT_TRUE(slot->acquired) << i;
    EXPECT_THAT(slot->lease_id, ::testing::MatchesRegex("[0-9a-f]{32}"));
    leases.push_back(slot->lease_id);
  }
  EXPECT_NE(leases[0], leases[1]);
  absl::StatusOr<SlotResult> fourth = AcquireSlot(*store_, "k", 3, absl::Seconds(30));
  ASSERT_TRUE(fourth.ok()) << fourth.status();
  EXPECT_FALSE(fourth->acquired);
  EXPECT_EQ(fourth->lease_id, "");

  store_->ReleaseSlot("k", "no-such-lease");  // Ignored.
  store_->ReleaseSlot("k", leases[1]);
  absl::StatusOr<SlotResult> again = AcquireSlot(*store_, "k", 3, absl::Seconds(30));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->acquired);
  EXPECT_THAT(Query({"ZRANGE", "copilot:{k}:slots", "0", "-1"}),
              UnorderedElementsAre(leases[0], leases[2], again->lease_id));
}

TEST_P(RedisLimitStoreTest, LeasesOfADeadReplicaExpireByThemselves) {
  {
    std::unique_ptr<RedisLimitStore> dying = MakeStore(Options());
    ASSERT_NE(dying, nullptr);
    for (int i = 0; i < 2; ++i) {
      absl::StatusOr<SlotResult> slot = AcquireSlot(*dying, "k", 2, absl::Milliseconds(300));
      ASSERT_TRUE(slot.ok()) << slot.status();
      ASSERT_TRUE(slot->acquired);
    }
  }  // The replica is gone without releasing.
  const SteadyClock::time_point start = SteadyClock::now();
  absl::StatusOr<SlotResult> refused = AcquireSlot(*store_, "k", 2, absl::Seconds(30));
  ASSERT_TRUE(refused.ok()) << refused.status();
  EXPECT_FALSE(refused->acquired);
  absl::SleepFor(absl::Milliseconds(320) - Since(start));
  absl::StatusOr<SlotResult> freed = AcquireSlot(*store_, "k", 2, absl::Seconds(30));
  ASSERT_TRUE(freed.ok()) << freed.status();
  EXPECT_TRUE(freed->acquired);
  // The expired leases were removed, not just ignored.
  EXPECT_THAT(Query({"ZCARD", "copilot:{k}:slots"}), ElementsAre("1"));
}

TEST_P(RedisLimitStoreTest, KeysOfOneKeyShareOneHashTagAndExpire) {
  const std::string key = "tenant:payroll:answer";
  // One every 20 seconds: the TAT key lives one interval (20 s), far longer than a loaded machine
  // takes to run the queries below over TLS (at 2 per second its 500 ms once ran out before KEYS
  // asked, in CI). That it lives no longer than the interval is read from PTTL, not waited for.
  ASSERT_TRUE(TakeRate(*store_, key, RateLimit{.per_second = 0.05, .burst = 1}).ok());
  ASSERT_TRUE(TakeWindows(*store_, key, {{.max_requests = 5, .window = absl::Seconds(60)}}).ok());
  ASSERT_TRUE(AcquireSlot(*store_, key, 2, absl::Seconds(30)).ok());

  const std::vector<std::string> keys = Query({"KEYS", "*"});
  EXPECT_THAT(keys, UnorderedElementsAre("copilot:{tenant:payroll:answer}:rate",
                                         "copilot:{tenant:payroll:answer}:win",
                                         "copilot:{tenant:payroll:answer}:slots"));
  for (const std::string& redis_key : keys) {
    EXPECT_EQ(HashTag(redis_key), key) << redis_key;
    // Every key expires: idle keys vanish.
    const std::vector<std::string> ttl = Query({"PTTL", redis_key});
    ASSERT_EQ(ttl.size(), 1u);
    EXPECT_GT(std::stoll(ttl[0]), 0) << redis_key;
  }
  // The TAT key lives only as long as it matters: one interval, not the window's minute.
  EXPECT_LE(std::stoll(Query({"PTTL", "copilot:{tenant:payroll:answer}:rate"})[0]), 20'000);
  EXPECT_LE(std::stoll(Query({"PTTL", "copilot:{tenant:payroll:answer}:win"})[0]), 60'000);
  EXPECT_GT(std::stoll(Query({"PTTL", "copilot:{tenant:payroll:answer}:win"})[0]), 20'000);
}

TEST_P(RedisLimitStoreTest, KeyPrefixIsConfigurable) {
  RedisLimitStoreOptions options = Options();
  options.key_prefix = "gw-eu";
  std::unique_ptr<RedisLimitStore> store = MakeStore(options);
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(TakeRate(*store, "upstream:answer", RateLimit{.per_second = 1, .burst = 1}).ok());
  EXPECT_THAT(Query({"KEYS", "*"}), ElementsAre("gw-eu:{upstream:answer}:rate"));
  EXPECT_EQ(RedisLimitStore::RedisKey("gw-eu", "upstream:answer", "slots"),
            "gw-eu:{upstream:answer}:slots");
}

TEST_P(RedisLimitStoreTest, AScriptErrorFailsThatCallOnlyAndKeepsTheConnection) {
  // A key of the wrong type (someone else's data under our prefix).
  ASSERT_FALSE(Query({"SET", "copilot:{k}:win", "not a zset"}).empty());
  absl::StatusOr<StepResult> broken =
      TakeWindows(*store_, "k", {{.max_requests = 5, .window = absl::Seconds(1)}});
  EXPECT_EQ(broken.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(broken.status().message()),
              AllOf(HasSubstr("sliding window script"), HasSubstr("WRONGTYPE")));
  EXPECT_TRUE(store_->healthy());
  absl::StatusOr<StepResult> fine = TakeRate(*store_, "k", RateLimit{.per_second = 1, .burst = 1});
  ASSERT_TRUE(fine.ok()) << fine.status();
  EXPECT_TRUE(fine->allowed);
}

TEST_P(RedisLimitStoreTest, ForgottenScriptsAreSentAgainWithEval) {
  ASSERT_TRUE(TakeRate(*store_, "k", RateLimit{.per_second = 1, .burst = 2})->allowed);
  Query({"SCRIPT", "FLUSH"});
  absl::StatusOr<StepResult> second =
      TakeRate(*store_, "k", RateLimit{.per_second = 1, .burst = 2});
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_TRUE(second->allowed);
  absl::StatusOr<StepResult> third = TakeRate(*store_, "k", RateLimit{.per_second = 1, .burst = 2});
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_FALSE(third->allowed);
  EXPECT_TRUE(store_->healthy());
}

class RedisLimitStoreAuthTest : public ::testing::TestWithParam<Wire> {};

INSTANTIATE_TEST_SUITE_P(Wires, RedisLimitStoreAuthTest,
                         ::testing::Values(Wire::kPlain, Wire::kTls), WireName);

TEST_P(RedisLimitStoreAuthTest, UsesThePasswordAndTheDatabase) {
  absl::StatusOr<std::unique_ptr<RedisServer>> server =
      StartServer(GetParam(), 0, {"--requirepass", "s3cret-pw"});
  ASSERT_TRUE(server.ok()) << server.status();
  absl::StatusOr<RedisLimitStoreOptions> options =
      ParseRedisUrl(absl::StrCat(GetParam() == Wire::kTls ? "rediss" : "redis",
                                 "://:s3cret-pw@127.0.0.1:", StorePort(GetParam(), **server), "/2"),
                    OptionsOver(GetParam(), 0));
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->tls.enabled, GetParam() == Wire::kTls);
  std::unique_ptr<RedisLimitStore> store = MakeStore(*options);
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(WaitUntilHealthy(*store, true));
  ASSERT_TRUE(TakeRate(*store, "k", RateLimit{.per_second = 1, .burst = 1})->allowed);
  EXPECT_THAT(*(*server)->Command({"KEYS", "*"}, 2), ElementsAre("copilot:{k}:rate"));
  EXPECT_THAT(*(*server)->Command({"KEYS", "*"}, 0), ::testing::IsEmpty());

  options->password = "wrong-pw";
  std::unique_ptr<RedisLimitStore> refused = MakeStore(*options);
  ASSERT_NE(refused, nullptr);
  absl::StatusOr<StepResult> step = TakeRate(*refused, "k", RateLimit{.per_second = 1});
  EXPECT_EQ(step.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(step.status().message()),
              AllOf(HasSubstr("AUTH"), Not(HasSubstr("wrong-pw"))));
  EXPECT_FALSE(refused->healthy());
}

// ----------------------------------------------------------------------------------------------
// Failures: each test has its own redis-server to kill; over plain TCP and over TLS.

class RedisLimitStoreFailureTest : public ::testing::TestWithParam<Wire> {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<RedisServer>> server = StartServer(GetParam());
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    options_ = OptionsOver(GetParam(), StorePort(GetParam(), *server_));
    store_ = MakeStore(options_);
    ASSERT_NE(store_, nullptr);
    ASSERT_TRUE(WaitUntilHealthy(*store_, true));
    WarmUp(*store_);
    // The warm-up's key lives a millisecond, which a fast test can still see in KEYS * (one did
    // in CI): tests start on an empty database. FLUSHALL keeps the loaded scripts.
    ASSERT_TRUE(server_->Command({"FLUSHALL"}).ok());
  }

  // One TakeRate, with how long its callback took.
  std::pair<absl::StatusOr<StepResult>, absl::Duration> TimedTakeRate() {
    const SteadyClock::time_point start = SteadyClock::now();
    absl::StatusOr<StepResult> result = TakeRate(*store_, "k", kLimit);
    return {result, Since(start)};
  }

  static constexpr RateLimit kLimit{.per_second = 1000, .burst = 1000};
  std::unique_ptr<RedisServer> server_;
  RedisLimitStoreOptions options_;
  std::unique_ptr<RedisLimitStore> store_;
};

INSTANTIATE_TEST_SUITE_P(Wires, RedisLimitStoreFailureTest,
                         ::testing::Values(Wire::kPlain, Wire::kTls), WireName);

TEST_P(RedisLimitStoreFailureTest, KilledRedisFailsPromptlyThenTheStoreRecoversByItself) {
  ASSERT_TRUE(TakeRate(*store_, "k", kLimit)->allowed);
  server_->Kill();

  auto [failed, took] = TimedTakeRate();
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(failed.status().message()),
              HasSubstr(absl::StrCat("127.0.0.1:", StorePort(GetParam(), *server_))));
  EXPECT_LE(took, options_.command_timeout);
  EXPECT_FALSE(store_->healthy());
  // While Redis is away, calls keep failing fast (back-off, no connection attempt per call).
  for (int i = 0; i < 20; ++i) {
    auto [again, again_took] = TimedTakeRate();
    EXPECT_EQ(again.status().code(), absl::StatusCode::kUnavailable);
    EXPECT_LE(again_took, options_.command_timeout);
  }

  ASSERT_TRUE(server_->Restart().ok());
  const SteadyClock::time_point restarted = SteadyClock::now();
  ASSERT_TRUE(WaitUntilHealthy(*store_, true, absl::Seconds(5)));
  EXPECT_LE(Since(restarted), options_.max_backoff + absl::Milliseconds(500));
  absl::StatusOr<StepResult> recovered = TakeRate(*store_, "k", kLimit);
  ASSERT_TRUE(recovered.ok()) << recovered.status();
  EXPECT_TRUE(recovered->allowed);
}

TEST_P(RedisLimitStoreFailureTest, StalledRedisTimesOutWithinTheCommandTimeout) {
  server_->Stall();
  auto [failed, took] = TimedTakeRate();
  server_->Resume();
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(failed.status().message()),
              HasSubstr("no reply within the command timeout"));
  EXPECT_LE(took, options_.command_timeout + absl::Milliseconds(100));
  EXPECT_GE(took, options_.command_timeout - absl::Milliseconds(10));
  EXPECT_FALSE(store_->healthy());
  ASSERT_TRUE(WaitUntilHealthy(*store_, true, absl::Seconds(5)));
  EXPECT_TRUE(TakeRate(*store_, "k", kLimit).ok());
}

// Redis slower than the decisions asked of it (here: another client keeps it busy with 150 ms
// scripts, so each round trip takes up to 150 ms, under the 300 ms command timeout, and succeeds;
// one decision per round trip). Before, the queue grew without end and every caller waited
// behind it (a review measured probes of another tenant waiting 40 s) while the store stayed
// healthy. Now a decision that waited past the command timeout fails UNAVAILABLE (the caller
// falls back as when Redis is away) and the store reports itself unhealthy.
TEST_P(RedisLimitStoreFailureTest, DecisionsThatWaitedPastTheCommandTimeoutFailInsteadOfQueueing) {
  RedisLimitStoreOptions options = options_;
  options.max_pipeline = 1;
  std::unique_ptr<RedisLimitStore> store = MakeStore(options);
  ASSERT_TRUE(WaitUntilHealthy(*store, true));
  WarmUp(*store);
  std::atomic<bool> busy{true};
  std::thread hog([&] {
    const std::string spin =
        "local t = redis.call('TIME') local start = t[1] * 1000000 + t[2] "
        "repeat local n = redis.call('TIME') until n[1] * 1000000 + n[2] - start > 150000";
    while (busy.load()) (void)server_->Command({"EVAL", spin, "0"});
  });
  absl::SleepFor(absl::Milliseconds(50));
  constexpr int kCalls = 40;
  std::vector<std::shared_ptr<Outcome<StepResult>>> outcomes;
  const SteadyClock::time_point start = SteadyClock::now();
  for (int i = 0; i < kCalls; ++i) {
    outcomes.push_back(std::make_shared<Outcome<StepResult>>());
    store->TakeRate(absl::StrCat("k", i), kLimit, Into(outcomes.back()));
  }
  int waited = 0;
  for (const auto& outcome : outcomes) {
    const absl::StatusOr<StepResult> result = Await(outcome);
    if (!result.ok() && absl::StrContains(result.status().message(), "for its turn")) ++waited;
  }
  const absl::Duration took = Since(start);
  EXPECT_FALSE(store->healthy());
  busy.store(false);
  hog.join();
  // At one decision per round trip of up to 150 ms, 40 took about 3-6 s before, and none failed
  // for waiting. How many fail now depends on the round trips' timing (a sanitizer build's
  // slower ones did not always give half): at least one must.
  EXPECT_LT(took, absl::Seconds(2));
  EXPECT_GE(waited, 1);
}

// A release (the slot's ZREM) that fails because the connection broke is sent again once Redis
// is back. Before, it was dropped, and the lease held a slot of every replica until it expired
// (slot_ttl, 6 minutes by default): a tenant with max_concurrent_answers N was locked out.
TEST_P(RedisLimitStoreFailureTest, AReleaseLostWithTheConnectionIsSentAgain) {
  absl::StatusOr<SlotResult> slot = AcquireSlot(*store_, "t", 1, absl::Minutes(5));
  ASSERT_TRUE(slot.ok() && slot->acquired) << slot.status();
  // The store's connection ends before the release reaches Redis.
  ASSERT_TRUE(server_->Command({"CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"}).ok());
  store_->ReleaseSlot("t", slot->lease_id);
  const bool released = [&] {
    const absl::Time deadline = absl::Now() + options_.max_backoff + absl::Seconds(3);
    while (absl::Now() < deadline) {
      absl::StatusOr<std::vector<std::string>> left =
          server_->Command({"ZCARD", "copilot:{t}:slots"});
      if (left.ok() && left->size() == 1 && (*left)[0] == "0") return true;
      absl::SleepFor(absl::Milliseconds(20));
    }
    return false;
  }();
  EXPECT_TRUE(released) << "the lease is still held";
  absl::StatusOr<SlotResult> again = AcquireSlot(*store_, "t", 1, absl::Minutes(5));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->acquired);
}

// Connected, but Redis refuses every script (out of memory here; MISCONF, BUSY, LOADING,
// NOREPLICAS alike): before, the store stayed healthy, so neither the degraded gauge nor its
// alert nor a warning showed why every call failed (fail_closed) or fell back (fail_open).
TEST_P(RedisLimitStoreFailureTest, RedisRefusingScriptsMakesTheStoreUnhealthyUntilTheyPass) {
  ASSERT_TRUE(server_->Command({"CONFIG", "SET", "maxmemory", "1"}).ok());
  absl::StatusOr<StepResult> refused = TakeRate(*store_, "k", kLimit);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("OOM"));
  EXPECT_FALSE(store_->healthy());
  absl::SleepFor(options_.health_check_interval * 3);  // PING still answers: stays unhealthy.
  EXPECT_FALSE(store_->healthy());
  ASSERT_TRUE(server_->Command({"CONFIG", "SET", "maxmemory", "0"}).ok());
  absl::StatusOr<StepResult> passed = TakeRate(*store_, "k", kLimit);
  ASSERT_TRUE(passed.ok()) << passed.status();
  EXPECT_TRUE(store_->healthy());
}

TEST_P(RedisLimitStoreFailureTest, HealthFollowsRedisWithoutTraffic) {
  server_->Kill();
  // The idle connection's health check notices (health_check_interval is 200 ms).
  EXPECT_TRUE(WaitUntilHealthy(*store_, false, absl::Seconds(2)));
  ASSERT_TRUE(server_->Restart().ok());
  EXPECT_TRUE(WaitUntilHealthy(*store_, true, absl::Seconds(5)));
}

TEST_P(RedisLimitStoreFailureTest, UnreachableAtStartFailsFastAndConnectsWhenRedisComes) {
  absl::StatusOr<int> port = FreeLoopbackPort();
  ASSERT_TRUE(port.ok());
  store_ = MakeStore(OptionsOver(GetParam(), *port));
  ASSERT_NE(store_, nullptr);
  const SteadyClock::time_point start = SteadyClock::now();
  absl::StatusOr<StepResult> failed = TakeRate(*store_, "k", kLimit);
  EXPECT_LE(Since(start), options_.command_timeout);
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(failed.status().message()), HasSubstr("cannot connect to redis"));
  EXPECT_FALSE(store_->healthy());

  absl::StatusOr<std::unique_ptr<RedisServer>> late = StartServer(GetParam(), *port);
  ASSERT_TRUE(late.ok()) << late.status();
  ASSERT_TRUE(WaitUntilHealthy(*store_, true, absl::Seconds(5)));
  EXPECT_TRUE(TakeRate(*store_, "k", kLimit).ok());
}

TEST_P(RedisLimitStoreFailureTest, ShutdownFailsEveryPendingCallbackExactlyOnce) {
  options_.command_timeout = absl::Seconds(1);
  store_ = MakeStore(options_);
  ASSERT_NE(store_, nullptr);
  ASSERT_TRUE(WaitUntilHealthy(*store_, true));
  server_->Stall();
  // The first call holds the store's thread in a round trip; the rest wait in its queue.
  auto first = std::make_shared<Outcome<StepResult>>();
  store_->TakeRate("k", kLimit, Into(first));
  absl::SleepFor(absl::Milliseconds(100));
  std::vector<std::shared_ptr<Outcome<StepResult>>> steps;
  std::vector<std::shared_ptr<Outcome<SlotResult>>> slots;
  for (int i = 0; i < 20; ++i) {
    steps.push_back(std::make_shared<Outcome<StepResult>>());
    store_->TakeWindows("k", {{.max_requests = 5}}, Into(steps.back()));
    slots.push_back(std::make_shared<Outcome<SlotResult>>());
    store_->AcquireSlot("k", 5, absl::Seconds(1), Into(slots.back()));
    store_->ReleaseSlot("k", "lease");
  }
  store_.reset();
  server_->Resume();

  EXPECT_EQ(first->calls.load(), 1);
  EXPECT_EQ(first->result.status().code(), absl::StatusCode::kUnavailable);
  for (const auto& step : steps) {
    EXPECT_EQ(step->calls.load(), 1);
    EXPECT_EQ(step->result.status().code(), absl::StatusCode::kUnavailable);
    EXPECT_THAT(std::string(step->result.status().message()), HasSubstr("store shut down"));
  }
  for (const auto& slot : slots) {
    EXPECT_EQ(slot->calls.load(), 1);
    EXPECT_EQ(slot->result.status().code(), absl::StatusCode::kUnavailable);
    EXPECT_THAT(std::string(slot->result.status().message()), HasSubstr("store shut down"));
  }
}

}  // namespace
}  // namespace copilot::gateway

namespace copilot::gateway {
namespace {

// ----------------------------------------------------------------------------------------------
// TLS: what must not connect fails like any other outage (UNAVAILABLE within the timeouts, the
// cause in the message, unhealthy, reconnection by itself), and what must connect does.

class RedisLimitStoreTlsTest : public ::testing::Test {
 protected:
  static constexpr RateLimit kLimit{.per_second = 1000, .burst = 1000};
  // What a machine shared with other builds adds to a bound.
  static constexpr absl::Duration kSlack = absl::Milliseconds(300);

  struct FirstCall {
    absl::StatusOr<StepResult> result;
    absl::Duration took;  // Since the store was created (it connects at once).
    bool healthy = true;
  };

  // Creates a store (kept in store_) and makes one call as it starts connecting.
  FirstCall CallNewStore(const RedisLimitStoreOptions& options) {
    const SteadyClock::time_point start = SteadyClock::now();
    store_ = MakeStore(options);
    if (store_ == nullptr) return {absl::InternalError("no store"), absl::ZeroDuration(), false};
    FirstCall call;
    call.result = TakeRate(*store_, "k", kLimit);
    call.took = Since(start);
    call.healthy = store_->healthy();
    return call;
  }

  static void ExpectRefused(const FirstCall& call, absl::Duration bound,
                            const std::vector<std::string>& cause) {
    EXPECT_EQ(call.result.status().code(), absl::StatusCode::kUnavailable) << call.result.status();
    for (const std::string& part : cause) {
      EXPECT_THAT(std::string(call.result.status().message()), HasSubstr(part));
    }
    EXPECT_LE(call.took, bound);
    EXPECT_FALSE(call.healthy);
  }

  std::unique_ptr<RedisLimitStore> store_;
};

TEST_F(RedisLimitStoreTlsTest, AServerCertificateFromAnUntrustedCaIsRefused) {
  absl::StatusOr<std::unique_ptr<RedisServer>> server = RedisServer::StartTls(ServerTls());
  ASSERT_TRUE(server.ok()) << server.status();
  RedisLimitStoreOptions options = TlsOptionsFor((*server)->tls_port());
  options.tls.ca_file = Cert("other-ca.pem");
  ExpectRefused(CallNewStore(options), options.connect_timeout + kSlack,
                {absl::StrCat("127.0.0.1:", (*server)->tls_port()), "TLS handshake failed",
                 "certificate verify failed"});
  // The default, the system's trust store, does not know the test CA either.
  options.tls.ca_file.clear();
  ExpectRefused(CallNewStore(options), options.connect_timeout + kSlack,
                {"certificate verify failed"});
}

TEST_F(RedisLimitStoreTlsTest, AnotherHostsCertificateIsRefused) {
  // Signed by the trusted CA, but for redis.elsewhere.example only.
  absl::StatusOr<std::unique_ptr<RedisServer>> server =
      RedisServer::StartTls(ServerTls("elsewhere"));
  ASSERT_TRUE(server.ok()) << server.status();
  RedisLimitStoreOptions options = TlsOptionsFor((*server)->tls_port());
  ExpectRefused(CallNewStore(options), options.connect_timeout + kSlack,
                {"certificate verify failed", "IP address mismatch"});
  options.host = "localhost";
  ExpectRefused(CallNewStore(options), options.connect_timeout + kSlack,
                {"certificate verify failed", "hostname mismatch"});
}

TEST_F(RedisLimitStoreTlsTest, AHostNameIsVerifiedAgainstTheDnsNames) {
  absl::StatusOr<std::unique_ptr<RedisServer>> server = RedisServer::StartTls(ServerTls());
  ASSERT_TRUE(server.ok()) << server.status();
  absl::StatusOr<RedisLimitStoreOptions> options =
      ParseRedisUrl(absl::StrCat("rediss://localhost:", (*server)->tls_port()), TlsOptionsFor(0));
  ASSERT_TRUE(options.ok()) << options.status();
  const FirstCall call = CallNewStore(*options);
  ASSERT_TRUE(call.result.ok()) << call.result.status();
  EXPECT_TRUE(call.result->allowed);
  EXPECT_TRUE(store_->healthy());
}

TEST_F(RedisLimitStoreTlsTest, APlainServerBehindARedissUrlFailsTheHandshake) {
  absl::StatusOr<std::unique_ptr<RedisServer>> server = RedisServer::Start();
  ASSERT_TRUE(server.ok()) << server.status();
  const RedisLimitStoreOptions options = TlsOptionsFor((*server)->port());
  ExpectRefused(CallNewStore(options), options.connect_timeout + kSlack,
                {"TLS handshake", "is the server speaking TLS on this port?"});
}

TEST_F(RedisLimitStoreTlsTest, ATlsServerBehindARedisUrlFails) {
  absl::StatusOr<std::unique_ptr<RedisServer>> server = RedisServer::StartTls(ServerTls());
  ASSERT_TRUE(server.ok()) << server.status();
  const RedisLimitStoreOptions options = OptionsFor((*server)->tls_port());
  ExpectRefused(CallNewStore(options), options.connect_timeout + options.command_timeout + kSlack,
                {absl::StrCat("127.0.0.1:", (*server)->tls_port()), "rediss://"});
}

TEST_F(RedisLimitStoreTlsTest, ConnectsWhenATlsServerReplacesAPlainOne) {
  absl::StatusOr<std::unique_ptr<RedisServer>> plain = RedisServer::Start();
  ASSERT_TRUE(plain.ok()) << plain.status();
  const int port = (*plain)->port();
  const RedisLimitStoreOptions options = TlsOptionsFor(port);
  ExpectRefused(CallNewStore(options), options.connect_timeout + kSlack, {"TLS handshake"});
  plain->reset();
  absl::StatusOr<std::unique_ptr<RedisServer>> tls = RedisServer::StartTls(ServerTls(), port);
  ASSERT_TRUE(tls.ok()) << tls.status();
  ASSERT_TRUE(WaitUntilHealthy(*store_, true, absl::Seconds(5)));
  absl::StatusOr<StepResult> step = TakeRate(*store_, "k", kLimit);
  ASSERT_TRUE(step.ok()) << step.status();
  EXPECT_TRUE(step->allowed);
}

TEST_F(RedisLimitStoreTlsTest, AClientCertificateIsPresentedWhenTheServerRequiresOne) {
  absl::StatusOr<std::unique_ptr<RedisServer>> server =
      RedisServer::StartTls(ServerTls("server", /*require_client_cert=*/true));
  ASSERT_TRUE(server.ok()) << server.status();
  RedisLimitStoreOptions options = TlsOptionsFor((*server)->tls_port());
  // Without one: Redis ends the session after the handshake (TLS 1.3 tells the client then).
  ExpectRefused(CallNewStore(options), options.connect_timeout + options.command_timeout + kSlack,
                {"the server asked for a client certificate and none is configured"});

  options.tls.cert_file = Cert("tenant-a.pem");
  options.tls.key_file = Cert("tenant-a.key");
  const FirstCall call = CallNewStore(options);
  ASSERT_TRUE(call.result.ok()) << call.result.status();
  EXPECT_TRUE(call.result->allowed);
  EXPECT_TRUE(store_->healthy());
  // A slow rate keeps its key for a second (kLimit's lives a millisecond).
  ASSERT_TRUE(TakeRate(*store_, "slow", RateLimit{.per_second = 1, .burst = 1}).ok());
  EXPECT_THAT(*(*server)->Command({"EXISTS", "copilot:{slow}:rate"}), ElementsAre("1"));
}

// A listening socket that never accepts: the kernel completes TCP connections, nobody answers
// the TLS handshake.
class SilentListener {
 public:
  SilentListener() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof(address);
    if (fd_ >= 0 && bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
        listen(fd_, 16) == 0 &&
        getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
      port_ = ntohs(address.sin_port);
    }
  }
  ~SilentListener() {
    if (fd_ >= 0) close(fd_);
  }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

TEST_F(RedisLimitStoreTlsTest, AHandshakeWithoutAnswerEndsWithTheConnectTimeout) {
  SilentListener listener;
  ASSERT_NE(listener.port(), 0);
  const RedisLimitStoreOptions options = TlsOptionsFor(listener.port());
  const FirstCall call = CallNewStore(options);
  ExpectRefused(call, options.connect_timeout + kSlack,
                {"TLS handshake: no answer within the connect timeout (500ms"});
  EXPECT_GE(call.took, options.connect_timeout - absl::Milliseconds(10));

  // Closing the store in the middle of a handshake waits for it, no longer.
  store_ = MakeStore(options);
  ASSERT_NE(store_, nullptr);
  absl::SleepFor(absl::Milliseconds(100));
  const SteadyClock::time_point closing = SteadyClock::now();
  store_.reset();
  EXPECT_LE(Since(closing), options.connect_timeout + kSlack);
}

}  // namespace
}  // namespace copilot::gateway
