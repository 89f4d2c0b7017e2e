#include "server/ops/call_observer.h"

#include <grpcpp/grpcpp.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/common/call_trace.h"
#include "server/common/errors.h"
#include "server/common/log.h"
#include "server/ops/gateway_metrics.h"
#include "tests/server/ops/capture_stderr.h"
#include "tests/server/ops/metric_values.h"

namespace copilot::gateway {
namespace {

using ::copilot::gateway::ops_testing::CaptureStderr;
using ::copilot::gateway::ops_testing::LabelMap;
using ::copilot::gateway::ops_testing::MetricValues;
using ::testing::MatchesRegex;

constexpr char kHex32[] = "[0-9a-f]{32}";
constexpr char kTraceparent[] = "00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}";
constexpr char kCallerTrace[] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

// ---- RequestIdFor ----

TEST(RequestIdForTest, KeepsAValidCallerId) {
  EXPECT_EQ(RequestIdFor("abc-123"), "abc-123");
  EXPECT_EQ(RequestIdFor("A.b_c:d/e+f=g-h"), "A.b_c:d/e+f=g-h");
  EXPECT_EQ(RequestIdFor("x"), "x");
  const std::string longest(128, 'a');
  EXPECT_EQ(RequestIdFor(longest), longest);
}

TEST(RequestIdForTest, ReplacesAMissingOrInvalidIdWithThirtyTwoHexDigits) {
  const std::string too_long(129, 'a');
  const std::optional<absl::string_view> invalid[] = {
      std::nullopt,
      absl::string_view(""),
      absl::string_view(too_long),
      absl::string_view("has space"),
      absl::string_view("tab\there"),
      absl::string_view("new\nline"),
      absl::string_view("nul\0byte", 8),
      absl::string_view("caf\xc3\xa9"),
      absl::string_view("semi;colon"),
      absl::string_view("quote\""),
  };
  for (const std::optional<absl::string_view>& from_caller : invalid) {
    const std::string id = RequestIdFor(from_caller);
    EXPECT_THAT(id, MatchesRegex(kHex32))
        << "for " << (from_caller.has_value() ? std::string(*from_caller) : "(none)");
  }
}

TEST(RequestIdForTest, NewIdsDiffer) {
  std::set<std::string> ids;
  for (int i = 0; i < 100; ++i) ids.insert(RequestIdFor(std::nullopt));
  EXPECT_EQ(ids.size(), 100u);
}

// Each thread has its own generator, seeded on its own: threads never repeat each other's IDs.
TEST(RequestIdForTest, IdsFromManyThreadsDiffer) {
  constexpr int kThreads = 8;
  constexpr int kEach = 1000;
  std::vector<std::vector<std::string>> made(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&made, t] {
      for (int i = 0; i < kEach; ++i) made[t].push_back(RequestIdFor(std::nullopt));
    });
  }
  for (std::thread& thread : threads) thread.join();
  std::set<std::string> ids;
  for (const auto& each : made) ids.insert(each.begin(), each.end());
  EXPECT_EQ(ids.size(), static_cast<std::size_t>(kThreads * kEach));
}

// ---- TraceparentFor ----

TEST(TraceparentForTest, ContinuesAValidTraceWithANewParent) {
  const std::string traceparent = TraceparentFor(kCallerTrace);
  ASSERT_THAT(traceparent, MatchesRegex(kTraceparent));
  EXPECT_EQ(traceparent.substr(0, 36), "00-4bf92f3577b34da6a3ce929d0e0e4736-");
  EXPECT_NE(traceparent.substr(36, 16), "00f067aa0ba902b7");
  EXPECT_NE(traceparent.substr(36, 16), "0000000000000000");
  EXPECT_EQ(traceparent.substr(52), "-01");
}

