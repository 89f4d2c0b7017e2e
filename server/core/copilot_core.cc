#include "server/core/copilot_core.h"

#include <algorithm>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "server/common/crypto.h"
#include "server/common/errors.h"
#include "server/core/shared_request_ids.h"
#include "server/core/signed_thread_handles.h"
#include "server/upstream/http_status_table.h"

namespace copilot::gateway {
namespace {

namespace v1 = ::copilot::v1;

// Runs `done` with `status` and returns a call that is already over.
template <typename T>
std::shared_ptr<UpstreamCall> Reject(CoreCallback<T> done, absl::Status status) {
  std::move(done)(std::move(status));
  return std::make_shared<FinishedCall>();
}

std::shared_ptr<UpstreamCall> Reject(const std::shared_ptr<AnswerSink>& sink, absl::Status status) {
  sink->OnDone(std::move(status));
  return std::make_shared<FinishedCall>();
}

// The de-duplication key: tenant, method and request_id.
std::string RequestKey(const Tenant& tenant, absl::string_view method,
                       absl::string_view request_id) {
  return absl::StrCat(tenant.id, "\x1f", method, "\x1f", request_id);
}

// Identifies a request body, so that a request_id reused with another body is caught: the
// SHA-256 of its deterministic serialization (32 bytes kept, however large the request).
std::string Fingerprint(const google::protobuf::Message& request) {
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream stream(&bytes);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    request.SerializeToCodedStream(&coded);
  }
  return Sha256(bytes);
}

// A remembered result back as the response it was.
template <typename Response>
absl::StatusOr<Response> ParseResponse(absl::StatusOr<std::string> result) {
  if (!result.ok()) return result.status();
  Response response;
  if (!response.ParseFromString(*result)) {
    return MakeError(absl::StatusCode::kInternal, "a remembered result could not be read",
                     "REQUEST_ID_STORE_CORRUPT");
  }
  return response;
}

// How long past its upstream deadline the claim of a request_id shared by the replicas holds:
// the time to record the result. After it, a retry learns that the outcome is unknown.
constexpr absl::Duration kSharedLeaseMargin = absl::Seconds(2);
// A retry waiting for another replica's attempt claims again after 50 ms, doubling to 1 s.
constexpr absl::Duration kFirstPoll = absl::Milliseconds(50);
constexpr absl::Duration kMaxPoll = absl::Seconds(1);

absl::Status OutcomeUnknown() {
  return MakeError(absl::StatusCode::kAborted,
                   "the earlier request with this request_id may have been carried out upstream, "
                   "but its result was lost (its connection broke after sending, or the gateway "
                   "replica running it stopped). Check (e.g. list the thread's messages) before "
                   "trying again with a new request_id",
                   "request_outcome_unknown");
}

// Says nothing of the store's address or error (the store logs them).
absl::Status SharedStoreUnavailable() {
  absl::Status error = MakeError(absl::StatusCode::kUnavailable,
                                 "request_id de-duplication across gateway replicas is "
                                 "unavailable; retry later",
                                 "request_id_store_unavailable");
  SetRetryDelay(error, absl::Seconds(1));
  return error;
}

// A request with a request_id that this replica is to run (its in-process store said kStart).
// With a store shared by the replicas, it first claims the request_id there, then runs the
// request, answers with the result another replica recorded, or waits (admitted against the
// tenant's limits, polling) for the replica running it. Once its upstream request has started
// it runs to its end even when the caller goes away, so that a retry gets its result rather
// than sending it again: Cancel answers the caller at once and leaves the upstream call be.
template <typename Response>
class DeduplicatedCall final : public UpstreamCall,
                               public std::enable_shared_from_this<DeduplicatedCall<Response>> {
 public:
  using Start = absl::AnyInvocable<std::shared_ptr<UpstreamCall>(CoreCallback<Response>) &&>;
  struct SharedParams {
    SharedRequestIds* ids = nullptr;
    WaiterAdmission* waiters = nullptr;
    const Clock* clock = nullptr;
    std::shared_ptr<const Tenant> tenant;
    bool answer = false;
    std::string key;
    std::string fingerprint;
    absl::Duration lease;
    absl::Time deadline;                 // The caller's, for waiting.
    std::shared_ptr<CallCount> waiting;  // Counts this call while it waits.
  };

  // `ticket` is held until the call has ended (its result recorded), for the drain.
  DeduplicatedCall(std::shared_ptr<RequestIdStore::Attempt> local, CoreCallback<Response> done,
                   Start start, std::optional<SharedParams> shared, std::shared_ptr<void> ticket)
      : local_(std::move(local)),
        ticket_(std::move(ticket)),
        done_(std::move(done)),
        start_(std::move(start)),
        shared_(std::move(shared)) {}

  void Begin() {
    if (!shared_.has_value()) return Run("");
    Claim(absl::ZeroDuration());
  }

  void Cancel() override {
    CoreCallback<Response> done;
    std::shared_ptr<UpstreamCall> admission;
    {
      absl::MutexLock lock(&mu_);
      if (cancelled_) return;
      cancelled_ = true;
      done = std::move(done_);
      done_ = nullptr;
      admission = std::move(admission_);
    }
    if (admission != nullptr) admission->Cancel();
    if (done) std::move(done)(CancelledByCaller());
  }

  // Unary calls have no flow control to resume.
  void Resume() override {}

 private:
  bool cancelled() {
    absl::MutexLock lock(&mu_);
    return cancelled_;
  }

  void Claim(absl::Duration delay) {
    shared_->ids->Claim(
        shared_->key, shared_->fingerprint, shared_->lease, delay,
        [self = this->shared_from_this()](absl::StatusOr<SharedRequestIds::Lookup> claim) mutable {
          self->OnClaim(std::move(claim));
        });
  }

  void OnClaim(absl::StatusOr<SharedRequestIds::Lookup> claim) {
    using Kind = SharedRequestIds::Lookup::Kind;
    if (!claim.ok()) {
      if (cancelled()) return End(CancelledByCaller());
      // Already waiting for another replica's attempt: the store not answering a poll says
      // nothing new about that attempt, so keep waiting (to the deadline) rather than run it
      // a second time.
      if (waiting_) return Wait();
      if (shared_->ids->fail_open()) return Run("");
      return End(SharedStoreUnavailable());
    }
    switch (claim->kind) {
      case Kind::kStart: {
        // A waiter taking over (the attempt it waited for failed) is admitted as a call of its
        // own: its hold as a waiter ends.
        StopWaiting();
        if (cancelled()) {
          shared_->ids->Finish(shared_->key, claim->token, CancelledByCaller(),
                               /*outcome_unknown=*/false);
          return End(CancelledByCaller());
        }
        return Run(std::move(claim->token));
      }
      case Kind::kDone:
        return End(std::move(claim->result));
      case Kind::kReused:
        return End(RequestIdReusedError());
      case Kind::kUnknown:
        return End(OutcomeUnknown());
      case Kind::kInFlight:
        return Wait();
    }
  }

  // Another replica runs the request: wait for it, admitted first.
  void Wait() {
    if (cancelled()) return End(CancelledByCaller());
    if (shared_->clock->Now() + poll_ > shared_->deadline) {
      return End(MakeError(absl::StatusCode::kDeadlineExceeded,
                           "the earlier request with this request_id is still running on another "
                           "gateway replica",
                           "REQUEST_IN_FLIGHT"));
    }
    if (waiting_) return Poll();
    waiting_ = true;
    {
      absl::MutexLock lock(&mu_);
      wait_ticket_ = shared_->waiting->Enter();
    }
    if (shared_->waiters == nullptr) return Poll();
    std::shared_ptr<UpstreamCall> admission =
        shared_->waiters->Admit(*shared_->tenant, shared_->answer, shared_->deadline,
                                [self = this->shared_from_this()](
                                    absl::StatusOr<std::unique_ptr<AdmissionLease>> lease) mutable {
                                  if (!lease.ok()) return self->End(lease.status());
                                  {
                                    absl::MutexLock lock(&self->mu_);
                                    self->lease_ = *std::move(lease);
                                  }
                                  self->Poll();
                                });
    absl::MutexLock lock(&mu_);
    if (!cancelled_) admission_ = std::move(admission);
  }

  void Poll() {
    const absl::Duration delay = poll_;
    poll_ = std::min(poll_ * 2, kMaxPoll);
    Claim(delay);
  }

  // The upstream call is not kept: it is never cancelled (see Cancel), and holding it while its
  // callback holds this object would keep both alive if the callback never ran.
  void Run(std::string token) {
    token_ = std::move(token);
    std::move(start_)([self = this->shared_from_this()](absl::StatusOr<Response> result) {
      self->OnResult(std::move(result));
    });
  }

  void OnResult(absl::StatusOr<Response> result) {
    absl::StatusOr<std::string> serialized =
        result.ok() ? absl::StatusOr<std::string>(result->SerializeAsString())
                    : absl::StatusOr<std::string>(result.status());
    const bool unknown = !result.ok() && MayHaveReachedUpstream(result.status());
    if (shared_.has_value() && !token_.empty()) {
      shared_->ids->Finish(shared_->key, token_, serialized, unknown);
    }
    if (local_ != nullptr) {
      local_->Complete(unknown ? absl::StatusOr<std::string>(OutcomeUnknown()) : serialized,
                       /*remember_failure=*/unknown);
    }
    if (CoreCallback<Response> done = TakeDone()) std::move(done)(std::move(result));
    ReleaseTicket();
  }

  void ReleaseTicket() {
    std::shared_ptr<void> ticket;
    absl::MutexLock lock(&mu_);
    ticket = std::move(ticket_);
  }

  // Ends the wait for another replica (if any): its admission lease and its count.
  void StopWaiting() {
    std::unique_ptr<AdmissionLease> lease;
    std::shared_ptr<void> ticket;
    absl::MutexLock lock(&mu_);
    lease = std::move(lease_);
    ticket = std::move(wait_ticket_);
    admission_ = nullptr;
  }

  // Answers without running the request here.
  void End(absl::StatusOr<std::string> result) {
    StopWaiting();
    if (local_ != nullptr) local_->Complete(result);
    if (CoreCallback<Response> done = TakeDone()) {
      std::move(done)(ParseResponse<Response>(std::move(result)));
    }
    ReleaseTicket();
  }

  CoreCallback<Response> TakeDone() {
    absl::MutexLock lock(&mu_);
    CoreCallback<Response> done = std::move(done_);
    done_ = nullptr;
    return done;
  }

  const std::shared_ptr<RequestIdStore::Attempt> local_;  // Null when not remembered here.
  absl::Mutex mu_;
  std::shared_ptr<void> ticket_ ABSL_GUARDED_BY(mu_);
  CoreCallback<Response> done_ ABSL_GUARDED_BY(mu_);
  Start start_;  // Used once, by Run.
  const std::optional<SharedParams> shared_;
  std::string token_;  // Set by Run before the upstream call starts.
  // Used by one step at a time (each claim's answer comes after the previous one). Set from the
  // first kInFlight answer: admitted (or being admitted) and polling.
  bool waiting_ = false;
  absl::Duration poll_ = kFirstPoll;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  std::shared_ptr<UpstreamCall> admission_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<AdmissionLease> lease_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<void> wait_ticket_ ABSL_GUARDED_BY(mu_);
};

// A callback that either of two paths may end up running (exactly one does).
template <typename T>
class OnceCallback {
 public:
  explicit OnceCallback(CoreCallback<T> done) : done_(std::move(done)) {}
  CoreCallback<T> Take() { return std::move(done_); }

