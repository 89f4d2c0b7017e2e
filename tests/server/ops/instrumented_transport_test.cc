#include "server/ops/instrumented_transport.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/common/call_trace.h"
#include "server/common/clock.h"
#include "server/common/errors.h"
#include "server/ops/gateway_metrics.h"
#include "server/transport/http_transport.h"
#include "tests/server/ops/metric_values.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/fake_transport.h"
#include "tests/testing/recorders.h"

namespace copilot::gateway {
namespace {

using ::copilot::gateway::ops_testing::MetricValues;
using ::copilot::gateway::testing::FakeClock;
using ::copilot::gateway::testing::FakeTransport;
using ::copilot::gateway::testing::RecordingHandler;

constexpr char kEndpoint[] = "POST /v1/threads/{thread_id}/run";

class InstrumentedTransportTest : public ::testing::Test {
 protected:
  HttpRequest Request(std::string endpoint = kEndpoint) {
    HttpRequest request;
    request.method = "POST";
    request.url = "http://upstream.test/v1/threads/t1/run";
    request.headers = {{"content-type", "application/json"}, {"x-request-id", "req-1"}};
    request.body = "{\"x\":1}";
    request.deadline = absl::FromUnixSeconds(1767225660);
    request.connect_timeout = absl::Seconds(3);
    request.stall_timeout = absl::Seconds(30);
    request.max_response_bytes = 1234;
    request.endpoint = std::move(endpoint);
    request.trace = trace_;
    return request;
  }

  // Starts `request` through the decorator; the fake transport's handler for it.
  HttpTransferHandler& Start(HttpRequest request) {
    instrumented_.Start(std::move(request), recorder_);
    return *inner_->last().handler;
  }

  double Requests(const std::string& endpoint, const std::string& status) const {
    return MetricValues(*metrics_.registry())
        .Counter("copilot_gateway_upstream_requests_total",
                 {{"endpoint", endpoint}, {"status", status}})
        .value_or(-1);
  }
  double InFlight() const {
    return MetricValues(*metrics_.registry())
        .Gauge("copilot_gateway_upstream_in_flight")
        .value_or(-1);
  }

