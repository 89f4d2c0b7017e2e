#include "server/transport/retrying_transport.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "server/common/errors.h"
#include "server/transport/retry_after.h"

namespace copilot::gateway {
namespace {

constexpr absl::string_view kRefusedStream = "upstream_refused_stream";

bool IsIdempotent(const std::string& method) { return method == "GET" || method == "DELETE"; }

std::string MetadataValue(const google::rpc::ErrorInfo& info, const std::string& key) {
  const auto it = info.metadata().find(key);
  return it == info.metadata().end() ? std::string() : it->second;
}

}  // namespace

RetryBudget::RetryBudget(const Clock& clock, const RetryPolicy& policy)
    : clock_(clock),
      ratio_(std::max(0.0, policy.budget_ratio)),
      floor_(std::max(0.0, policy.budget_min_per_second) *
             absl::ToDoubleSeconds(absl::Ceil(policy.budget_window, absl::Seconds(1)))),
      counts_(policy.budget_window) {}

void RetryBudget::RecordRequest() {
  absl::MutexLock lock(&mu_);
  counts_.Add(clock_.Monotonic(), 1, 0);
}

bool RetryBudget::TryRetry() {
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_.Monotonic();
  const double allowed = std::max(floor_, ratio_ * static_cast<double>(counts_.SumA(now)));
  if (static_cast<double>(counts_.SumB(now)) + 1 > allowed) return false;
  counts_.Add(now, 0, 1);
  return true;
}

std::optional<std::string> RetryableFailure(const absl::Status& status, bool idempotent) {
  if (status.code() != absl::StatusCode::kUnavailable) return std::nullopt;
  const std::optional<google::rpc::ErrorInfo> info = GetErrorInfo(status);
  if (!info.has_value()) return std::nullopt;
  const std::string& reason = info->reason();
  // Absent: the transport did not say, so it may have been sent.
  const bool sent = MetadataValue(*info, "request_sent") != "false";
  if (!sent) {
    if (reason == "upstream_unreachable" || reason == "upstream_reset" ||
        reason == "upstream_transport_error" || reason == "upstream_refused_stream") {
      return reason;
    }
    // CURLE_SSL_CONNECT_ERROR: the handshake broke. A certificate refused (60) or a bad trust
    // bundle (77) fails the same way on every attempt.
    if (reason == "upstream_tls_error" && MetadataValue(*info, "curl_code") == "35") {
      return reason;
    }
    if (reason == "upstream_proxy_error") {
      const std::string proxy_status = MetadataValue(*info, "proxy_status");
      if (proxy_status.empty() || proxy_status == "502" || proxy_status == "503" ||
          proxy_status == "504") {
        return reason;
      }
    }
    return std::nullopt;
  }
  if (idempotent && (reason == "upstream_reset" || reason == "upstream_stalled" ||
                     reason == "upstream_transport_error" || reason == "upstream_unreachable")) {
    return reason;
  }
  return std::nullopt;
}

std::optional<std::string> RetryableResponse(int http_status, bool idempotent) {
  if (http_status == 429) return std::string("http_429");
  if (idempotent && IsUnavailableHttpStatus(http_status)) {
    return absl::StrCat("http_", http_status);
  }
  return std::nullopt;
}

struct RetryingTransport::Shared {
  Shared(std::shared_ptr<HttpTransport> inner_in, RetryPolicy policy_in, const Clock& clock_in,
         ResilienceEvents& events_in, std::function<double()> random01_in)
      : inner(std::move(inner_in)),
        policy(policy_in),
        clock(clock_in),
        events(events_in),
        budget(clock_in, policy),
        random01(std::move(random01_in)) {}

  absl::Duration Backoff(int retry) {
    const double factor = std::ldexp(1.0, std::clamp(retry - 1, 0, 30));
    const absl::Duration base = std::min(policy.max_backoff, policy.initial_backoff * factor);
    double r = 0;
    {
      absl::MutexLock lock(&random_mu);
      r = random01 ? random01() : absl::Uniform(bitgen, 0.0, 1.0);
    }
    return base / 2 + base / 2 * std::clamp(r, 0.0, 1.0);
  }