 private:
  CoreCallback<T> done_;
};

// A waiting retry and the admission deciding whether it may wait: cancelling the call cancels
// both.
class WaitingCall final : public UpstreamCall {
 public:
  WaitingCall(std::shared_ptr<RequestIdStore::Waiter> waiter,
              std::shared_ptr<UpstreamCall> admission)
      : waiter_(std::move(waiter)), admission_(std::move(admission)) {}
  void Cancel() override {
    if (admission_ != nullptr) admission_->Cancel();
    waiter_->Cancel();
  }
  void Resume() override {}

 private:
  const std::shared_ptr<RequestIdStore::Waiter> waiter_;
  const std::shared_ptr<UpstreamCall> admission_;
};

std::vector<google::protobuf::Struct> Tools(
    const google::protobuf::RepeatedPtrField<google::protobuf::Struct>& tools) {
  return {tools.begin(), tools.end()};
}

std::string AssistantNotAllowedMessage(absl::string_view assistant_id) {
  return absl::StrCat("assistant ", assistant_id, " is not available to this caller");
}

absl::Status AssistantNotAllowed(absl::string_view field, absl::string_view assistant_id) {
  absl::Status status =
      MakeError(absl::StatusCode::kPermissionDenied, AssistantNotAllowedMessage(assistant_id),
                "assistant_not_allowed", {{"assistant_id", std::string(assistant_id)}});
  if (!field.empty()) AddFieldViolation(status, field, "assistant not allowed to this caller");
  return status;
}

}  // namespace

