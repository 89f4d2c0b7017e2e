// End-to-end tests of the control API: request record, config switching, faults, stats, reset,
// process lifecycle.
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
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

// Polls until `pred(records)` holds (at most 5 s) and returns the last records seen.
json WaitForRecords(const EmulatorProcess& emu, const std::function<bool(const json&)>& pred) {
  json records;
  for (int i = 0; i < 500; ++i) {
    absl::StatusOr<json> got = emu.Requests();
    if (got.ok()) {
      records = *got;
      if (pred(records)) return records;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return records;
}

class ControlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto started = EmulatorProcess::Start({.args = {"--stream-delay-ms", "1"}});
    ASSERT_TRUE(started.ok()) << started.status();
    emu_ = *std::move(started);
  }
  EmulatorProcess& emu() { return *emu_; }
  std::unique_ptr<EmulatorProcess> emu_;
};

TEST_F(ControlTest, RecordsRequestsWithHeadersBodyAndStatus) {
  emu().ApiPost("/threads?x=1", json{{"assistant_id", kHr}}.dump(),
                RequestOptions{.headers = {{"X-Trace", "abc"}}});
  emu().ApiGet("/threads/not-a-uuid");
  emu().Get("/_emulator/stats");  // control requests are not recorded
  absl::StatusOr<json> records = emu().Requests();
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 2u);
  const json& first = (*records)[0];
  EXPECT_EQ(first["seq"], 1);
  EXPECT_EQ(first["method"], "POST");
  EXPECT_EQ(first["path"], "/agents/v1/threads");
  EXPECT_EQ(first["query"], "x=1");
  EXPECT_EQ(first["route"], "create_thread");
  EXPECT_EQ(first["headers"]["api-key"], emu().api_key());
  EXPECT_EQ(first["headers"]["x-trace"], "abc");
  EXPECT_EQ(first["headers"]["content-type"], "application/json");
  EXPECT_EQ(first["body"], (json{{"assistant_id", kHr}}.dump()));
  EXPECT_EQ(first["status"], 201);
  EXPECT_EQ(first["client_closed_early"], false);
  const json& second = (*records)[1];
  EXPECT_EQ(second["route"], "get_thread");
  EXPECT_EQ(second["status"], 422);

  ASSERT_TRUE(emu().ClearRequests().ok());
  EXPECT_EQ(emu().Requests()->size(), 0u);
  emu().ApiGet("/assistants");
  EXPECT_EQ((*emu().Requests())[0]["seq"], 3);
}

TEST_F(ControlTest, MarksAStreamTheClientAbortedAsClosedEarly) {
  ASSERT_TRUE(emu().SetConfig({{"stream_delay_ms", 200}}).ok());
  std::string thread = emu().ApiPost("/threads", json{{"assistant_id", kHr}}.dump()).Json()["id"];
  emu().ApiPost("/threads/" + thread + "/messages", R"({"role":"user","content":"q"})");
  HttpResponse r = emu().ApiPost("/threads/" + thread + "/run/stream", "{}",
                                 RequestOptions{.abort_after_bytes = 1});
  EXPECT_EQ(r.curl_code, CURLE_WRITE_ERROR);
  EXPECT_EQ(r.status, 200);
  EXPECT_LT(r.elapsed, absl::Milliseconds(190));  // gave up after the first line
  json records = WaitForRecords(emu(), [](const json& records) {
    return records.size() == 3 && records[2]["finished"] == true;
  });
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[2]["route"], "run_stream");
  EXPECT_EQ(records[2]["status"], 200);
  EXPECT_EQ(records[2]["client_closed_early"], true);
  EXPECT_EQ(emu().Stats()->at("in_flight"), 0);
  // The cancelled answer was not stored.
  EXPECT_EQ(emu().ApiGet("/threads/" + thread + "/messages").Json()["items"].size(), 1u);
}