  GatewayMetrics metrics_{"test"};
  FakeClock clock_;
  std::shared_ptr<FakeTransport> inner_ = std::make_shared<FakeTransport>();
  InstrumentedTransport instrumented_{inner_, metrics_, clock_};
  std::shared_ptr<RecordingHandler> recorder_ = std::make_shared<RecordingHandler>();
  std::shared_ptr<CallTrace> trace_ = std::make_shared<CallTrace>("req-1", "00-trace");
};

TEST_F(InstrumentedTransportTest, PassesTheSameRequestOnAndReturnsTheInnerTransfer) {
  std::shared_ptr<HttpTransfer> transfer = instrumented_.Start(Request(), recorder_);
  ASSERT_EQ(inner_->size(), 1u);
  EXPECT_EQ(transfer, inner_->last().transfer);
  const HttpRequest& sent = inner_->last().request;
  const HttpRequest expected = Request();
  EXPECT_EQ(sent.method, expected.method);
  EXPECT_EQ(sent.url, expected.url);
  EXPECT_EQ(sent.headers, expected.headers);
  EXPECT_EQ(sent.body, expected.body);
  EXPECT_EQ(sent.deadline, expected.deadline);
  EXPECT_EQ(sent.connect_timeout, expected.connect_timeout);
  EXPECT_EQ(sent.stall_timeout, expected.stall_timeout);
  EXPECT_EQ(sent.max_response_bytes, expected.max_response_bytes);
  EXPECT_EQ(sent.endpoint, expected.endpoint);
  EXPECT_EQ(sent.trace, trace_);
  // The transport holds a measuring handler in front of the caller's.
  EXPECT_NE(inner_->last().handler, recorder_);
}

TEST_F(InstrumentedTransportTest, EventsPassThroughUnchanged) {
  HttpTransferHandler& handler = Start(Request());
  HttpResponseHead head;
  head.status = 201;
  head.headers = {{"content-type", "application/x-ndjson"}, {"retry-after", "3"}};
  handler.OnHeaders(head);
  EXPECT_TRUE(handler.OnData("first"));
  recorder_->data_result = false;
  EXPECT_FALSE(handler.OnData("second"));
  handler.OnComplete(absl::DeadlineExceededError("too slow"));

  ASSERT_EQ(recorder_->heads.size(), 1u);
  EXPECT_EQ(recorder_->heads[0].status, 201);
  EXPECT_EQ(recorder_->heads[0].headers, head.headers);
  EXPECT_EQ(recorder_->pieces, (std::vector<std::string>{"first", "second"}));
  ASSERT_EQ(recorder_->completions.size(), 1u);
  EXPECT_EQ(recorder_->completions[0], absl::DeadlineExceededError("too slow"));
}

TEST_F(InstrumentedTransportTest, MeasuresTimeToFirstByteDurationAndStatusClass) {
  HttpTransferHandler& handler = Start(Request());
  clock_.Advance(absl::Seconds(2));
  HttpResponseHead head;
  head.status = 200;
  handler.OnHeaders(head);
  clock_.Advance(absl::Seconds(1));
  handler.OnData("{}");
  clock_.Advance(absl::Seconds(2));
  handler.OnComplete(absl::OkStatus());

  const MetricValues values(*metrics_.registry());
  const auto ttfb = values.Histogram("copilot_gateway_upstream_time_to_first_byte_seconds",
                                     {{"endpoint", kEndpoint}});
  ASSERT_TRUE(ttfb.has_value());
  EXPECT_EQ(ttfb->sample_count, 1u);
  EXPECT_DOUBLE_EQ(ttfb->sample_sum, 2.0);
  const auto duration = values.Histogram("copilot_gateway_upstream_request_duration_seconds",
                                         {{"endpoint", kEndpoint}});
  ASSERT_TRUE(duration.has_value());
  EXPECT_EQ(duration->sample_count, 1u);
  EXPECT_DOUBLE_EQ(duration->sample_sum, 5.0);
  EXPECT_EQ(Requests(kEndpoint, "2xx"), 1.0);
  for (const char* other : {"3xx", "4xx", "429", "5xx", "error"}) {
    EXPECT_EQ(Requests(kEndpoint, other), 0.0) << other;
  }
}

TEST_F(InstrumentedTransportTest, RecordsTheRequestOnTheCallTrace) {
  HttpTransferHandler& handler = Start(Request());
  HttpResponseHead head;
  head.status = 200;
  handler.OnHeaders(head);
  clock_.Advance(absl::Seconds(5));
  handler.OnComplete(absl::OkStatus());
  EXPECT_EQ(trace_->upstream_time(), absl::Seconds(5));
  EXPECT_EQ(trace_->upstream_requests(), 1);
  EXPECT_EQ(trace_->upstream_status(), 200);
}

// The transport's own figure, when it gives one, is the request's upstream time: the time the
// request waited in the gateway before the transport began on it is the gateway's. Reports are
// summed; the histogram of upstream request durations keeps the wall time.
TEST_F(InstrumentedTransportTest, TheTransportsOwnTimeIsTheUpstreamTime) {
  HttpTransferHandler& handler = Start(Request());
  clock_.Advance(absl::Milliseconds(30));
  handler.OnUpstreamTime(absl::Milliseconds(5));
  handler.OnUpstreamTime(absl::Milliseconds(7));
  HttpResponseHead head;
  head.status = 200;
  handler.OnHeaders(head);
  handler.OnComplete(absl::OkStatus());
  EXPECT_EQ(trace_->upstream_time(), absl::Milliseconds(12));
  EXPECT_EQ(recorder_->upstream_times,
            (std::vector<absl::Duration>{absl::Milliseconds(5), absl::Milliseconds(7)}));
  const auto duration = MetricValues(*metrics_.registry())
                            .Histogram("copilot_gateway_upstream_request_duration_seconds",
                                       {{"endpoint", kEndpoint}});
  ASSERT_TRUE(duration.has_value());
  EXPECT_DOUBLE_EQ(duration->sample_sum, 0.030);
}

TEST_F(InstrumentedTransportTest, CountsInFlightWhileRunning) {
  EXPECT_EQ(InFlight(), 0.0);
  HttpTransferHandler& first = Start(Request());
  EXPECT_EQ(InFlight(), 1.0);
  HttpTransferHandler& second = Start(Request());
  EXPECT_EQ(InFlight(), 2.0);
  first.OnComplete(absl::OkStatus());
  EXPECT_EQ(InFlight(), 1.0);
  second.OnComplete(absl::CancelledError("cancelled"));
  EXPECT_EQ(InFlight(), 0.0);
}

TEST_F(InstrumentedTransportTest, NoHeadersCountsError) {
  HttpTransferHandler& handler = Start(Request());
  clock_.Advance(absl::Seconds(5));
  handler.OnComplete(absl::UnavailableError("connect failed"));
  EXPECT_EQ(Requests(kEndpoint, "error"), 1.0);
  EXPECT_EQ(Requests(kEndpoint, "2xx"), 0.0);
  const MetricValues values(*metrics_.registry());
  EXPECT_EQ(values
                .Histogram("copilot_gateway_upstream_time_to_first_byte_seconds",
                           {{"endpoint", kEndpoint}})
                ->sample_count,
            0u);
  EXPECT_EQ(
      values
          .Histogram("copilot_gateway_upstream_request_duration_seconds", {{"endpoint", kEndpoint}})
          ->sample_count,
      1u);
  EXPECT_EQ(trace_->upstream_status(), 0);
  EXPECT_EQ(trace_->upstream_time(), absl::Seconds(5));
  EXPECT_EQ(recorder_->completions.at(0).code(), absl::StatusCode::kUnavailable);
}

TEST_F(InstrumentedTransportTest, RateLimitIsCountedAs429) {
  HttpTransferHandler& handler = Start(Request());
  HttpResponseHead head;
  head.status = 429;
  handler.OnHeaders(head);
  handler.OnComplete(absl::OkStatus());
  EXPECT_EQ(Requests(kEndpoint, "429"), 1.0);
  EXPECT_EQ(Requests(kEndpoint, "4xx"), 0.0);
  EXPECT_EQ(trace_->upstream_status(), 429);
}

TEST_F(InstrumentedTransportTest, ServerErrorIsCountedAs5xx) {
  HttpTransferHandler& handler = Start(Request());
  HttpResponseHead head;
  head.status = 503;
  handler.OnHeaders(head);
  handler.OnComplete(absl::OkStatus());
  EXPECT_EQ(Requests(kEndpoint, "5xx"), 1.0);
}

TEST_F(InstrumentedTransportTest, AnEmptyEndpointIsLabelledOther) {
  HttpTransferHandler& handler = Start(Request(""));
  EXPECT_EQ(inner_->call(0).request.endpoint, "");  // The request itself is not changed.
  handler.OnComplete(absl::UnavailableError("x"));
  EXPECT_EQ(Requests("other", "error"), 1.0);
  EXPECT_EQ(MetricValues(*metrics_.registry())
                .Series("copilot_gateway_upstream_requests_total",
                        {{"endpoint", ""}, {"status", "error"}}),
            nullptr);
}

TEST_F(InstrumentedTransportTest, WorksWithoutACallTrace) {
  HttpRequest request = Request();
  request.trace = nullptr;
  HttpTransferHandler& handler = Start(std::move(request));
  HttpResponseHead head;
  head.status = 404;
  handler.OnHeaders(head);
  handler.OnComplete(absl::OkStatus());
  EXPECT_EQ(Requests(kEndpoint, "4xx"), 1.0);
  EXPECT_EQ(trace_->upstream_requests(), 0);
}

TEST_F(InstrumentedTransportTest, RequestsAreMeasuredPerEndpoint) {
  HttpTransferHandler& run = Start(Request());
  HttpTransferHandler& list = Start(Request("GET /v1/assistants"));
  clock_.Advance(absl::Seconds(1));
  list.OnComplete(absl::UnavailableError("x"));
  clock_.Advance(absl::Seconds(3));
  run.OnComplete(absl::UnavailableError("x"));
  const MetricValues values(*metrics_.registry());
  EXPECT_DOUBLE_EQ(values
                       .Histogram("copilot_gateway_upstream_request_duration_seconds",
                                  {{"endpoint", "GET /v1/assistants"}})
                       ->sample_sum,
                   1.0);
  EXPECT_DOUBLE_EQ(
      values
          .Histogram("copilot_gateway_upstream_request_duration_seconds", {{"endpoint", kEndpoint}})
          ->sample_sum,
      4.0);
  EXPECT_EQ(trace_->upstream_requests(), 2);
  EXPECT_EQ(trace_->upstream_time(), absl::Seconds(5));
}

TEST_F(InstrumentedTransportTest, ATransferCompletedInsideStartIsCountedAndNotLeftInFlight) {
  // A transport that cannot queue the transfer completes it inline, from Start.
  auto inner = std::make_shared<FakeTransport>([](FakeTransport::Started& call) {
    call.Complete(absl::ResourceExhaustedError("too many transfers"));
  });
  InstrumentedTransport refusing(inner, metrics_, clock_);
  refusing.Start(Request(), recorder_);
  ASSERT_EQ(recorder_->completions.size(), 1u);
  EXPECT_EQ(recorder_->completions[0].code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(InFlight(), 0.0);
  EXPECT_EQ(Requests(kEndpoint, "error"), 1.0);
  EXPECT_EQ(trace_->upstream_requests(), 1);
}

}  // namespace
}  // namespace copilot::gateway

namespace copilot::gateway {
namespace {

class InstrumentedTransportErrorsTest : public InstrumentedTransportTest {
 protected:
  // One request through the decorator that ends with a transport failure: `reason`, and
  // libcurl's text `cause` as its internal detail (what the log may show, never the caller).
  void FailOne(absl::string_view reason, absl::string_view cause) {
    absl::Status status =
        MakeError(absl::StatusCode::kUnavailable, "TLS with the upstream failed", reason);
    SetInternalDetail(status, cause);
    Start(Request()).OnComplete(status);
  }
  double TransportErrors(const std::string& reason) const {
    return MetricValues(*metrics_.registry())
        .Counter("copilot_gateway_upstream_transport_errors_total", {{"reason", reason}})
        .value_or(0);
  }
};

TEST_F(InstrumentedTransportErrorsTest, RequestsWithoutAnHttpStatusAreCountedByReason) {
  FailOne("upstream_tls_error", "SSL certificate problem: certificate has expired");
  FailOne("upstream_reset", "Recv failure: Connection reset by peer");
  FailOne("upstream_reset", "Recv failure: Connection reset by peer");
  FailOne("upstream_bad_response", "Received HTTP/0.9 when not allowed");
  FailOne("something_new", "?");
  EXPECT_EQ(TransportErrors("upstream_tls_error"), 1.0);
  EXPECT_EQ(TransportErrors("upstream_bad_response"), 1.0);
  EXPECT_EQ(TransportErrors("upstream_reset"), 2.0);
  EXPECT_EQ(TransportErrors("other"), 1.0);  // The label stays bounded.
  EXPECT_EQ(TransportErrors("something_new"), 0.0);
  // An HTTP error is not a transport error.
  HttpTransferHandler& handler = Start(Request());
  HttpResponseHead head;
  head.status = 503;
  handler.OnHeaders(head);
  handler.OnComplete(absl::UnavailableError("503"));
  EXPECT_EQ(Requests(kEndpoint, "5xx"), 1.0);
  EXPECT_EQ(TransportErrors("other"), 1.0);
}

// A broken trust bundle fails every call: the log says why once (and again each minute, with
// how many it did not log), not once per call.
TEST_F(InstrumentedTransportErrorsTest, TlsFailuresAreLoggedOncePerCauseAndMinute) {
  const std::string expired = "SSL certificate problem: certificate has expired";
  ::testing::internal::CaptureStderr();
  FailOne("upstream_tls_error", expired);
  FailOne("upstream_tls_error", expired);
  FailOne("upstream_tls_error", expired);
  clock_.Advance(FailureCauseLog::kQuietPeriod + absl::Seconds(1));
  FailOne("upstream_tls_error", expired);
  FailOne("upstream_tls_error", "SSL: no alternative certificate subject name matches");
  FailOne("upstream_reset", "Recv failure");  // Not TLS: not this log's business.
  const std::string log = ::testing::internal::GetCapturedStderr();
  std::vector<std::string> lines;
  for (absl::string_view line : absl::StrSplit(log, '\n', absl::SkipEmpty())) {
    if (absl::StrContains(line, "upstream TLS failed")) lines.emplace_back(line);
  }
  ASSERT_EQ(lines.size(), 3u) << log;
  EXPECT_THAT(lines[0], ::testing::HasSubstr("certificate has expired"));
  EXPECT_THAT(lines[0], ::testing::HasSubstr("\"repeats_not_logged\":0"));
  EXPECT_THAT(lines[1], ::testing::HasSubstr("\"repeats_not_logged\":2"));
  EXPECT_THAT(lines[2], ::testing::HasSubstr("no alternative certificate subject name"));
  EXPECT_THAT(lines[2], ::testing::HasSubstr(kEndpoint));
}

}  // namespace
}  // namespace copilot::gateway