// Forwards chunks with IDs mapped for the caller. Called on the event loop thread only.
class CopilotCore::CallerChunkSink final : public ChunkSink {
 public:
  CallerChunkSink(std::shared_ptr<ChunkSink> inner, const CopilotCore& core, TenantPtr tenant,
                  std::string assistant_id)
      : inner_(std::move(inner)),
        core_(core),
        tenant_(std::move(tenant)),
        assistant_id_(std::move(assistant_id)) {}
  bool OnChunk(v1::MessageChunk chunk) override {
    if (!chunk.thread_id().empty()) {
      chunk.set_thread_id(
          core_.handles_.ToCaller(*tenant_, ThreadRef{chunk.thread_id(), assistant_id_}));
    }
    return inner_->OnChunk(std::move(chunk));
  }
  void OnDone(absl::Status status) override { inner_->OnDone(ForCaller(status)); }

 private:
  std::shared_ptr<ChunkSink> inner_;
  const CopilotCore& core_;
  const TenantPtr tenant_;
  const std::string assistant_id_;
};

CopilotCore::CopilotCore(HaufeApi& api, const Clock& clock, const ThreadHandles& handles,
                         CoreOptions options, const TenantResolver* tenants,
                         WaiterAdmission* waiters, UsageReader* usage,
                         SharedRequestIds* shared_request_ids)
    : api_(api),
      clock_(clock),
      handles_(handles),
      options_(std::move(options)),
      default_tenant_(std::make_shared<const Tenant>(options_.default_tenant)),
      tenants_(tenants),
      waiters_(waiters),
      usage_(usage),
      shared_request_ids_(shared_request_ids),
      request_ids_(clock, options_.request_ids),
      outliving_(std::make_shared<CallCount>()),
      shared_waiters_(std::make_shared<CallCount>()) {}

