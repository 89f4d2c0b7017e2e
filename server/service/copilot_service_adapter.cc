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
grpc::Status ShuttingDown() {
  return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                      "the gateway is shutting down; retry on another replica");
}

grpc::ServerUnaryReactor* RefuseUnary(grpc::CallbackServerContext& context,
                                      CallObserver& observer) {
  grpc::ServerUnaryReactor* reactor = context.DefaultReactor();
  const grpc::Status status = ShuttingDown();
  observer.Finished(status);
  reactor->Finish(status);
  return reactor;
}

// A stream that ends at once with ShuttingDown().
template <typename Response>
class RefusedStream final : public grpc::ServerWriteReactor<Response> {
 public:
  explicit RefusedStream(CallObserver& observer) {
    const grpc::Status status = ShuttingDown();
    observer.Finished(status);
    this->Finish(status);
  }
  void OnDone() override { delete this; }
};

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

grpc::ServerUnaryReactor* CopilotServiceAdapter::ListAssistants(
    grpc::CallbackServerContext* context, const v1::ListAssistantsRequest* request,
    v1::ListAssistantsResponse* response) {
  std::shared_ptr<CallObserver> observer;
  const CallContext call = ContextOf(*context, "ListAssistants", false, observer);
  if (observer->refused()) return RefuseUnary(*context, *observer);
  return UnaryCallReactor<v1::ListAssistantsResponse>::Start(
      response, std::move(observer), [&](CoreCallback<v1::ListAssistantsResponse> done) {
        return core_.ListAssistants(call, *request, std::move(done));
      });
}

grpc::ServerUnaryReactor* CopilotServiceAdapter::CreateThread(
    grpc::CallbackServerContext* context, const v1::CreateThreadRequest* request,
    v1::CreateThreadResponse* response) {
  std::shared_ptr<CallObserver> observer;
  const CallContext call = ContextOf(*context, "CreateThread", false, observer);
  if (observer->refused()) return RefuseUnary(*context, *observer);
  return UnaryCallReactor<v1::CreateThreadResponse>::Start(
      response, std::move(observer), [&](CoreCallback<v1::CreateThreadResponse> done) {
        return core_.CreateThread(call, *request, std::move(done));
      });
}

grpc::ServerUnaryReactor* CopilotServiceAdapter::GetThread(grpc::CallbackServerContext* context,
                                                           const v1::GetThreadRequest* request,
                                                           v1::GetThreadResponse* response) {
  std::shared_ptr<CallObserver> observer;
  const CallContext call = ContextOf(*context, "GetThread", false, observer);
  if (observer->refused()) return RefuseUnary(*context, *observer);
  return UnaryCallReactor<v1::GetThreadResponse>::Start(
      response, std::move(observer), [&](CoreCallback<v1::GetThreadResponse> done) {
        return core_.GetThread(call, *request, std::move(done));
      });
}

grpc::ServerUnaryReactor* CopilotServiceAdapter::DeleteThread(
    grpc::CallbackServerContext* context, const v1::DeleteThreadRequest* request,
    v1::DeleteThreadResponse* response) {
  std::shared_ptr<CallObserver> observer;
  const CallContext call = ContextOf(*context, "DeleteThread", false, observer);
  if (observer->refused()) return RefuseUnary(*context, *observer);
  return UnaryCallReactor<v1::DeleteThreadResponse>::Start(
      response, std::move(observer), [&](CoreCallback<v1::DeleteThreadResponse> done) {
        return core_.DeleteThread(call, *request, std::move(done));
      });
}

grpc::ServerUnaryReactor* CopilotServiceAdapter::AddMessage(grpc::CallbackServerContext* context,
                                                            const v1::AddMessageRequest* request,
                                                            v1::AddMessageResponse* response) {
  std::shared_ptr<CallObserver> observer;
  const CallContext call = ContextOf(*context, "AddMessage", false, observer);
  if (observer->refused()) return RefuseUnary(*context, *observer);
  return UnaryCallReactor<v1::AddMessageResponse>::Start(
      response, std::move(observer), [&](CoreCallback<v1::AddMessageResponse> done) {
        return core_.AddMessage(call, *request, std::move(done));
      });
}

grpc::ServerUnaryReactor* CopilotServiceAdapter::ListMessages(
    grpc::CallbackServerContext* context, const v1::ListMessagesRequest* request,
    v1::ListMessagesResponse* response) {
  std::shared_ptr<CallObserver> observer;
  const CallContext call = ContextOf(*context, "ListMessages", false, observer);
  if (observer->refused()) return RefuseUnary(*context, *observer);
  return UnaryCallReactor<v1::ListMessagesResponse>::Start(
      response, std::move(observer), [&](CoreCallback<v1::ListMessagesResponse> done) {
        return core_.ListMessages(call, *request, std::move(done));
      });
}

grpc::ServerUnaryReactor* CopilotServiceAdapter::Run(grpc::CallbackServerContext* context,
                                                     const v1::RunRequest* request,
                                                     v1::RunResponse* response) {
  std::shared_ptr<CallObserver> observer;
  const CallContext call = ContextOf(*context, "Run", false, observer);
  if (observer->refused()) return RefuseUnary(*context, *observer);
  return UnaryCallReactor<v1::RunResponse>::Start(
      response, std::move(observer), [&](CoreCallback<v1::RunResponse> done) {
        return core_.Run(call, *request, std::move(done));
      });
}

grpc::ServerWriteReactor<v1::StreamRunResponse>* CopilotServiceAdapter::StreamRun(
    grpc::CallbackServerContext* context, const v1::StreamRunRequest* request) {
  std::shared_ptr<CallObserver> observer;
  const CallContext call = ContextOf(*context, "StreamRun", true, observer);
  if (observer->refused()) return new RefusedStream<v1::StreamRunResponse>(*observer);
  return StreamCallReactor<v1::StreamRunResponse>::Start(
      [&](std::shared_ptr<ChunkSink> sink) {
        return core_.StreamRun(call, *request, std::move(sink));
      },
      options_.max_queued_chunks, std::move(observer));
}

grpc::ServerUnaryReactor* CopilotServiceAdapter::Complete(grpc::CallbackServerContext* context,
                                                          const v1::CompleteRequest* request,
                                                          v1::CompleteResponse* response) {
  std::shared_ptr<CallObserver> observer;
  const CallContext call = ContextOf(*context, "Complete", false, observer);
  if (observer->refused()) return RefuseUnary(*context, *observer);
  return UnaryCallReactor<v1::CompleteResponse>::Start(
      response, std::move(observer), [&](CoreCallback<v1::CompleteResponse> done) {
        return core_.Complete(call, *request, std::move(done));
      });
}

grpc::ServerWriteReactor<v1::StreamCompleteResponse>* CopilotServiceAdapter::StreamComplete(
    grpc::CallbackServerContext* context, const v1::StreamCompleteRequest* request) {
  std::shared_ptr<CallObserver> observer;
  const CallContext call = ContextOf(*context, "StreamComplete", true, observer);
  if (observer->refused()) return new RefusedStream<v1::StreamCompleteResponse>(*observer);
  return StreamCallReactor<v1::StreamCompleteResponse>::Start(
      [&](std::shared_ptr<ChunkSink> sink) {
        return core_.StreamComplete(call, *request, std::move(sink));
      },
      options_.max_queued_chunks, std::move(observer));
}

}  // namespace copilot::gateway
