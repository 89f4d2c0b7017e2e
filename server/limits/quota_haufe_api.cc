#include "server/limits/quota_haufe_api.h"

#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "server/common/errors.h"
#include "server/upstream/characters.h"

namespace copilot::gateway {

// The call as the core sees it: the reservation, then the inner call. A Cancel before the inner
// call started ends the call with CANCELLED as soon as the reservation is decided (and gives
// the reservation back); a Resume before it is passed on when it starts.
class QuotaHaufeApi::ReservedCall final : public UpstreamCall {
 public:
  void Cancel() override {
    std::shared_ptr<UpstreamCall> inner;
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
      inner = inner_;
    }
    if (inner != nullptr) inner->Cancel();
  }
  void Resume() override {
    std::shared_ptr<UpstreamCall> inner;
    {
      absl::MutexLock lock(&mu_);
      inner = inner_;
      if (inner == nullptr) resume_pending_ = true;
    }
    if (inner != nullptr) inner->Resume();
  }
  bool cancelled() const {
    absl::MutexLock lock(&mu_);
    return cancelled_;
  }
  void SetInner(const std::shared_ptr<UpstreamCall>& inner) {
    bool cancel;
    bool resume;
    {
      absl::MutexLock lock(&mu_);
      inner_ = inner;
      cancel = cancelled_;
      resume = resume_pending_;
    }
    if (cancel) inner->Cancel();
    if (resume) inner->Resume();
  }

 private:
  mutable absl::Mutex mu_;
  std::shared_ptr<UpstreamCall> inner_ ABSL_GUARDED_BY(mu_);
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool resume_pending_ ABSL_GUARDED_BY(mu_) = false;
};

// Counts the answer's characters as they stream; settles the reservation when it ends.
class QuotaHaufeApi::SettlingSink final : public ChunkSink {
 public:
  SettlingSink(QuotaLedger& ledger, QuotaReservation reservation, std::shared_ptr<ChunkSink> sink)
      : ledger_(ledger), reservation_(std::move(reservation)), sink_(std::move(sink)) {}
  bool OnChunk(copilot::v1::MessageChunk chunk) override {
    characters_ += AnswerCharacters(chunk);
    delivered_ = true;
    return sink_->OnChunk(std::move(chunk));
  }
  void OnDone(absl::Status status) override {
    // An answer that reached the caller counts, however its stream ended (a caller must not
    // get answers free by cancelling before the last line), and so does one the upstream may
    // have made though none of it arrived (cancelled or timed out after the request was sent);
    // one never sent is given back.
    ledger_.Settle(reservation_, status.ok() || delivered_ || MayHaveReachedUpstream(status),
                   characters_);
    sink_->OnDone(std::move(status));
  }

 private:
  QuotaLedger& ledger_;
  const QuotaReservation reservation_;
  const std::shared_ptr<ChunkSink> sink_;
  int64_t characters_ = 0;
  bool delivered_ = false;
};

namespace {

absl::Status Cancelled() { return CancelledByCaller(); }

}  // namespace

template <typename Start>
std::shared_ptr<UpstreamCall> QuotaHaufeApi::Reserve(const UpstreamCallOptions& options,
                                                     int64_t answers, int64_t characters,
                                                     UpstreamCallback<copilot::v1::Message> done,
                                                     Start start) {
  auto call = std::make_shared<ReservedCall>();
  ledger_.Reserve(
      options.tenant_id, options.limits.quotas, answers, characters,
      [this, call, done = std::move(done),
       start = std::move(start)](absl::StatusOr<QuotaReservation> reservation) mutable {
        if (!reservation.ok()) return std::move(done)(reservation.status());
        if (call->cancelled()) {
          ledger_.Settle(*reservation, false, 0);
          return std::move(done)(Cancelled());
        }
        call->SetInner(start([this, reservation = *std::move(reservation), done = std::move(done)](
                                 absl::StatusOr<copilot::v1::Message> result) mutable {
          // A call the upstream may have carried out counts, though its caller cancelled or ran
          // out of time: the answer (or message) is in the thread for the next read all the same.
          ledger_.Settle(reservation, result.ok() || MayHaveReachedUpstream(result.status()),
                         result.ok() && reservation.answers > 0 ? AnswerCharacters(*result) : 0);
          std::move(done)(std::move(result));
        }));
      });
  return call;
}

