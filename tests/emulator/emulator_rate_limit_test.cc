// End-to-end tests of the emulated upstream rate limits (docs/emulator.md "Rate limits"): 429 with
// Retry-After, the shared answer-generation limit, per-key counting, run-time config and stats.
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/emulator/testing/emulator_process.h"
#include "tests/emulator/thread_store.h"

namespace copilot::emulator {
namespace {

using nlohmann::json;
using testing::EmulatorProcess;
using testing::HttpClient;
using testing::HttpResponse;
using testing::RequestOptions;

const std::string kHr(kHrAssistantId);
const std::string kCompletion =
    json{{"assistant_id", kHr}, {"messages", {{{"role", "user"}, {"content", "q"}}}}}.dump();

std::unique_ptr<EmulatorProcess> StartEmulator(std::vector<std::string> args,
                                               std::vector<std::string> extra_api_keys = {}) {
  args.insert(args.end(), {"--stream-delay-ms", "1"});
  auto started = EmulatorProcess::Start({.args = args, .extra_api_keys = extra_api_keys});
  EXPECT_TRUE(started.ok()) << started.status();
  return started.ok() ? *std::move(started) : nullptr;
}

// Sends requests back to back on one kept-alive connection, so a burst takes milliseconds.
class Burst {
 public:
  Burst(const EmulatorProcess& emu, std::string api_key)
      : emu_(emu), api_key_(std::move(api_key)) {}
  HttpResponse Post(const std::string& path, const std::string& body) {
    return client_.Send("POST", emu_.api_url() + path, body, Options());
  }
  HttpResponse Get(const std::string& path) {
    return client_.Send("GET", emu_.api_url() + path, "", Options());
  }

