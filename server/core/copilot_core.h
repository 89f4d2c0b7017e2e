// The use cases of CopilotService: validate, resolve the tenant's licence and thread handles,
// de-duplicate retries, bound the call's time, call the upstream, map the answer.
#ifndef COPILOT_GATEWAY_SERVER_CORE_COPILOT_CORE_H_
#define COPILOT_GATEWAY_SERVER_CORE_COPILOT_CORE_H_

#include <cstddef>
#include <memory>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "copilot/v1/copilot_service.pb.h"
#include "server/core/clock.h"
#include "server/core/request_deduplicator.h"
#include "server/core/tenant.h"
#include "server/core/thread_handles.h"
#include "server/core/validation.h"
#include "server/upstream/haufe_api.h"

namespace copilot::gateway {

// What the core needs to know about the incoming call. Plain data.
struct CallContext {
  // The caller's deadline; InfiniteFuture when it set none.
  absl::Time deadline = absl::InfiniteFuture();
};

// Settings of the core, from the config. Plain data; holds secrets, so never log it.
struct CoreOptions {
  // Sent upstream as the api-key header.
  std::string api_key;
  // The tenant every call is made for until per-caller tenants land.
  Tenant default_tenant;
  // Bound on a call whose caller set no deadline (and cap on longer deadlines).
  absl::Duration max_call_timeout = absl::Minutes(5);
  ValidationLimits limits;
  // request_id de-duplication.
  absl::Duration request_id_ttl = absl::Minutes(10);
  std::size_t request_id_max_entries = 100000;
  std::size_t request_id_max_bytes = 64 * 1024 * 1024;
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
  CopilotCore(HaufeApi& api, const Clock& clock, const ThreadHandles& handles, CoreOptions options);

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

  // The options of one upstream call: deadline = min(caller's, now + max_call_timeout), the API
  // key, the tenant's licence, the request id. Public for tests.
  UpstreamCallOptions BuildUpstreamOptions(const CallContext& context, const Tenant& tenant,
                                           absl::string_view request_id) const;

 private:
  // The tenant of a call (one default tenant until per-caller tenants land).
  const Tenant& TenantOf(const CallContext& context) const { return options_.default_tenant; }
  // Maps the thread IDs inside an upstream message for `tenant`.
  copilot::v1::Message ForCaller(const Tenant& tenant, copilot::v1::Message message) const;
  copilot::v1::Thread ForCaller(const Tenant& tenant, copilot::v1::Thread thread) const;
  // The upstream callback of a unary use case: maps the result for `tenant` and hands it to
  // `done` in the `Response` field that `field` (e.g. &RunResponse::mutable_message) sets.
  template <typename Response, typename Upstream>
  UpstreamCallback<Upstream> RespondWith(const Tenant& tenant, CoreCallback<Response> done,
                                         Upstream* (Response::*field)()) const {
    return [this, &tenant, done = std::move(done), field](absl::StatusOr<Upstream> result) mutable {
      if (!result.ok()) return std::move(done)(result.status());
      Response response;
      *(response.*field)() = ForCaller(tenant, *std::move(result));
      std::move(done)(std::move(response));
    };
  }

  HaufeApi& api_;
  const Clock& clock_;
  const ThreadHandles& handles_;
  const CoreOptions options_;
  RequestDeduplicator<copilot::v1::CreateThreadResponse> create_thread_requests_;
  RequestDeduplicator<copilot::v1::AddMessageResponse> add_message_requests_;
  RequestDeduplicator<copilot::v1::RunResponse> run_requests_;
  RequestDeduplicator<copilot::v1::CompleteResponse> complete_requests_;
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_CORE_COPILOT_CORE_H_