  // Calls waiting for their next attempt are owned here, not by the loop's timer (which holds a
  // weak reference): a timer holding its call would hold, through it, the transport whose loop
  // holds the timer, and a transport dropped while a call waits would never be destroyed.
  // ~RetryingTransport ends the calls still waiting.
  void Wait(const std::shared_ptr<Call>& call) {
    absl::MutexLock lock(&waiting_mu);
    waiting.emplace(call.get(), call);
  }
  void Unwait(const Call* call) {
    std::shared_ptr<Call> dropped;  // Released after the lock.
    absl::MutexLock lock(&waiting_mu);
    auto it = waiting.find(call);
    if (it == waiting.end()) return;
    dropped = std::move(it->second);
    waiting.erase(it);
  }
  std::map<const Call*, std::shared_ptr<Call>> TakeWaiting() {
    absl::MutexLock lock(&waiting_mu);
    return std::exchange(waiting, {});
  }

  const std::shared_ptr<HttpTransport> inner;
  // The inner transport can wait (RunAfter); without, nothing is retried.
  const bool timers = inner->RunAfter(absl::ZeroDuration(), [] {});
  const RetryPolicy policy;
  const Clock& clock;
  ResilienceEvents& events;
  RetryBudget budget;
  absl::Mutex random_mu;
  std::function<double()> random01 ABSL_GUARDED_BY(random_mu);
  absl::BitGen bitgen ABSL_GUARDED_BY(random_mu);
  absl::Mutex waiting_mu;
  std::map<const Call*, std::shared_ptr<Call>> waiting ABSL_GUARDED_BY(waiting_mu);
};

// One request across its attempts; what the caller holds. Thread-safe.
class RetryingTransport::Call final : public HttpTransfer,
                                      public std::enable_shared_from_this<Call> {
 public:
  Call(std::shared_ptr<Shared> shared, HttpRequest request,
       std::shared_ptr<HttpTransferHandler> handler)
      : shared_(std::move(shared)),
        idempotent_(IsIdempotent(request.method)),
        endpoint_(request.endpoint),
        trace_(request.trace),
        deadline_(request.deadline),
        request_(std::move(request)),
        handler_(std::move(handler)) {}

  void StartAttempt();

  void Cancel() override {
    std::shared_ptr<HttpTransfer> current;
    bool waiting = false;
    {
      absl::MutexLock lock(&mu_);
      if (finished_ || cancelled_) return;
      cancelled_ = true;
      current = current_;
      waiting = waiting_;
    }
    if (current != nullptr) {
      current->Cancel();  // Its OnComplete(CANCELLED) is passed on: never retried.
    } else if (waiting) {
      // Waiting for the next attempt: end now, on the loop like every other completion.
      auto self = shared_from_this();
      if (!shared_->inner->RunAfter(absl::ZeroDuration(),
                                    [self] { self->Finish(TransferCancelledStatus()); })) {
        Finish(TransferCancelledStatus());
      }
    }
    // Otherwise an attempt is being started: StartAttempt sees the flag and cancels it.
  }

  void Resume() override {
    std::shared_ptr<HttpTransfer> current;
    {
      absl::MutexLock lock(&mu_);
      current = current_;
    }
    if (current != nullptr) current->Resume();
  }

  bool idempotent() const { return idempotent_; }
  HttpTransferHandler& handler() { return *handler_; }
  Shared& shared() { return *shared_; }

  // The wait before the next attempt, when the rules allow one after `reason` (the wait at
  // least `at_least`); otherwise nullopt, with the denial reported.
  std::optional<absl::Duration> PlanRetry(absl::Duration at_least, absl::string_view reason) {
    absl::MutexLock lock(&mu_);
    if (cancelled_ || finished_ || !shared_->timers) return std::nullopt;
    if (attempts_ >= shared_->policy.max_attempts) {
      shared_->events.OnRetryDenied(endpoint_, "attempts");
      return std::nullopt;
    }
    // The upstream's own request to send it elsewhere: once per call, at once and free of the
    // budget (gRFC A6's transparent retry).
    const bool transparent = reason == kRefusedStream && !transparent_retry_made_;
    const absl::Duration delay =
        transparent ? at_least : std::max(at_least, shared_->Backoff(attempts_));
    if (shared_->clock.Now() + delay >= deadline_) {
      shared_->events.OnRetryDenied(endpoint_, "deadline");
      return std::nullopt;
    }
    if (transparent) {
      transparent_retry_made_ = true;
      return delay;
    }
    if (!shared_->budget.TryRetry()) {
      shared_->events.OnRetryDenied(endpoint_, "budget");
      return std::nullopt;
    }
    return delay;
  }

  // Starts the next attempt after `delay`; when the transport cannot wait (no timers, shut
  // down), passes `otherwise` on instead.
  void ScheduleRetry(absl::Duration delay, const std::string& reason, absl::Status otherwise) {
    {
      absl::MutexLock lock(&mu_);
      current_.reset();
      waiting_ = true;
    }
    auto self = shared_from_this();
    shared_->Wait(self);
    if (!shared_->inner->RunAfter(delay, [weak = std::weak_ptr<Call>(self)] {
          if (std::shared_ptr<Call> call = weak.lock()) call->StartAttempt();
        })) {
      Finish(std::move(otherwise));
      return;
    }
    shared_->events.OnRetry(endpoint_, reason);
    // The wait is the upstream's doing: not the gateway's overhead.
    if (trace_ != nullptr) trace_->AddUpstreamWait(delay);
  }

  // Passes the outcome on, once, and lets go of the handler and the request: the caller's
  // handler usually holds this call (its transfer), so keeping it would be a cycle.
  void Finish(absl::Status status) {
    std::shared_ptr<HttpTransferHandler> handler;
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      finished_ = true;
      current_.reset();
      waiting_ = false;
      handler = std::move(handler_);
      request_ = HttpRequest();
    }
    shared_->Unwait(this);
    handler->OnComplete(std::move(status));
  }

