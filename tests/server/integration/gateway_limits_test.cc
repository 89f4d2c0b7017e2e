// Limits through the real binaries, against an emulator that enforces the upstream's own rate
// windows (--answer-rps/--answer-rpm): a tenant's rate limit is RESOURCE_EXHAUSTED with
// QuotaFailure and RetryInfo; the upstream budget keeps the upstream from ever answering 429;
// a flooding tenant does not starve another one.
#include <atomic>
#include <chrono>
#include <iostream>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "server/common/crypto.h"
#include "tests/server/integration/integration_fixture.h"

namespace copilot::gateway::testing {
namespace {

namespace v1 = ::copilot::v1;

constexpr char kTokenA[] = "limits-token-a";
constexpr char kTokenB[] = "limits-token-b";

std::string Sha256Hex(const std::string& token) { return absl::BytesToHexString(Sha256(token)); }

class GatewayLimitsTest : public ::testing::Test {
 protected:
  // Tenants a and b (tokens above) with `tenant_limits` YAML each, the budget `budget_yaml`,
  // and an emulator started with `emulator_args`.
  void Start(const std::string& limits_a, const std::string& limits_b,
             const std::string& budget_yaml, std::vector<std::string> emulator_args) {
    auto emulator = emulator::testing::EmulatorProcess::Start({.args = emulator_args});
    ASSERT_TRUE(emulator.ok()) << emulator.status();
    emulator_ = *std::move(emulator);
    GatewayProcessOptions options;
    options.upstream_url = emulator_->base_url() + "/agents";
    options.identity = "bearer";
    options.unlimited_budget = false;
    options.extra_yaml = absl::StrCat(
        "tenants:\n  - id: a\n    bearer_token_sha256: [\"", Sha256Hex(kTokenA),
        "\"]\n    licence: LIC-A\n    assistants: [{id: \"*\"}]\n", limits_a,
        "  - id: b\n    bearer_token_sha256: [\"", Sha256Hex(kTokenB),
        "\"]\n    licence: LIC-B\n    assistants: [{id: \"*\"}]\n", limits_b, budget_yaml);
    auto gateway = GatewayProcess::Start(options);
    ASSERT_TRUE(gateway.ok()) << gateway.status();
    gateway_ = *std::move(gateway);
    stub_ = v1::CopilotService::NewStub(gateway_->channel());
  }

  void TearDown() override {
    if (gateway_ != nullptr) {
      EXPECT_EQ(gateway_->Stop().value_or(-1), 0);
    }
  }

  grpc::Status Complete(const std::string& token, absl::Duration timeout = absl::Seconds(20)) {
    grpc::ClientContext context;
    SetTimeout(context, timeout);
    context.AddMetadata("authorization", absl::StrCat("Bearer ", token));
    v1::CompleteRequest request;
    request.set_assistant_id(kTaxAssistant);
    v1::MessageInput* message = request.add_messages();
    message->set_role(v1::ROLE_USER);
    message->set_content("How is a company car taxed?");
    v1::CompleteResponse response;
    return stub_->Complete(&context, request, &response);
  }

  grpc::Status CreateThread(const std::string& token) {
    grpc::ClientContext context;
    SetTimeout(context, absl::Seconds(10));
    context.AddMetadata("authorization", absl::StrCat("Bearer ", token));
    v1::CreateThreadRequest request;
    request.set_assistant_id(kTaxAssistant);
    v1::CreateThreadResponse response;
    return stub_->CreateThread(&context, request, &response);
  }

  nlohmann::json AnswerStats() {
    auto stats = emulator_->Stats();
    EXPECT_TRUE(stats.ok()) << stats.status();
    return stats.ok() ? (*stats)["rate_limits"]["answer"] : nlohmann::json();
  }

