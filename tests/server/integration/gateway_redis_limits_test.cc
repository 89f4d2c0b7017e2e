// Shared limits through the real binaries: three gateway processes, one redis-server, four
// tenants loading them at once, and an emulator that enforces the upstream's windows. Each
// tenant's admitted count matches its limit across the replicas, the upstream never answers 429
// (three replicas admitting alone would triple the budget), and with Redis killed mid-way the
// replicas fail open to their share, say so (gauge, log line) and recover by themselves.
#include <atomic>
#include <chrono>
#include <cmath>
#include <fstream>
#include <iostream>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/common/crypto.h"
#include "tests/server/integration/integration_fixture.h"
#include "tests/server/limits/redis_server.h"

namespace copilot::gateway::testing {
namespace {

namespace v1 = ::copilot::v1;

struct TenantSpec {
  std::string id;
  double other_per_second;
};
const std::vector<TenantSpec> kTenants = {{"t1", 4}, {"t2", 6}, {"t3", 8}, {"t4", 10}};

// Two seconds' worth: a caller stalled for a moment (a loaded CI machine) loses nothing.
int Burst(const TenantSpec& tenant) { return static_cast<int>(2 * tenant.other_per_second); }

std::string Token(const std::string& tenant) { return absl::StrCat("token-", tenant, "-5e1f"); }

// The value of a sample whose line starts with `series` (exact name and labels as printed).
double Sample(const std::string& scrape, const std::string& name,
              const std::vector<std::string>& label_parts = {}) {
  double total = -1;
  for (absl::string_view line : absl::StrSplit(scrape, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    if (line.substr(0, line.find_first_of("{ ")) != name) continue;
    bool all = true;
    for (const std::string& part : label_parts) all = all && absl::StrContains(line, part);
    double value = 0;
    if (all && absl::SimpleAtod(line.substr(line.rfind(' ') + 1), &value)) {
      total = (total < 0 ? 0 : total) + value;
    }
  }
  return total;
}

class GatewayRedisLimitsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto redis = RedisServer::Start();
    ASSERT_TRUE(redis.ok()) << redis.status();
    redis_ = *std::move(redis);
    // Answers: 10 per second upstream; other calls are not the point here.
    auto emulator = emulator::testing::EmulatorProcess::Start(
        {.args = {"--answer-rps", "10", "--answer-rpm", "1000000", "--other-rps", "1000000",
                  "--other-rpm", "1000000", "--stream-delay-ms", "1"}});
    ASSERT_TRUE(emulator.ok()) << emulator.status();
    emulator_ = *std::move(emulator);
    std::string tenants = "tenants:\n";
    for (const TenantSpec& tenant : kTenants) {
      absl::StrAppend(&tenants, "  - id: ", tenant.id, "\n    bearer_token_sha256: [\"",
                      absl::BytesToHexString(Sha256(Token(tenant.id))), "\"]\n    licence: LIC-",
                      tenant.id, "\n    assistants: [{id: \"*\"}]\n    limits: {other_per_second: ",
                      tenant.other_per_second, ", other_burst: ", Burst(tenant), "}\n");
    }
    GatewayProcessOptions options;
    options.upstream_url = emulator_->base_url() + "/agents";
    options.identity = "bearer";
    options.unlimited_budget = false;
    options.extra_yaml =
        absl::StrCat(tenants,
                     "upstream_budget:\n  answer_per_second: 8\n  answer_per_minute: 0\n"
                     "  other_per_second: 0\n  other_per_minute: 0\n  max_wait: 2s\n",
                     "redis:\n  url: \"", redis_->url(),
                     "\"\n  on_failure: fail_open\n  replicas: 3\n", "  command_timeout: 200ms\n");
    for (int i = 0; i < 3; ++i) {
      auto gateway = GatewayProcess::Start(options);
      ASSERT_TRUE(gateway.ok()) << gateway.status();
      stubs_.push_back(v1::CopilotService::NewStub((*gateway)->NewChannel()));
      gateways_.push_back(*std::move(gateway));
    }
  }

  void TearDown() override {
    stubs_.clear();
    for (auto& gateway : gateways_) EXPECT_EQ(gateway->Stop().value_or(-1), 0);
  }

  std::string Scrape(int gateway) {
    return emulator::testing::SendHttpRequest(
               "GET",
               absl::StrCat("http://127.0.0.1:", gateways_[gateway]->metrics_port(), "/metrics"),
               "")
        .body;
  }