 private:
  const std::shared_ptr<Shared> shared_;
  const bool idempotent_;
  const std::string endpoint_;
  const std::shared_ptr<CallTrace> trace_;
  const absl::Time deadline_;
  absl::Mutex mu_;
  // Until Finish. The handler is only used on the loop thread (the transport's events) before
  // Finish.
  HttpRequest request_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<HttpTransferHandler> handler_;
  std::shared_ptr<HttpTransfer> current_ ABSL_GUARDED_BY(mu_);
  int attempts_ ABSL_GUARDED_BY(mu_) = 0;  // Attempts started.
  bool transparent_retry_made_ ABSL_GUARDED_BY(mu_) = false;
  bool waiting_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

// The events of one attempt: passed on, or held back when the attempt will be retried.
class RetryingTransport::AttemptHandler final : public HttpTransferHandler {
 public:
  explicit AttemptHandler(std::shared_ptr<Call> call) : call_(std::move(call)) {}

  void OnHeaders(const HttpResponseHead& head) override {
    if (std::optional<std::string> reason = RetryableResponse(head.status, call_->idempotent())) {
      std::optional<absl::Duration> at_least = absl::ZeroDuration();
      if (head.status == 429) {
        // Only a wait the upstream named, and not a long one: the admission layer holds the
        // budget for those.
        at_least = ParseRetryAfterValue(head.Header("retry-after"), call_->shared().clock.Now());
        if (at_least.has_value() && *at_least > call_->shared().policy.max_retry_after) {
          at_least.reset();
        }
      }
      if (at_least.has_value()) {
        if (std::optional<absl::Duration> delay = call_->PlanRetry(*at_least, *reason)) {
          retry_delay_ = *delay;
          retry_reason_ = *std::move(reason);
          return;  // The answer is dropped; the next attempt replaces it.
        }
      }
    }
    delivered_ = true;
    call_->handler().OnHeaders(head);
  }

