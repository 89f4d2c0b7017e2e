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

// The generated service with every method raw (grpc::ByteBuffer in and out): the adapter reads
// each request itself (request_parser.h), so a request gRPC could not decode still gets a clear
// INVALID_ARGUMENT, a log line and its metrics.
using RawCopilotService = copilot::v1::CopilotService::WithRawCallbackMethod_ListAssistants<
    copilot::v1::CopilotService::WithRawCallbackMethod_CreateThread<
        copilot::v1::CopilotService::WithRawCallbackMethod_GetThread<
            copilot::v1::CopilotService::WithRawCallbackMethod_DeleteThread<
                copilot::v1::CopilotService::WithRawCallbackMethod_AddMessage<
                    copilot::v1::CopilotService::WithRawCallbackMethod_ListMessages<
                        copilot::v1::CopilotService::WithRawCallbackMethod_Run<
                            copilot::v1::CopilotService::WithRawCallbackMethod_StreamRun<
                                copilot::v1::CopilotService::WithRawCallbackMethod_Complete<
                                    copilot::v1::CopilotService::
                                        WithRawCallbackMethod_StreamComplete<
                                            copilot::v1::CopilotService::
                                                WithRawCallbackMethod_GetUsage<
                                                    copilot::v1::CopilotService::Service>>>>>>>>>>>;

// gRPC only: reads the call's request, deadline, credentials and correlation IDs, creates a
// reactor and a CallObserver per call and converts the core's absl::Status once
// (ToGrpcStatus). Thread-safe: gRPC calls the handlers concurrently; they hold no state of
// their own and never block. `core` must outlive the server.
class CopilotServiceAdapter final : public RawCopilotService {
 public:
  explicit CopilotServiceAdapter(CopilotCore& core, AdapterOptions options = {});

  grpc::ServerUnaryReactor* ListAssistants(grpc::CallbackServerContext* context,
                                           const grpc::ByteBuffer* request,
                                           grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* CreateThread(grpc::CallbackServerContext* context,
                                         const grpc::ByteBuffer* request,
                                         grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* GetThread(grpc::CallbackServerContext* context,
                                      const grpc::ByteBuffer* request,
                                      grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* DeleteThread(grpc::CallbackServerContext* context,
                                         const grpc::ByteBuffer* request,
                                         grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* AddMessage(grpc::CallbackServerContext* context,
                                       const grpc::ByteBuffer* request,
                                       grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* ListMessages(grpc::CallbackServerContext* context,
                                         const grpc::ByteBuffer* request,
                                         grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Run(grpc::CallbackServerContext* context,
                                const grpc::ByteBuffer* request,
                                grpc::ByteBuffer* response) override;
  grpc::ServerWriteReactor<grpc::ByteBuffer>* StreamRun(grpc::CallbackServerContext* context,
                                                        const grpc::ByteBuffer* request) override;
  grpc::ServerUnaryReactor* Complete(grpc::CallbackServerContext* context,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;
  grpc::ServerWriteReactor<grpc::ByteBuffer>* StreamComplete(
      grpc::CallbackServerContext* context, const grpc::ByteBuffer* request) override;
  grpc::ServerUnaryReactor* GetUsage(grpc::CallbackServerContext* context,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;

 private:
  // The core's view of a call: its deadline, what the caller presented and what its listener
  // (plaintext or TLS) accepts, its trace. Starts observing the call (`method`), and answers the
  // caller's x-request-id (or a new one) in the initial metadata.
  CallContext ContextOf(grpc::CallbackServerContext& context, absl::string_view method,
                        bool server_stream, std::shared_ptr<CallObserver>& observer) const;
  // One unary call: `use_case(call, request, done)` runs the core's use case.
  template <typename Request, typename Response, typename UseCase>
  grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext& context, absl::string_view method,
                                  const grpc::ByteBuffer& request_bytes, grpc::ByteBuffer* response,
                                  UseCase use_case);
  // One server-streaming call: `use_case(call, request, sink)`; each chunk goes out as one
  // `Response`.
  template <typename Request, typename Response, typename UseCase>
  grpc::ServerWriteReactor<grpc::ByteBuffer>* Stream(grpc::CallbackServerContext& context,
                                                     absl::string_view method,
                                                     const grpc::ByteBuffer& request_bytes,
                                                     UseCase use_case);

  CopilotCore& core_;
  const AdapterOptions options_;
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_SERVICE_COPILOT_SERVICE_ADAPTER_H_