std::shared_ptr<void> CallCount::Enter() {
  {
    absl::MutexLock lock(&mu_);
    ++count_;
  }
  return {nullptr, [self = shared_from_this()](void*) {
            absl::MutexLock lock(&self->mu_);
            --self->count_;
          }};
}

int CallCount::count() const {
  absl::MutexLock lock(&mu_);
  return count_;
}

bool CallCount::WaitIdle(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return count_ == 0; };
  return mu_.AwaitWithDeadline(absl::Condition(&idle), deadline);
}

CallContext CopilotCore::Outliving(const CallContext& context,
                                   const std::string& request_id) const {
  CallContext outliving = context;
  if (!request_id.empty() &&
      (options_.request_ids.max_entries > 0 || shared_request_ids_ != nullptr)) {
    outliving.deadline = absl::InfiniteFuture();  // Capped at max_call_timeout.
  }
  return outliving;
}

template <typename Response, typename Start>
std::shared_ptr<UpstreamCall> CopilotCore::MaybeDeduplicate(
    const CallContext& context, const TenantPtr& caller, bool answer, absl::string_view method,
    const std::string& request_id, const google::protobuf::Message& request,
    CoreCallback<Response> done, Start start) {
  if (request_id.empty()) return std::move(start)(std::move(done));
  const Tenant& tenant = *caller;
  const std::string key = RequestKey(tenant, method, request_id);
  const std::string fingerprint = Fingerprint(request);
  auto once = std::make_shared<OnceCallback<Response>>(std::move(done));
  RequestIdStore::Lookup lookup =
      request_ids_.Begin(tenant.id, key, fingerprint, [once](absl::StatusOr<std::string> result) {
        once->Take()(ParseResponse<Response>(std::move(result)));
      });
  switch (lookup.kind) {
    case RequestIdStore::Lookup::Kind::kRemembered:
    case RequestIdStore::Lookup::Kind::kRefused:
      once->Take()(ParseResponse<Response>(std::move(lookup.result)));
      return std::make_shared<FinishedCall>();
    case RequestIdStore::Lookup::Kind::kWaiting: {
      if (waiters_ == nullptr) return lookup.waiter;
      const absl::Time deadline =
          std::min(context.deadline, clock_.Now() + options_.max_call_timeout);
      std::shared_ptr<UpstreamCall> admission = waiters_->Admit(
          tenant, answer, deadline,
          [waiter = lookup.waiter](absl::StatusOr<std::unique_ptr<AdmissionLease>> lease) {
            if (!lease.ok()) return waiter->Fail(lease.status());
            waiter->Hold(*std::move(lease));
          });
      return std::make_shared<WaitingCall>(lookup.waiter, std::move(admission));
    }
    case RequestIdStore::Lookup::Kind::kStart:
      break;
  }
  using Call = DeduplicatedCall<Response>;
  std::optional<typename Call::SharedParams> shared;
  if (shared_request_ids_ != nullptr) {
    shared.emplace();
    shared->ids = shared_request_ids_;
    shared->waiters = waiters_;
    shared->clock = &clock_;
    shared->tenant = caller;
    shared->answer = answer;
    shared->key = key;
    shared->fingerprint = fingerprint;
    shared->lease = options_.max_call_timeout + kSharedLeaseMargin;
    shared->deadline = std::min(context.deadline, clock_.Now() + options_.max_call_timeout);
    shared->waiting = shared_waiters_;
  } else if (lookup.attempt == nullptr) {
    return std::move(start)(once->Take());  // Not remembered anywhere: an ordinary call.
  }
  auto call = std::make_shared<Call>(std::move(lookup.attempt), once->Take(),
                                     typename Call::Start(std::move(start)), std::move(shared),
                                     outliving_->Enter());
  call->Begin();
  return call;
}