TEST_F(ControlTest, ClientClosingDuringLatencyIsRecordedWithStatusZero) {
  ASSERT_TRUE(
      emu().AddFault({{"endpoint", "list_threads"}, {"type", "latency"}, {"delay_ms", 5000}}).ok());
  HttpResponse r = emu().ApiGet("/threads", RequestOptions{.timeout = absl::Milliseconds(200)});
  EXPECT_EQ(r.curl_code, CURLE_OPERATION_TIMEDOUT);
  json records = WaitForRecords(
      emu(), [](const json& records) { return records.size() == 1 && records[0]["finished"]; });
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0]["status"], 0);
  EXPECT_EQ(records[0]["client_closed_early"], true);
  absl::StatusOr<json> stats = emu().Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ((*stats)["in_flight"], 0);
}

TEST_F(ControlTest, SwitchesErrorShapeAtRunTime) {
  HttpResponse old_shape = emu().ApiPost("/threads", "{}");
  ASSERT_EQ(old_shape.status, 422);
  EXPECT_EQ(old_shape.Json(),
            json::parse(R"({"error_code":"validation_error","detail":[{"loc":["body",
              "assistant_id"],"message":"Field required","type":"missing"}]})"));

  ASSERT_TRUE(emu().SetConfig({{"error_shape", "new"}}).ok());
  HttpResponse new_shape = emu().ApiPost("/threads", "{}");
  ASSERT_EQ(new_shape.status, 422);
  EXPECT_EQ(new_shape.Json(), json::parse(R"({"detail":[{"loc":["body","assistant_id"],
              "msg":"Field required","type":"missing"}]})"));
  // A rate_limit rule without a shape follows the configured one.
  ASSERT_TRUE(emu().AddFault({{"endpoint", "list_threads"}, {"type", "rate_limit"}}).ok());
  EXPECT_EQ(emu().ApiGet("/threads").Json(), json({{"message", "Rate limit exceeded!"}}));
  ASSERT_TRUE(emu().SetConfig({{"error_shape", "old"}}).ok());
  EXPECT_EQ(emu().ApiGet("/threads").Json()["error_code"], "rate_limit_gateway");

  HttpResponse config = emu().Get("/_emulator/config");
  EXPECT_EQ(config.Json(), json({{"error_shape", "old"},
                                 {"stream_delay_ms", 1},
                                 {"response_delay_ms", 0},
                                 {"rate_limits", "off"},
                                 {"answer_rps", 15},
                                 {"answer_rpm", 60},
                                 {"other_rps", 60},
                                 {"other_rpm", 180}}));
}

TEST_F(ControlTest, NewErrorShapeFromTheCommandLine) {
  auto emu = EmulatorProcess::Start({.args = {"--error-shape", "new"}});
  ASSERT_TRUE(emu.ok());
  HttpResponse r = (*emu)->ApiGet("/assistants/xyz");
  EXPECT_EQ(r.status, 422);
  EXPECT_EQ(r.Json(), json::parse(R"({"detail":[{"loc":["path","assistant_id"],
              "msg":"Input should be a valid UUID","type":"uuid_parsing"}]})"));
}

TEST_F(ControlTest, ResponseDelayAppliesToEveryUpstreamAnswer) {
  ASSERT_TRUE(emu().SetConfig({{"response_delay_ms", 250}}).ok());
  HttpResponse r = emu().ApiGet("/assistants");
  EXPECT_EQ(r.status, 200);
  EXPECT_GE(r.elapsed, absl::Milliseconds(250));
  HttpResponse control = emu().Get("/_emulator/stats");
  EXPECT_LT(control.elapsed, absl::Milliseconds(200));
}

