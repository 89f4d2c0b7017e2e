#include "server/limits/admitted_haufe_api.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/escaping.h"
#include "absl/synchronization/mutex.h"
#include "server/common/crypto.h"
#include "server/common/errors.h"
#include "server/upstream/http_status_table.h"

namespace copilot::gateway {
namespace {

absl::Status StatusOf(const absl::Status& status) { return status; }
template <typename T>
absl::Status StatusOf(const absl::StatusOr<T>& result) {
  return result.status();
}

}  // namespace

std::string UpstreamKeyId(absl::string_view api_key) {
  return absl::BytesToHexString(Sha256(api_key).substr(0, 8));
}

std::string AdmittedHaufeApi::KeyIdOf(const std::string& api_key) {
  absl::MutexLock lock(&key_ids_mu_);
  if (auto it = key_ids_.find(api_key); it != key_ids_.end()) return it->second;
  if (key_ids_.size() >= kMaxKeyIds) key_ids_.clear();
  return key_ids_.emplace(api_key, UpstreamKeyId(api_key)).first->second;
}

// The call as the core sees it: first the admission, then the upstream call. Cancel and Resume
// reach whichever phase is current; a Resume before the upstream call started is passed on when
// it starts.
class AdmittedHaufeApi::AdmittedCall final : public UpstreamCall {
 public:
  void Cancel() override {
    std::shared_ptr<AdmissionTicket> ticket;
    std::shared_ptr<UpstreamCall> inner;
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
      ticket = ticket_;
      inner = inner_;
    }
    if (inner != nullptr) inner->Cancel();
    if (ticket != nullptr) ticket->Cancel();
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
  void SetTicket(const std::shared_ptr<AdmissionTicket>& ticket) {
    bool cancel;
    {
      absl::MutexLock lock(&mu_);
      ticket_ = ticket;
      cancel = cancelled_;
    }
    if (cancel) ticket->Cancel();
  }
  void SetInner(const std::shared_ptr<UpstreamCall>& inner) {
    bool cancel;
    bool resume;
    {
      absl::MutexLock lock(&mu_);
      inner_ = inner;
      ticket_.reset();
      cancel = cancelled_;
      resume = resume_pending_;
    }
    if (cancel) inner->Cancel();
    if (resume) inner->Resume();
  }

 private:
  absl::Mutex mu_;
  std::shared_ptr<AdmissionTicket> ticket_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<UpstreamCall> inner_ ABSL_GUARDED_BY(mu_);
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool resume_pending_ ABSL_GUARDED_BY(mu_) = false;
};

// Holds the permit until the stream ends; watches its status for a 429.
class AdmittedHaufeApi::HoldingSink final : public ChunkSink {
 public:
  HoldingSink(AdmittedHaufeApi& api, CallClass klass, std::string upstream_key,
              std::shared_ptr<ChunkSink> sink, std::unique_ptr<Permit> permit)
      : api_(api),
        klass_(klass),
        upstream_key_(std::move(upstream_key)),
        sink_(std::move(sink)),
        permit_(std::move(permit)) {}
  bool OnChunk(copilot::v1::MessageChunk chunk) override {
    return sink_->OnChunk(std::move(chunk));
  }
  void OnDone(absl::Status status) override {
    api_.ObserveStatus(klass_, upstream_key_, status);
    permit_.reset();
    sink_->OnDone(std::move(status));
  }

