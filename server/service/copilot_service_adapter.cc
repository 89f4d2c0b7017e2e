#include "server/service/copilot_service_adapter.h"

#include <grpc/grpc_security_constants.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "server/common/errors.h"
#include "server/common/grpc_status.h"
#include "server/service/inline_reactions.h"
#include "server/service/request_parser.h"
#include "server/service/stream_call_reactor.h"
#include "server/service/unary_call_reactor.h"

namespace copilot::gateway {
namespace {

namespace v1 = ::copilot::v1;

// The authenticated client-certificate identities of the connection, and whether it is TLS.
void ReadPeer(const grpc::CallbackServerContext& context, bool& tls,
              std::vector<std::string>& identities) {
  std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  tls = false;
  if (auth == nullptr) return;
  for (const grpc::string_ref& type : auth->FindPropertyValues("transport_security_type")) {
    if (type == "ssl" || type == "tls") tls = true;
  }
  if (!tls || !auth->IsPeerAuthenticated()) return;
  auto add = [&identities](std::string identity) {
    if (std::find(identities.begin(), identities.end(), identity) == identities.end()) {
      identities.push_back(std::move(identity));
    }
  };
  for (const char* property : {GRPC_PEER_SPIFFE_ID_PROPERTY_NAME, GRPC_PEER_URI_PROPERTY_NAME}) {
    for (const grpc::string_ref& value : auth->FindPropertyValues(property)) {
      std::string uri(value.data(), value.size());
      if (absl::StartsWith(uri, "spiffe://")) add(std::move(uri));
    }
  }
  for (const grpc::string_ref& value : auth->FindPropertyValues(GRPC_PEER_DNS_PROPERTY_NAME)) {
    add(absl::StrCat("dns:", absl::string_view(value.data(), value.size())));
  }
}

// The status of a call refused because the gateway is shutting down: safe to retry elsewhere.
absl::Status ShuttingDown() {
  return MakeError(absl::StatusCode::kUnavailable,
                   "the gateway is shutting down; retry on another replica", "SHUTTING_DOWN");
}

// A call that ends at once with a status (refused, or its request unreadable), unary or stream.
// Not gRPC's default unary reactor, whose end nobody sees: the observer must learn when gRPC is
// done with the call, or the call would count as in flight until the drain's time is up (every
// shutdown would then wait out its whole grace period after one unreadable request).
template <typename Reactor>
class FinishedCall final : public Reactor {
 public:
  FinishedCall(std::shared_ptr<CallObserver> observer, const absl::Status& status)
      : observer_(std::move(observer)) {
    observer_->Finished(status);
    this->Finish(ToGrpcStatus(status));
  }
  void OnDone() override {
    observer_->Done();
    delete this;
  }
  bool InternalInlineable() override { return kInlineReactions; }

