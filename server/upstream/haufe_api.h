// The upstream seam: the Haufe Copilot REST API as typed, asynchronous calls.
//
// The production implementation is HaufeClient (server/upstream/haufe_client.h): REST paths,
// headers, JSON <-> proto, and the one HTTP status -> absl::Status table, over an HttpTransport.
// Decorators (metrics, retry, logging) implement this same interface and wrap another one.
#ifndef COPILOT_GATEWAY_SERVER_UPSTREAM_HAUFE_API_H_
#define COPILOT_GATEWAY_SERVER_UPSTREAM_HAUFE_API_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "copilot/v1/resources.pb.h"
#include "google/protobuf/struct.pb.h"
#include "server/common/async_call.h"
#include "server/common/call_trace.h"
#include "server/common/limit_types.h"

namespace copilot::gateway {

// What the core decided for one upstream call. Plain data; holds secrets, so never log it.
struct UpstreamCallOptions {
  // The upstream call must finish by then (derived from the caller's deadline).
  absl::Time deadline = absl::InfiniteFuture();
  // Sent as the `api-key` header.
  std::string api_key;
  // Injected as meta_data.user_data.licence on run, run/stream and chat completion calls;
  // empty sends no meta_data.
  std::string licence;
  // Secrets this call does not send that its answers and errors must not give back either: the
  // tenant's other licences (one upstream thread or assistant list may echo what another call
  // sent, e.g. ListAssistants carries only the default licence). Empty strings are ignored.
  std::vector<std::string> also_redact;
  // Sent as `x-request-id` and `traceparent` when not empty.
  std::string request_id;
  std::string traceparent;
  // The incoming call this upstream call serves (for its metrics and log line); may be null.
  std::shared_ptr<CallTrace> trace;
  // The tenant the call is made for, and its limits (admission, server/limits/).
  std::string tenant_id;
  TenantLimits limits;
  // For usage records (metrics and the audit log): the assistant the call is for (empty when
  // none), as a metrics label (the assistant ID when the tenant's config names it, else
  // "other"), and the thread ID the caller sees for an upstream thread ID (null: none mapped).
  std::string assistant_id;
  std::string assistant_label;
  using CallerThreadId = std::function<std::string(const std::string&)>;
  CallerThreadId caller_thread_id;
};

// Upstream IDs below are the upstream's own UUIDs (the core maps caller-facing handles).
struct RunParams {
  std::string thread_id;
  std::vector<google::protobuf::Struct> tools;
};

struct CompletionParams {
  std::string assistant_id;
  std::vector<copilot::v1::MessageInput> messages;
  std::string user_id;    // Empty: not sent.
  std::string thread_id;  // Empty: not sent (query parameter `thread_id` otherwise).
  std::vector<google::protobuf::Struct> tools;
};

struct CreateThreadParams {
  std::string assistant_id;
  std::string user_id;  // Empty: not sent.
  std::string title;    // Empty: not sent.
};

// One page of a thread's messages, newest first.
struct MessagePage {
  std::vector<copilot::v1::Message> messages;
  std::string next_cursor;  // Empty on the last page.
};

// The upstream API. Thread-safe; no method blocks. Each callback runs exactly once, on the
// transport's event loop thread, on a thread decoding a large answer (DecodePool), or inline
// (a request rejected before it was sent), and must not block. Errors follow DESIGN.md's table and
// carry ErrorInfo (server/common/errors.h).
class HaufeApi {
 public:
  virtual ~HaufeApi() = default;

  virtual std::shared_ptr<UpstreamCall> ListAssistants(
      const UpstreamCallOptions& options,
      UpstreamCallback<std::vector<copilot::v1::Assistant>> done) = 0;
  virtual std::shared_ptr<UpstreamCall> GetAssistant(
      const UpstreamCallOptions& options, const std::string& assistant_id,
      UpstreamCallback<copilot::v1::Assistant> done) = 0;
  virtual std::shared_ptr<UpstreamCall> CreateThread(
      const UpstreamCallOptions& options, const CreateThreadParams& params,
      UpstreamCallback<copilot::v1::Thread> done) = 0;
  virtual std::shared_ptr<UpstreamCall> GetThread(const UpstreamCallOptions& options,
                                                  const std::string& thread_id,
                                                  UpstreamCallback<copilot::v1::Thread> done) = 0;
  virtual std::shared_ptr<UpstreamCall> DeleteThread(const UpstreamCallOptions& options,
                                                     const std::string& thread_id,
                                                     UpstreamDoneCallback done) = 0;
  virtual std::shared_ptr<UpstreamCall> AddMessage(const UpstreamCallOptions& options,
                                                   const std::string& thread_id,
                                                   const copilot::v1::MessageInput& message,
                                                   UpstreamCallback<copilot::v1::Message> done) = 0;
  // `page_size` 0 leaves the upstream default; `cursor` empty asks for the first page.
  virtual std::shared_ptr<UpstreamCall> ListMessages(const UpstreamCallOptions& options,
                                                     const std::string& thread_id, int page_size,
                                                     const std::string& cursor,
                                                     UpstreamCallback<MessagePage> done) = 0;
  virtual std::shared_ptr<UpstreamCall> Run(const UpstreamCallOptions& options,
                                            const RunParams& params,
                                            UpstreamCallback<copilot::v1::Message> done) = 0;
  virtual std::shared_ptr<UpstreamCall> StreamRun(const UpstreamCallOptions& options,
                                                  const RunParams& params,
                                                  std::shared_ptr<ChunkSink> sink) = 0;
  virtual std::shared_ptr<UpstreamCall> Complete(const UpstreamCallOptions& options,
                                                 const CompletionParams& params,
                                                 UpstreamCallback<copilot::v1::Message> done) = 0;
  virtual std::shared_ptr<UpstreamCall> StreamComplete(const UpstreamCallOptions& options,
                                                       const CompletionParams& params,
                                                       std::shared_ptr<ChunkSink> sink) = 0;
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_UPSTREAM_HAUFE_API_H_