 private:
  AdmittedHaufeApi& api_;
  const CallClass klass_;
  const std::string upstream_key_;
  const std::shared_ptr<ChunkSink> sink_;
  std::unique_ptr<Permit> permit_;
};

void AdmittedHaufeApi::ObserveStatus(CallClass klass, const std::string& upstream_key,
                                     absl::Status& status) {
  if (!IsUpstreamRateLimit(status)) return;
  absl::Duration hold = absl::Seconds(1);
  if (std::optional<google::rpc::RetryInfo> retry = GetRetryInfo(status); retry.has_value()) {
    hold = absl::Seconds(retry->retry_delay().seconds()) +
           absl::Nanoseconds(retry->retry_delay().nanos());
  }
  // The caller is told no more than the gateway will hold: the same cap.
  if (hold > max_retry_after_) SetRetryDelay(status, max_retry_after_);
  admission_.HoldBudget(klass, std::min(hold, max_retry_after_), upstream_key);
}

std::shared_ptr<AdmissionTicket> AdmittedHaufeApi::AdmitOrPass(const UpstreamCallOptions& options,
                                                               CallClass klass,
                                                               const std::string& upstream_key,
                                                               AdmitCallback done) {
  if (upstream_refusing_ && upstream_refusing_()) {
    // Refused below without being sent (upstream_circuit_open): the tenant's limits apply as to
    // any call, the upstream budget is left for the calls that will reach the upstream.
    return admission_.AdmitTenantOnly(options.tenant_id, options.limits, klass, options.deadline,
                                      std::move(done));
  }
  return admission_.Admit(options.tenant_id, options.limits, klass, options.deadline,
                          std::move(done), upstream_key);
}

template <typename Callback, typename Start>
std::shared_ptr<UpstreamCall> AdmittedHaufeApi::Admit(const UpstreamCallOptions& options,
                                                      CallClass klass, Callback done, Start start) {
  auto call = std::make_shared<AdmittedCall>();
  std::string key = KeyIdOf(options.api_key);
  std::shared_ptr<AdmissionTicket> ticket = AdmitOrPass(
      options, klass, key,
      [this, call, klass, key, done = std::move(done),
       start = std::move(start)](absl::StatusOr<std::unique_ptr<Permit>> permit) mutable {
        if (!permit.ok()) return std::move(done)(permit.status());
        Callback release = [this, klass, key = std::move(key), held = *std::move(permit),
                            done = std::move(done)](auto result) mutable {
          absl::Status status = StatusOf(result);
          if (!status.ok()) {
            ObserveStatus(klass, key, status);
            held.reset();
            return std::move(done)(std::move(status));
          }
          held.reset();
          std::move(done)(std::move(result));
        };
        call->SetInner(start(std::move(release)));
      });
  call->SetTicket(ticket);
  return call;
}

template <typename Start>
std::shared_ptr<UpstreamCall> AdmittedHaufeApi::AdmitStream(const UpstreamCallOptions& options,
                                                            std::shared_ptr<ChunkSink> sink,
                                                            Start start) {
  auto call = std::make_shared<AdmittedCall>();
  std::string key = KeyIdOf(options.api_key);
  std::shared_ptr<AdmissionTicket> ticket = AdmitOrPass(
      options, CallClass::kAnswer, key,
      [this, call, key, sink = std::move(sink),
       start = std::move(start)](absl::StatusOr<std::unique_ptr<Permit>> permit) mutable {
        if (!permit.ok()) return sink->OnDone(permit.status());
        call->SetInner(start(std::make_shared<HoldingSink>(
            *this, CallClass::kAnswer, std::move(key), std::move(sink), *std::move(permit))));
      });
  call->SetTicket(ticket);
  return call;
}

// The starts below capture with initializers (`options = options`): a `const&` parameter
// captured by copy becomes a const member, which is copied, not moved, each time the lambda
// moves (into Admit, then into its callback): three copies of the options and the
// params a call instead of one.
std::shared_ptr<UpstreamCall> AdmittedHaufeApi::ListAssistants(
    const UpstreamCallOptions& options,
    UpstreamCallback<std::vector<copilot::v1::Assistant>> done) {
  return Admit(options, CallClass::kOther, std::move(done),
               [this, options = options](UpstreamCallback<std::vector<copilot::v1::Assistant>> cb) {
                 return inner_.ListAssistants(options, std::move(cb));
               });
}

std::shared_ptr<UpstreamCall> AdmittedHaufeApi::GetAssistant(
    const UpstreamCallOptions& options, const std::string& assistant_id,
    UpstreamCallback<copilot::v1::Assistant> done) {
  return Admit(options, CallClass::kOther, std::move(done),
               [this, options = options,
                assistant_id = assistant_id](UpstreamCallback<copilot::v1::Assistant> cb) {
                 return inner_.GetAssistant(options, assistant_id, std::move(cb));
               });
}

std::shared_ptr<UpstreamCall> AdmittedHaufeApi::CreateThread(
    const UpstreamCallOptions& options, const CreateThreadParams& params,
    UpstreamCallback<copilot::v1::Thread> done) {
  return Admit(
      options, CallClass::kOther, std::move(done),
      [this, options = options, params = params](UpstreamCallback<copilot::v1::Thread> cb) {
        return inner_.CreateThread(options, params, std::move(cb));
      });
}

std::shared_ptr<UpstreamCall> AdmittedHaufeApi::GetThread(
    const UpstreamCallOptions& options, const std::string& thread_id,
    UpstreamCallback<copilot::v1::Thread> done) {
  return Admit(
      options, CallClass::kOther, std::move(done),
      [this, options = options, thread_id = thread_id](UpstreamCallback<copilot::v1::Thread> cb) {
        return inner_.GetThread(options, thread_id, std::move(cb));
      });
}

std::shared_ptr<UpstreamCall> AdmittedHaufeApi::DeleteThread(const UpstreamCallOptions& options,
                                                             const std::string& thread_id,
                                                             UpstreamDoneCallback done) {
  return Admit(options, CallClass::kOther, std::move(done),
               [this, options = options, thread_id = thread_id](UpstreamDoneCallback cb) {
                 return inner_.DeleteThread(options, thread_id, std::move(cb));
               });
}

std::shared_ptr<UpstreamCall> AdmittedHaufeApi::AddMessage(
    const UpstreamCallOptions& options, const std::string& thread_id,
    const copilot::v1::MessageInput& message, UpstreamCallback<copilot::v1::Message> done) {
  return Admit(options, CallClass::kOther, std::move(done),
               [this, options = options, thread_id = thread_id,
                message = message](UpstreamCallback<copilot::v1::Message> cb) {
                 return inner_.AddMessage(options, thread_id, message, std::move(cb));
               });
}

std::shared_ptr<UpstreamCall> AdmittedHaufeApi::ListMessages(const UpstreamCallOptions& options,
                                                             const std::string& thread_id,
                                                             int page_size,
                                                             const std::string& cursor,
                                                             UpstreamCallback<MessagePage> done) {
  return Admit(options, CallClass::kOther, std::move(done),
               [this, options = options, thread_id = thread_id, page_size = page_size,
                cursor = cursor](UpstreamCallback<MessagePage> cb) {
                 return inner_.ListMessages(options, thread_id, page_size, cursor, std::move(cb));
               });
}

std::shared_ptr<UpstreamCall> AdmittedHaufeApi::Run(const UpstreamCallOptions& options,
                                                    const RunParams& params,
                                                    UpstreamCallback<copilot::v1::Message> done) {
  return Admit(
      options, CallClass::kAnswer, std::move(done),
      [this, options = options, params = params](UpstreamCallback<copilot::v1::Message> cb) {
        return inner_.Run(options, params, std::move(cb));
      });
}

std::shared_ptr<UpstreamCall> AdmittedHaufeApi::StreamRun(const UpstreamCallOptions& options,
                                                          const RunParams& params,
                                                          std::shared_ptr<ChunkSink> sink) {
  return AdmitStream(
      options, std::move(sink),
      [this, options = options, params = params](std::shared_ptr<ChunkSink> holding) {
        return inner_.StreamRun(options, params, std::move(holding));
      });
}

std::shared_ptr<UpstreamCall> AdmittedHaufeApi::Complete(
    const UpstreamCallOptions& options, const CompletionParams& params,
    UpstreamCallback<copilot::v1::Message> done) {
  return Admit(
      options, CallClass::kAnswer, std::move(done),
      [this, options = options, params = params](UpstreamCallback<copilot::v1::Message> cb) {
        return inner_.Complete(options, params, std::move(cb));
      });
}

std::shared_ptr<UpstreamCall> AdmittedHaufeApi::StreamComplete(const UpstreamCallOptions& options,
                                                               const CompletionParams& params,
                                                               std::shared_ptr<ChunkSink> sink) {
  return AdmitStream(
      options, std::move(sink),
      [this, options = options, params = params](std::shared_ptr<ChunkSink> holding) {
        return inner_.StreamComplete(options, params, std::move(holding));
      });
}

}  // namespace copilot::gateway