  grpc::Status Call(int gateway, const std::string& tenant, bool answer) {
    grpc::ClientContext context;
    SetTimeout(context, absl::Seconds(10));
    context.AddMetadata("authorization", absl::StrCat("Bearer ", Token(tenant)));
    if (answer) {
      v1::CompleteRequest request;
      request.set_assistant_id(kTaxAssistant);
      v1::MessageInput* message = request.add_messages();
      message->set_role(v1::ROLE_USER);
      message->set_content("q");
      v1::CompleteResponse response;
      return stubs_[gateway]->Complete(&context, request, &response);
    }
    v1::CreateThreadRequest request;
    request.set_assistant_id(kTaxAssistant);
    v1::CreateThreadResponse response;
    return stubs_[gateway]->CreateThread(&context, request, &response);
  }

  struct Load {
    std::vector<int> ok = std::vector<int>(kTenants.size(), 0);
    std::vector<absl::Time> first =
        std::vector<absl::Time>(kTenants.size(), absl::InfiniteFuture());
    std::vector<absl::Time> last = std::vector<absl::Time>(kTenants.size(), absl::InfinitePast());
    std::vector<std::vector<absl::Time>> ok_times =
        std::vector<std::vector<absl::Time>>(kTenants.size());
    int answers_ok = 0;
    int answers_refused = 0;
    int other_errors = 0;
    std::string errors;
  };