 private:
  const std::shared_ptr<CallObserver> observer_;
};
using FinishedUnary = FinishedCall<grpc::ServerUnaryReactor>;
using FinishedStream = FinishedCall<grpc::ServerWriteReactor<grpc::ByteBuffer>>;

// The first value of metadata `key`, if any.
std::optional<absl::string_view> MetadataValue(
    const std::multimap<grpc::string_ref, grpc::string_ref>& metadata, const char* key) {
  auto it = metadata.find(key);
  if (it == metadata.end()) return std::nullopt;
  return absl::string_view(it->second.data(), it->second.size());
}

}  // namespace

// What the core needs from the incoming call.
CallContext CopilotServiceAdapter::ContextOf(grpc::CallbackServerContext& context,
                                             absl::string_view method, bool server_stream,
                                             std::shared_ptr<CallObserver>& observer) const {
  CallContext call;
  const auto& metadata = context.client_metadata();
  call.trace = std::make_shared<CallTrace>(RequestIdFor(MetadataValue(metadata, "x-request-id")),
                                           TraceparentFor(MetadataValue(metadata, "traceparent")));
  context.AddInitialMetadata("x-request-id", call.trace->request_id());
  observer = std::make_shared<CallObserver>(options_.metrics, method, server_stream, call.trace,
                                            context.peer(), options_.gate);
  if (auto it = metadata.find("authorization"); it != metadata.end()) {
    call.credentials.authorization = std::string(it->second.data(), it->second.size());
  }
  bool tls = false;
  ReadPeer(context, tls, call.credentials.peer_identities);
  call.listener = tls ? options_.tls : options_.plaintext;
  const std::chrono::system_clock::time_point deadline = context.deadline();
  // gRPC reports "no deadline" as the largest time point (or close to it).
  if (deadline < std::chrono::system_clock::time_point::max() - std::chrono::hours(24 * 365)) {
    call.deadline = absl::FromChrono(deadline);
  }
  return call;
}

CopilotServiceAdapter::CopilotServiceAdapter(CopilotCore& core, AdapterOptions options)
    : core_(core), options_(options) {}

template <typename Request, typename Response, typename UseCase>
grpc::ServerUnaryReactor* CopilotServiceAdapter::Unary(grpc::CallbackServerContext& context,
                                                       absl::string_view method,
                                                       const grpc::ByteBuffer& request_bytes,
                                                       grpc::ByteBuffer* response,
                                                       UseCase use_case) {
  std::shared_ptr<CallObserver> observer;
  const CallContext call = ContextOf(context, method, false, observer);
  if (observer->refused()) return new FinishedUnary(std::move(observer), ShuttingDown());
  // The core copies what it keeps of the request: it need not outlive this handler.
  Request request;
  if (absl::Status parsed = ParseRequest(request_bytes, request); !parsed.ok()) {
    return new FinishedUnary(std::move(observer), parsed);
  }
  return UnaryCallReactor<Response>::Start(
      response, std::move(observer),
      [&](CoreCallback<Response> done) { return use_case(call, request, std::move(done)); });
}

template <typename Request, typename Response, typename UseCase>
grpc::ServerWriteReactor<grpc::ByteBuffer>* CopilotServiceAdapter::Stream(
    grpc::CallbackServerContext& context, absl::string_view method,
    const grpc::ByteBuffer& request_bytes, UseCase use_case) {
  std::shared_ptr<CallObserver> observer;
  const CallContext call = ContextOf(context, method, true, observer);
  if (observer->refused()) return new FinishedStream(std::move(observer), ShuttingDown());
  Request request;
  if (absl::Status parsed = ParseRequest(request_bytes, request); !parsed.ok()) {
    return new FinishedStream(std::move(observer), parsed);
  }
  return StreamCallReactor<Response>::Start(
      [&](std::shared_ptr<ChunkSink> sink) { return use_case(call, request, std::move(sink)); },
      options_.max_queued_chunks, std::move(observer));
}

grpc::ServerUnaryReactor* CopilotServiceAdapter::ListAssistants(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  return Unary<v1::ListAssistantsRequest, v1::ListAssistantsResponse>(
      *context, "ListAssistants", *request, response, [this](auto& call, auto& r, auto done) {
        return core_.ListAssistants(call, r, std::move(done));
      });
}

grpc::ServerUnaryReactor* CopilotServiceAdapter::CreateThread(grpc::CallbackServerContext* context,
                                                              const grpc::ByteBuffer* request,
                                                              grpc::ByteBuffer* response) {
  return Unary<v1::CreateThreadRequest, v1::CreateThreadResponse>(
      *context, "CreateThread", *request, response, [this](auto& call, auto& r, auto done) {
        return core_.CreateThread(call, r, std::move(done));
      });
}

grpc::ServerUnaryReactor* CopilotServiceAdapter::GetThread(grpc::CallbackServerContext* context,
                                                           const grpc::ByteBuffer* request,
                                                           grpc::ByteBuffer* response) {
  return Unary<v1::GetThreadRequest, v1::GetThreadResponse>(
      *context, "GetThread", *request, response,
      [this](auto& call, auto& r, auto done) { return core_.GetThread(call, r, std::move(done)); });
}

grpc::ServerUnaryReactor* CopilotServiceAdapter::DeleteThread(grpc::CallbackServerContext* context,
                                                              const grpc::ByteBuffer* request,
                                                              grpc::ByteBuffer* response) {
  return Unary<v1::DeleteThreadRequest, v1::DeleteThreadResponse>(
      *context, "DeleteThread", *request, response, [this](auto& call, auto& r, auto done) {
        return core_.DeleteThread(call, r, std::move(done));
      });
}

grpc::ServerUnaryReactor* CopilotServiceAdapter::AddMessage(grpc::CallbackServerContext* context,
                                                            const grpc::ByteBuffer* request,
                                                            grpc::ByteBuffer* response) {
  return Unary<v1::AddMessageRequest, v1::AddMessageResponse>(
      *context, "AddMessage", *request, response, [this](auto& call, auto& r, auto done) {
        return core_.AddMessage(call, r, std::move(done));
      });
}

grpc::ServerUnaryReactor* CopilotServiceAdapter::ListMessages(grpc::CallbackServerContext* context,
                                                              const grpc::ByteBuffer* request,
                                                              grpc::ByteBuffer* response) {
  return Unary<v1::ListMessagesRequest, v1::ListMessagesResponse>(
      *context, "ListMessages", *request, response, [this](auto& call, auto& r, auto done) {
        return core_.ListMessages(call, r, std::move(done));
      });
}

grpc::ServerUnaryReactor* CopilotServiceAdapter::Run(grpc::CallbackServerContext* context,
                                                     const grpc::ByteBuffer* request,
                                                     grpc::ByteBuffer* response) {
  return Unary<v1::RunRequest, v1::RunResponse>(
      *context, "Run", *request, response,
      [this](auto& call, auto& r, auto done) { return core_.Run(call, r, std::move(done)); });
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* CopilotServiceAdapter::StreamRun(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request) {
  return Stream<v1::StreamRunRequest, v1::StreamRunResponse>(
      *context, "StreamRun", *request,
      [this](auto& call, auto& r, auto sink) { return core_.StreamRun(call, r, std::move(sink)); });
}

grpc::ServerUnaryReactor* CopilotServiceAdapter::Complete(grpc::CallbackServerContext* context,
                                                          const grpc::ByteBuffer* request,
                                                          grpc::ByteBuffer* response) {
  return Unary<v1::CompleteRequest, v1::CompleteResponse>(
      *context, "Complete", *request, response,
      [this](auto& call, auto& r, auto done) { return core_.Complete(call, r, std::move(done)); });
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* CopilotServiceAdapter::StreamComplete(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request) {
  return Stream<v1::StreamCompleteRequest, v1::StreamCompleteResponse>(
      *context, "StreamComplete", *request, [this](auto& call, auto& r, auto sink) {
        return core_.StreamComplete(call, r, std::move(sink));
      });
}

grpc::ServerUnaryReactor* CopilotServiceAdapter::GetUsage(grpc::CallbackServerContext* context,
                                                          const grpc::ByteBuffer* request,
                                                          grpc::ByteBuffer* response) {
  return Unary<v1::GetUsageRequest, v1::GetUsageResponse>(
      *context, "GetUsage", *request, response,
      [this](auto& call, auto& r, auto done) { return core_.GetUsage(call, r, std::move(done)); });
}

}  // namespace copilot::gateway
