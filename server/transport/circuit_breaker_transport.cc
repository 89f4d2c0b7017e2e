#include "server/transport/circuit_breaker_transport.h"

#include <algorithm>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/common/errors.h"

namespace copilot::gateway {
namespace {

// A transfer that never started: Cancel and Resume have nothing to act on.
class RefusedTransfer final : public HttpTransfer {
 public:
  void Cancel() override {}
  void Resume() override {}
};

absl::Status CircuitOpenStatus(absl::Duration retry_after) {
  absl::Status status =
      MakeError(absl::StatusCode::kUnavailable,
                "the upstream is failing: calls fail fast until it answers again (circuit open)",
                "upstream_circuit_open");
  SetRetryDelay(status, std::max(retry_after, absl::Milliseconds(100)));
  return status;
}

}  // namespace

CircuitBreaker::CircuitBreaker(const Clock& clock, CircuitBreakerPolicy policy,
                               ResilienceEvents& events)
    : clock_(clock), policy_(policy), events_(events), window_(policy_.window) {}

CircuitState CircuitBreaker::state() const {
  absl::MutexLock lock(&mu_);
  return state_;
}

void CircuitBreaker::TransitionLocked(CircuitState to) {
  const CircuitState from = state_;
  state_ = to;
  ++generation_;
  consecutive_ = 0;
  probes_out_ = 0;
  probe_successes_ = 0;
  window_.Clear();
  if (to == CircuitState::kOpen) open_until_ = clock_.Monotonic() + policy_.cooldown;
  events_.OnCircuitTransition(from, to);
}

CircuitBreaker::Ticket CircuitBreaker::Admit() {
  absl::MutexLock lock(&mu_);
  Ticket ticket;
  if (state_ == CircuitState::kOpen) {
    const absl::Time now = clock_.Monotonic();
    if (now < open_until_) {
      ticket.retry_after = open_until_ - now;
      return ticket;
    }
    TransitionLocked(CircuitState::kHalfOpen);
  }
  if (state_ == CircuitState::kHalfOpen) {
    if (probes_out_ + probe_successes_ >= policy_.half_open_probes) {
      // The probes are out: their outcome decides. Try again about when they should be back.
      ticket.retry_after = std::min(policy_.cooldown, absl::Seconds(1));
      return ticket;
    }
    ++probes_out_;
    ticket.probe = true;
  }
  ticket.admitted = true;
  ticket.generation = generation_;
  return ticket;
}

bool CircuitBreaker::Refusing() const {
  absl::MutexLock lock(&mu_);
  switch (state_) {
    case CircuitState::kOpen:
      return clock_.Monotonic() < open_until_;
    case CircuitState::kHalfOpen:
      return probes_out_ + probe_successes_ >= policy_.half_open_probes;
    case CircuitState::kClosed:
      return false;
  }
  return false;
}

void CircuitBreaker::Report(const Ticket& ticket, Outcome outcome) {
  absl::MutexLock lock(&mu_);
  if (!ticket.admitted || ticket.generation != generation_) return;  // Before a transition.
  if (state_ == CircuitState::kHalfOpen) {
    if (!ticket.probe) return;
    --probes_out_;
    if (outcome == Outcome::kFailure) {
      TransitionLocked(CircuitState::kOpen);
    } else if (outcome == Outcome::kSuccess && ++probe_successes_ >= policy_.half_open_probes) {
      TransitionLocked(CircuitState::kClosed);
    }
    return;
  }
  if (state_ != CircuitState::kClosed || outcome == Outcome::kNeutral) return;
  const absl::Time now = clock_.Monotonic();
  const bool failed = outcome == Outcome::kFailure;
  window_.Add(now, 1, failed ? 1 : 0);
  consecutive_ = failed ? consecutive_ + 1 : 0;
  if (!failed) return;
  const bool in_a_row =
      policy_.consecutive_failures > 0 && consecutive_ >= policy_.consecutive_failures;
  const int64_t outcomes = window_.SumA(now);
  const bool ratio = policy_.failure_ratio > 0 && outcomes >= policy_.min_requests &&
                     static_cast<double>(window_.SumB(now)) >=
                         policy_.failure_ratio * static_cast<double>(outcomes);
  if (in_a_row || ratio) TransitionLocked(CircuitState::kOpen);
}

CircuitBreaker::Outcome ClassifyForBreaker(int http_status, const absl::Status& status) {
  if (IsUnavailableHttpStatus(http_status)) {
    return CircuitBreaker::Outcome::kFailure;
  }
  if (!status.ok()) {
    const std::optional<google::rpc::ErrorInfo> info = GetErrorInfo(status);
    const std::string reason = info.has_value() ? info->reason() : std::string();
    if (reason == "upstream_unreachable" || reason == "upstream_tls_error" ||
        reason == "upstream_proxy_error" || reason == "upstream_reset" ||
        reason == "upstream_stalled" || reason == "upstream_transport_error") {
      return CircuitBreaker::Outcome::kFailure;
    }
    // No HTTP answer at all, but bytes that are not HTTP: what answers at the upstream's address
    // is broken. (After an HTTP status line, a body we cannot read is one answer's fault.)
    if (reason == "upstream_bad_response" && http_status == 0) {
      return CircuitBreaker::Outcome::kFailure;
    }
    // Cancelled, the caller's deadline, the gateway's own bounds: not the upstream's state. An
    // HTTP answer whose body then failed otherwise still showed the upstream answering.
    return http_status != 0 ? CircuitBreaker::Outcome::kSuccess : CircuitBreaker::Outcome::kNeutral;
  }
  return CircuitBreaker::Outcome::kSuccess;
}

// Passes every event on; reports the attempt's outcome to the breaker when it completes.
class CircuitBreakerTransport::ObservingHandler final : public HttpTransferHandler {
 public:
  ObservingHandler(std::shared_ptr<CircuitBreaker> breaker, CircuitBreaker::Ticket ticket,
                   std::shared_ptr<HttpTransferHandler> inner)
      : breaker_(std::move(breaker)), ticket_(ticket), inner_(std::move(inner)) {}