template <typename Start>
std::shared_ptr<UpstreamCall> QuotaHaufeApi::ReserveStream(const UpstreamCallOptions& options,
                                                           int64_t characters,
                                                           std::shared_ptr<ChunkSink> sink,
                                                           Start start) {
  auto call = std::make_shared<ReservedCall>();
  ledger_.Reserve(options.tenant_id, options.limits.quotas, 1, characters,
                  [this, call, sink = std::move(sink),
                   start = std::move(start)](absl::StatusOr<QuotaReservation> reservation) mutable {
                    if (!reservation.ok()) return sink->OnDone(reservation.status());
                    if (call->cancelled()) {
                      ledger_.Settle(*reservation, false, 0);
                      return sink->OnDone(Cancelled());
                    }
                    call->SetInner(start(std::make_shared<SettlingSink>(
                        ledger_, *std::move(reservation), std::move(sink))));
                  });
  return call;
}

// The starts below capture with initializers (`options = options`): a `const&` parameter
// captured by copy becomes a const member, which is copied, not moved, each time the lambda
// moves (into Reserve, then into its callback): three copies of the options and the
// params a call instead of one.
std::shared_ptr<UpstreamCall> QuotaHaufeApi::AddMessage(
    const UpstreamCallOptions& options, const std::string& thread_id,
    const copilot::v1::MessageInput& message, UpstreamCallback<copilot::v1::Message> done) {
  return Reserve(options, 0, CallerCharacters(message), std::move(done),
                 [this, options = options, thread_id = thread_id,
                  message = message](UpstreamCallback<copilot::v1::Message> cb) {
                   return inner().AddMessage(options, thread_id, message, std::move(cb));
                 });
}

std::shared_ptr<UpstreamCall> QuotaHaufeApi::Run(const UpstreamCallOptions& options,
                                                 const RunParams& params,
                                                 UpstreamCallback<copilot::v1::Message> done) {
  return Reserve(
      options, 1, 0, std::move(done),
      [this, options = options, params = params](UpstreamCallback<copilot::v1::Message> cb) {
        return inner().Run(options, params, std::move(cb));
      });
}

std::shared_ptr<UpstreamCall> QuotaHaufeApi::StreamRun(const UpstreamCallOptions& options,
                                                       const RunParams& params,
                                                       std::shared_ptr<ChunkSink> sink) {
  return ReserveStream(
      options, 0, std::move(sink),
      [this, options = options, params = params](std::shared_ptr<ChunkSink> settling) {
        return inner().StreamRun(options, params, std::move(settling));
      });
}

std::shared_ptr<UpstreamCall> QuotaHaufeApi::Complete(const UpstreamCallOptions& options,
                                                      const CompletionParams& params,
                                                      UpstreamCallback<copilot::v1::Message> done) {
  return Reserve(
      options, 1, CallerCharacters(params), std::move(done),
      [this, options = options, params = params](UpstreamCallback<copilot::v1::Message> cb) {
        return inner().Complete(options, params, std::move(cb));
      });
}

std::shared_ptr<UpstreamCall> QuotaHaufeApi::StreamComplete(const UpstreamCallOptions& options,
                                                            const CompletionParams& params,
                                                            std::shared_ptr<ChunkSink> sink) {
  return ReserveStream(
      options, CallerCharacters(params), std::move(sink),
      [this, options = options, params = params](std::shared_ptr<ChunkSink> settling) {
        return inner().StreamComplete(options, params, std::move(settling));
      });
}

}  // namespace copilot::gateway
