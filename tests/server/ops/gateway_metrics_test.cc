#include "server/ops/gateway_metrics.h"

#include <google/protobuf/descriptor.h>
#include <prometheus/text_serializer.h>

#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "copilot/v1/copilot_service.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/server/ops/metric_values.h"

namespace copilot::gateway {
namespace {

using ::copilot::gateway::ops_testing::LabelMap;
using ::copilot::gateway::ops_testing::MetricValues;
using ::testing::HasSubstr;

constexpr char kService[] = "copilot.v1.CopilotService";

LabelMap MethodLabels(const std::string& type, const std::string& method) {
  return {{"grpc_type", type}, {"grpc_service", kService}, {"grpc_method", method}};
}

TEST(GrpcCodeNameTest, UsesGoGrpcNames) {
  EXPECT_EQ(GrpcCodeName(0), "OK");
  EXPECT_EQ(GrpcCodeName(1), "Canceled");
  EXPECT_EQ(GrpcCodeName(2), "Unknown");
  EXPECT_EQ(GrpcCodeName(3), "InvalidArgument");
  EXPECT_EQ(GrpcCodeName(4), "DeadlineExceeded");
  EXPECT_EQ(GrpcCodeName(5), "NotFound");
  EXPECT_EQ(GrpcCodeName(6), "AlreadyExists");
  EXPECT_EQ(GrpcCodeName(7), "PermissionDenied");
  EXPECT_EQ(GrpcCodeName(8), "ResourceExhausted");
  EXPECT_EQ(GrpcCodeName(9), "FailedPrecondition");
  EXPECT_EQ(GrpcCodeName(10), "Aborted");
  EXPECT_EQ(GrpcCodeName(11), "OutOfRange");
  EXPECT_EQ(GrpcCodeName(12), "Unimplemented");
  EXPECT_EQ(GrpcCodeName(13), "Internal");
  EXPECT_EQ(GrpcCodeName(14), "Unavailable");
  EXPECT_EQ(GrpcCodeName(15), "DataLoss");
  EXPECT_EQ(GrpcCodeName(16), "Unauthenticated");
}

TEST(GrpcCodeNameTest, OutOfRangeIsUnknown) {
  EXPECT_EQ(GrpcCodeName(-1), "Unknown");
  EXPECT_EQ(GrpcCodeName(17), "Unknown");
  EXPECT_EQ(GrpcCodeName(1000), "Unknown");
}

TEST(UpstreamStatusClassTest, ClassifiesAtTheBoundaries) {
  auto name = [](int status) { return UpstreamStatusClassName(UpstreamStatusClass(status)); };
  EXPECT_EQ(name(0), "error");
  EXPECT_EQ(name(-1), "error");
  EXPECT_EQ(name(100), "error");
  EXPECT_EQ(name(199), "error");
  EXPECT_EQ(name(200), "2xx");
  EXPECT_EQ(name(299), "2xx");
  EXPECT_EQ(name(300), "3xx");
  EXPECT_EQ(name(399), "3xx");
  EXPECT_EQ(name(400), "4xx");
  EXPECT_EQ(name(404), "4xx");
  EXPECT_EQ(name(428), "4xx");
  EXPECT_EQ(name(429), "429");
  EXPECT_EQ(name(430), "4xx");
  EXPECT_EQ(name(499), "4xx");
  EXPECT_EQ(name(500), "5xx");
  EXPECT_EQ(name(599), "5xx");
  EXPECT_EQ(name(600), "error");
}

TEST(UpstreamStatusClassTest, NamesOutOfRangeClassesError) {
  EXPECT_EQ(UpstreamStatusClassName(-1), "error");
  EXPECT_EQ(UpstreamStatusClassName(kUpstreamStatusClassCount), "error");
}

// CounterSeries gives the family's own series for the values (the one Family::Add gives), a
// series per distinct tuple of values (values that join alike stay apart), and counts right
// from many threads at once.
TEST(CounterSeriesTest, GivesTheFamilysSeriesOncePerTupleOfValues) {
  prometheus::Registry registry;
  auto& family = prometheus::BuildCounter().Name("x_total").Help("x").Register(registry);
  CounterSeries series(family, {"a", "b"});
  prometheus::Counter& first = series.Get({"t", "u"});
  EXPECT_EQ(&first, &family.Add({{"a", "t"}, {"b", "u"}}));
  EXPECT_EQ(&series.Get({"t", "u"}), &first);
  EXPECT_NE(&series.Get({"a:b", "c"}), &series.Get({"a", "b:c"}));
  EXPECT_NE(&series.Get({"1:x", ""}), &series.Get({"", "1:x"}));
  EXPECT_EQ(&series.Get({"a", "b:c"}), &family.Add({{"a", "a"}, {"b", "b:c"}}));

  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&series, t] {
      for (int i = 0; i < 5000; ++i) {
        series.Get({"tenant-" + std::to_string(i % 7), t % 2 == 0 ? "even" : "odd"}).Increment();
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  double total = 0;
  for (int i = 0; i < 7; ++i) {
    for (const char* parity : {"even", "odd"}) {
      total += family.Add({{"a", "tenant-" + std::to_string(i)}, {"b", parity}}).Value();
    }
  }
  EXPECT_EQ(total, 20000);
}

TEST(GatewayMetricsTest, EveryServiceMethodHasItsSeriesWithTheRightType) {
  GatewayMetrics metrics("1.2.3");
  // Through a generated symbol, which also links the generated code into this binary (see
  // gateway_metrics_link_test.cc for a binary that does not).
  const google::protobuf::ServiceDescriptor* service =
      copilot::v1::RunRequest::descriptor()->file()->FindServiceByName("CopilotService");
  ASSERT_NE(service, nullptr);
  ASSERT_EQ(service->method_count(), 11);
  const std::set<std::string> streams = {"StreamRun", "StreamComplete"};
  const MetricValues values(*metrics.registry());
  for (int i = 0; i < service->method_count(); ++i) {
    const std::string name = service->method(i)->name();
    SCOPED_TRACE(name);
    const std::string type = streams.count(name) > 0 ? "server_stream" : "unary";
    const GatewayMetrics::Method* method = metrics.FindMethod(name);
    ASSERT_NE(method, nullptr);
    EXPECT_EQ(method->name, name);
    EXPECT_EQ(method->type, type);
    const LabelMap labels = MethodLabels(type, name);
    EXPECT_EQ(values.Counter("grpc_server_started_total", labels), 0.0);
    EXPECT_EQ(values.Counter("grpc_server_msg_received_total", labels), 0.0);
    EXPECT_EQ(values.Counter("grpc_server_msg_sent_total", labels), 0.0);
    EXPECT_NE(values.Series("grpc_server_handling_seconds", labels), nullptr);
    EXPECT_NE(values.Series("copilot_gateway_overhead_seconds", {{"grpc_method", name}}), nullptr);
  }
}

TEST(GatewayMetricsTest, StreamMethodsAreServerStreamAndRunIsUnary) {
  GatewayMetrics metrics("1.2.3");
  for (const char* name : {"StreamRun", "StreamComplete", "Run", "ListAssistants"}) {
    ASSERT_NE(metrics.FindMethod(name), nullptr) << name;
  }
  EXPECT_EQ(metrics.FindMethod("StreamRun")->type, "server_stream");
  EXPECT_EQ(metrics.FindMethod("StreamComplete")->type, "server_stream");
  EXPECT_EQ(metrics.FindMethod("Run")->type, "unary");
  EXPECT_EQ(metrics.FindMethod("ListAssistants")->type, "unary");
  EXPECT_EQ(metrics.FindMethod("NoSuchMethod"), nullptr);
}

TEST(GatewayMetricsTest, AllSeventeenHandledCodesStartAtZero) {
  GatewayMetrics metrics("1.2.3");
  const MetricValues values(*metrics.registry());
  const prometheus::MetricFamily* handled = values.Family("grpc_server_handled_total");
  ASSERT_NE(handled, nullptr);
  EXPECT_EQ(handled->type, prometheus::MetricType::Counter);
  EXPECT_EQ(handled->metric.size(), 11u * kGrpcCodeCount);
  for (int code = 0; code < kGrpcCodeCount; ++code) {
    LabelMap labels = MethodLabels("server_stream", "StreamRun");
    labels["grpc_code"] = std::string(GrpcCodeName(code));
    EXPECT_EQ(values.Counter("grpc_server_handled_total", labels), 0.0) << code;
  }
  LabelMap canceled = MethodLabels("unary", "GetThread");
  canceled["grpc_code"] = "Canceled";
  EXPECT_EQ(values.Counter("grpc_server_handled_total", canceled), 0.0);
  LabelMap unauthenticated = MethodLabels("unary", "GetThread");
  unauthenticated["grpc_code"] = "Unauthenticated";
  EXPECT_EQ(values.Counter("grpc_server_handled_total", unauthenticated), 0.0);
}

TEST(GatewayMetricsTest, HandledCountersAreTheMethodsPointers) {
  GatewayMetrics metrics("1.2.3");
  const GatewayMetrics::Method* run = metrics.FindMethod("Run");
  ASSERT_NE(run, nullptr);
  run->handled[16]->Increment();
  run->handled[16]->Increment();
  run->handled[0]->Increment();
  const MetricValues values(*metrics.registry());
  LabelMap labels = MethodLabels("unary", "Run");
  labels["grpc_code"] = "Unauthenticated";
  EXPECT_EQ(values.Counter("grpc_server_handled_total", labels), 2.0);
  labels["grpc_code"] = "OK";
  EXPECT_EQ(values.Counter("grpc_server_handled_total", labels), 1.0);
}

TEST(GatewayMetricsTest, UpstreamEndpointCreatesItsSeriesOnce) {
  GatewayMetrics metrics("1.2.3");
  const std::string endpoint = "POST /v1/threads/{thread_id}/run";
  const GatewayMetrics::Endpoint& first = metrics.UpstreamEndpoint(endpoint);
  const GatewayMetrics::Endpoint& second = metrics.UpstreamEndpoint(endpoint);
  EXPECT_EQ(&first, &second);
  EXPECT_EQ(first.duration, second.duration);
  EXPECT_EQ(first.time_to_first_byte, second.time_to_first_byte);
  for (int i = 0; i < kUpstreamStatusClassCount; ++i) {
    EXPECT_NE(first.requests[i], nullptr);
    EXPECT_EQ(first.requests[i], second.requests[i]);
  }
  const MetricValues values(*metrics.registry());
  const prometheus::MetricFamily* requests =
      values.Family("copilot_gateway_upstream_requests_total");
  ASSERT_NE(requests, nullptr);
  EXPECT_EQ(requests->metric.size(), 6u);
  for (const char* status : {"2xx", "3xx", "4xx", "429", "5xx", "error"}) {
    EXPECT_EQ(values.Counter("copilot_gateway_upstream_requests_total",
                             {{"endpoint", endpoint}, {"status", status}}),
              0.0)
        << status;
  }
  EXPECT_NE(
      values.Series("copilot_gateway_upstream_request_duration_seconds", {{"endpoint", endpoint}}),
      nullptr);
  EXPECT_NE(values.Series("copilot_gateway_upstream_time_to_first_byte_seconds",
                          {{"endpoint", endpoint}}),
            nullptr);
}

TEST(GatewayMetricsTest, UpstreamEndpointFromManyThreadsGivesOneSetOfSeries) {
  GatewayMetrics metrics("1.2.3");
  constexpr int kThreads = 8;
  std::vector<const GatewayMetrics::Endpoint*> seen(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const GatewayMetrics::Endpoint& series = metrics.UpstreamEndpoint("GET /v1/assistants");
      series.requests[0]->Increment();
      seen[t] = &series;
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (int t = 1; t < kThreads; ++t) EXPECT_EQ(seen[t], seen[0]);
  const MetricValues values(*metrics.registry());
  EXPECT_EQ(values.Family("copilot_gateway_upstream_requests_total")->metric.size(), 6u);
  EXPECT_EQ(values.Counter("copilot_gateway_upstream_requests_total",
                           {{"endpoint", "GET /v1/assistants"}, {"status", "2xx"}}),
            kThreads);
}

TEST(GatewayMetricsTest, UpstreamEndpointsAreSeparate) {
  GatewayMetrics metrics("1.2.3");
  metrics.UpstreamEndpoint("GET /v1/assistants").requests[0]->Increment();
  metrics.UpstreamEndpoint("POST /v1/threads").requests[3]->Increment();
  const MetricValues values(*metrics.registry());
  EXPECT_EQ(values.Counter("copilot_gateway_upstream_requests_total",
                           {{"endpoint", "GET /v1/assistants"}, {"status", "2xx"}}),
            1.0);
  EXPECT_EQ(values.Counter("copilot_gateway_upstream_requests_total",
                           {{"endpoint", "GET /v1/assistants"}, {"status", "429"}}),
            0.0);
  EXPECT_EQ(values.Counter("copilot_gateway_upstream_requests_total",
                           {{"endpoint", "POST /v1/threads"}, {"status", "429"}}),
            1.0);
  EXPECT_EQ(values.Family("copilot_gateway_upstream_requests_total")->metric.size(), 12u);
}

TEST(GatewayMetricsTest, ReloadsStartSuccessfulAndAFailureIsCounted) {
  GatewayMetrics metrics("1.2.3");
  {
    const MetricValues values(*metrics.registry());
    EXPECT_EQ(values.Gauge("copilot_gateway_config_last_reload_successful"), 1.0);
    EXPECT_EQ(values.Counter("copilot_gateway_config_reloads_total", {{"result", "ok"}}), 0.0);
    EXPECT_EQ(values.Counter("copilot_gateway_config_reloads_total", {{"result", "failed"}}), 0.0);
  }
  metrics.RecordReload(false);
  {
    const MetricValues values(*metrics.registry());
    EXPECT_EQ(values.Gauge("copilot_gateway_config_last_reload_successful"), 0.0);
    EXPECT_EQ(values.Counter("copilot_gateway_config_reloads_total", {{"result", "ok"}}), 0.0);
    EXPECT_EQ(values.Counter("copilot_gateway_config_reloads_total", {{"result", "failed"}}), 1.0);
  }
  metrics.RecordReload(true);
  {
    const MetricValues values(*metrics.registry());
    EXPECT_EQ(values.Gauge("copilot_gateway_config_last_reload_successful"), 1.0);
    EXPECT_EQ(values.Counter("copilot_gateway_config_reloads_total", {{"result", "ok"}}), 1.0);
    EXPECT_EQ(values.Counter("copilot_gateway_config_reloads_total", {{"result", "failed"}}), 1.0);
  }
}

TEST(GatewayMetricsTest, SetConfigHashKeepsOnlyTheLatestSeries) {
  GatewayMetrics metrics("1.2.3");
  EXPECT_EQ(MetricValues(*metrics.registry()).Family("copilot_gateway_config_info"), nullptr);
  metrics.SetConfigHash("aaaa");
  metrics.SetConfigHash("bbbb");
  const MetricValues values(*metrics.registry());
  const prometheus::MetricFamily* info = values.Family("copilot_gateway_config_info");
  ASSERT_NE(info, nullptr);
  ASSERT_EQ(info->metric.size(), 1u);
  EXPECT_EQ(MetricValues::Labels(info->metric[0]), (LabelMap{{"sha256", "bbbb"}}));
  EXPECT_EQ(info->metric[0].gauge.value, 1.0);
}

TEST(GatewayMetricsTest, SetConfigHashTwiceWithTheSameHashKeepsOneSeries) {
  GatewayMetrics metrics("1.2.3");
  metrics.SetConfigHash("aaaa");
  metrics.SetConfigHash("aaaa");
  const MetricValues values(*metrics.registry());
  ASSERT_NE(values.Family("copilot_gateway_config_info"), nullptr);
  EXPECT_EQ(values.Family("copilot_gateway_config_info")->metric.size(), 1u);
  EXPECT_EQ(values.Gauge("copilot_gateway_config_info", {{"sha256", "aaaa"}}), 1.0);
}

TEST(GatewayMetricsTest, BuildInfoCarriesTheVersion) {
  GatewayMetrics metrics("1.2.3");
  const MetricValues values(*metrics.registry());
  const prometheus::MetricFamily* info = values.Family("copilot_gateway_build_info");
  ASSERT_NE(info, nullptr);
  ASSERT_EQ(info->metric.size(), 1u);
  EXPECT_EQ(values.Gauge("copilot_gateway_build_info", {{"version", "1.2.3"}}), 1.0);
}

TEST(GatewayMetricsTest, GaugesStartAtZero) {
  GatewayMetrics metrics("1.2.3");
  const MetricValues values(*metrics.registry());
  EXPECT_EQ(values.Gauge("copilot_gateway_upstream_in_flight"), 0.0);
  EXPECT_EQ(values.Gauge("copilot_gateway_calls_in_flight"), 0.0);
  EXPECT_EQ(values.Gauge("copilot_gateway_ready"), 0.0);
}

TEST(GatewayMetricsTest, CountTenantCallLabelsTenantMethodAndCode) {
  GatewayMetrics metrics("1.2.3");
  const GatewayMetrics::Method* run = metrics.FindMethod("Run");
  ASSERT_NE(run, nullptr);
  metrics.CountTenantCall("acme", *run, 0);
  metrics.CountTenantCall("acme", *run, 0);
  metrics.CountTenantCall("acme", *run, 8);
  const MetricValues values(*metrics.registry());
  EXPECT_EQ(values.Counter("copilot_gateway_tenant_calls_total",
                           {{"tenant", "acme"}, {"grpc_method", "Run"}, {"grpc_code", "OK"}}),
            2.0);
  EXPECT_EQ(values.Counter(
                "copilot_gateway_tenant_calls_total",
                {{"tenant", "acme"}, {"grpc_method", "Run"}, {"grpc_code", "ResourceExhausted"}}),
            1.0);
}

TEST(GatewayMetricsTest, TextFormatHasTheGoGrpcSeries) {
  GatewayMetrics metrics("1.2.3");
  std::ostringstream text;
  prometheus::TextSerializer().Serialize(text, metrics.registry()->Collect());
  EXPECT_THAT(
      text.str(),
      HasSubstr("grpc_server_handled_total{grpc_code=\"Canceled\",grpc_method=\"StreamRun\","
                "grpc_service=\"copilot.v1.CopilotService\",grpc_type=\"server_stream\"} 0"));
  EXPECT_THAT(text.str(), HasSubstr("# TYPE grpc_server_handling_seconds histogram"));
  EXPECT_THAT(text.str(), HasSubstr("copilot_gateway_build_info{version=\"1.2.3\"} 1"));
}

}  // namespace
}  // namespace copilot::gateway