UpstreamCallOptions CopilotCore::BuildUpstreamOptions(const CallContext& context,
                                                      const Tenant& tenant,
                                                      absl::string_view assistant_id) const {
  UpstreamCallOptions options;
  options.deadline = std::min(context.deadline, clock_.Now() + options_.max_call_timeout);
  options.api_key = tenant.api_key.empty() ? options_.api_key : tenant.api_key;
  options.licence = tenant.LicenceFor(assistant_id);
  // The tenant's other licences: an answer must echo none of them either.
  if (tenant.licence != options.licence) options.also_redact.push_back(tenant.licence);
  for (const auto& [assistant, licence] : tenant.assistant_licences) {
    if (licence != options.licence) options.also_redact.push_back(licence);
  }
  options.tenant_id = tenant.id;
  options.limits = tenant.limits;
  options.assistant_id = std::string(assistant_id);
  options.assistant_label =
      tenant.Names(assistant_id) ? absl::AsciiStrToLower(assistant_id) : std::string("other");
  if (context.trace != nullptr) {
    options.request_id = context.trace->request_id();
    options.traceparent = context.trace->traceparent();
    options.trace = context.trace;
  }
  return options;
}

std::function<std::string(const std::string&)> CopilotCore::CallerThreadIds(
    TenantPtr tenant, absl::string_view assistant_id) const {
  return [this, tenant = std::move(tenant),
          assistant = std::string(assistant_id)](const std::string& upstream_id) {
    return upstream_id.empty() ? std::string()
                               : handles_.ToCaller(*tenant, ThreadRef{upstream_id, assistant});
  };
}

absl::StatusOr<CopilotCore::TenantPtr> CopilotCore::TenantOf(const CallContext& context) const {
  absl::StatusOr<TenantPtr> tenant = context.tenant;
  if (context.tenant == nullptr) {
    tenant = tenants_ == nullptr
                 ? default_tenant_
                 : tenants_->Current()->Resolve(context.credentials, context.listener);
  }
  if (tenant.ok() && context.trace != nullptr) context.trace->SetTenant((*tenant)->id);
  return tenant;
}

absl::StatusOr<ThreadRef> CopilotCore::ThreadOf(const Tenant& tenant, absl::string_view handle,
                                                bool uses_assistant) const {
  absl::StatusOr<ThreadRef> thread = handles_.ToUpstream(tenant, handle, "thread_id");
  if (!thread.ok()) return thread.status();
  if (uses_assistant && !thread->assistant_id.empty() && !tenant.Allows(thread->assistant_id)) {
    return AssistantNotAllowed("", thread->assistant_id);
  }
  return thread;
}

absl::Status CopilotCore::ForCaller(const absl::Status& status) {
  return IsUpstreamThreadNotFound(status) ? ThreadNotFound() : status;
}

v1::Message CopilotCore::ForCaller(const Tenant& tenant, absl::string_view assistant_id,
                                   v1::Message message) const {
  if (!message.thread_id().empty()) {
    message.set_thread_id(
        handles_.ToCaller(tenant, ThreadRef{message.thread_id(), std::string(assistant_id)}));
  }
  return message;
}

v1::Thread CopilotCore::ForCaller(const Tenant& tenant, absl::string_view assistant_id,
                                  v1::Thread thread) const {
  // The upstream's own record of the assistant wins; the request's is the fallback.
  const std::string assistant =
      thread.assistant_id().empty() ? std::string(assistant_id) : thread.assistant_id();
  thread.set_id(handles_.ToCaller(tenant, ThreadRef{thread.id(), assistant}));
  if (!thread.user_id().empty())
    thread.set_user_id(handles_.UserToCaller(tenant, thread.user_id()));
  return thread;
}

std::shared_ptr<UpstreamCall> CopilotCore::ListAssistants(
    const CallContext& context, const v1::ListAssistantsRequest& request,
    CoreCallback<v1::ListAssistantsResponse> done) {
  absl::StatusOr<TenantPtr> caller = TenantOf(context);
  if (!caller.ok()) return Reject(std::move(done), caller.status());
  if (absl::Status status = ValidateListAssistants(request); !status.ok()) {
    return Reject(std::move(done), std::move(status));
  }
  TenantPtr tenant = *std::move(caller);
  return api_.ListAssistants(
      BuildUpstreamOptions(context, *tenant, ""),
      [tenant, done = std::move(done)](absl::StatusOr<std::vector<v1::Assistant>> result) mutable {
        if (!result.ok()) return std::move(done)(result.status());
        v1::ListAssistantsResponse response;
        for (v1::Assistant& assistant : *result) {
          if (tenant->Allows(assistant.id())) *response.add_assistants() = std::move(assistant);
        }
        std::move(done)(std::move(response));
      });
}

