// The gRPC face of the gateway: CopilotService over the callback API, delegating every call to
// CopilotCore.
#ifndef COPILOT_GATEWAY_SERVER_SERVICE_COPILOT_SERVICE_ADAPTER_H_
#define COPILOT_GATEWAY_SERVER_SERVICE_COPILOT_SERVICE_ADAPTER_H_

#include <grpcpp/grpcpp.h>

#include <cstddef>

#include "copilot/v1/copilot_service.grpc.pb.h"
#include "server/core/copilot_core.h"
#include "server/ops/call_gate.h"
#include "server/ops/call_observer.h"
#include "server/ops/gateway_metrics.h"

namespace copilot::gateway {

// Settings of the adapter. Plain data.
struct AdapterOptions {
  // Chunks queued per stream before the upstream is paused (flow control).
  std::size_t max_queued_chunks = 16;
  // Identities accepted from calls over plaintext and over TLS connections.
  ListenerIdentity plaintext{.bearer = true, .mtls = false, .anonymous = false};
  ListenerIdentity tls{.bearer = true, .mtls = true, .anonymous = false};
  // Where each call's metrics go; null: none (the call's log line is written either way).
  GatewayMetrics* metrics = nullptr;
  // Admission across shutdown: once closed, calls are refused with UNAVAILABLE; null: none.
  CallGate* gate = nullptr;
};

// gRPC only: reads the call's deadline, credentials and correlation IDs, creates a reactor and a
// CallObserver per call and converts the core's absl::Status once (ToGrpcStatus). Thread-safe: gRPC
// calls the handlers concurrently; they hold no state of their own and never block. `core` must
// outlive the server.
class CopilotServiceAdapter final : public copilot::v1::CopilotService::CallbackService {
 public:
  explicit CopilotServiceAdapter(CopilotCore& core, AdapterOptions options = {});

  grpc::ServerUnaryReactor* ListAssistants(grpc::CallbackServerContext* context,
                                           const copilot::v1::ListAssistantsRequest* request,
                                           copilot::v1::ListAssistantsResponse* response) override;
  grpc::ServerUnaryReactor* CreateThread(grpc::CallbackServerContext* context,
                                         const copilot::v1::CreateThreadRequest* request,
                                         copilot::v1::CreateThreadResponse* response) override;
  grpc::ServerUnaryReactor* GetThread(grpc::CallbackServerContext* context,
                                      const copilot::v1::GetThreadRequest* request,
                                      copilot::v1::GetThreadResponse* response) override;
  grpc::ServerUnaryReactor* DeleteThread(grpc::CallbackServerContext* context,
                                         const copilot::v1::DeleteThreadRequest* request,
                                         copilot::v1::DeleteThreadResponse* response) override;
  grpc::ServerUnaryReactor* AddMessage(grpc::CallbackServerContext* context,
                                       const copilot::v1::AddMessageRequest* request,
                                       copilot::v1::AddMessageResponse* response) override;
  grpc::ServerUnaryReactor* ListMessages(grpc::CallbackServerContext* context,
                                         const copilot::v1::ListMessagesRequest* request,
                                         copilot::v1::ListMessagesResponse* response) override;
  grpc::ServerUnaryReactor* Run(grpc::CallbackServerContext* context,
                                const copilot::v1::RunRequest* request,
                                copilot::v1::RunResponse* response) override;
  grpc::ServerWriteReactor<copilot::v1::StreamRunResponse>* StreamRun(
      grpc::CallbackServerContext* context, const copilot::v1::StreamRunRequest* request) override;
  grpc::ServerUnaryReactor* Complete(grpc::CallbackServerContext* context,
                                     const copilot::v1::CompleteRequest* request,
                                     copilot::v1::CompleteResponse* response) override;
  grpc::ServerWriteReactor<copilot::v1::StreamCompleteResponse>* StreamComplete(
      grpc::CallbackServerContext* context,
      const copilot::v1::StreamCompleteRequest* request) override;

 private:
  // The core's view of a call: its deadline, what the caller presented and what its listener
  // (plaintext or TLS) accepts, its trace. Starts observing the call (`method`), and answers the
  // caller's x-request-id (or a new one) in the initial metadata.
  CallContext ContextOf(grpc::CallbackServerContext& context, absl::string_view method,
                        bool server_stream, std::shared_ptr<CallObserver>& observer) const;

  CopilotCore& core_;
  const AdapterOptions options_;
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_SERVICE_COPILOT_SERVICE_ADAPTER_H_