  void OnHeaders(const HttpResponseHead& head) override {
    http_status_ = head.status;
    inner_->OnHeaders(head);
  }
  bool OnData(absl::string_view piece) override { return inner_->OnData(piece); }
  void OnUpstreamTime(absl::Duration elapsed) override { inner_->OnUpstreamTime(elapsed); }
  void OnComplete(absl::Status status) override {
    breaker_->Report(ticket_, ClassifyForBreaker(http_status_, status));
    // The last event: let go of the caller's handler (a transport may keep handlers longer).
    const std::shared_ptr<HttpTransferHandler> inner = std::move(inner_);
    inner->OnComplete(std::move(status));
  }

 private:
  const std::shared_ptr<CircuitBreaker> breaker_;
  const CircuitBreaker::Ticket ticket_;
  std::shared_ptr<HttpTransferHandler> inner_;
  int http_status_ = 0;
};

CircuitBreakerTransport::CircuitBreakerTransport(std::shared_ptr<HttpTransport> inner,
                                                 const Clock& clock, CircuitBreakerPolicy policy,
                                                 ResilienceEvents& events)
    : inner_(std::move(inner)),
      events_(events),
      breaker_(std::make_shared<CircuitBreaker>(clock, policy, events)) {}

std::shared_ptr<HttpTransfer> CircuitBreakerTransport::Start(
    HttpRequest request, std::shared_ptr<HttpTransferHandler> handler) {
  const CircuitBreaker::Ticket ticket = breaker_->Admit();
  if (!ticket.admitted) {
    events_.OnCircuitRejected(request.endpoint);
    handler->OnComplete(CircuitOpenStatus(ticket.retry_after));
    return std::make_shared<RefusedTransfer>();
  }
  return inner_->Start(std::move(request),
                       std::make_shared<ObservingHandler>(breaker_, ticket, std::move(handler)));
}

}  // namespace copilot::gateway