std::shared_ptr<UpstreamCall> CopilotCore::CreateThread(
    const CallContext& context, const v1::CreateThreadRequest& request,
    CoreCallback<v1::CreateThreadResponse> done) {
  absl::StatusOr<TenantPtr> caller = TenantOf(context);
  if (!caller.ok()) return Reject(std::move(done), caller.status());
  if (absl::Status status = ValidateCreateThread(request, options_.limits); !status.ok()) {
    return Reject(std::move(done), std::move(status));
  }
  TenantPtr tenant = *std::move(caller);
  if (!tenant->Allows(request.assistant_id())) {
    return Reject(std::move(done), AssistantNotAllowed("assistant_id", request.assistant_id()));
  }
  CreateThreadParams params{request.assistant_id(),
                            handles_.UserToUpstream(*tenant, request.user_id()), request.title()};
  UpstreamCallOptions options = BuildUpstreamOptions(Outliving(context, request.request_id()),
                                                     *tenant, request.assistant_id());
  auto start = [this, tenant, options = std::move(options),
                params = std::move(params)](CoreCallback<v1::CreateThreadResponse> done) mutable {
    return api_.CreateThread(options, params,
                             RespondWith(tenant, params.assistant_id, std::move(done),
                                         &v1::CreateThreadResponse::mutable_thread));
  };
  return MaybeDeduplicate(context, tenant, /*answer=*/false, "CreateThread", request.request_id(),
                          request, std::move(done), std::move(start));
}

std::shared_ptr<UpstreamCall> CopilotCore::GetThread(const CallContext& context,
                                                     const v1::GetThreadRequest& request,
                                                     CoreCallback<v1::GetThreadResponse> done) {
  absl::StatusOr<TenantPtr> caller = TenantOf(context);
  if (!caller.ok()) return Reject(std::move(done), caller.status());
  if (absl::Status status = ValidateGetThread(request); !status.ok()) {
    return Reject(std::move(done), std::move(status));
  }
  TenantPtr tenant = *std::move(caller);
  absl::StatusOr<ThreadRef> thread = ThreadOf(*tenant, request.thread_id(), false);
  if (!thread.ok()) return Reject(std::move(done), thread.status());
  return api_.GetThread(BuildUpstreamOptions(context, *tenant, thread->assistant_id),
                        thread->upstream_id,
                        RespondWith(tenant, thread->assistant_id, std::move(done),
                                    &v1::GetThreadResponse::mutable_thread));
}

std::shared_ptr<UpstreamCall> CopilotCore::DeleteThread(
    const CallContext& context, const v1::DeleteThreadRequest& request,
    CoreCallback<v1::DeleteThreadResponse> done) {
  absl::StatusOr<TenantPtr> caller = TenantOf(context);
  if (!caller.ok()) return Reject(std::move(done), caller.status());
  if (absl::Status status = ValidateDeleteThread(request); !status.ok()) {
    return Reject(std::move(done), std::move(status));
  }
  TenantPtr tenant = *std::move(caller);
  absl::StatusOr<ThreadRef> thread = ThreadOf(*tenant, request.thread_id(), false);
  if (!thread.ok()) return Reject(std::move(done), thread.status());
  return api_.DeleteThread(BuildUpstreamOptions(context, *tenant, thread->assistant_id),
                           thread->upstream_id,
                           [done = std::move(done)](const absl::Status& status) mutable {
                             if (!status.ok()) return std::move(done)(ForCaller(status));
                             std::move(done)(v1::DeleteThreadResponse());
                           });
}

std::shared_ptr<UpstreamCall> CopilotCore::AddMessage(const CallContext& context,
                                                      const v1::AddMessageRequest& request,
                                                      CoreCallback<v1::AddMessageResponse> done) {
  absl::StatusOr<TenantPtr> caller = TenantOf(context);
  if (!caller.ok()) return Reject(std::move(done), caller.status());
  if (absl::Status status = ValidateAddMessage(request, options_.limits); !status.ok()) {
    return Reject(std::move(done), std::move(status));
  }
  TenantPtr tenant = *std::move(caller);
  absl::StatusOr<ThreadRef> thread = ThreadOf(*tenant, request.thread_id(), false);
  if (!thread.ok()) return Reject(std::move(done), thread.status());
  UpstreamCallOptions options =
      BuildUpstreamOptions(Outliving(context, request.request_id()), *tenant, thread->assistant_id);
  auto start = [this, tenant, options = std::move(options), thread = *std::move(thread),
                message = request.message()](CoreCallback<v1::AddMessageResponse> done) mutable {
    return api_.AddMessage(options, thread.upstream_id, message,
                           RespondWith(tenant, thread.assistant_id, std::move(done),
                                       &v1::AddMessageResponse::mutable_message));
  };
  return MaybeDeduplicate(context, tenant, /*answer=*/false, "AddMessage", request.request_id(),
                          request, std::move(done), std::move(start));
}

