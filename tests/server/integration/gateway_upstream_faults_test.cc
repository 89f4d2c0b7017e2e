// The fault suite of issue #16: the real gateway against the emulator's faults (and an upstream
// that refuses connections). For each fault: the status callers get, how many upstream attempts
// were made (the emulator's record), and that no POST reached the upstream twice. The rules
// under test are RetryingTransport's and CircuitBreakerTransport's (server/transport/).
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "tests/server/integration/integration_fixture.h"
#include "tests/testing/free_port.h"

namespace copilot::gateway::testing {
namespace {

namespace v1 = ::copilot::v1;

class GatewayUpstreamFaultsTest : public ::testing::Test {
 protected:
  // The emulator and a gateway in front of it with `upstream` settings (retries back off 10 ms
  // at first, so the suite runs quickly).
  void Start(std::map<std::string, std::string> upstream = {}, std::string upstream_url = "",
             std::string budget_yaml = "") {
    auto emulator = emulator::testing::EmulatorProcess::Start({.args = {"--stream-delay-ms", "2"}});
    ASSERT_TRUE(emulator.ok()) << emulator.status();
    emulator_ = *std::move(emulator);
    GatewayProcessOptions options;
    options.upstream_url =
        upstream_url.empty() ? emulator_->base_url() + "/agents" : std::move(upstream_url);
    options.upstream = std::move(upstream);
    options.upstream.emplace("retry", "{initial_backoff: 10ms, max_backoff: 100ms}");
    if (!budget_yaml.empty()) {
      options.unlimited_budget = false;
      options.extra_yaml = std::move(budget_yaml);
    }
    auto gateway = GatewayProcess::Start(options);
    ASSERT_TRUE(gateway.ok()) << gateway.status();
    gateway_ = *std::move(gateway);
    stub_ = v1::CopilotService::NewStub(gateway_->channel());
  }

  grpc::Status CreateThread(const std::string& title, std::string* thread_id = nullptr,
                            absl::Duration timeout = absl::Seconds(10)) {
    grpc::ClientContext context;
    SetTimeout(context, timeout);
    v1::CreateThreadRequest request;
    request.set_assistant_id(kHrAssistant);
    request.set_title(title);
    v1::CreateThreadResponse response;
    grpc::Status status = stub_->CreateThread(&context, request, &response);
    if (thread_id != nullptr) *thread_id = response.thread().id();
    return status;
  }

  grpc::Status GetThread(const std::string& thread_id, absl::Duration timeout = absl::Seconds(10)) {
    grpc::ClientContext context;
    SetTimeout(context, timeout);
    v1::GetThreadRequest request;
    request.set_thread_id(thread_id);
    v1::GetThreadResponse response;
    return stub_->GetThread(&context, request, &response);
  }

  void AddFault(const nlohmann::json& rule) {
    absl::StatusOr<int64_t> id = emulator_->AddFault(rule);
    ASSERT_TRUE(id.ok()) << id.status();
  }

  // Upstream requests the emulator saw for `route`.
  int Attempts(const std::string& route) {
    absl::StatusOr<nlohmann::json> records = emulator_->Requests();
    EXPECT_TRUE(records.ok()) << records.status();
    int count = 0;
    if (!records.ok()) return count;
    for (const auto& record : *records) count += record["route"] == route ? 1 : 0;
    return count;
  }
  std::map<std::string, int> CreateThreadTitles() { return RecordedCreateThreadTitles(*emulator_); }

  std::string Metric(const std::string& series) { return MetricValue(Scrape(*gateway_), series); }