 private:
  RequestOptions Options() const { return RequestOptions{.headers = {{"api-key", api_key_}}}; }
  const EmulatorProcess& emu_;
  std::string api_key_;
  HttpClient client_;
};

// A thread of the HR assistant holding one user message, ready to run.
std::string ReadyThread(const EmulatorProcess& emu) {
  std::string id = emu.ApiPost("/threads", json{{"assistant_id", kHr}}.dump()).Json()["id"];
  EXPECT_EQ(emu.ApiPost("/threads/" + id + "/messages", R"({"role":"user","content":"q"})").status,
            201);
  return id;
}

int64_t RetryAfter(const HttpResponse& r) {
  int64_t seconds = -1;
  std::optional<std::string> header = r.Header("retry-after");
  if (!header || !absl::SimpleAtoi(*header, &seconds)) return -1;
  return seconds;
}

json Counters(int64_t admitted, int64_t refused, int64_t max_1s, int64_t max_60s) {
  return json{{"admitted", admitted},
              {"refused", refused},
              {"max_admitted_1s", max_1s},
              {"max_admitted_60s", max_60s}};
}

TEST(RateLimitTest, AnswerLimitRefusesTheSixthRunWithRetryAfter) {
  auto emu = StartEmulator({"--answer-rps", "5", "--answer-rpm", "8"});
  ASSERT_NE(emu, nullptr);
  std::vector<std::string> threads;
  for (int i = 0; i < 10; ++i) threads.push_back(ReadyThread(*emu));  // 20 "other" requests

  Burst burst(*emu, emu->api_key());
  const absl::Time start = absl::Now();
  std::vector<HttpResponse> runs;
  for (int i = 0; i < 6; ++i) runs.push_back(burst.Post("/threads/" + threads[i] + "/run", "{}"));
  // Chat completions share the answer-generation limit.
  HttpResponse completion = burst.Post("/chat/completions", kCompletion);
  const absl::Time burst_end = absl::Now();
  ASSERT_LT(burst_end - start, absl::Milliseconds(900)) << "the burst must fit in one second";
  for (int i = 0; i < 5; ++i) EXPECT_EQ(runs[i].status, 200) << "run " << i << runs[i].body;
  EXPECT_EQ(runs[5].status, 429);
  EXPECT_EQ(runs[5].Json(),
            json({{"error_code", "rate_limit_gateway"}, {"detail", "Rate limit exceeded"}}));
  EXPECT_EQ(RetryAfter(runs[5]), 1);
  EXPECT_EQ(completion.status, 429);
  EXPECT_EQ(RetryAfter(completion), 1);

  // Other endpoints are not affected by the answer limit.
  EXPECT_EQ(burst.Get("/assistants").status, 200);
  EXPECT_EQ(
      burst.Post("/threads/" + threads[5] + "/messages", R"({"role":"user","content":"q"})").status,
      201);

  absl::StatusOr<json> records = emu->Requests();
  ASSERT_TRUE(records.ok()) << records.status();
  int rate_limited = 0;
  for (const json& record : *records) {
    if (record["rate_limited"] == true) {
      ++rate_limited;
      EXPECT_EQ(record["status"], 429);
    } else {
      EXPECT_NE(record["status"], 429) << record.dump();
    }
  }
  EXPECT_EQ(rate_limited, 2);
  const json& refused_run = (*records)[20 + 5];
  EXPECT_EQ(refused_run["route"], "run");
  EXPECT_EQ(refused_run["rate_limited"], true);

  absl::StatusOr<json> stats = emu->Stats();
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ((*stats)["rate_limits"]["answer"], Counters(5, 2, 5, 5));
  EXPECT_EQ((*stats)["rate_limits"]["other"]["admitted"], 22);
  EXPECT_EQ((*stats)["rate_limits"]["other"]["refused"], 0);
  EXPECT_EQ((*stats)["rate_limits"]["by_key"][emu->api_key()]["answer"], Counters(5, 2, 5, 5));

  // A second later the burst window is free again, but the minute allows only 8: three more runs
  // pass, the fourth waits for the first run to be a minute old.
  std::this_thread::sleep_for(std::chrono::milliseconds(
      absl::ToInt64Milliseconds(burst_end + absl::Milliseconds(1050) - absl::Now())));
  for (int i = 6; i < 9; ++i) {
    HttpResponse r = burst.Post("/threads/" + threads[i] + "/run", "{}");
    EXPECT_EQ(r.status, 200) << "run " << i << r.body;
  }
  HttpResponse ninth = burst.Post("/threads/" + threads[9] + "/run", "{}");
  EXPECT_EQ(ninth.status, 429);
  EXPECT_GE(RetryAfter(ninth), 45);
  EXPECT_LE(RetryAfter(ninth), 59);
  stats = emu->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ((*stats)["rate_limits"]["answer"], Counters(8, 3, 5, 8));
}

TEST(RateLimitTest, OffByDefaultButStillCounted) {
  auto emu = StartEmulator({});
  ASSERT_NE(emu, nullptr);
  EXPECT_EQ(emu->Get("/_emulator/config").Json()["rate_limits"], "off");
  Burst burst(*emu, emu->api_key());
  for (int i = 0; i < 20; ++i) {  // more than tier 0 allows per second
    EXPECT_EQ(burst.Post("/chat/completions", kCompletion).status, 200) << i;
  }
  // A rate_limit fault answers 429 on its own; the limiter does not see that request.
  ASSERT_TRUE(
      emu->AddFault({{"endpoint", "list_assistants"}, {"times", 1}, {"type", "rate_limit"}}).ok());
  EXPECT_EQ(burst.Get("/assistants").status, 429);
  EXPECT_EQ(burst.Get("/assistants").status, 200);
  absl::StatusOr<json> stats = emu->Stats();
  ASSERT_TRUE(stats.ok());
  const json& answer = (*stats)["rate_limits"]["answer"];
  EXPECT_EQ(answer["admitted"], 20);
  EXPECT_EQ(answer["refused"], 0);
  EXPECT_GE(answer["max_admitted_1s"], 1);
  EXPECT_EQ(answer["max_admitted_60s"], 20);
  EXPECT_EQ((*stats)["rate_limits"]["other"], Counters(1, 0, 1, 1));
  absl::StatusOr<json> records = emu->Requests();
  ASSERT_TRUE(records.ok()) << records.status();
  for (const json& record : *records) EXPECT_EQ(record["rate_limited"], false);
}

TEST(RateLimitTest, Tier0WithTheNewErrorShape) {
  auto emu = StartEmulator({"--rate-limits", "tier0", "--error-shape", "new"});
  ASSERT_NE(emu, nullptr);
  Burst burst(*emu, emu->api_key());
  const absl::Time start = absl::Now();
  std::vector<HttpResponse> answers;
  // Blocking and streamed completions share the limit; the 16th in a second is refused.
  for (int i = 0; i < 15; ++i) answers.push_back(burst.Post("/chat/completions", kCompletion));
  answers.push_back(burst.Post("/chat/completions/stream", kCompletion));
  ASSERT_LT(absl::Now() - start, absl::Milliseconds(900)) << "the burst must fit in one second";
  for (int i = 0; i < 15; ++i) EXPECT_EQ(answers[i].status, 200) << i;
  EXPECT_EQ(answers[15].status, 429);
  EXPECT_EQ(answers[15].Json(), json({{"message", "Rate limit exceeded!"}}));
  EXPECT_EQ(RetryAfter(answers[15]), 1);
  EXPECT_EQ((*emu->Stats())["rate_limits"]["answer"], Counters(15, 1, 15, 15));
}

TEST(RateLimitTest, OtherLimitLeavesAnswerGenerationAlone) {
  auto emu = StartEmulator({"--other-rps", "3"});
  ASSERT_NE(emu, nullptr);
  Burst burst(*emu, emu->api_key());
  for (int i = 0; i < 3; ++i) EXPECT_EQ(burst.Get("/assistants").status, 200);
  HttpResponse refused = burst.Get("/threads");
  EXPECT_EQ(refused.status, 429);
  EXPECT_EQ(RetryAfter(refused), 1);
  EXPECT_EQ(burst.Post("/chat/completions", kCompletion).status, 200);
  absl::StatusOr<json> stats = emu->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ((*stats)["rate_limits"]["other"]["refused"], 1);
  EXPECT_EQ((*stats)["rate_limits"]["answer"]["admitted"], 1);
}

TEST(RateLimitTest, CountsPerApiKey) {
  auto emu = StartEmulator({"--answer-rps", "2"}, {"tenant-b-key"});
  ASSERT_NE(emu, nullptr);
  Burst a(*emu, emu->api_key());
  Burst b(*emu, "tenant-b-key");
  EXPECT_EQ(a.Post("/chat/completions", kCompletion).status, 200);
  EXPECT_EQ(a.Post("/chat/completions", kCompletion).status, 200);
  EXPECT_EQ(a.Post("/chat/completions", kCompletion).status, 429);
  EXPECT_EQ(b.Post("/chat/completions", kCompletion).status, 200);
  EXPECT_EQ(b.Post("/chat/completions", kCompletion).status, 200);
  EXPECT_EQ(b.Post("/chat/completions", kCompletion).status, 429);
  // A request without an accepted key answers 401 and is not counted.
  Burst stranger(*emu, "wrong-key");
  EXPECT_EQ(stranger.Post("/chat/completions", kCompletion).status, 401);
  absl::StatusOr<json> stats = emu->Stats();
  ASSERT_TRUE(stats.ok());
  const json& by_key = (*stats)["rate_limits"]["by_key"];
  EXPECT_EQ(by_key.size(), 2u);
  EXPECT_EQ(by_key[emu->api_key()]["answer"], Counters(2, 1, 2, 2));
  EXPECT_EQ(by_key["tenant-b-key"]["answer"], Counters(2, 1, 2, 2));
  EXPECT_EQ((*stats)["rate_limits"]["answer"], Counters(4, 2, 2, 2));
}

TEST(RateLimitTest, ConfigAtRunTime) {
  auto emu = StartEmulator({});
  ASSERT_NE(emu, nullptr);
  ASSERT_TRUE(emu->SetConfig({{"answer_rps", 2}}).ok());
  json config = emu->Get("/_emulator/config").Json();
  EXPECT_EQ(config["rate_limits"], "custom");
  EXPECT_EQ(config["answer_rps"], 2);
  EXPECT_EQ(config["answer_rpm"], 60);
  Burst burst(*emu, emu->api_key());
  EXPECT_EQ(burst.Post("/chat/completions", kCompletion).status, 200);
  EXPECT_EQ(burst.Post("/chat/completions", kCompletion).status, 200);
  EXPECT_EQ(burst.Post("/chat/completions", kCompletion).status, 429);

  ASSERT_TRUE(emu->SetConfig({{"rate_limits", "off"}}).ok());
  EXPECT_EQ(burst.Post("/chat/completions", kCompletion).status, 200);
  config = emu->Get("/_emulator/config").Json();
  EXPECT_EQ(config["rate_limits"], "off");
  EXPECT_EQ(config["answer_rps"], 2);  // kept for "custom"
  // The windows were kept while off: three admitted in this second already.
  ASSERT_TRUE(emu->SetConfig({{"rate_limits", "custom"}}).ok());
  EXPECT_EQ(burst.Post("/chat/completions", kCompletion).status, 429);

  // Reset forgets the windows and counters, not the config.
  ASSERT_TRUE(emu->Reset().ok());
  EXPECT_EQ((*emu->Stats())["rate_limits"]["answer"], Counters(0, 0, 0, 0));
  EXPECT_EQ(burst.Post("/chat/completions", kCompletion).status, 200);
  EXPECT_EQ(emu->Get("/_emulator/config").Json()["rate_limits"], "custom");

  absl::StatusOr<json> tier0 = [&]() -> absl::StatusOr<json> {
    HttpResponse r = emu->Post("/_emulator/config", R"({"rate_limits":"tier0"})");
    if (r.status != 200) return absl::InternalError(r.body);
    return r.Json();
  }();
  ASSERT_TRUE(tier0.ok()) << tier0.status();
  EXPECT_EQ((*tier0)["rate_limits"], "tier0");
  EXPECT_EQ((*tier0)["answer_rps"], 15);
  EXPECT_EQ((*tier0)["other_rpm"], 180);

  struct Bad {
    const char* body;
    const char* names;
  };
  for (const Bad& bad :
       {Bad{R"({"rate_limits":"off","answer_rps":3})", "rate_limits"},
        Bad{R"({"rate_limits":"tier1"})", "rate_limits"}, Bad{R"({"answer_rps":0})", "answer_rps"},
        Bad{R"({"other_rpm":"9"})", "other_rpm"}, Bad{R"({"answer_rpm":1000001})", "answer_rpm"}}) {
    HttpResponse r = emu->Post("/_emulator/config", bad.body);
    EXPECT_EQ(r.status, 400) << bad.body;
    EXPECT_NE(r.Json()["error"].get<std::string>().find(bad.names), std::string::npos) << r.body;
  }
  EXPECT_EQ(emu->Get("/_emulator/config").Json()["rate_limits"], "tier0");  // nothing changed
}

}  // namespace
}  // namespace copilot::emulator
