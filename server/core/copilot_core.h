// The use cases of CopilotService: validate, resolve the tenant's licence and thread handles,
// de-duplicate retries, bound the call's time, call the upstream, map the answer.
#ifndef COPILOT_GATEWAY_SERVER_CORE_COPILOT_CORE_H_
#define COPILOT_GATEWAY_SERVER_CORE_COPILOT_CORE_H_

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "copilot/v1/copilot_service.pb.h"
#include "server/common/call_trace.h"
#include "server/common/clock.h"
#include "server/common/tenant.h"
#include "server/core/request_id_store.h"
#include "server/core/shared_request_ids.h"
#include "server/core/tenant_directory.h"
#include "server/core/thread_handles.h"
#include "server/core/usage_reader.h"
#include "server/core/validation.h"
#include "server/core/waiter_admission.h"
#include "server/upstream/haufe_api.h"

namespace copilot::gateway {

// What the core needs to know about the incoming call. Plain data.
struct CallContext {
  // The caller's deadline; InfiniteFuture when it set none.
  absl::Time deadline = absl::InfiniteFuture();
  // What the caller presented, and what its listener accepts (read from gRPC by the service
  // layer); the core's TenantResolver maps them to a tenant.
  CallerCredentials credentials;
  ListenerIdentity listener;
  // Set to bypass resolution (tests). Shared so that a reload never pulls it from under a call.
  std::shared_ptr<const Tenant> tenant;
  // The call's correlation IDs (sent upstream) and what it learns on the way (its tenant, its
  // upstream requests); may be null.
  std::shared_ptr<CallTrace> trace;
};

// Settings of the core, from the config. Plain data; holds secrets, so never log it.
struct CoreOptions {
  // Sent upstream as the api-key header (unless the tenant has a key of its own).
  std::string api_key;
  // The tenant of calls when the core has no TenantResolver (and CallContext names none).
  Tenant default_tenant;
  // Bound on a call whose caller set no deadline (and cap on longer deadlines).
  absl::Duration max_call_timeout = absl::Minutes(5);
  ValidationLimits limits;
  // request_id de-duplication (one store for every method and tenant).
  RequestIdLimits request_ids;
};

// A count of things in flight, each holding a ticket from Enter() until it ends. Thread-safe.
class CallCount : public std::enable_shared_from_this<CallCount> {
 public:
  std::shared_ptr<void> Enter();
  int count() const;
  // Blocks until the count is 0 or `deadline` passed; true when it is 0.
  bool WaitIdle(absl::Time deadline);

 private:
  mutable absl::Mutex mu_;
  int count_ ABSL_GUARDED_BY(mu_) = 0;
};

template <typename T>
using CoreCallback = absl::AnyInvocable<void(absl::StatusOr<T>) &&>;

// Receives a streamed answer: the ChunkSink contract (in order, on the upstream's event loop
// thread, OnDone exactly once), with thread IDs already mapped for the caller.
using AnswerSink = ChunkSink;

// CopilotService's use cases over a HaufeApi. Thread-safe; no method blocks. Each method runs
// its callback (or the sink's OnDone) exactly once: inline when the request is rejected before
// any upstream call, otherwise on the upstream's event loop thread. The returned UpstreamCall
// cancels (or resumes) the call; it is never null. Errors carry google.rpc details
// (server/common/errors.h). `api`, `clock` and `handles` must outlive this object.
class CopilotCore {
 public:
  // `tenants`, when given, resolves each call's tenant; `waiters`, when given, admits request_id
  // retries that wait for their first attempt against the tenant's limits. Both must outlive
  // this object.
  // `usage`, when given, answers GetUsage (UNIMPLEMENTED otherwise). `shared_request_ids`, when
  // given, makes request_id de-duplication span every replica using it (behind the in-process
  // store). All must outlive this object.
  CopilotCore(HaufeApi& api, const Clock& clock, const ThreadHandles& handles, CoreOptions options,
              const TenantResolver* tenants = nullptr, WaiterAdmission* waiters = nullptr,
              UsageReader* usage = nullptr, SharedRequestIds* shared_request_ids = nullptr);