TEST_F(ControlTest, RejectsInvalidConfigAndFaults) {
  HttpResponse bad_shape = emu().Post("/_emulator/config", R"({"error_shape":"newest"})");
  EXPECT_EQ(bad_shape.status, 400);
  EXPECT_NE(bad_shape.body.find("error_shape"), std::string::npos);
  EXPECT_EQ(emu().Post("/_emulator/config", R"({"stream_delay_ms":-1})").status, 400);
  EXPECT_EQ(emu().Post("/_emulator/config", R"({"colour":"red"})").status, 400);
  EXPECT_EQ(emu().Post("/_emulator/config", "nope").status, 400);
  HttpResponse bad_fault = emu().Post("/_emulator/faults", R"({"endpoint":"run","type":"status"})");
  EXPECT_EQ(bad_fault.status, 400);
  EXPECT_NE(bad_fault.Json()["error"].get<std::string>().find("status"), std::string::npos);
  EXPECT_EQ(emu().Get("/_emulator/nothing").status, 404);
}

TEST_F(ControlTest, ListsAndClearsFaults) {
  absl::StatusOr<int64_t> first =
      emu().AddFault({{"endpoint", "run"}, {"type", "latency"}, {"delay_ms", 10}});
  absl::StatusOr<int64_t> second = emu().AddFault({{"endpoint", "*"}, {"type", "stall"}});
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_EQ(*first, 1);
  EXPECT_EQ(*second, 2);
  json listed = emu().Get("/_emulator/faults").Json();
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[0]["endpoint"], "run");
  EXPECT_EQ(listed[1]["type"], "stall");
  ASSERT_TRUE(emu().ClearFaults().ok());
  EXPECT_EQ(emu().Get("/_emulator/faults").Json(), json::array());
  EXPECT_EQ(emu().ApiGet("/assistants").status, 200);
}

TEST_F(ControlTest, StatsCountConnectionsAndRequests) {
  for (int i = 0; i < 3; ++i) emu().ApiGet("/assistants");
  absl::StatusOr<json> stats = emu().Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ((*stats)["requests_total"], 3);
  EXPECT_EQ((*stats)["in_flight"], 0);
  EXPECT_GE((*stats)["open_connections"], 1);
  EXPECT_GE((*stats)["peak_connections"], 1);
  EXPECT_GE((*stats)["accepted_total"], 4);
}

TEST_F(ControlTest, ResetForgetsThreadsRecordsAndFaults) {
  std::string thread = emu().ApiPost("/threads", json{{"assistant_id", kHr}}.dump()).Json()["id"];
  ASSERT_TRUE(emu().AddFault({{"endpoint", "list_threads"}, {"type", "stall"}}).ok());
  ASSERT_TRUE(emu().Reset().ok());
  EXPECT_EQ(emu().Requests()->size(), 0u);
  EXPECT_EQ(emu().Get("/_emulator/faults").Json(), json::array());
  EXPECT_EQ(emu().ApiGet("/threads").Json()["items"], json::array());
  EXPECT_EQ(emu().ApiGet("/threads/" + thread).status, 404);
  EXPECT_EQ(emu().ApiGet("/assistants").Json().size(), 3u);
}

TEST_F(ControlTest, MaxRecordKeepsTheNewest) {
  auto small = EmulatorProcess::Start({.args = {"--max-record", "2"}});
  ASSERT_TRUE(small.ok());
  for (int i = 0; i < 4; ++i) (*small)->ApiGet("/assistants");
  json records = *(*small)->Requests();
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0]["seq"], 3);
  EXPECT_EQ(records[1]["seq"], 4);
}

TEST_F(ControlTest, SigtermExitsWithZero) {
  absl::StatusOr<int> code = emu().Stop();
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0);
}

TEST(EmulatorProcessTest, BadCommandLineFailsToStart) {
  auto emu = EmulatorProcess::Start({.args = {"--error-shape", "sideways"}});
  ASSERT_FALSE(emu.ok());
  EXPECT_EQ(emu.status().code(), absl::StatusCode::kUnavailable);
}

TEST(EmulatorProcessTest, MissingBinaryFailsToStart) {
  auto emu = EmulatorProcess::Start({.binary = "/nonexistent/haufe-emulator"});
  EXPECT_FALSE(emu.ok());
}

}  // namespace
}  // namespace copilot::emulator
