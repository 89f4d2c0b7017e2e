// End-to-end tests of every fault type, checked by the bytes a libcurl client actually sees.
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/emulator/testing/emulator_process.h"
#include "tests/emulator/thread_store.h"

namespace copilot::emulator {
namespace {

using nlohmann::json;
using testing::EmulatorProcess;
using testing::HttpResponse;
using testing::RequestOptions;

const std::string kHr(kHrAssistantId);

// Polls the request record until `predicate` holds for the newest record (at most 5 s).
json WaitForLastRecord(const EmulatorProcess& emu, const std::function<bool(const json&)>& pred) {
  json last;
  for (int i = 0; i < 500; ++i) {
    absl::StatusOr<json> records = emu.Requests();
    if (records.ok() && !records->empty()) {
      last = records->back();
      if (pred(last)) return last;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return last;
}

class FaultInjectionTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto started = EmulatorProcess::Start({.args = {"--stream-delay-ms", "1"}});
    ASSERT_TRUE(started.ok()) << started.status();
    emulator_ = std::move(started).value().release();
  }
  static void TearDownTestSuite() {
    delete emulator_;
    emulator_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(emulator_, nullptr);
    ASSERT_TRUE(emulator_->Reset().ok());
    ASSERT_TRUE(
        emulator_
            ->SetConfig({{"error_shape", "old"}, {"stream_delay_ms", 1}, {"response_delay_ms", 0}})
            .ok());
  }
  EmulatorProcess& emu() { return *emulator_; }

  void AddFault(const json& rule) {
    absl::StatusOr<int64_t> id = emu().AddFault(rule);
    ASSERT_TRUE(id.ok()) << id.status();
  }
  // A thread with one user message, ready to run.
  std::string ReadyThread() {
    HttpResponse t = emu().ApiPost("/threads", json{{"assistant_id", kHr}}.dump());
    std::string id = t.Json().value("id", "");
    emu().ApiPost("/threads/" + id + "/messages",
                  R"({"role":"user","content":"one two three four five six"})");
    return id;
  }
  HttpResponse RunStream(const std::string& thread, RequestOptions options = {}) {
    return emu().ApiPost("/threads/" + thread + "/run/stream", "{}", options);
  }

  static EmulatorProcess* emulator_;
};

EmulatorProcess* FaultInjectionTest::emulator_ = nullptr;

TEST_F(FaultInjectionTest, LatencyDelaysTheAnswer) {
  AddFault({{"endpoint", "list_assistants"}, {"type", "latency"}, {"delay_ms", 300}});
  HttpResponse r = emu().ApiGet("/assistants");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.Json().size(), 3u);
  EXPECT_GE(r.elapsed, absl::Milliseconds(300));
  // Other routes are not delayed.
  HttpResponse other = emu().ApiGet("/threads");
  EXPECT_EQ(other.status, 200);
  EXPECT_LT(other.elapsed, absl::Milliseconds(250));
}

TEST_F(FaultInjectionTest, StatusFaultInEachShapeThenRecovers) {
  AddFault({{"endpoint", "run"},
            {"times", 1},
            {"type", "status"},
            {"status", 503},
            {"error_code", "internal_service_error"},
            {"detail", "down for maintenance"}});
  std::string thread = ReadyThread();
  HttpResponse r = emu().ApiPost("/threads/" + thread + "/run", "{}");
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.Json(),
            json({{"error_code", "internal_service_error"}, {"detail", "down for maintenance"}}));
  // times: 1 is used up.
  EXPECT_EQ(emu().ApiPost("/threads/" + thread + "/run", "{}").status, 200);