  // The request_id store, for metrics and tests.
  const RequestIdStore& request_ids() const { return request_ids_; }

  // Calls with a request_id still running (or waiting for another replica's attempt), their
  // callers answered or not: a call whose caller went away runs to its end (see Outliving).
  int outliving_calls() const { return outliving_->count(); }
  // For the drain: blocks until no such call runs or `deadline` passed; true when none does.
  bool WaitForOutlivingCalls(absl::Time deadline) { return outliving_->WaitIdle(deadline); }
  // Retries waiting for an attempt another replica runs (the in-process store's waiters() are
  // those waiting for an attempt of this replica). Bounded by the tenants' rate and, for Run
  // and Complete, concurrency limits, which admit each of them.
  int shared_waiters() const { return shared_waiters_->count(); }

  std::shared_ptr<UpstreamCall> ListAssistants(
      const CallContext& context, const copilot::v1::ListAssistantsRequest& request,
      CoreCallback<copilot::v1::ListAssistantsResponse> done);
  std::shared_ptr<UpstreamCall> CreateThread(const CallContext& context,
                                             const copilot::v1::CreateThreadRequest& request,
                                             CoreCallback<copilot::v1::CreateThreadResponse> done);
  std::shared_ptr<UpstreamCall> GetThread(const CallContext& context,
                                          const copilot::v1::GetThreadRequest& request,
                                          CoreCallback<copilot::v1::GetThreadResponse> done);
  std::shared_ptr<UpstreamCall> DeleteThread(const CallContext& context,
                                             const copilot::v1::DeleteThreadRequest& request,
                                             CoreCallback<copilot::v1::DeleteThreadResponse> done);
  std::shared_ptr<UpstreamCall> AddMessage(const CallContext& context,
                                           const copilot::v1::AddMessageRequest& request,
                                           CoreCallback<copilot::v1::AddMessageResponse> done);
  std::shared_ptr<UpstreamCall> ListMessages(const CallContext& context,
                                             const copilot::v1::ListMessagesRequest& request,
                                             CoreCallback<copilot::v1::ListMessagesResponse> done);
  std::shared_ptr<UpstreamCall> Run(const CallContext& context,
                                    const copilot::v1::RunRequest& request,
                                    CoreCallback<copilot::v1::RunResponse> done);
  std::shared_ptr<UpstreamCall> StreamRun(const CallContext& context,
                                          const copilot::v1::StreamRunRequest& request,
                                          std::shared_ptr<AnswerSink> sink);
  std::shared_ptr<UpstreamCall> Complete(const CallContext& context,
                                         const copilot::v1::CompleteRequest& request,
                                         CoreCallback<copilot::v1::CompleteResponse> done);
  std::shared_ptr<UpstreamCall> StreamComplete(const CallContext& context,
                                               const copilot::v1::StreamCompleteRequest& request,
                                               std::shared_ptr<AnswerSink> sink);

  // The calling tenant's usage and quotas; no upstream call.
  std::shared_ptr<UpstreamCall> GetUsage(const CallContext& context,
                                         const copilot::v1::GetUsageRequest& request,
                                         CoreCallback<copilot::v1::GetUsageResponse> done);

  // The options of one upstream call: deadline = min(caller's, now + max_call_timeout), the
  // tenant's API key (or the gateway's), the tenant's licence for `assistant_id`, the call's
  // x-request-id and traceparent. Public for tests.
  UpstreamCallOptions BuildUpstreamOptions(const CallContext& context, const Tenant& tenant,
                                           absl::string_view assistant_id) const;

