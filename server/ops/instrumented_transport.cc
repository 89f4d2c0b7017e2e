#include "server/ops/instrumented_transport.h"

#include <optional>
#include <string>
#include <utility>

#include "server/common/errors.h"
#include "server/common/log.h"

namespace copilot::gateway {

// Passes every event on to the caller's handler, measuring on the way. Called on the
// transport's event loop thread (OnComplete also inline from Start; see HttpTransferHandler).
class InstrumentedTransport::MeasuringHandler final : public HttpTransferHandler {
 public:
  MeasuringHandler(std::shared_ptr<HttpTransferHandler> inner, GatewayMetrics& metrics,
                   const Clock& clock, std::string endpoint, std::shared_ptr<CallTrace> trace,
                   std::shared_ptr<FailureCauseLog> tls_failures,
                   std::shared_ptr<FailureCauseLog> proxy_failures)
      : inner_(std::move(inner)),
        tls_failures_(std::move(tls_failures)),
        proxy_failures_(std::move(proxy_failures)),
        metrics_(metrics),
        clock_(clock),
        endpoint_(std::move(endpoint)),
        trace_(std::move(trace)),
        series_(metrics.UpstreamEndpoint(endpoint_)),
        start_(clock.Monotonic()) {
    metrics_.upstream_in_flight().Increment();
  }

  void OnHeaders(const HttpResponseHead& head) override {
    http_status_ = head.status;
    series_.time_to_first_byte->Observe(absl::ToDoubleSeconds(clock_.Monotonic() - start_));
    inner_->OnHeaders(head);
  }

  bool OnData(absl::string_view piece) override { return inner_->OnData(piece); }

  void OnUpstreamTime(absl::Duration elapsed) override {
    reported_upstream_ += elapsed;
    upstream_reported_ = true;
    inner_->OnUpstreamTime(elapsed);
  }

  void OnComplete(absl::Status status) override {
    const absl::Duration elapsed = clock_.Monotonic() - start_;
    metrics_.upstream_in_flight().Decrement();
    series_.duration->Observe(absl::ToDoubleSeconds(elapsed));
    series_.requests[static_cast<std::size_t>(UpstreamStatusClass(http_status_))]->Increment();
    if (!status.ok() && http_status_ == 0) {
      const std::optional<google::rpc::ErrorInfo> info = GetErrorInfo(status);
      const std::string reason = info.has_value() ? info->reason() : "";
      metrics_.CountUpstreamTransportError(reason);
      if (reason == "upstream_tls_error") {
        tls_failures_->Report(endpoint_, GetInternalDetail(status), clock_.Monotonic());
      } else if (reason == "upstream_proxy_error") {
        proxy_failures_->Report(endpoint_, GetInternalDetail(status), clock_.Monotonic());
      }
    }
    if (trace_ != nullptr) {
      // The transport's own figure when it gave one: without the time the request waited in
      // the gateway (the transport's queue, a loop busy with other calls) before the transport
      // began on it, which is the gateway's cost (copilot_gateway_overhead_seconds).
      trace_->AddUpstream(upstream_reported_ ? reported_upstream_ : elapsed, http_status_);
      if (std::string detail = GetInternalDetail(status); !detail.empty()) {
        trace_->SetUpstreamError(std::move(detail));
      }
    }
    if (LogEnabled(LogLevel::kDebug)) {
      nlohmann::ordered_json fields = {{"endpoint", endpoint_},
                                       {"http_status", http_status_},
                                       {"duration_ms", absl::ToDoubleMilliseconds(elapsed)},
                                       {"transport_code", absl::StatusCodeToString(status.code())}};
      if (trace_ != nullptr) fields["request_id"] = trace_->request_id();
      Log(LogLevel::kDebug, "upstream request", fields);
    }
    inner_->OnComplete(std::move(status));
  }

 private:
  const std::shared_ptr<HttpTransferHandler> inner_;
  const std::shared_ptr<FailureCauseLog> tls_failures_;
  const std::shared_ptr<FailureCauseLog> proxy_failures_;
  GatewayMetrics& metrics_;
  const Clock& clock_;
  const std::string endpoint_;
  const std::shared_ptr<CallTrace> trace_;
  const GatewayMetrics::Endpoint& series_;
  const absl::Time start_;
  int http_status_ = 0;  // Event loop thread only.
  // What the transport below reported (OnUpstreamTime; summed, should it report more than once).
  absl::Duration reported_upstream_;
  bool upstream_reported_ = false;
};

InstrumentedTransport::InstrumentedTransport(std::shared_ptr<HttpTransport> inner,
                                             GatewayMetrics& metrics, const Clock& clock)
    : inner_(std::move(inner)),
      metrics_(metrics),
      clock_(clock),
      tls_failures_(std::make_shared<FailureCauseLog>("upstream TLS failed")),
      proxy_failures_(std::make_shared<FailureCauseLog>("upstream proxy failed")) {}

void FailureCauseLog::Report(absl::string_view endpoint, const std::string& cause, absl::Time now) {
  int64_t suppressed = 0;
  {
    absl::MutexLock lock(&mu_);
    if (cause == last_cause_ && now - last_logged_ < kQuietPeriod) {
      ++suppressed_;
      return;
    }
    suppressed = suppressed_;
    suppressed_ = 0;
    last_cause_ = cause;
    last_logged_ = now;
  }
  Log(LogLevel::kWarning, message_,
      {{"cause", cause}, {"endpoint", std::string(endpoint)}, {"repeats_not_logged", suppressed}});
}

std::shared_ptr<HttpTransfer> InstrumentedTransport::Start(
    HttpRequest request, std::shared_ptr<HttpTransferHandler> handler) {
  std::string endpoint = request.endpoint.empty() ? std::string("other") : request.endpoint;
  auto measuring =
      std::make_shared<MeasuringHandler>(std::move(handler), metrics_, clock_, std::move(endpoint),
                                         request.trace, tls_failures_, proxy_failures_);
  return inner_->Start(std::move(request), std::move(measuring));
}

}  // namespace copilot::gateway
