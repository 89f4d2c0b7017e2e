// RetryingTransport and CircuitBreakerTransport over a FakeTransport whose timers the test runs,
// in a FakeClock's time.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/common/errors.h"
#include "server/transport/circuit_breaker_transport.h"
#include "server/transport/retry_after.h"
#include "server/transport/retrying_transport.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/fake_transport.h"
#include "tests/testing/recorders.h"
#include "tests/testing/status_matchers.h"

namespace copilot::gateway {
namespace {

using ::copilot::gateway::testing::FakeClock;
using ::copilot::gateway::testing::FakeTransport;
using ::copilot::gateway::testing::RecordingHandler;
using ::copilot::gateway::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::Pair;

class RecordingEvents final : public ResilienceEvents {
 public:
  void OnRetry(absl::string_view endpoint, absl::string_view reason) override {
    absl::MutexLock lock(&mu_);
    retries.emplace_back(endpoint, reason);
  }
  void OnRetryDenied(absl::string_view endpoint, absl::string_view cause) override {
    absl::MutexLock lock(&mu_);
    denied.emplace_back(endpoint, cause);
  }
  void OnCircuitTransition(CircuitState /*from*/, CircuitState to) override {
    absl::MutexLock lock(&mu_);
    transitions.emplace_back(CircuitStateName(to));
  }
  void OnCircuitRejected(absl::string_view endpoint) override {
    absl::MutexLock lock(&mu_);
    rejected.emplace_back(endpoint);
  }
  std::vector<std::pair<std::string, std::string>> retries;
  std::vector<std::pair<std::string, std::string>> denied;
  std::vector<std::string> transitions;
  std::vector<std::string> rejected;

 private:
  absl::Mutex mu_;
};

// A transport failure as CurlTransport reports it.
absl::Status Failure(absl::StatusCode code, const std::string& reason, bool sent,
                     std::map<std::string, std::string> metadata = {}) {
  metadata["request_sent"] = sent ? "true" : "false";
  return MakeError(code, "injected", reason, metadata);
}

class RetryingTransportTest : public ::testing::Test {
 protected:
  RetryingTransportTest() { fake_->EnableTimers(); }

  // The defaults with a budget these tests never spend.
  static RetryPolicy Generous() {
    RetryPolicy policy;
    policy.budget_min_per_second = 100;
    return policy;
  }
  // A budget of `ratio` of the requests, without the per-second floor.
  static RetryPolicy BudgetOnly(double ratio) {
    RetryPolicy policy;
    policy.budget_ratio = ratio;
    policy.budget_min_per_second = 0;
    return policy;
  }
  // `n` requests started at once, each with its own handler.
  std::vector<std::shared_ptr<RecordingHandler>> StartMany(HttpTransport& transport, int n,
                                                           const std::string& method) {
    std::vector<std::shared_ptr<RecordingHandler>> handlers;
    for (int i = 0; i < n; ++i) {
      handlers.push_back(std::make_shared<RecordingHandler>());
      transport.Start(Request(method), handlers.back());
    }
    return handlers;
  }
  // The transport under test; jitter pinned to its lowest value (half the backoff).
  std::shared_ptr<RetryingTransport> Make(RetryPolicy policy = Generous()) {
    auto transport =
        std::make_shared<RetryingTransport>(fake_, policy, clock_, events_, [] { return 0.0; });
    fake_->RunTimers();  // Its probe for timers.
    return transport;
  }

  HttpRequest Request(const std::string& method, absl::Duration deadline = absl::Minutes(1)) {
    HttpRequest request;
    request.method = method;
    request.url = "http://upstream/v1/threads";
    request.body = method == "POST" ? R"({"title":"x"})" : "";
    request.endpoint = method + " /v1/threads";
    request.deadline = clock_.Now() + deadline;
    return request;
  }