std::shared_ptr<UpstreamCall> CopilotCore::ListMessages(
    const CallContext& context, const v1::ListMessagesRequest& request,
    CoreCallback<v1::ListMessagesResponse> done) {
  absl::StatusOr<TenantPtr> caller = TenantOf(context);
  if (!caller.ok()) return Reject(std::move(done), caller.status());
  if (absl::Status status = ValidateListMessages(request, options_.limits); !status.ok()) {
    return Reject(std::move(done), std::move(status));
  }
  TenantPtr tenant = *std::move(caller);
  absl::StatusOr<ThreadRef> thread = ThreadOf(*tenant, request.thread_id(), false);
  if (!thread.ok()) return Reject(std::move(done), thread.status());
  return api_.ListMessages(BuildUpstreamOptions(context, *tenant, thread->assistant_id),
                           thread->upstream_id, request.page_size(), request.page_token(),
                           [this, tenant, assistant = thread->assistant_id,
                            done = std::move(done)](absl::StatusOr<MessagePage> result) mutable {
                             if (!result.ok()) return std::move(done)(ForCaller(result.status()));
                             v1::ListMessagesResponse response;
                             for (v1::Message& message : result->messages) {
                               *response.add_messages() =
                                   ForCaller(*tenant, assistant, std::move(message));
                             }
                             response.set_next_page_token(std::move(result->next_cursor));
                             std::move(done)(std::move(response));
                           });
}

std::shared_ptr<UpstreamCall> CopilotCore::Run(const CallContext& context,
                                               const v1::RunRequest& request,
                                               CoreCallback<v1::RunResponse> done) {
  absl::StatusOr<TenantPtr> caller = TenantOf(context);
  if (!caller.ok()) return Reject(std::move(done), caller.status());
  if (absl::Status status = ValidateRun(request, options_.limits); !status.ok()) {
    return Reject(std::move(done), std::move(status));
  }
  TenantPtr tenant = *std::move(caller);
  absl::StatusOr<ThreadRef> thread = ThreadOf(*tenant, request.thread_id(), true);
  if (!thread.ok()) return Reject(std::move(done), thread.status());
  UpstreamCallOptions options =
      BuildUpstreamOptions(Outliving(context, request.request_id()), *tenant, thread->assistant_id);
  options.caller_thread_id = CallerThreadIds(tenant, thread->assistant_id);
  RunParams params{thread->upstream_id, Tools(request.tools())};
  auto start = [this, tenant, assistant = thread->assistant_id, options = std::move(options),
                params = std::move(params)](CoreCallback<v1::RunResponse> done) mutable {
    return api_.Run(
        options, params,
        RespondWith(tenant, assistant, std::move(done), &v1::RunResponse::mutable_message));
  };
  return MaybeDeduplicate(context, tenant, /*answer=*/true, "Run", request.request_id(), request,
                          std::move(done), std::move(start));
}

std::shared_ptr<UpstreamCall> CopilotCore::StreamRun(const CallContext& context,
                                                     const v1::StreamRunRequest& request,
                                                     std::shared_ptr<AnswerSink> sink) {
  absl::StatusOr<TenantPtr> caller = TenantOf(context);
  if (!caller.ok()) return Reject(sink, caller.status());
  if (absl::Status status = ValidateStreamRun(request, options_.limits); !status.ok()) {
    return Reject(sink, std::move(status));
  }
  TenantPtr tenant = *std::move(caller);
  absl::StatusOr<ThreadRef> thread = ThreadOf(*tenant, request.thread_id(), true);
  if (!thread.ok()) return Reject(sink, thread.status());
  UpstreamCallOptions options = BuildUpstreamOptions(context, *tenant, thread->assistant_id);
  options.caller_thread_id = CallerThreadIds(tenant, thread->assistant_id);
  return api_.StreamRun(
      options, RunParams{thread->upstream_id, Tools(request.tools())},
      std::make_shared<CallerChunkSink>(std::move(sink), *this, tenant, thread->assistant_id));
}