  struct Case {
    const char* shape;
    json expected;
  };
  const Case cases[] = {
      {"message_only", {{"message", "boom"}}},
      {"fastapi",
       json::parse(R"({"detail":[{"loc":["body"],"msg":"boom","type":"value_error"}]})")},
      {"custom_validation",
       json::parse(
           R"({"error_code":"validation_error","detail":[{"loc":["body"],"message":"boom","type":"value_error"}]})")},
  };
  for (const Case& c : cases) {
    AddFault({{"endpoint", "get_thread"},
              {"times", 1},
              {"type", "status"},
              {"status", 422},
              {"detail", "boom"},
              {"shape", c.shape}});
    HttpResponse shaped = emu().ApiGet("/threads/" + thread);
    EXPECT_EQ(shaped.status, 422) << c.shape;
    EXPECT_EQ(shaped.Json(), c.expected) << c.shape;
  }
  AddFault({{"endpoint", "get_thread"},
            {"times", 1},
            {"type", "status"},
            {"status", 502},
            {"detail", "<html>bad gateway</html>"},
            {"shape", "text"}});
  HttpResponse text = emu().ApiGet("/threads/" + thread);
  EXPECT_EQ(text.status, 502);
  EXPECT_EQ(text.body, "<html>bad gateway</html>");
  EXPECT_EQ(text.Header("content-type"), "text/plain; charset=utf-8");
  // Defaults: error_code from the status.
  AddFault({{"endpoint", "*"}, {"times", 1}, {"type", "status"}, {"status", 500}});
  HttpResponse plain = emu().ApiGet("/assistants");
  EXPECT_EQ(plain.status, 500);
  EXPECT_EQ(plain.Json()["error_code"], "internal_server_error");
}

TEST_F(FaultInjectionTest, RateLimitBothShapesWithRetryAfter) {
  AddFault({{"endpoint", "list_threads"},
            {"times", 1},
            {"type", "rate_limit"},
            {"retry_after", 7},
            {"shape", "old"}});
  HttpResponse old_shape = emu().ApiGet("/threads");
  EXPECT_EQ(old_shape.status, 429);
  EXPECT_EQ(old_shape.Header("retry-after"), "7");
  EXPECT_EQ(old_shape.Json(),
            json({{"error_code", "rate_limit_gateway"}, {"detail", "Rate limit exceeded"}}));

  AddFault({{"endpoint", "list_threads"}, {"times", 1}, {"type", "rate_limit"}, {"shape", "new"}});
  HttpResponse new_shape = emu().ApiGet("/threads");
  EXPECT_EQ(new_shape.status, 429);
  EXPECT_FALSE(new_shape.Header("retry-after").has_value());
  EXPECT_EQ(new_shape.Json(), json({{"message", "Rate limit exceeded!"}}));
}

TEST_F(FaultInjectionTest, ResetBeforeHeadersSendsNothing) {
  AddFault({{"endpoint", "list_assistants"}, {"times", 1}, {"type", "reset_before_headers"}});
  HttpResponse r = emu().ApiGet("/assistants");
  EXPECT_TRUE(r.curl_code == CURLE_RECV_ERROR || r.curl_code == CURLE_GOT_NOTHING)
      << r.curl_code << " " << r.curl_error;
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.body, "");
  json record = WaitForLastRecord(emu(), [](const json& r) { return r["finished"] == true; });
  EXPECT_EQ(record["route"], "list_assistants");
  EXPECT_EQ(record["status"], 0);
  EXPECT_EQ(record["client_closed_early"], false);
}

TEST_F(FaultInjectionTest, ResetMidBodyCutsTheBody) {
  std::string full = emu().ApiGet("/assistants").body;
  AddFault({{"endpoint", "list_assistants"},
            {"times", 1},
            {"type", "reset_mid_body"},
            {"after_bytes", 100}});
  HttpResponse r = emu().ApiGet("/assistants");
  EXPECT_EQ(r.curl_code, CURLE_RECV_ERROR) << r.curl_error;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, full.substr(0, 100));

  // Default: half the body.
  AddFault({{"endpoint", "list_assistants"}, {"times", 1}, {"type", "reset_mid_body"}});
  HttpResponse half = emu().ApiGet("/assistants");
  EXPECT_EQ(half.curl_code, CURLE_RECV_ERROR) << half.curl_error;
  EXPECT_EQ(half.body, full.substr(0, full.size() / 2));
}