  std::unique_ptr<emulator::testing::EmulatorProcess> emulator_;
  std::unique_ptr<GatewayProcess> gateway_;
  std::unique_ptr<v1::CopilotService::Stub> stub_;
};

constexpr char kPostThreads[] = "POST /v1/threads";
constexpr char kGetThread[] = "GET /v1/threads/{thread_id}";

TEST_F(GatewayUpstreamFaultsTest, RefusedConnectionsAreRetriedThenTheCircuitOpensAndFailsFast) {
  absl::StatusOr<int> port = FreeLoopbackPort();  // Nothing listens there.
  ASSERT_TRUE(port.ok()) << port.status();
  Start({{"circuit_breaker", "{consecutive_failures: 9, cooldown: 30s}"}},
        absl::StrCat("http://127.0.0.1:", *port, "/agents"));
  for (int i = 0; i < 3; ++i) {
    grpc::Status status = CreateThread(absl::StrCat("refused ", i));
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
    EXPECT_EQ(Reason(status), "upstream_unreachable");
  }
  // 3 attempts each (2 retries): the ninth failure opened the circuit.
  EXPECT_EQ(Metric(absl::StrCat("copilot_gateway_upstream_retries_total{endpoint=\"", kPostThreads,
                                "\",reason=\"upstream_unreachable\"}")),
            "6");
  EXPECT_EQ(Metric("copilot_gateway_upstream_circuit_state"), "1");
  const absl::Time start = absl::Now();
  grpc::Status fast = CreateThread("fails fast");
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(500));
  EXPECT_EQ(fast.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(Reason(fast), "upstream_circuit_open");
  auto retry = FindDetail<google::rpc::RetryInfo>(fast);
  ASSERT_TRUE(retry.has_value());
  EXPECT_GT(retry->retry_delay().seconds(), 20);
  EXPECT_EQ(Metric(absl::StrCat("copilot_gateway_upstream_circuit_rejected_total{endpoint=\"",
                                kPostThreads, "\"}")),
            "1");
  // The upstream failing is not this replica's fault: it stays ready.
  EXPECT_EQ(Metric("copilot_gateway_ready"), "1");
}

TEST_F(GatewayUpstreamFaultsTest, The503sOfAFailingUpstreamOpenTheCircuitAndAProbeClosesIt) {
  Start({{"circuit_breaker", "{consecutive_failures: 4, cooldown: 1s, half_open_probes: 1}"}});
  std::string thread_id;
  ASSERT_TRUE(CreateThread("kept", &thread_id).ok());
  AddFault({{"endpoint", "*"}, {"type", "status"}, {"status", 503}});
  grpc::Status first = GetThread(thread_id);  // 3 attempts.
  EXPECT_EQ(first.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(HttpStatusOf(first), "503");
  grpc::Status second = GetThread(thread_id);  // The fourth failure opens it.
  EXPECT_EQ(Reason(second), "upstream_circuit_open");
  EXPECT_EQ(Attempts("get_thread"), 4);
  ASSERT_TRUE(emulator_->ClearFaults().ok());
  absl::SleepFor(absl::Milliseconds(1100));
  EXPECT_TRUE(GetThread(thread_id).ok());  // The probe.
  EXPECT_EQ(Metric("copilot_gateway_upstream_circuit_state"), "0");
  EXPECT_EQ(Metric("copilot_gateway_upstream_circuit_transitions_total{to=\"closed\"}"), "1");
  EXPECT_TRUE(CreateThread("after").ok());
}

// Calls an open circuit refuses never reach the upstream, so they spend none of the upstream
// budget: when the upstream is back, the probe and the calls after it find the budget there.
// (Before, each refused call spent the budget first: a long outage left it spent, and the first
// calls after the upstream came back were refused by it for up to a minute.)
TEST_F(GatewayUpstreamFaultsTest, CallsAnOpenCircuitRefusesSpendNoUpstreamBudget) {
  Start({{"circuit_breaker", "{consecutive_failures: 1, cooldown: 1s, half_open_probes: 1}"},
         {"retry", "{max_attempts: 1}"}},
        "",
        "upstream_budget:\n  answer_per_second: 0\n  answer_per_minute: 0\n"
        "  other_per_second: 0\n  other_per_minute: 3\n  max_wait: 0s\n");
  std::string thread_id;
  ASSERT_TRUE(CreateThread("kept", &thread_id).ok());  // 1 of the minute's 3.
  AddFault({{"endpoint", "*"}, {"type", "status"}, {"status", 503}});
  grpc::Status failed = GetThread(thread_id);  // 2 of 3; opens the circuit.
  EXPECT_EQ(HttpStatusOf(failed), "503");
  for (int i = 0; i < 10; ++i) {
    grpc::Status refused = GetThread(thread_id);
    EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAVAILABLE) << i;
    EXPECT_EQ(Reason(refused), "upstream_circuit_open") << i << ": " << refused.error_message();
  }
  EXPECT_EQ(Attempts("get_thread"), 1);
  ASSERT_TRUE(emulator_->ClearFaults().ok());
  absl::SleepFor(absl::Milliseconds(1100));
  grpc::Status probe = GetThread(thread_id);  // 3 of 3.
  EXPECT_TRUE(probe.ok()) << probe.error_message();
  EXPECT_EQ(Metric("copilot_gateway_upstream_circuit_state"), "0");
  // The budget is real: the minute's fourth call is refused by it.
  grpc::Status over = GetThread(thread_id);
  EXPECT_EQ(over.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(Reason(over), "upstream_budget_exceeded");
}

TEST_F(GatewayUpstreamFaultsTest, AResetBeforeTheAnswerIsRetriedForAReadButNotForAPost) {
  Start();
  std::string thread_id;
  ASSERT_TRUE(CreateThread("kept", &thread_id).ok());
  AddFault({{"endpoint", "get_thread"}, {"times", 2}, {"type", "reset_before_headers"}});
  EXPECT_TRUE(GetThread(thread_id).ok());
  EXPECT_EQ(Attempts("get_thread"), 3);

  AddFault({{"endpoint", "create_thread"}, {"times", 1}, {"type", "reset_before_headers"}});
  grpc::Status post = CreateThread("reset");
  EXPECT_EQ(post.error_code(), grpc::StatusCode::UNAVAILABLE) << post.error_message();
  EXPECT_EQ(Reason(post), "upstream_reset");
  // The request went out: the upstream might have carried it out, so it is not sent again.
  EXPECT_EQ(CreateThreadTitles()["reset"], 1);
}

TEST_F(GatewayUpstreamFaultsTest, AResetAfterTheHeadersIsNeverRetried) {
  Start();
  std::string thread_id;
  ASSERT_TRUE(CreateThread("kept", &thread_id).ok());
  AddFault({{"endpoint", "create_thread"},
            {"times", 1},
            {"type", "reset_mid_body"},
            {"after_bytes", 10}});
  grpc::Status post = CreateThread("carried out");
  EXPECT_EQ(post.error_code(), grpc::StatusCode::INTERNAL) << post.error_message();
  EXPECT_EQ(CreateThreadTitles()["carried out"], 1);

  // A read whose answer has started reaching the gateway is not re-sent either (the transport
  // passes bytes on as they come).
  AddFault(
      {{"endpoint", "get_thread"}, {"times", 1}, {"type", "reset_mid_body"}, {"after_bytes", 10}});
  grpc::Status get = GetThread(thread_id);
  EXPECT_EQ(get.error_code(), grpc::StatusCode::UNAVAILABLE) << get.error_message();
  EXPECT_EQ(Attempts("get_thread"), 1);
}

TEST_F(GatewayUpstreamFaultsTest, A503BurstIsRetriedForReadsOnly) {
  Start();
  std::string thread_id;
  ASSERT_TRUE(CreateThread("kept", &thread_id).ok());
  AddFault({{"endpoint", "get_thread"}, {"times", 2}, {"type", "status"}, {"status", 503}});
  EXPECT_TRUE(GetThread(thread_id).ok());
  EXPECT_EQ(Attempts("get_thread"), 3);
  EXPECT_EQ(Metric(absl::StrCat("copilot_gateway_upstream_retries_total{endpoint=\"", kGetThread,
                                "\",reason=\"http_503\"}")),
            "2");

  AddFault({{"endpoint", "create_thread"}, {"times", 1}, {"type", "status"}, {"status", 503}});
  grpc::Status post = CreateThread("busy");
  EXPECT_EQ(post.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(HttpStatusOf(post), "503");
  EXPECT_EQ(CreateThreadTitles()["busy"], 1);
}

TEST_F(GatewayUpstreamFaultsTest, A429WithAShortRetryAfterIsWaitedOutOnce) {
  Start();
  AddFault(
      {{"endpoint", "create_thread"}, {"times", 1}, {"type", "rate_limit"}, {"retry_after", 1}});
  const absl::Time start = absl::Now();
  EXPECT_TRUE(CreateThread("patient").ok());
  EXPECT_GE(absl::Now() - start, absl::Seconds(1));
  // Refused once (not processed), carried out once.
  EXPECT_EQ(CreateThreadTitles()["patient"], 2);
  EXPECT_EQ(Metric(absl::StrCat("copilot_gateway_upstream_retries_total{endpoint=\"", kPostThreads,
                                "\",reason=\"http_429\"}")),
            "1");
}

TEST_F(GatewayUpstreamFaultsTest, A429StormIsNotMultipliedBeyondTheRetryBudget) {
  // The budget: 10% of requests, at least 1 per second (10 per 10 s window).
  Start({{"retry", "{initial_backoff: 10ms, budget_ratio: 0.1, budget_min_per_second: 1}"}});
  AddFault({{"endpoint", "create_thread"}, {"type", "rate_limit"}, {"retry_after", 1}});
  const int calls = 40;
  std::vector<grpc::Status> statuses = CreateThreadsAtOnce(*stub_, calls, absl::Seconds(10));
  for (const grpc::Status& status : statuses) {
    EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  }
  // Each call wanted 2 retries (80); the budget allowed 10 (max(0.1 * 40, 1/s * 10 s)). The 30
  // calls refused a first retry and the 10 refused a second are counted.
  EXPECT_EQ(Attempts("create_thread"), calls + 10);
  EXPECT_EQ(Metric(absl::StrCat("copilot_gateway_upstream_retries_total{endpoint=\"", kPostThreads,
                                "\",reason=\"http_429\"}")),
            "10");
  EXPECT_EQ(Metric(absl::StrCat("copilot_gateway_upstream_retries_denied_total{cause=\"budget\","
                                "endpoint=\"",
                                kPostThreads, "\"}")),
            "40");
}

TEST_F(GatewayUpstreamFaultsTest, ASlowDripEndsAsStalledAfterTheStallTimeoutWithOneAttempt) {
  Start({{"stall_timeout", "1s"}});
  std::string thread_id;
  ASSERT_TRUE(CreateThread("kept", &thread_id).ok());
  AddFault({{"endpoint", "get_thread"}, {"times", 1}, {"type", "stall"}, {"after_bytes", 5}});
  const absl::Time start = absl::Now();
  grpc::Status get = GetThread(thread_id);
  EXPECT_EQ(get.error_code(), grpc::StatusCode::UNAVAILABLE) << get.error_message();
  EXPECT_EQ(Reason(get), "upstream_stalled");
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_EQ(Attempts("get_thread"), 1);
}

TEST_F(GatewayUpstreamFaultsTest, AHangingUpstreamEndsAtTheDeadlinesAndCannotOpenTheCircuit) {
  Start({{"circuit_breaker", "{consecutive_failures: 3}"}});
  std::string thread_id;
  ASSERT_TRUE(CreateThread("kept", &thread_id).ok());
  AddFault({{"endpoint", "get_thread"}, {"times", 10}, {"type", "latency"}, {"delay_ms", 5000}});
  for (int i = 0; i < 10; ++i) {
    grpc::Status get = GetThread(thread_id, absl::Milliseconds(300));
    EXPECT_EQ(get.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << get.error_message();
  }
  EXPECT_EQ(Attempts("get_thread"), 10);
  EXPECT_EQ(Metric("copilot_gateway_upstream_circuit_state"), "0");
  EXPECT_TRUE(GetThread(thread_id).ok());
}

}  // namespace
}  // namespace copilot::gateway::testing