TEST(TraceparentForTest, KeepsTheCallersFlags) {
  const std::string traceparent =
      TraceparentFor("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
  EXPECT_EQ(traceparent.substr(3, 32), "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(traceparent.substr(53), "00");
}

TEST(TraceparentForTest, EachCallGetsItsOwnParent) {
  EXPECT_NE(TraceparentFor(kCallerTrace), TraceparentFor(kCallerTrace));
}

TEST(TraceparentForTest, StartsANewUnsampledTraceForAMissingOrInvalidOne) {
  const std::optional<absl::string_view> invalid[] = {
      std::nullopt,
      absl::string_view(""),
      // Upper-case hex.
      absl::string_view("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
      absl::string_view("00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01"),
      absl::string_view("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A"),
      // All-zero trace-id or parent-id.
      absl::string_view("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
      absl::string_view("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"),
      // Wrong length.
      absl::string_view("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-011"),
      absl::string_view("00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01"),
      // Wrong version.
      absl::string_view("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
      absl::string_view("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
      // Missing or misplaced dashes.
      absl::string_view("00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01"),
      absl::string_view("004bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-"),
      absl::string_view("00-4bf92f3577b34da6a3ce929d0e0e4736x00f067aa0ba902b7-01"),
      // Not hex.
      absl::string_view("00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01"),
  };
  for (const std::optional<absl::string_view>& from_caller : invalid) {
    const std::string label = from_caller.has_value() ? std::string(*from_caller) : "(none)";
    const std::string traceparent = TraceparentFor(from_caller);
    EXPECT_THAT(traceparent, MatchesRegex(kTraceparent)) << label;
    EXPECT_EQ(traceparent.substr(53), "00") << label;
    EXPECT_NE(traceparent.substr(3, 32), "4bf92f3577b34da6a3ce929d0e0e4736") << label;
    EXPECT_NE(traceparent.substr(3, 32), std::string(32, '0')) << label;
  }
}

TEST(TraceparentForTest, NewTracesDiffer) {
  EXPECT_NE(TraceparentFor(std::nullopt).substr(3, 32), TraceparentFor(std::nullopt).substr(3, 32));
}

// ---- CallObserver ----

// Keeps the "call" log lines of the observers out of the test output; restores the level.
class CallObserverTest : public ::testing::Test {
 protected:
  void SetUp() override { SetLogLevel(LogLevel::kError); }
  void TearDown() override { SetLogLevel(saved_level_); }

  static std::shared_ptr<CallTrace> NewTrace() {
    return std::make_shared<CallTrace>("req-1", std::string(kCallerTrace));
  }

  MetricValues Values() const { return MetricValues(*metrics_.registry()); }

  static LabelMap Labels(const std::string& type, const std::string& method) {
    return {{"grpc_type", type},
            {"grpc_service", "copilot.v1.CopilotService"},
            {"grpc_method", method}};
  }
  static LabelMap Handled(const std::string& type, const std::string& method,
                          const std::string& code) {
    LabelMap labels = Labels(type, method);
    labels["grpc_code"] = code;
    return labels;
  }
  // The total of grpc_server_handled_total over all series.
  double HandledTotal() const {
    double total = 0;
    const MetricValues values = Values();
    const prometheus::MetricFamily* handled = values.Family("grpc_server_handled_total");
    if (handled == nullptr) return -1;  // No series at all: never what a test expects.
    for (const prometheus::ClientMetric& metric : handled->metric) {
      total += metric.counter.value;
    }
    return total;
  }

  GatewayMetrics metrics_{"test"};

 private:
  const LogLevel saved_level_ = GetLogLevel();
};

TEST_F(CallObserverTest, ConstructionCountsStartedReceivedAndInFlight) {
  CallObserver first(&metrics_, "Run", false, NewTrace(), "ipv4:127.0.0.1:1");
  {
    const MetricValues values = Values();
    EXPECT_EQ(values.Counter("grpc_server_started_total", Labels("unary", "Run")), 1.0);
    EXPECT_EQ(values.Counter("grpc_server_msg_received_total", Labels("unary", "Run")), 1.0);
    EXPECT_EQ(values.Counter("grpc_server_msg_sent_total", Labels("unary", "Run")), 0.0);
    EXPECT_EQ(values.Gauge("copilot_gateway_calls_in_flight"), 1.0);
  }
  CallObserver second(&metrics_, "StreamRun", true, NewTrace(), "ipv4:127.0.0.1:2");
  EXPECT_EQ(Values().Gauge("copilot_gateway_calls_in_flight"), 2.0);
  EXPECT_EQ(Values().Counter("grpc_server_started_total", Labels("server_stream", "StreamRun")),
            1.0);
  first.Finished(absl::OkStatus());
  EXPECT_EQ(Values().Gauge("copilot_gateway_calls_in_flight"), 1.0);
  second.Finished(absl::OkStatus());
  EXPECT_EQ(Values().Gauge("copilot_gateway_calls_in_flight"), 0.0);
}

TEST_F(CallObserverTest, UnaryOkCountsOneMessageSentAndHandledOk) {
  CallObserver observer(&metrics_, "GetThread", false, NewTrace(), "peer");
  observer.Finished(absl::OkStatus());
  const MetricValues values = Values();
  EXPECT_EQ(values.Counter("grpc_server_msg_sent_total", Labels("unary", "GetThread")), 1.0);
  EXPECT_EQ(values.Counter("grpc_server_handled_total", Handled("unary", "GetThread", "OK")), 1.0);
  EXPECT_EQ(HandledTotal(), 1.0);
  const auto handling =
      values.Histogram("grpc_server_handling_seconds", Labels("unary", "GetThread"));
  ASSERT_TRUE(handling.has_value());
  EXPECT_EQ(handling->sample_count, 1u);
  EXPECT_GE(handling->sample_sum, 0.0);
  EXPECT_LT(handling->sample_sum, 10.0);
}

TEST_F(CallObserverTest, UnaryErrorSendsNoMessageAndCountsItsCode) {
  CallObserver observer(&metrics_, "GetThread", false, NewTrace(), "peer");
  observer.Finished(absl::NotFoundError("no such thread"));
  const MetricValues values = Values();
  EXPECT_EQ(values.Counter("grpc_server_msg_sent_total", Labels("unary", "GetThread")), 0.0);
  EXPECT_EQ(values.Counter("grpc_server_handled_total", Handled("unary", "GetThread", "NotFound")),
            1.0);
  EXPECT_EQ(HandledTotal(), 1.0);
}

TEST_F(CallObserverTest, StreamCountsEachMessageSentAndFinishedAddsNone) {
  CallObserver observer(&metrics_, "StreamRun", true, NewTrace(), "peer");
  observer.MessageSent();
  observer.MessageSent();
  observer.MessageSent();
  EXPECT_EQ(Values().Counter("grpc_server_msg_sent_total", Labels("server_stream", "StreamRun")),
            3.0);
  observer.Finished(absl::OkStatus());
  const MetricValues values = Values();
  EXPECT_EQ(values.Counter("grpc_server_msg_sent_total", Labels("server_stream", "StreamRun")),
            3.0);
  EXPECT_EQ(
      values.Counter("grpc_server_handled_total", Handled("server_stream", "StreamRun", "OK")),
      1.0);
}

TEST_F(CallObserverTest, FinishedTwiceCountsOnce) {
  CallObserver observer(&metrics_, "Run", false, NewTrace(), "peer");
  observer.Finished(absl::OkStatus());
  observer.Finished(absl::InternalError("late"));
  const MetricValues values = Values();
  EXPECT_EQ(values.Counter("grpc_server_handled_total", Handled("unary", "Run", "OK")), 1.0);
  EXPECT_EQ(values.Counter("grpc_server_handled_total", Handled("unary", "Run", "Internal")), 0.0);
  EXPECT_EQ(values.Counter("grpc_server_msg_sent_total", Labels("unary", "Run")), 1.0);
  EXPECT_EQ(values.Gauge("copilot_gateway_calls_in_flight"), 0.0);
  EXPECT_EQ(values.Histogram("grpc_server_handling_seconds", Labels("unary", "Run"))->sample_count,
            1u);
}

TEST_F(CallObserverTest, FinishedFromTwoThreadsAtOnceCountsOnce) {
  for (int round = 0; round < 50; ++round) {
    CallObserver observer(&metrics_, "StreamRun", true, NewTrace(), "peer");
    std::thread a([&] { observer.Finished(absl::OkStatus()); });
    std::thread b([&] { observer.Finished(absl::CancelledError("gone")); });
    a.join();
    b.join();
  }
  EXPECT_EQ(HandledTotal(), 50.0);
  EXPECT_EQ(Values().Gauge("copilot_gateway_calls_in_flight"), 0.0);
}

TEST_F(CallObserverTest, TenantCounterGetsTheTracesTenant) {
  std::shared_ptr<CallTrace> trace = NewTrace();
  trace->SetTenant("acme");
  CallObserver observer(&metrics_, "Run", false, trace, "peer");
  observer.Finished(absl::ResourceExhaustedError("slow down"));
  EXPECT_EQ(Values().Counter(
                "copilot_gateway_tenant_calls_total",
                {{"tenant", "acme"}, {"grpc_method", "Run"}, {"grpc_code", "ResourceExhausted"}}),
            1.0);
}

TEST_F(CallObserverTest, UnauthenticatedWithoutTenantCountsAsUnauthenticated) {
  CallObserver observer(&metrics_, "ListAssistants", false, NewTrace(), "peer");
  observer.Finished(absl::UnauthenticatedError("bad token"));
  const MetricValues values = Values();
  EXPECT_EQ(
      values.Counter("copilot_gateway_tenant_calls_total", {{"tenant", "unauthenticated"},
                                                            {"grpc_method", "ListAssistants"},
                                                            {"grpc_code", "Unauthenticated"}}),
      1.0);
  EXPECT_EQ(values.Family("copilot_gateway_tenant_calls_total")->metric.size(), 1u);
}

TEST_F(CallObserverTest, OtherErrorsWithoutTenantAreNotCountedPerTenant) {
  CallObserver observer(&metrics_, "Run", false, NewTrace(), "peer");
  observer.Finished(absl::InvalidArgumentError("bad"));
  EXPECT_EQ(Values().Family("copilot_gateway_tenant_calls_total"), nullptr);
}

// The overhead runs to gRPC's end of the call (Done: the status sent), the handling time to
// Finish; without upstream time the overhead is the handling time and what gRPC took after it.
TEST_F(CallObserverTest, OverheadIsTheHandlingTimeWithoutUpstreamAndRunsToDone) {
  CallObserver observer(&metrics_, "Run", false, NewTrace(), "peer");
  observer.Finished(absl::OkStatus());
  auto overhead = Values().Histogram("copilot_gateway_overhead_seconds", {{"grpc_method", "Run"}});
  ASSERT_TRUE(overhead.has_value());
  EXPECT_EQ(overhead->sample_count, 0u);  // gRPC is not done with the call yet.
  absl::SleepFor(absl::Milliseconds(20));
  observer.Done();
  observer.Done();  // Once.
  const MetricValues values = Values();
  const auto handling = values.Histogram("grpc_server_handling_seconds", Labels("unary", "Run"));
  overhead = values.Histogram("copilot_gateway_overhead_seconds", {{"grpc_method", "Run"}});
  ASSERT_TRUE(handling.has_value());
  ASSERT_TRUE(overhead.has_value());
  EXPECT_EQ(overhead->sample_count, 1u);
  EXPECT_GE(overhead->sample_sum, handling->sample_sum + 0.02);
}

TEST_F(CallObserverTest, ACallThatNeverFinishedHasNoOverhead) {
  { CallObserver observer(&metrics_, "Run", false, NewTrace(), "peer"); }  // Done when destroyed.
  const auto overhead =
      Values().Histogram("copilot_gateway_overhead_seconds", {{"grpc_method", "Run"}});
  ASSERT_TRUE(overhead.has_value());
  EXPECT_EQ(overhead->sample_count, 0u);
}

TEST_F(CallObserverTest, OverheadSubtractsUpstreamTimeAndNeverGoesNegative) {
  std::shared_ptr<CallTrace> trace = NewTrace();
  CallObserver observer(&metrics_, "Run", false, trace, "peer");
  // More upstream time than the call can have taken: the overhead is clamped at zero.
  trace->AddUpstream(absl::Hours(1), 200);
  observer.Finished(absl::OkStatus());
  observer.Done();
  const MetricValues values = Values();
  const auto handling = values.Histogram("grpc_server_handling_seconds", Labels("unary", "Run"));
  const auto overhead =
      values.Histogram("copilot_gateway_overhead_seconds", {{"grpc_method", "Run"}});
  ASSERT_TRUE(handling.has_value());
  ASSERT_TRUE(overhead.has_value());
  EXPECT_EQ(overhead->sample_count, 1u);
  EXPECT_EQ(overhead->sample_sum, 0.0);
  EXPECT_LT(handling->sample_sum, 3600.0);
}

TEST_F(CallObserverTest, UnknownMethodCountsNothingAndDoesNotCrash) {
  CallObserver observer(&metrics_, "NoSuchMethod", false, NewTrace(), "peer");
  observer.MessageSent();
  observer.Finished(absl::OkStatus());
  EXPECT_EQ(HandledTotal(), 0.0);
  EXPECT_EQ(Values().Gauge("copilot_gateway_calls_in_flight"), 0.0);
}

TEST_F(CallObserverTest, WorksWithoutMetricsAndStillLogsTheCallOnce) {
  std::shared_ptr<CallTrace> trace = NewTrace();
  trace->SetTenant("acme");
  trace->AddUpstream(absl::Milliseconds(5), 429);
  CallObserver observer(nullptr, "StreamRun", true, trace, "ipv4:10.0.0.1:5555");
  EXPECT_EQ(observer.trace(), trace);
  SetLogLevel(LogLevel::kInfo);
  const std::string out = CaptureStderr([&] {
    observer.MessageSent();
    observer.Finished(absl::ResourceExhaustedError("slow down"));
    observer.Finished(absl::OkStatus());
  });
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out.find('\n'), out.size() - 1) << out;  // One line.
  const nlohmann::ordered_json line =
      nlohmann::ordered_json::parse(out.substr(0, out.size() - 1), nullptr, false);
  ASSERT_FALSE(line.is_discarded()) << out;
  EXPECT_EQ(line["level"], "info");
  EXPECT_EQ(line["msg"], "call");
  EXPECT_EQ(line["method"], "StreamRun");
  EXPECT_EQ(line["grpc_code"], "ResourceExhausted");
  EXPECT_EQ(line["tenant"], "acme");
  EXPECT_EQ(line["request_id"], "req-1");
  EXPECT_EQ(line["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(line["upstream_status"], 429);
  EXPECT_EQ(line["upstream_requests"], 1);
  EXPECT_EQ(line["upstream_ms"], 5.0);
  EXPECT_EQ(line["peer"], "ipv4:10.0.0.1:5555");
  EXPECT_FALSE(line.contains("error_reason"));
}

// The reason comes from the status's ErrorInfo as the layers built it (no re-parsing of the
// serialized details), and the caller's own cancellation has one of its own.
TEST_F(CallObserverTest, LogsTheErrorInfoReason) {
  struct Case {
    absl::Status status;
    std::string code;
    std::string reason;
  };
  for (const Case& c : std::vector<Case>{
           {MakeError(absl::StatusCode::kNotFound, "Thread not found", "thread_not_found"),
            "NotFound", "thread_not_found"},
           {CancelledByCaller(), "Canceled", "cancelled_by_caller"}}) {
    CallObserver observer(nullptr, "Run", false, NewTrace(), "peer");
    SetLogLevel(LogLevel::kInfo);
    const std::string out = CaptureStderr([&] { observer.Finished(c.status); });
    const nlohmann::ordered_json line =
        nlohmann::ordered_json::parse(out.substr(0, out.find('\n')), nullptr, false);
    ASSERT_FALSE(line.is_discarded()) << out;
    EXPECT_EQ(line["grpc_code"], c.code) << out;
    EXPECT_EQ(line["error_reason"], c.reason) << out;
  }
}

TEST_F(CallObserverTest, LogsNothingBelowInfo) {
  CallObserver observer(&metrics_, "Run", false, NewTrace(), "peer");
  SetLogLevel(LogLevel::kWarning);
  EXPECT_EQ(CaptureStderr([&] { observer.Finished(absl::OkStatus()); }), "");
  // The metrics are still counted.
  EXPECT_EQ(Values().Counter("grpc_server_handled_total", Handled("unary", "Run", "OK")), 1.0);
}

// An out-of-range code is "Unknown" everywhere, as GrpcCodeName says: not counted as another
// code's series.
TEST_F(CallObserverTest, OutOfRangeCodeIsCountedAsUnknown) {
  std::shared_ptr<CallTrace> trace = NewTrace();
  trace->SetTenant("acme");
  CallObserver observer(&metrics_, "Run", false, trace, "peer");
  // 31: past every code, yet inside the enum's range (42 would be undefined behaviour).
  observer.Finished(absl::Status(static_cast<absl::StatusCode>(31), "odd"));
  const MetricValues values = Values();
  EXPECT_EQ(values.Counter("grpc_server_handled_total", Handled("unary", "Run", "Unknown")), 1.0);
  EXPECT_EQ(values.Counter("grpc_server_handled_total", Handled("unary", "Run", "Unauthenticated")),
            0.0);
  EXPECT_EQ(values.Counter("copilot_gateway_tenant_calls_total",
                           {{"tenant", "acme"}, {"grpc_method", "Run"}, {"grpc_code", "Unknown"}}),
            1.0);
}

}  // namespace
}  // namespace copilot::gateway