TEST_F(FaultInjectionTest, ResetMidStream) {
  std::string thread = ReadyThread();
  AddFault(
      {{"endpoint", "run_stream"}, {"times", 1}, {"type", "reset_mid_body"}, {"after_bytes", 50}});
  HttpResponse r = RunStream(thread);
  EXPECT_EQ(r.curl_code, CURLE_RECV_ERROR) << r.curl_error;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body.size(), 50u);
  // The interrupted answer is not stored.
  EXPECT_EQ(emu().ApiGet("/threads/" + thread + "/messages").Json()["items"].size(), 1u);
}

TEST_F(FaultInjectionTest, StallKeepsTheConnectionSilent) {
  AddFault({{"endpoint", "get_assistant"}, {"times", 1}, {"type", "stall"}});
  HttpResponse r =
      emu().ApiGet("/assistants/" + kHr, RequestOptions{.timeout = absl::Milliseconds(400)});
  EXPECT_EQ(r.curl_code, CURLE_OPERATION_TIMEDOUT) << r.curl_error;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "");
  EXPECT_GE(r.elapsed, absl::Milliseconds(390));
  // When the client gives up, the record says so.
  json record = WaitForLastRecord(emu(), [](const json& r) { return r["finished"] == true; });
  EXPECT_EQ(record["status"], 200);
  EXPECT_EQ(record["client_closed_early"], true);

  std::string thread = ReadyThread();
  AddFault({{"endpoint", "run_stream"}, {"times", 1}, {"type", "stall"}, {"after_bytes", 10}});
  HttpResponse stream = RunStream(thread, RequestOptions{.timeout = absl::Milliseconds(300)});
  EXPECT_EQ(stream.curl_code, CURLE_OPERATION_TIMEDOUT);
  EXPECT_EQ(stream.body.size(), 10u);
}

TEST_F(FaultInjectionTest, MalformedJson) {
  AddFault({{"endpoint", "list_threads"}, {"times", 1}, {"type", "malformed_json"}});
  HttpResponse r = emu().ApiGet("/threads");
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("content-type"), "application/json");
  EXPECT_FALSE(r.body.empty());
  EXPECT_TRUE(r.Json().is_discarded()) << r.body;

  std::string thread = ReadyThread();
  AddFault({{"endpoint", "run_stream"}, {"times", 1}, {"type", "malformed_json"}});
  HttpResponse stream = RunStream(thread);
  EXPECT_EQ(stream.status, 200);
  EXPECT_TRUE(json::parse(stream.body, nullptr, false).is_discarded());
}

TEST_F(FaultInjectionTest, TruncatedNdjsonEndsWithoutNewline) {
  std::string thread = ReadyThread();
  AddFault({{"endpoint", "run_stream"}, {"times", 1}, {"type", "truncated_ndjson"}, {"lines", 2}});
  HttpResponse r = RunStream(thread);
  EXPECT_TRUE(r.ok()) << r.curl_error;  // the body ends cleanly
  EXPECT_EQ(r.status, 200);
  ASSERT_FALSE(r.body.empty());
  EXPECT_NE(r.body.back(), '\n');
  std::vector<std::string> parts = absl::StrSplit(r.body, '\n');
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_FALSE(json::parse(parts[0], nullptr, false).is_discarded());
  EXPECT_FALSE(json::parse(parts[1], nullptr, false).is_discarded());
  EXPECT_TRUE(json::parse(parts[2], nullptr, false).is_discarded());
  EXPECT_EQ(emu().ApiGet("/threads/" + thread + "/messages").Json()["items"].size(), 1u);
}