  FakeClock clock_;
  RecordingEvents events_;
  std::shared_ptr<FakeTransport> fake_ = std::make_shared<FakeTransport>();
  std::shared_ptr<RecordingHandler> handler_ = std::make_shared<RecordingHandler>();
};

TEST_F(RetryingTransportTest, PostNeverSentIsRetriedAfterBackoffWithTheSameBody) {
  auto transport = Make();
  transport->Start(Request("POST"), handler_);
  ASSERT_EQ(fake_->size(), 1u);
  fake_->last().Complete(
      Failure(absl::StatusCode::kUnavailable, "upstream_unreachable", /*sent=*/false));
  EXPECT_THAT(handler_->completions, IsEmpty());
  ASSERT_EQ(fake_->timers_waiting(), 1u);
  EXPECT_EQ(fake_->timer_delays().back(), absl::Milliseconds(50));  // [b/2, b], b = 100 ms.
  fake_->RunTimers();
  ASSERT_EQ(fake_->size(), 2u);
  EXPECT_EQ(fake_->call(1).request.body, fake_->call(0).request.body);
  EXPECT_EQ(fake_->call(1).request.method, "POST");
  fake_->last().Respond(201, R"({"id":"t1"})");
  ASSERT_EQ(handler_->completions.size(), 1u);
  EXPECT_TRUE(handler_->completions[0].ok());
  ASSERT_EQ(handler_->heads.size(), 1u);
  EXPECT_EQ(handler_->heads[0].status, 201);
  EXPECT_THAT(events_.retries, ElementsAre(Pair("POST /v1/threads", "upstream_unreachable")));
}

TEST_F(RetryingTransportTest, PostThatMayHaveBeenSentIsNeverRetried) {
  auto transport = Make();
  for (const absl::Status& status :
       {Failure(absl::StatusCode::kUnavailable, "upstream_reset", /*sent=*/true,
                {{"resend_refused", "true"}}),
        Failure(absl::StatusCode::kInternal, "upstream_reset", /*sent=*/true,
                {{"response_started", "true"}}),
        Failure(absl::StatusCode::kUnavailable, "upstream_stalled", /*sent=*/true),
        Failure(absl::StatusCode::kDeadlineExceeded, "upstream_timeout", /*sent=*/false),
        Failure(absl::StatusCode::kCancelled, "upstream_call_cancelled", /*sent=*/false),
        Failure(absl::StatusCode::kUnavailable, "upstream_tls_error", /*sent=*/false,
                {{"curl_code", "60"}}),
        Failure(absl::StatusCode::kUnavailable, "upstream_proxy_error", /*sent=*/false,
                {{"proxy_status", "407"}})}) {
    auto handler = std::make_shared<RecordingHandler>();
    transport->Start(Request("POST"), handler);
    fake_->last().Complete(status);
    ASSERT_EQ(handler->completions.size(), 1u) << status;
    EXPECT_EQ(handler->completions[0], status);
  }
  EXPECT_EQ(fake_->size(), 7u);
  EXPECT_EQ(fake_->timers_waiting(), 0u);
  EXPECT_THAT(events_.retries, IsEmpty());
}

TEST_F(RetryingTransportTest, HandshakeAndProxyGatewayFailuresBeforeSendingAreRetried) {
  auto transport = Make();
  transport->Start(Request("POST"), handler_);
  fake_->last().Complete(
      Failure(absl::StatusCode::kUnavailable, "upstream_tls_error", false, {{"curl_code", "35"}}));
  fake_->RunTimers();
  fake_->last().Complete(Failure(absl::StatusCode::kUnavailable, "upstream_proxy_error", false,
                                 {{"proxy_status", "503"}}));
  fake_->RunTimers();
  ASSERT_EQ(fake_->size(), 3u);
  fake_->last().Respond(200, "{}");
  ASSERT_EQ(handler_->completions.size(), 1u);
  EXPECT_TRUE(handler_->completions[0].ok());
  EXPECT_THAT(events_.retries, ElementsAre(Pair("POST /v1/threads", "upstream_tls_error"),
                                           Pair("POST /v1/threads", "upstream_proxy_error")));
  // Backoff doubles: 50 ms, then 100 ms (the lower end of [b/2, b]).
  EXPECT_THAT(fake_->timer_delays(),
              ElementsAre(absl::ZeroDuration(), absl::Milliseconds(50), absl::Milliseconds(100)));
}

TEST_F(RetryingTransportTest, GetIsRetriedOn503AndResetsAndTheCallerSeesOnlyTheLastAnswer) {
  auto transport = Make();
  transport->Start(Request("GET"), handler_);
  fake_->last().Respond(503, R"({"error_code":"internal_service_error"})");
  fake_->RunTimers();
  fake_->last().Complete(Failure(absl::StatusCode::kUnavailable, "upstream_reset", /*sent=*/true));
  fake_->RunTimers();
  ASSERT_EQ(fake_->size(), 3u);
  fake_->last().Respond(200, R"({"id":"t1"})");
  ASSERT_EQ(handler_->heads.size(), 1u);
  EXPECT_EQ(handler_->heads[0].status, 200);
  EXPECT_THAT(handler_->pieces, ElementsAre(R"({"id":"t1"})"));
  EXPECT_THAT(events_.retries, ElementsAre(Pair("GET /v1/threads", "http_503"),
                                           Pair("GET /v1/threads", "upstream_reset")));
}

// Each attempt's upstream time reaches the caller (the call's upstream time is their sum).
TEST_F(RetryingTransportTest, EveryAttemptsUpstreamTimeIsPassedOn) {
  auto transport = Make();
  transport->Start(Request("GET"), handler_);
  fake_->last().handler->OnUpstreamTime(absl::Milliseconds(3));
  fake_->last().Respond(503, R"({"error_code":"internal_service_error"})");
  fake_->RunTimers();
  ASSERT_EQ(fake_->size(), 2u);
  fake_->last().handler->OnUpstreamTime(absl::Milliseconds(4));
  fake_->last().Respond(200, R"({"id":"t1"})");
  EXPECT_THAT(handler_->upstream_times, ElementsAre(absl::Milliseconds(3), absl::Milliseconds(4)));
  ASSERT_EQ(handler_->completions.size(), 1u);
}

TEST_F(RetryingTransportTest, PostAnswered503IsPassedOn) {
  auto transport = Make();
  transport->Start(Request("POST"), handler_);
  fake_->last().Respond(503, "busy");
  ASSERT_EQ(handler_->heads.size(), 1u);
  EXPECT_EQ(handler_->heads[0].status, 503);
  EXPECT_THAT(handler_->pieces, ElementsAre("busy"));
  EXPECT_EQ(fake_->size(), 1u);
}

TEST_F(RetryingTransportTest, A429WithRetryAfterIsWaitedForOnlyWhenShortAndNamed) {
  auto transport = Make();
  transport->Start(Request("POST"), handler_);
  fake_->last().Respond(429, "slow down", {{"retry-after", "2"}});
  EXPECT_THAT(handler_->heads, IsEmpty());
  EXPECT_EQ(fake_->timer_delays().back(), absl::Seconds(2));
  fake_->RunTimers();
  fake_->last().Respond(200, "{}");
  ASSERT_EQ(handler_->heads.size(), 1u);
  EXPECT_EQ(handler_->heads[0].status, 200);

  for (HttpHeaders headers : {HttpHeaders{}, HttpHeaders{{"retry-after", "60"}}}) {
    auto handler = std::make_shared<RecordingHandler>();
    transport->Start(Request("POST"), handler);
    fake_->last().Respond(429, "slow down", headers);
    ASSERT_EQ(handler->heads.size(), 1u);
    EXPECT_EQ(handler->heads[0].status, 429);
  }
  EXPECT_EQ(fake_->timers_waiting(), 0u);
}

TEST_F(RetryingTransportTest, AWaitPastTheDeadlineIsNotMade) {
  auto transport = Make();
  transport->Start(Request("POST", absl::Milliseconds(40)), handler_);
  const absl::Status failure =
      Failure(absl::StatusCode::kUnavailable, "upstream_unreachable", /*sent=*/false);
  fake_->last().Complete(failure);
  ASSERT_EQ(handler_->completions.size(), 1u);
  EXPECT_EQ(handler_->completions[0], failure);
  EXPECT_THAT(events_.denied, ElementsAre(Pair("POST /v1/threads", "deadline")));

  auto handler = std::make_shared<RecordingHandler>();
  transport->Start(Request("POST", absl::Seconds(1)), handler);
  fake_->last().Respond(429, "",
                        {{"retry-after", "2"}});  // Fits max_retry_after, not the deadline.
  ASSERT_EQ(handler->heads.size(), 1u);
  EXPECT_EQ(handler->heads[0].status, 429);
}

TEST_F(RetryingTransportTest, StopsAtMaxAttempts) {
  auto transport = Make();
  transport->Start(Request("GET"), handler_);
  for (int i = 0; i < 2; ++i) {
    fake_->last().Respond(502, "");
    fake_->RunTimers();
  }
  fake_->last().Respond(502, "bad gateway");
  ASSERT_EQ(fake_->size(), 3u);
  ASSERT_EQ(handler_->heads.size(), 1u);
  EXPECT_EQ(handler_->heads[0].status, 502);
  EXPECT_THAT(handler_->pieces, ElementsAre("bad gateway"));
  EXPECT_THAT(events_.denied, ElementsAre(Pair("GET /v1/threads", "attempts")));
}

TEST_F(RetryingTransportTest, TheBudgetBoundsRetriesToAFractionOfRequests) {
  auto transport = Make(BudgetOnly(0.1));
  // 20 requests in the window: 2 retries allowed.
  const auto handlers = StartMany(*transport, 20, "GET");
  for (int i = 0; i < 20; ++i) fake_->call(static_cast<std::size_t>(i)).Respond(503, "");
  EXPECT_EQ(fake_->timers_waiting(), 2u);
  EXPECT_EQ(events_.denied.size(), 18u);
  EXPECT_EQ(events_.denied[0].second, "budget");
  // Out of the window, the budget is back (and so is its floor of 0 retries: none).
  clock_.Advance(absl::Seconds(11));
  transport->Start(Request("GET"), handler_);
  fake_->last().Respond(503, "");
  EXPECT_EQ(fake_->timers_waiting(), 2u);  // 0.1 * 1 request: no retry.
}

TEST_F(RetryingTransportTest, ARefusedStreamIsSentAgainOnceAtOnceOutsideTheBudget) {
  // No budget at all: only the transparent retry is made.
  auto transport = Make(BudgetOnly(0));
  const auto handlers = StartMany(*transport, 20, "POST");
  for (int i = 0; i < 20; ++i) {
    fake_->call(static_cast<std::size_t>(i))
        .Complete(Failure(absl::StatusCode::kUnavailable, "upstream_refused_stream", false));
  }
  ASSERT_EQ(fake_->timers_waiting(), 20u);
  EXPECT_THAT(fake_->timer_delays(), ::testing::Each(absl::ZeroDuration()));
  EXPECT_THAT(events_.denied, IsEmpty());
  fake_->RunTimers();
  ASSERT_EQ(fake_->size(), 40u);
  // Refused again: the second retry goes through every rule, and there is no budget.
  fake_->call(20).Complete(
      Failure(absl::StatusCode::kUnavailable, "upstream_refused_stream", false));
  EXPECT_THAT(events_.denied, ElementsAre(Pair("POST /v1/threads", "budget")));
  ASSERT_EQ(handlers[0]->completions.size(), 1u);
  EXPECT_THAT(handlers[0]->completions[0],
              StatusIs(absl::StatusCode::kUnavailable, "upstream_refused_stream"));
  // Any other failure of a call whose stream was refused once is charged as usual too.
  fake_->call(21).Complete(Failure(absl::StatusCode::kUnavailable, "upstream_unreachable", false));
  EXPECT_EQ(events_.denied.size(), 2u);
  for (int i = 22; i < 40; ++i) fake_->call(static_cast<std::size_t>(i)).Respond(201, "{}");
  for (int i = 2; i < 20; ++i) {
    ASSERT_EQ(handlers[static_cast<std::size_t>(i)]->heads.size(), 1u);
    EXPECT_EQ(handlers[static_cast<std::size_t>(i)]->heads[0].status, 201);
  }
  EXPECT_EQ(events_.retries.size(), 20u);
}

TEST_F(RetryingTransportTest, CancelDuringTheBackoffEndsTheCallOnceAndSendsNothingMore) {
  auto transport = Make();
  std::shared_ptr<HttpTransfer> transfer = transport->Start(Request("POST"), handler_);
  fake_->last().Complete(Failure(absl::StatusCode::kUnavailable, "upstream_unreachable", false));
  transfer->Cancel();
  fake_->RunTimers();  // The cancel's completion and the retry's timer.
  ASSERT_EQ(handler_->completions.size(), 1u);
  EXPECT_THAT(handler_->completions[0],
              StatusIs(absl::StatusCode::kCancelled, "upstream_call_cancelled"));
  EXPECT_EQ(fake_->size(), 1u);
}

TEST_F(RetryingTransportTest, CancelAndResumeReachTheAttemptInProgress) {
  auto transport = Make();
  std::shared_ptr<HttpTransfer> transfer = transport->Start(Request("GET"), handler_);
  fake_->last().Respond(503, "");
  fake_->RunTimers();
  transfer->Resume();
  transfer->Cancel();
  EXPECT_EQ(fake_->call(1).transfer->resumes, 1);
  EXPECT_EQ(fake_->call(1).transfer->cancels, 1);
  EXPECT_EQ(fake_->call(0).transfer->cancels, 0);
  fake_->last().Complete(MakeError(absl::StatusCode::kCancelled, "x", "upstream_call_cancelled"));
  ASSERT_EQ(handler_->completions.size(), 1u);
  EXPECT_EQ(fake_->timers_waiting(), 0u);
}

// The caller's handler holds its transfer (HaufeClient cancels through it), and the transfer
// is the retrying call: the call lets go of the handler when it ends, or every call would leak.
TEST_F(RetryingTransportTest, AnEndedCallLetsGoOfItsHandler) {
  class HoldingHandler final : public HttpTransferHandler {
   public:
    void OnHeaders(const HttpResponseHead& /*head*/) override {}
    bool OnData(absl::string_view /*piece*/) override { return true; }
    void OnComplete(absl::Status /*status*/) override {}
    std::shared_ptr<HttpTransfer> transfer;
  };
  auto transport = Make();
  std::weak_ptr<HoldingHandler> watched;
  for (bool retried : {false, true}) {
    auto handler = std::make_shared<HoldingHandler>();
    watched = handler;
    handler->transfer = transport->Start(Request("GET"), handler);
    if (retried) {
      fake_->last().Respond(503, "");
      fake_->RunTimers();
    }
    fake_->last().Respond(200, "{}");
    handler.reset();
    EXPECT_TRUE(watched.expired()) << (retried ? "after a retry" : "first attempt");
  }
}

// The loop's timer holds a waiting call only weakly (it would otherwise hold, through the
// call, the transport whose loop holds the timer); the transport ends its waiting calls.
TEST_F(RetryingTransportTest, DroppingTheTransportEndsTheCallsWaitingForTheirNextAttempt) {
  auto transport = Make();
  transport->Start(Request("GET"), handler_);
  fake_->last().Respond(503, "");
  ASSERT_EQ(fake_->timers_waiting(), 1u);
  transport.reset();
  ASSERT_EQ(handler_->completions.size(), 1u);
  EXPECT_THAT(handler_->completions[0],
              StatusIs(absl::StatusCode::kCancelled, "transport_shutdown"));
  fake_->RunTimers();  // The timer finds no call.
  EXPECT_EQ(fake_->size(), 1u);
  EXPECT_EQ(handler_->completions.size(), 1u);
}

TEST_F(RetryingTransportTest, WithoutTimersNothingIsRetried) {
  auto plain = std::make_shared<FakeTransport>();
  RetryingTransport transport(plain, RetryPolicy{}, clock_, events_);
  transport.Start(Request("GET"), handler_);
  plain->last().Respond(503, "x");
  ASSERT_EQ(handler_->heads.size(), 1u);
  EXPECT_EQ(handler_->heads[0].status, 503);
  EXPECT_EQ(plain->size(), 1u);
}

TEST(RetryAfterTest, ReadsSecondsAndDates) {
  const absl::Time now = absl::FromUnixSeconds(1'800'000'000);
  EXPECT_EQ(ParseRetryAfterValue(" 7 ", now), absl::Seconds(7));
  EXPECT_EQ(ParseRetryAfterValue(absl::FormatTime("%a, %d %b %Y %H:%M:%S GMT",
                                                  now + absl::Seconds(30), absl::UTCTimeZone()),
                                 now),
            absl::Seconds(30));
  EXPECT_EQ(ParseRetryAfterValue("Thu, 01 Jan 1970 00:00:00 GMT", now), absl::ZeroDuration());
  EXPECT_EQ(ParseRetryAfterValue("", now), std::nullopt);
  EXPECT_EQ(ParseRetryAfterValue("soon", now), std::nullopt);
  EXPECT_EQ(ParseRetryAfterValue("-3", now), std::nullopt);
}

class CircuitBreakerTest : public ::testing::Test {
 protected:
  std::shared_ptr<CircuitBreakerTransport> Make(CircuitBreakerPolicy policy = {}) {
    return std::make_shared<CircuitBreakerTransport>(fake_, clock_, policy, events_);
  }
  HttpRequest Request() {
    HttpRequest request;
    request.method = "POST";
    request.endpoint = "POST /v1/threads";
    return request;
  }
  // Starts one request and completes it as `outcome` says; the handler it used.
  std::shared_ptr<RecordingHandler> Call(CircuitBreakerTransport& transport, int http_status,
                                         absl::Status status = absl::OkStatus()) {
    auto handler = std::make_shared<RecordingHandler>();
    const std::size_t before = fake_->size();
    transport.Start(Request(), handler);
    if (fake_->size() == before) return handler;  // Refused inline.
    if (http_status != 0) fake_->last().Headers(http_status);
    fake_->last().Complete(std::move(status));
    return handler;
  }
  absl::Status Unreachable() {
    return Failure(absl::StatusCode::kUnavailable, "upstream_unreachable", false);
  }
  static CircuitBreakerPolicy OneFailureOpensFor10s(int probes) {
    CircuitBreakerPolicy policy;
    policy.consecutive_failures = 1;
    policy.half_open_probes = probes;
    policy.cooldown = absl::Seconds(10);
    return policy;
  }
  static CircuitBreakerPolicy TwoFailuresOneProbe() {
    CircuitBreakerPolicy policy;
    policy.consecutive_failures = 2;
    policy.half_open_probes = 1;
    return policy;
  }
  // Starts a request with `handler` and leaves it running while two 503s open the circuit; the
  // request, for the test to complete later.
  FakeTransport::Started& OpenWithARequestInFlight(CircuitBreakerTransport& transport,
                                                   std::shared_ptr<RecordingHandler> handler) {
    transport.Start(Request(), std::move(handler));
    FakeTransport::Started& in_flight = fake_->last();
    Call(transport, 503);
    Call(transport, 503);
    EXPECT_EQ(transport.state(), CircuitState::kOpen);
    return in_flight;
  }

  FakeClock clock_;
  RecordingEvents events_;
  std::shared_ptr<FakeTransport> fake_ = std::make_shared<FakeTransport>();
};

TEST_F(CircuitBreakerTest, PassesTheUpstreamTimeOn) {
  auto transport = Make();
  auto handler = std::make_shared<RecordingHandler>();
  transport->Start(Request(), handler);
  fake_->last().handler->OnUpstreamTime(absl::Milliseconds(2));
  fake_->last().Complete(absl::OkStatus());
  EXPECT_THAT(handler->upstream_times, ElementsAre(absl::Milliseconds(2)));
}

TEST_F(CircuitBreakerTest, OpensAfterConsecutiveFailuresAndFailsFastWithRetryInfo) {
  CircuitBreakerPolicy policy;
  policy.consecutive_failures = 5;
  policy.failure_ratio = 0;
  auto transport = Make(policy);
  for (int i = 0; i < 4; ++i) Call(*transport, 0, Unreachable());
  Call(*transport, 200);  // A success resets the run.
  for (int i = 0; i < 4; ++i) Call(*transport, 503);
  EXPECT_EQ(transport->state(), CircuitState::kClosed);
  Call(*transport, 0, Unreachable());
  EXPECT_EQ(transport->state(), CircuitState::kOpen);
  const std::size_t sent = fake_->size();
  clock_.Advance(absl::Seconds(4));
  std::shared_ptr<RecordingHandler> refused = Call(*transport, 0);
  EXPECT_EQ(fake_->size(), sent);
  ASSERT_EQ(refused->completions.size(), 1u);
  EXPECT_THAT(refused->completions[0],
              StatusIs(absl::StatusCode::kUnavailable, "upstream_circuit_open"));
  std::optional<google::rpc::RetryInfo> retry = GetRetryInfo(refused->completions[0]);
  ASSERT_TRUE(retry.has_value());
  EXPECT_EQ(retry->retry_delay().seconds(), 6);
  EXPECT_THAT(events_.transitions, ElementsAre("open"));
  EXPECT_THAT(events_.rejected, ElementsAre("POST /v1/threads"));
}

TEST_F(CircuitBreakerTest, OpensOnTheFailureRatioOnceTheWindowHoldsEnoughRequests) {
  CircuitBreakerPolicy policy;
  policy.consecutive_failures = 0;
  policy.failure_ratio = 0.5;
  policy.min_requests = 10;
  auto transport = Make(policy);
  for (int i = 0; i < 4; ++i) {
    Call(*transport, 200);
    Call(*transport, 504);
  }
  Call(*transport, 200);
  EXPECT_EQ(transport->state(), CircuitState::kClosed);  // 4 of 9, then 10 with 5.
  Call(*transport, 0, Unreachable());
  EXPECT_EQ(transport->state(), CircuitState::kOpen);
}

TEST_F(CircuitBreakerTest, CallersCannotOpenItWithCancelsDeadlinesOrBadRequests) {
  CircuitBreakerPolicy policy;
  policy.consecutive_failures = 3;
  auto transport = Make(policy);
  for (int i = 0; i < 50; ++i) {
    Call(*transport, 0, MakeError(absl::StatusCode::kCancelled, "x", "upstream_call_cancelled"));
    Call(*transport, 0, MakeError(absl::StatusCode::kDeadlineExceeded, "x", "upstream_timeout"));
    Call(*transport, 400);
    Call(*transport, 500);
    Call(*transport, 429);
  }
  EXPECT_EQ(transport->state(), CircuitState::kClosed);
  EXPECT_THAT(events_.transitions, IsEmpty());
}

// Bytes that are not HTTP where the upstream should be (a load balancer or another service on
// its port) count as failures; an HTTP answer whose body could not be read does not.
TEST_F(CircuitBreakerTest, AnUpstreamAnsweringWithoutHttpOpensItButABadBodyDoesNot) {
  CircuitBreakerPolicy policy;
  policy.consecutive_failures = 3;
  auto transport = Make(policy);
  for (int i = 0; i < 50; ++i) {
    Call(*transport, 200, Failure(absl::StatusCode::kInternal, "upstream_bad_response", true));
  }
  EXPECT_EQ(transport->state(), CircuitState::kClosed);
  for (int i = 0; i < 3; ++i) {
    Call(*transport, 0, Failure(absl::StatusCode::kUnavailable, "upstream_bad_response", true));
  }
  EXPECT_EQ(transport->state(), CircuitState::kOpen);
}

TEST_F(CircuitBreakerTest, HalfOpenLetsProbesThroughAndClosesOnTheirSuccess) {
  auto transport = Make(OneFailureOpensFor10s(/*probes=*/2));
  Call(*transport, 503);
  ASSERT_EQ(transport->state(), CircuitState::kOpen);
  clock_.Advance(absl::Seconds(10));
  // Two probes out; a third request is refused while they run.
  auto first = std::make_shared<RecordingHandler>();
  auto second = std::make_shared<RecordingHandler>();
  transport->Start(Request(), first);
  transport->Start(Request(), second);
  EXPECT_EQ(transport->state(), CircuitState::kHalfOpen);
  std::shared_ptr<RecordingHandler> third = Call(*transport, 0);
  ASSERT_EQ(third->completions.size(), 1u);
  EXPECT_THAT(third->completions[0],
              StatusIs(absl::StatusCode::kUnavailable, "upstream_circuit_open"));
  ASSERT_EQ(fake_->size(), 3u);
  fake_->call(1).Respond(200, "{}");
  fake_->call(2).Respond(200, "{}");
  EXPECT_EQ(transport->state(), CircuitState::kClosed);
  EXPECT_THAT(events_.transitions, ElementsAre("open", "half_open", "closed"));
}

TEST_F(CircuitBreakerTest, RefusingSaysWhatTheNextRequestMeetsAndChangesNothing) {
  auto transport = Make(OneFailureOpensFor10s(/*probes=*/1));
  EXPECT_FALSE(transport->Refusing());
  Call(*transport, 503);
  ASSERT_EQ(transport->state(), CircuitState::kOpen);
  EXPECT_TRUE(transport->Refusing());
  clock_.Advance(absl::Seconds(9));
  EXPECT_TRUE(transport->Refusing());
  clock_.Advance(absl::Seconds(1));
  // The cooldown is over: the next request would be a probe. Asking takes no probe and makes
  // no transition.
  EXPECT_FALSE(transport->Refusing());
  EXPECT_FALSE(transport->Refusing());
  EXPECT_EQ(transport->state(), CircuitState::kOpen);
  EXPECT_THAT(events_.transitions, ElementsAre("open"));
  auto probe = std::make_shared<RecordingHandler>();
  transport->Start(Request(), probe);
  ASSERT_EQ(fake_->size(), 2u);
  EXPECT_EQ(transport->state(), CircuitState::kHalfOpen);
  EXPECT_TRUE(transport->Refusing());  // The one probe is out.
  fake_->call(1).Respond(200, "{}");
  EXPECT_EQ(transport->state(), CircuitState::kClosed);
  EXPECT_FALSE(transport->Refusing());
}

TEST_F(CircuitBreakerTest, AFailedProbeOpensItAgainAndLateOutcomesDoNotCount) {
  auto transport = Make(TwoFailuresOneProbe());
  auto slow = std::make_shared<RecordingHandler>();
  FakeTransport::Started& slow_call = OpenWithARequestInFlight(*transport, slow);
  clock_.Advance(TwoFailuresOneProbe().cooldown);
  Call(*transport, 0, Unreachable());  // The probe fails.
  EXPECT_EQ(transport->state(), CircuitState::kOpen);
  slow_call.Respond(200, "{}");  // From before: changes nothing.
  EXPECT_EQ(transport->state(), CircuitState::kOpen);
  ASSERT_EQ(slow->completions.size(), 1u);
  EXPECT_TRUE(slow->completions[0].ok());
  EXPECT_THAT(events_.transitions, ElementsAre("open", "half_open", "open"));
}

TEST_F(CircuitBreakerTest, AFailureStartedBeforeTheCircuitClosedAgainDoesNotCountAfter) {
  auto transport = Make(TwoFailuresOneProbe());
  auto slow = std::make_shared<RecordingHandler>();
  FakeTransport::Started& slow_call = OpenWithARequestInFlight(*transport, slow);
  clock_.Advance(TwoFailuresOneProbe().cooldown);
  Call(*transport, 200);  // The probe closes it.
  ASSERT_EQ(transport->state(), CircuitState::kClosed);
  slow_call.Complete(Unreachable());  // Started two transitions ago.
  Call(*transport, 503);              // One failure in a row since it closed.
  EXPECT_EQ(transport->state(), CircuitState::kClosed);
  Call(*transport, 503);
  EXPECT_EQ(transport->state(), CircuitState::kOpen);
}

TEST_F(CircuitBreakerTest, RetriesAboveTheBreakerStopWhenItOpens) {
  CircuitBreakerPolicy breaker_policy;
  breaker_policy.consecutive_failures = 2;
  fake_->EnableTimers();
  auto breaker = Make(breaker_policy);
  RetryPolicy retry_policy;
  retry_policy.max_attempts = 5;
  retry_policy.budget_min_per_second = 100;
  RetryingTransport transport(breaker, retry_policy, clock_, events_, [] { return 0.0; });
  fake_->RunTimers();
  auto handler = std::make_shared<RecordingHandler>();
  HttpRequest request = Request();
  request.deadline = clock_.Now() + absl::Minutes(1);
  transport.Start(request, handler);
  fake_->last().Complete(Unreachable());
  fake_->RunTimers();
  fake_->last().Complete(Unreachable());  // Opens the circuit.
  fake_->RunTimers();                     // The third attempt is refused: no more.
  EXPECT_EQ(fake_->size(), 2u);
  ASSERT_EQ(handler->completions.size(), 1u);
  EXPECT_THAT(handler->completions[0],
              StatusIs(absl::StatusCode::kUnavailable, "upstream_circuit_open"));
  EXPECT_EQ(fake_->timers_waiting(), 0u);
}

}  // namespace
}  // namespace copilot::gateway