  // Every tenant floods other calls over the three replicas (4 callers each), and 6 callers
  // flood answers, for `duration`; `during(elapsed)` runs on the test thread meanwhile.
  Load Run(absl::Duration duration, const std::function<void(absl::Duration)>& during) {
    Load load;
    std::mutex mu;
    std::atomic<bool> stop{false};
    std::vector<std::thread> callers;
    for (std::size_t t = 0; t < kTenants.size(); ++t) {
      for (int c = 0; c < 4; ++c) {
        callers.emplace_back([&, t, c] {
          for (int i = c; !stop; ++i) {
            const absl::Time start = absl::Now();
            const grpc::Status status = Call(i % 3, kTenants[t].id, false);
            std::lock_guard<std::mutex> lock(mu);
            load.first[t] = std::min(load.first[t], start);
            load.last[t] = std::max(load.last[t], absl::Now());
            if (status.ok()) {
              ++load.ok[t];
              load.ok_times[t].push_back(absl::Now());
            } else if (status.error_code() != grpc::StatusCode::RESOURCE_EXHAUSTED) {
              ++load.other_errors;
              absl::StrAppend(&load.errors, status.error_code(), " ", status.error_message(), "; ");
            }
          }
        });
      }
    }
    for (int c = 0; c < 6; ++c) {
      callers.emplace_back([&, c] {
        for (int i = c; !stop; ++i) {
          const grpc::Status status = Call(i % 3, kTenants[i % kTenants.size()].id, true);
          std::lock_guard<std::mutex> lock(mu);
          if (status.ok()) {
            ++load.answers_ok;
          } else if (status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
            ++load.answers_refused;
          } else {
            ++load.other_errors;
            absl::StrAppend(&load.errors, status.error_code(), " ", status.error_message(), "; ");
          }
        }
      });
    }
    const absl::Time start = absl::Now();
    while (absl::Now() - start < duration) {
      during(absl::Now() - start);
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    stop = true;
    for (std::thread& caller : callers) caller.join();
    return load;
  }

  nlohmann::json AnswerStats() {
    auto stats = emulator_->Stats();
    EXPECT_TRUE(stats.ok()) << stats.status();
    return stats.ok() ? (*stats)["rate_limits"]["answer"] : nlohmann::json();
  }

  std::unique_ptr<RedisServer> redis_;
  std::unique_ptr<emulator::testing::EmulatorProcess> emulator_;
  std::vector<std::unique_ptr<GatewayProcess>> gateways_;
  std::vector<std::unique_ptr<v1::CopilotService::Stub>> stubs_;
};

TEST_F(GatewayRedisLimitsTest, ThreeReplicasAdmitTogetherExactlyWhatTheLimitsAllow) {
  Load load = Run(absl::Seconds(60), [](absl::Duration) {});
  EXPECT_EQ(load.other_errors, 0) << load.errors;
  for (std::size_t t = 0; t < kTenants.size(); ++t) {
    // In the steady state (after the first 5 s and before the last 5 s, which hold the
    // start-up burst and the end of the load), the three replicas together admit the tenant's
    // rate: within 1% (one call of edge effect allowed).
    const absl::Time from = load.first[t] + absl::Seconds(5);
    const absl::Time to = load.last[t] - absl::Seconds(5);
    int in_window = 0;
    for (absl::Time at : load.ok_times[t]) in_window += at >= from && at < to;
    const double expected = kTenants[t].other_per_second * absl::ToDoubleSeconds(to - from);
    std::cout << kTenants[t].id << ": " << in_window << " admitted in the steady "
              << absl::ToDoubleSeconds(to - from) << " s, limit " << expected << "; " << load.ok[t]
              << " in all\n";
    // Within 1% of the limit either way (and one call of edge effect). The burst (two seconds'
    // worth) matters: with burst 1 (zero GCRA tolerance) each admission loses the time between
    // its due time and the next caller's request (about 1.5 ms here, any store).
    EXPECT_LE(in_window, expected * 1.01 + 1) << kTenants[t].id;
    EXPECT_GE(in_window, expected * 0.99 - 1) << kTenants[t].id;
    // And over the whole run at most the rate plus the burst.
    const double whole =
        Burst(kTenants[t]) +
        kTenants[t].other_per_second * absl::ToDoubleSeconds(load.last[t] - load.first[t]);
    EXPECT_LE(load.ok[t], whole * 1.01 + 1) << kTenants[t].id;
  }
  // The budget: 8 answers per 1.25 s over all three replicas; alone each would admit that much.
  const nlohmann::json stats = AnswerStats();
  std::cout << "answers: " << load.answers_ok << " OK, " << load.answers_refused
            << " refused; upstream " << stats.dump() << "\n";
  EXPECT_EQ(stats.value("refused", -1), 0) << stats.dump();
  EXPECT_LE(stats.value("max_admitted_1s", 99), 8) << stats.dump();
  EXPECT_GE(load.answers_ok, 330);  // 60 s at 6.4/s is 384.
  // Calls still waiting at the end (max_wait 2 s) may go in after the 60 s.
  EXPECT_LE(load.answers_ok, 8 * (62 / 1.25 + 1));
  EXPECT_GT(load.answers_refused, 0);
}

TEST_F(GatewayRedisLimitsTest, RedisOutageFailsOpenToEachReplicasShareAndRecovers) {
  bool killed = false, restarted = false;
  double degraded_during = -1, degraded_after = -1, degraded_decisions = -1;
  Load load = Run(absl::Seconds(24), [&](absl::Duration elapsed) {
    if (!killed && elapsed > absl::Seconds(6)) {
      redis_->Kill();
      killed = true;
    }
    if (killed && !restarted && elapsed > absl::Seconds(12)) {
      const std::string scrape = Scrape(0);
      degraded_during = Sample(scrape, "copilot_gateway_redis_degraded");
      degraded_decisions =
          Sample(scrape, "copilot_gateway_limit_decisions_total", {"decision=\"degraded\""});
      ASSERT_TRUE(redis_->Restart().ok());
      restarted = true;
    }
    if (restarted && elapsed > absl::Seconds(20) && degraded_after < 0) {
      degraded_after = Sample(Scrape(0), "copilot_gateway_redis_degraded");
    }
  });
  EXPECT_EQ(load.other_errors, 0) << load.errors;
  EXPECT_EQ(degraded_during, 1);
  EXPECT_GT(degraded_decisions, 0);
  EXPECT_EQ(degraded_after, 0);  // Recovered by itself.
  // The upstream never saw more than its limit: each replica kept to its share meanwhile.
  const nlohmann::json stats = AnswerStats();
  EXPECT_EQ(stats.value("refused", -1), 0) << stats.dump();
  // Tenants stayed near their limits throughout: their rate, plus one burst at each switch of
  // mode (at the start in Redis, in the replicas' local buckets when it went away, and in Redis
  // again when its idle keys had expired).
  for (std::size_t t = 0; t < kTenants.size(); ++t) {
    const double seconds = absl::ToDoubleSeconds(load.last[t] - load.first[t]);
    const double rate = kTenants[t].other_per_second * seconds;
    std::cout << kTenants[t].id << ": " << load.ok[t] << " admitted; the rate allows " << rate
              << " plus bursts of " << Burst(kTenants[t]) << "\n";
    EXPECT_LE(load.ok[t], rate * 1.01 + 3 * Burst(kTenants[t]) + 3) << kTenants[t].id;
    EXPECT_GE(load.ok[t], rate * 0.7) << kTenants[t].id;
  }
  // Each replica said so in its log, and that it was back.
  for (const auto& gateway : gateways_) {
    std::ifstream in(gateway->log_path());
    std::stringstream text;
    text << in.rdbuf();
    const std::string log = text.str();
    const std::size_t lost = log.find("redis limit store unavailable");
    ASSERT_NE(lost, std::string::npos) << log;
    EXPECT_NE(log.find("redis limit store connected", lost), std::string::npos) << log;
  }
}

}  // namespace
}  // namespace copilot::gateway::testing
