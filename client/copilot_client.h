// A C++ client of copilot.v1.CopilotService.
//
// The layering is google-cloud-cpp's, cut down to what a thin client needs:
// CopilotClient (one method per RPC, absl::StatusOr results) -> the generated
// stub's interface (CopilotService::StubInterface, which tests may replace).
// There is no retry loop: the gateway is not idempotent unless a request
// carries `request_id`, and callers decide whether to retry from the error's
// RetryInfo (GetErrorDetails(status).retry_delay). Every call carries a
// deadline and the caller's bearer token; every failed call's grpc::Status
// goes through FromGrpcStatus() (client/error_details.h), the library's one
// conversion.
#ifndef COPILOT_CLIENT_COPILOT_CLIENT_H_
#define COPILOT_CLIENT_COPILOT_CLIENT_H_

#include <memory>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/client_options.h"
#include "copilot/v1/copilot_service.grpc.pb.h"
#include "grpcpp/client_context.h"

namespace copilot::client {

// Calls CopilotService over one gRPC channel.
//
// Thread-safe: the stub and the options are shared read-only, each call uses
// its own grpc::ClientContext, so one client (or copies of it, which share the
// channel) may be used from many threads at once. Streaming methods block the
// calling thread until the stream ends and run `on_chunk` on that thread.
class CopilotClient {
 public:
  // Uses `stub` for every call (tests may pass a fake). `target` and the TLS
  // fields of `options` are ignored here since the stub has its channel; a
  // non-positive `options.timeout` makes calls fail with INVALID_ARGUMENT
  // (MakeCopilotClient rejects it up front).
  CopilotClient(std::shared_ptr<v1::CopilotService::StubInterface> stub, ClientOptions options);

  absl::StatusOr<v1::ListAssistantsResponse> ListAssistants(
      const v1::ListAssistantsRequest& request, const CallOptions& call = {}) const;
  absl::StatusOr<v1::CreateThreadResponse> CreateThread(const v1::CreateThreadRequest& request,
                                                        const CallOptions& call = {}) const;
  absl::StatusOr<v1::GetThreadResponse> GetThread(const v1::GetThreadRequest& request,
                                                  const CallOptions& call = {}) const;
  absl::StatusOr<v1::DeleteThreadResponse> DeleteThread(const v1::DeleteThreadRequest& request,
                                                        const CallOptions& call = {}) const;
  absl::StatusOr<v1::AddMessageResponse> AddMessage(const v1::AddMessageRequest& request,
                                                    const CallOptions& call = {}) const;
  absl::StatusOr<v1::ListMessagesResponse> ListMessages(const v1::ListMessagesRequest& request,
                                                        const CallOptions& call = {}) const;
  absl::StatusOr<v1::RunResponse> Run(const v1::RunRequest& request,
                                      const CallOptions& call = {}) const;
  absl::StatusOr<v1::CompleteResponse> Complete(const v1::CompleteRequest& request,
                                                const CallOptions& call = {}) const;
  absl::StatusOr<v1::GetUsageResponse> GetUsage(const v1::GetUsageRequest& request,
                                                const CallOptions& call = {}) const;

  // Streams the answer: `on_chunk` runs once per chunk, in order, as soon as
  // it arrives. Returns OK after the last chunk, or the error that ended the
  // stream (chunks delivered before it stay delivered). The deadline covers
  // the whole stream.
  absl::Status StreamRun(const v1::StreamRunRequest& request,
                         absl::FunctionRef<void(const v1::MessageChunk&)> on_chunk,
                         const CallOptions& call = {}) const;
  absl::Status StreamComplete(const v1::StreamCompleteRequest& request,
                              absl::FunctionRef<void(const v1::MessageChunk&)> on_chunk,
                              const CallOptions& call = {}) const;

 private:
  // Sets the call's deadline and authorization metadata; INVALID_ARGUMENT
  // when the per-call timeout is not positive.
  absl::Status Prepare(grpc::ClientContext& context, const CallOptions& call) const;

  template <typename Response, typename Request, typename Invoke>
  absl::StatusOr<Response> Unary(const Request& request, const CallOptions& call,
                                 Invoke invoke) const;

  std::shared_ptr<v1::CopilotService::StubInterface> stub_;
  ClientOptions options_;
};

// Opens a channel to `options.target` and returns a client on it: TLS when
// options.UsesTls() (the PEM files are read here, once), else plaintext.
// Fails with INVALID_ARGUMENT naming the field when the options are invalid
// (a bad token, half a client key pair, a file holding no PEM data), and with
// NOT_FOUND naming the file when a TLS file cannot be read. Does not connect:
// an unreachable target, or a TLS handshake that fails, shows up as
// UNAVAILABLE on the first call.
absl::StatusOr<CopilotClient> MakeCopilotClient(const ClientOptions& options);

// OK when `token` can travel as `authorization: Bearer <token>`: printable
// ASCII without spaces (empty is fine: no token). The error starts with
// "token" and names the offending byte's position, never the token itself.
absl::Status CheckBearerToken(absl::string_view token);

}  // namespace copilot::client

#endif  // COPILOT_CLIENT_COPILOT_CLIENT_H_