  std::unique_ptr<emulator::testing::EmulatorProcess> emulator_;
  std::unique_ptr<GatewayProcess> gateway_;
  std::unique_ptr<v1::CopilotService::Stub> stub_;
};

TEST_F(GatewayLimitsTest, TenantRateLimitIsResourceExhaustedWithQuotaFailureAndRetryInfo) {
  Start("    limits: {other_per_second: 0.5, other_burst: 2}\n", "", "", {});
  EXPECT_TRUE(CreateThread(kTokenA).ok());
  EXPECT_TRUE(CreateThread(kTokenA).ok());
  const grpc::Status refused = CreateThread(kTokenA);
  ASSERT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  auto quota = FindDetail<google::rpc::QuotaFailure>(refused);
  ASSERT_TRUE(quota.has_value());
  EXPECT_EQ(quota->violations(0).subject(), "tenant:a");
  auto retry = FindDetail<google::rpc::RetryInfo>(refused);
  ASSERT_TRUE(retry.has_value());
  EXPECT_GE(retry->retry_delay().seconds(), 1);  // About 2 s: one call per 2 s.
  EXPECT_LE(retry->retry_delay().seconds(), 2);
  EXPECT_EQ(Reason(refused), "tenant_rate_exceeded");
  // Tenant b has no such limit; the refused call never reached the upstream.
  EXPECT_TRUE(CreateThread(kTokenB).ok());
  auto records = emulator_->Requests();
  ASSERT_TRUE(records.ok());
  int creates = 0;
  for (const auto& record : *records) creates += record.value("route", "") == "create_thread";
  EXPECT_EQ(creates, 3);
}

// GetUsage reads the quota counters (a Redis round trip with replicas): it takes the tenant's
// rate for other calls like every other call. Before, a tenant could read without bound while
// its other calls were refused.
TEST_F(GatewayLimitsTest, GetUsageTakesTheTenantsRateForOtherCalls) {
  Start("    limits: {other_per_second: 0.5, other_burst: 2}\n    quotas: {answers_per_day: 9}\n",
        "", "", {});
  auto usage = [this](const std::string& token) {
    grpc::ClientContext context;
    SetTimeout(context, absl::Seconds(10));
    context.AddMetadata("authorization", absl::StrCat("Bearer ", token));
    v1::GetUsageResponse response;
    return stub_->GetUsage(&context, v1::GetUsageRequest(), &response);
  };
  EXPECT_TRUE(usage(kTokenA).ok());
  EXPECT_TRUE(CreateThread(kTokenA).ok());
  const grpc::Status refused = usage(kTokenA);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << refused.error_message();
  EXPECT_EQ(Reason(refused), "tenant_rate_exceeded");
  EXPECT_TRUE(usage(kTokenB).ok());  // Tenant b has no such limit.
}

TEST_F(GatewayLimitsTest, ConcurrentAnswerCapHoldsWhileCallsRun) {
  Start("    limits: {max_concurrent_answers: 2}\n", "", "", {});
  ASSERT_TRUE(
      emulator_
          ->AddFault({{"endpoint", "chat_completions"}, {"type", "latency"}, {"delay_ms", 1500}})
          .ok());
  std::vector<grpc::Status> statuses(3);
  std::vector<std::thread> callers;
  for (int i = 0; i < 2; ++i) {
    callers.emplace_back([&, i] { statuses[static_cast<std::size_t>(i)] = Complete(kTokenA); });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  statuses[2] = Complete(kTokenA);
  for (std::thread& caller : callers) caller.join();
  EXPECT_TRUE(statuses[0].ok()) << statuses[0].error_message();
  EXPECT_TRUE(statuses[1].ok()) << statuses[1].error_message();
  EXPECT_EQ(statuses[2].error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(Reason(statuses[2]), "tenant_concurrency_exceeded");
  // The slots were freed when the calls ended.
  EXPECT_TRUE(Complete(kTokenA).ok());
}

// The budget matches the upstream's windows: 30 answers offered at once, 20 fit in the minute;
// the upstream never answers 429, the rest are refused with when to retry.
TEST_F(GatewayLimitsTest, TheUpstreamNeverAnswers429AndCallsBeyondTheBudgetLearnWhenToRetry) {
  Start("", "",
        "upstream_budget:\n  answer_per_second: 5\n  answer_per_minute: 20\n  max_wait: 5s\n",
        {"--answer-rps", "5", "--answer-rpm", "20"});
  std::vector<grpc::Status> statuses(30);
  std::vector<std::thread> callers;
  for (int i = 0; i < 30; ++i) {
    callers.emplace_back([&, i] {
      statuses[static_cast<std::size_t>(i)] = Complete(i % 2 == 0 ? kTokenA : kTokenB);
    });
  }
  for (std::thread& caller : callers) caller.join();
  int ok = 0;
  int exhausted = 0;
  for (const grpc::Status& status : statuses) {
    if (status.ok()) ++ok;
    if (status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
      ++exhausted;
      EXPECT_EQ(Reason(status), "upstream_budget_exceeded");
      auto retry = FindDetail<google::rpc::RetryInfo>(status);
      ASSERT_TRUE(retry.has_value());
      EXPECT_GE(retry->retry_delay().seconds(), 40);  // The minute window frees up later.
    }
  }
  EXPECT_EQ(ok, 20);
  EXPECT_EQ(exhausted, 10);
  const nlohmann::json stats = AnswerStats();
  EXPECT_EQ(stats.value("refused", -1), 0) << stats.dump();
  EXPECT_EQ(stats.value("admitted", -1), 20) << stats.dump();
  EXPECT_LE(stats.value("max_admitted_1s", 99), 5) << stats.dump();
}

// Tenant a floods; tenant b sends within its share of the budget. b is served (>= 99%) and the
// upstream never answers 429.
TEST_F(GatewayLimitsTest, AFloodingTenantDoesNotStarveAnother) {
  Start("", "",
        "upstream_budget:\n  answer_per_second: 10\n  answer_per_minute: 0\n  max_wait: 2s\n",
        {"--answer-rps", "10", "--answer-rpm", "100000"});
  std::atomic<bool> stop{false};
  std::atomic<int> a_ok{0}, a_refused{0};
  std::vector<std::thread> flood;
  for (int i = 0; i < 24; ++i) {
    flood.emplace_back([&] {
      while (!stop) {
        const grpc::Status status = Complete(kTokenA, absl::Seconds(5));
        (status.ok() ? a_ok : a_refused)++;
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::seconds(1));  // The queue is full of a's calls.
  int b_ok = 0;
  int b_sent = 0;
  std::string b_failures;
  const absl::Time end = absl::Now() + absl::Seconds(10);
  while (absl::Now() < end) {
    // 2/s, well within half of the budget (10 per 1.25 s with the window margin).
    const absl::Time next = absl::Now() + absl::Milliseconds(500);
    const grpc::Status status = Complete(kTokenB, absl::Seconds(5));
    ++b_sent;
    if (status.ok()) {
      ++b_ok;
    } else {
      absl::StrAppend(&b_failures, status.error_code(), " ", Reason(status), "; ");
    }
    std::this_thread::sleep_until(absl::ToChronoTime(next));
  }
  stop = true;
  for (std::thread& thread : flood) thread.join();
  EXPECT_GE(b_sent, 5);  // Each waits for its turn in a full window (up to 1.25 s).
  EXPECT_GE(b_ok * 100, b_sent * 99) << b_ok << " of " << b_sent << ": " << b_failures;
  EXPECT_GT(a_refused.load(), 0) << "a's flood exceeded the budget";
  EXPECT_GT(a_ok.load(), 50);
  const nlohmann::json stats = AnswerStats();
  EXPECT_EQ(stats.value("refused", -1), 0) << stats.dump();
  EXPECT_LE(stats.value("max_admitted_1s", 99), 10) << stats.dump();
  std::cout << "tenant b: " << b_ok << " of " << b_sent << " OK; tenant a: " << a_ok << " OK, "
            << a_refused << " refused; upstream admitted " << stats.value("admitted", -1)
            << ", max in 1 s " << stats.value("max_admitted_1s", -1) << "\n";
}

}  // namespace
}  // namespace copilot::gateway::testing