template <typename Request>
absl::StatusOr<CompletionParams> CopilotCore::CompletionParamsOf(const Request& request,
                                                                 const Tenant& tenant) const {
  if (!tenant.Allows(request.assistant_id())) {
    return AssistantNotAllowed("assistant_id", request.assistant_id());
  }
  CompletionParams params;
  params.assistant_id = request.assistant_id();
  params.messages.assign(request.messages().begin(), request.messages().end());
  params.user_id = handles_.UserToUpstream(tenant, request.user_id());
  if (!request.thread_id().empty()) {
    absl::StatusOr<ThreadRef> thread = ThreadOf(tenant, request.thread_id(), true);
    if (!thread.ok()) return thread.status();
    params.thread_id = thread->upstream_id;
  }
  params.tools = Tools(request.tools());
  return params;
}

std::shared_ptr<UpstreamCall> CopilotCore::Complete(const CallContext& context,
                                                    const v1::CompleteRequest& request,
                                                    CoreCallback<v1::CompleteResponse> done) {
  absl::StatusOr<TenantPtr> caller = TenantOf(context);
  if (!caller.ok()) return Reject(std::move(done), caller.status());
  if (absl::Status status = ValidateComplete(request, options_.limits); !status.ok()) {
    return Reject(std::move(done), std::move(status));
  }
  TenantPtr tenant = *std::move(caller);
  absl::StatusOr<CompletionParams> params = CompletionParamsOf(request, *tenant);
  if (!params.ok()) return Reject(std::move(done), params.status());
  UpstreamCallOptions options = BuildUpstreamOptions(Outliving(context, request.request_id()),
                                                     *tenant, request.assistant_id());
  options.caller_thread_id = CallerThreadIds(tenant, request.assistant_id());
  auto start = [this, tenant, options = std::move(options),
                params = *std::move(params)](CoreCallback<v1::CompleteResponse> done) mutable {
    return api_.Complete(options, params,
                         RespondWith(tenant, params.assistant_id, std::move(done),
                                     &v1::CompleteResponse::mutable_message));
  };
  return MaybeDeduplicate(context, tenant, /*answer=*/true, "Complete", request.request_id(),
                          request, std::move(done), std::move(start));
}

std::shared_ptr<UpstreamCall> CopilotCore::StreamComplete(const CallContext& context,
                                                          const v1::StreamCompleteRequest& request,
                                                          std::shared_ptr<AnswerSink> sink) {
  absl::StatusOr<TenantPtr> caller = TenantOf(context);
  if (!caller.ok()) return Reject(sink, caller.status());
  if (absl::Status status = ValidateStreamComplete(request, options_.limits); !status.ok()) {
    return Reject(sink, std::move(status));
  }
  TenantPtr tenant = *std::move(caller);
  absl::StatusOr<CompletionParams> params = CompletionParamsOf(request, *tenant);
  if (!params.ok()) return Reject(sink, params.status());
  UpstreamCallOptions options = BuildUpstreamOptions(context, *tenant, request.assistant_id());
  options.caller_thread_id = CallerThreadIds(tenant, request.assistant_id());
  return api_.StreamComplete(
      options, *params,
      std::make_shared<CallerChunkSink>(std::move(sink), *this, tenant, request.assistant_id()));
}

std::shared_ptr<UpstreamCall> CopilotCore::GetUsage(const CallContext& context,
                                                    const v1::GetUsageRequest& /*request*/,
                                                    CoreCallback<v1::GetUsageResponse> done) {
  absl::StatusOr<TenantPtr> caller = TenantOf(context);
  if (!caller.ok()) return Reject(std::move(done), caller.status());
  if (usage_ == nullptr) {
    return Reject(std::move(done),
                  MakeError(absl::StatusCode::kUnimplemented, "usage is not kept by this gateway",
                            "usage_disabled"));
  }
  TenantPtr tenant = *std::move(caller);
  auto read = [this, tenant](CoreCallback<v1::GetUsageResponse> done) {
    usage_->ReadUsage(*tenant, [tenant, done = std::move(done)](
                                   absl::StatusOr<v1::GetUsageResponse> result) mutable {
      if (result.ok()) result->set_tenant_id(tenant->id);
      std::move(done)(std::move(result));
    });
  };
  if (waiters_ == nullptr) {
    read(std::move(done));
    return std::make_shared<FinishedCall>();
  }
  // Each read is a store round trip (Redis, with replicas): it takes the tenant's rate for
  // other calls like every other call (never the upstream budget), so a tenant cannot drive
  // reads without bound.
  const absl::Time deadline = std::min(context.deadline, clock_.Now() + options_.max_call_timeout);
  return waiters_->Admit(*tenant, /*answer=*/false, deadline,
                         [read, done = std::move(done)](
                             absl::StatusOr<std::unique_ptr<AdmissionLease>> lease) mutable {
                           if (!lease.ok()) return std::move(done)(lease.status());
                           read(std::move(done));
                         });
}

}  // namespace copilot::gateway