  bool OnData(absl::string_view piece) override {
    if (retry_delay_.has_value()) return true;
    delivered_ = true;
    return call_->handler().OnData(piece);
  }

  // Every attempt's, a retried one's too: the caller's upstream time is all attempts' (and the
  // waits between them, CallTrace::AddUpstreamWait).
  void OnUpstreamTime(absl::Duration elapsed) override {
    if (call_ != nullptr) call_->handler().OnUpstreamTime(elapsed);
  }

  void OnComplete(absl::Status status) override {
    // The last event: the handler lets go of the call (a transport may keep handlers longer).
    const std::shared_ptr<Call> call = std::move(call_);
    if (retry_delay_.has_value()) {
      // The answer was dropped: without a next attempt, only the shutdown is left to say.
      call->ScheduleRetry(*retry_delay_, retry_reason_, TransportShutdownStatus());
      return;
    }
    if (!delivered_ && !status.ok()) {
      if (std::optional<std::string> reason = RetryableFailure(status, call->idempotent())) {
        if (std::optional<absl::Duration> delay = call->PlanRetry(absl::ZeroDuration(), *reason)) {
          call->ScheduleRetry(*delay, *reason, status);
          return;
        }
      }
    }
    call->Finish(std::move(status));
  }

 private:
  std::shared_ptr<Call> call_;
  bool delivered_ = false;  // Something of this attempt reached the caller's handler.
  std::optional<absl::Duration> retry_delay_;
  std::string retry_reason_;
};

void RetryingTransport::Call::StartAttempt() {
  // The caller's references (and this frame's) keep it alive from here.
  std::shared_ptr<Call> self = shared_from_this();
  shared_->Unwait(this);
  HttpRequest request;
  int attempt = 0;
  bool cancelled = false;
  {
    absl::MutexLock lock(&mu_);
    if (finished_) return;
    waiting_ = false;
    cancelled = cancelled_;
    if (!cancelled) {
      attempt = ++attempts_;
      // The last attempt may take the request: nothing sends it again.
      request = attempt >= shared_->policy.max_attempts ? std::move(request_) : request_;
    }
  }
  if (cancelled) {
    Finish(TransferCancelledStatus());
    return;
  }
  std::shared_ptr<HttpTransfer> transfer = shared_->inner->Start(
      std::move(request), std::make_shared<AttemptHandler>(shared_from_this()));
  bool cancel = false;
  {
    absl::MutexLock lock(&mu_);
    // Unless it already completed (inline, or on the loop), perhaps with the next attempt on
    // its way.
    if (finished_ || waiting_ || attempts_ != attempt) return;
    current_ = transfer;
    cancel = cancelled_;
  }
  if (cancel) transfer->Cancel();
}

RetryingTransport::RetryingTransport(std::shared_ptr<HttpTransport> inner, RetryPolicy policy,
                                     const Clock& clock, ResilienceEvents& events,
                                     std::function<double()> random01)
    : shared_(
          std::make_shared<Shared>(std::move(inner), policy, clock, events, std::move(random01))) {}

std::shared_ptr<HttpTransfer> RetryingTransport::Start(
    HttpRequest request, std::shared_ptr<HttpTransferHandler> handler) {
  shared_->budget.RecordRequest();
  auto call = std::make_shared<Call>(shared_, std::move(request), std::move(handler));
  call->StartAttempt();
  return call;
}

bool RetryingTransport::RunAfter(absl::Duration delay, absl::AnyInvocable<void() &&> task) {
  return shared_->inner->RunAfter(delay, std::move(task));
}

RetryingTransport::~RetryingTransport() {
  for (auto& [key, call] : shared_->TakeWaiting()) call->Finish(TransportShutdownStatus());
}

absl::Duration RetryingTransport::Backoff(int retry) { return shared_->Backoff(retry); }

}  // namespace copilot::gateway