 private:
  using TenantPtr = std::shared_ptr<const Tenant>;
  // The tenant of a call: CallContext::tenant when set; else resolved from the caller's
  // credentials when the core has a TenantResolver (UNAUTHENTICATED when they name none); else
  // the default tenant. Recorded on the call's trace.
  absl::StatusOr<TenantPtr> TenantOf(const CallContext& context) const;
  // Maps upstream thread IDs of `tenant`'s calls to `assistant_id` to the caller's (for usage
  // records).
  std::function<std::string(const std::string&)> CallerThreadIds(
      TenantPtr tenant, absl::string_view assistant_id) const;
  // The thread behind a caller's handle; with `uses_assistant`, PERMISSION_DENIED when the
  // thread's assistant is not (or no longer) allowed to the tenant.
  absl::StatusOr<ThreadRef> ThreadOf(const Tenant& tenant, absl::string_view handle,
                                     bool uses_assistant) const;
  // Maps the IDs inside an upstream answer for `tenant`; messages belong to `assistant_id`.
  copilot::v1::Message ForCaller(const Tenant& tenant, absl::string_view assistant_id,
                                 copilot::v1::Message message) const;
  copilot::v1::Thread ForCaller(const Tenant& tenant, absl::string_view assistant_id,
                                copilot::v1::Thread thread) const;
  // The upstream callback of a unary use case: maps the result for `tenant` and hands it to
  // `done` in the `Response` field that `field` (e.g. &RunResponse::mutable_message) sets.
  template <typename Response, typename Upstream>
  UpstreamCallback<Upstream> RespondWith(TenantPtr tenant, std::string assistant_id,
                                         CoreCallback<Response> done,
                                         Upstream* (Response::*field)()) const {
    return [this, tenant = std::move(tenant), assistant_id = std::move(assistant_id),
            done = std::move(done), field](absl::StatusOr<Upstream> result) mutable {
      if (!result.ok()) return std::move(done)(ForCaller(result.status()));
      Response response;
      *(response.*field)() = ForCaller(*tenant, assistant_id, *std::move(result));
      std::move(done)(std::move(response));
    };
  }
  // An upstream error as the caller sees it: the upstream's thread_not_found becomes exactly
  // the NOT_FOUND of a handle that is not the caller's.
  static absl::Status ForCaller(const absl::Status& status);
  // The upstream parameters of Complete and StreamComplete.
  template <typename Request>
  absl::StatusOr<CompletionParams> CompletionParamsOf(const Request& request,
                                                      const Tenant& tenant) const;
  class CallerChunkSink;
  // Runs `start` unless the request's request_id names an attempt that is running (then the
  // call waits for it, admitted by waiters_) or recently succeeded (then its result is
  // returned), in this process or, with shared_request_ids_, on any replica. A request run
  // under its request_id runs to its end when its caller goes away (see Outliving).
  // `answer`: the call generates an answer (for the waiter's admission).
  template <typename Response, typename Start>
  std::shared_ptr<UpstreamCall> MaybeDeduplicate(const CallContext& context,
                                                 const TenantPtr& caller, bool answer,
                                                 absl::string_view method,
                                                 const std::string& request_id,
                                                 const google::protobuf::Message& request,
                                                 CoreCallback<Response> done, Start start);

  // The context of the upstream call of a request with `request_id`: one that is
  // de-duplicated outlives its caller (its upstream deadline is max_call_timeout, not the
  // caller's), so that a retry after a cancel or a deadline gets its result instead of
  // sending it again.
  CallContext Outliving(const CallContext& context, const std::string& request_id) const;

  HaufeApi& api_;
  const Clock& clock_;
  const ThreadHandles& handles_;
  const CoreOptions options_;
  const TenantPtr default_tenant_;
  const TenantResolver* const tenants_;
  WaiterAdmission* const waiters_;
  UsageReader* const usage_;
  SharedRequestIds* const shared_request_ids_;
  RequestIdStore request_ids_;
  // Calls in flight under a request_id, and those of them waiting for another replica's
  // attempt.
  const std::shared_ptr<CallCount> outliving_;
  const std::shared_ptr<CallCount> shared_waiters_;
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_CORE_COPILOT_CORE_H_