TEST_F(FaultInjectionTest, MidStreamErrorLine) {
  std::string thread = ReadyThread();
  AddFault({{"endpoint", "run_stream"}, {"times", 1}, {"type", "mid_stream_error"}, {"lines", 2}});
  HttpResponse r = RunStream(thread);
  EXPECT_TRUE(r.ok()) << r.curl_error;
  EXPECT_EQ(r.status, 200);
  std::vector<std::string> lines = absl::StrSplit(r.body, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_TRUE(json::parse(lines[1])["delta"].is_object());
  EXPECT_EQ(json::parse(lines[2]),
            json({{"error_code", "api_timeout_error"}, {"detail", "Upstream request timed out"}}));

  AddFault({{"endpoint", "chat_completions_stream"},
            {"times", 1},
            {"type", "mid_stream_error"},
            {"lines", 0},
            {"error_code", "internal_service_error"},
            {"detail", "gone"}});
  HttpResponse chat = emu().ApiPost(
      "/chat/completions/stream",
      json{{"assistant_id", kHr}, {"messages", {{{"role", "user"}, {"content", "q"}}}}}.dump());
  EXPECT_EQ(chat.status, 200);
  EXPECT_EQ(chat.body, R"({"detail":"gone","error_code":"internal_service_error"})"
                       "\n");
}

TEST_F(FaultInjectionTest, OversizedBodyIsValidJson) {
  AddFault(
      {{"endpoint", "get_assistant"}, {"times", 1}, {"type", "oversized_body"}, {"bytes", 300000}});
  HttpResponse r = emu().ApiGet("/assistants/" + kHr);
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.status, 200);
  EXPECT_NEAR(static_cast<double>(r.body.size()), 300000.0, 100.0);
  json body = r.Json();
  ASSERT_FALSE(body.is_discarded());
  EXPECT_EQ(body["name"], "Haufe Copilot HR");  // the real answer, padded
  EXPECT_TRUE(body.contains("emulator_padding"));
}

TEST_F(FaultInjectionTest, StreamPacingFollowsTheDelay) {
  ASSERT_TRUE(emu().SetConfig({{"stream_delay_ms", 40}}).ok());
  std::string thread = ReadyThread();
  HttpResponse r = RunStream(thread);
  ASSERT_EQ(r.status, 200);
  size_t k = std::vector<std::string>(absl::StrSplit(r.body, '\n', absl::SkipEmpty())).size();
  ASSERT_GE(k, 5u);
  EXPECT_GE(r.elapsed, absl::Milliseconds(40) * static_cast<int64_t>(k - 1));
  EXPECT_LT(r.elapsed, absl::Milliseconds(40) * static_cast<int64_t>(k - 1) + absl::Seconds(1));
}

TEST_F(FaultInjectionTest, StreamFaultsLeaveNonStreamRoutesAlone) {
  AddFault({{"endpoint", "*"}, {"times", 1}, {"type", "truncated_ndjson"}});
  HttpResponse r = emu().ApiGet("/assistants");
  EXPECT_EQ(r.status, 200);
  EXPECT_FALSE(r.Json().is_discarded());
  EXPECT_EQ(emu().Get("/_emulator/faults").Json(), json::array());  // the hit used it up
}

TEST(FaultAtStartupTest, FaultFlagInstallsRules) {
  auto emu = EmulatorProcess::Start(
      {.args = {"--fault",
                R"({"endpoint":"list_assistants","times":2,"type":"status","status":503})",
                "--fault", R"({"endpoint":"*","type":"latency","delay_ms":1})"}});
  ASSERT_TRUE(emu.ok()) << emu.status();
  EXPECT_EQ((*emu)->ApiGet("/assistants").status, 503);
  EXPECT_EQ((*emu)->ApiGet("/assistants").status, 503);
  EXPECT_EQ((*emu)->ApiGet("/assistants").status, 200);
  json faults = (*emu)->Get("/_emulator/faults").Json();
  ASSERT_EQ(faults.size(), 1u);
  EXPECT_EQ(faults[0]["type"], "latency");
  EXPECT_EQ(faults[0]["hits"], 1);
}

TEST(FaultAtStartupTest, BadFaultFlagFailsToStart) {
  auto emu = EmulatorProcess::Start({.args = {"--fault", R"({"endpoint":"run","type":"nope"})"},
                                     .startup_timeout = absl::Seconds(5)});
  EXPECT_FALSE(emu.ok());
}

}  // namespace
}  // namespace copilot::emulator
