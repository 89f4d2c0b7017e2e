#include "client/copilot_client.h"

#include <fstream>
#include <sstream>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/error_details.h"
#include "grpc/support/time.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"

namespace copilot::client {
namespace {

constexpr char kUserAgent[] = "copilot-cpp-client/0.1";

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read TLS root certificates ", path));
  std::ostringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

}  // namespace

CopilotClient::CopilotClient(std::shared_ptr<v1::CopilotService::StubInterface> stub,
                             ClientOptions options)
    : stub_(std::move(stub)), options_(std::move(options)) {}

absl::Status CopilotClient::Prepare(grpc::ClientContext& context, const CallOptions& call) const {
  const absl::Duration timeout = call.timeout.value_or(options_.timeout);
  if (timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat(call.timeout.has_value() ? "CallOptions" : "ClientOptions",
                     ".timeout must be positive, got ", absl::FormatDuration(timeout)));
  }
  // A deadline relative to the monotonic clock: wall-clock jumps do not
  // stretch or cut it.
  context.set_deadline(
      gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                   gpr_time_from_micros(absl::ToInt64Microseconds(timeout), GPR_TIMESPAN)));
  if (!options_.token.empty()) {
    context.AddMetadata("authorization", absl::StrCat("Bearer ", options_.token));
  }
  return absl::OkStatus();
}

template <typename Response, typename Request, typename Invoke>
absl::StatusOr<Response> CopilotClient::Unary(const Request& request, const CallOptions& call,
                                              Invoke invoke) const {
  grpc::ClientContext context;
  if (absl::Status prepared = Prepare(context, call); !prepared.ok()) return prepared;
  Response response;
  grpc::Status status = invoke(*stub_, &context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response;
}

absl::StatusOr<v1::ListAssistantsResponse> CopilotClient::ListAssistants(
    const v1::ListAssistantsRequest& request, const CallOptions& call) const {
  return Unary<v1::ListAssistantsResponse>(request, call,
                                           [](auto& stub, auto* ctx, auto& req, auto* resp) {
                                             return stub.ListAssistants(ctx, req, resp);
                                           });
}

absl::StatusOr<v1::CreateThreadResponse> CopilotClient::CreateThread(
    const v1::CreateThreadRequest& request, const CallOptions& call) const {
  return Unary<v1::CreateThreadResponse>(request, call,
                                         [](auto& stub, auto* ctx, auto& req, auto* resp) {
                                           return stub.CreateThread(ctx, req, resp);
                                         });
}

absl::StatusOr<v1::GetThreadResponse> CopilotClient::GetThread(const v1::GetThreadRequest& request,
                                                               const CallOptions& call) const {
  return Unary<v1::GetThreadResponse>(
      request, call,
      [](auto& stub, auto* ctx, auto& req, auto* resp) { return stub.GetThread(ctx, req, resp); });
}

absl::StatusOr<v1::DeleteThreadResponse> CopilotClient::DeleteThread(
    const v1::DeleteThreadRequest& request, const CallOptions& call) const {
  return Unary<v1::DeleteThreadResponse>(request, call,
                                         [](auto& stub, auto* ctx, auto& req, auto* resp) {
                                           return stub.DeleteThread(ctx, req, resp);
                                         });
}

absl::StatusOr<v1::AddMessageResponse> CopilotClient::AddMessage(
    const v1::AddMessageRequest& request, const CallOptions& call) const {
  return Unary<v1::AddMessageResponse>(
      request, call,
      [](auto& stub, auto* ctx, auto& req, auto* resp) { return stub.AddMessage(ctx, req, resp); });
}

absl::StatusOr<v1::ListMessagesResponse> CopilotClient::ListMessages(
    const v1::ListMessagesRequest& request, const CallOptions& call) const {
  return Unary<v1::ListMessagesResponse>(request, call,
                                         [](auto& stub, auto* ctx, auto& req, auto* resp) {
                                           return stub.ListMessages(ctx, req, resp);
                                         });
}

absl::StatusOr<v1::RunResponse> CopilotClient::Run(const v1::RunRequest& request,
                                                   const CallOptions& call) const {
  return Unary<v1::RunResponse>(request, call, [](auto& stub, auto* ctx, auto& req, auto* resp) {
    return stub.Run(ctx, req, resp);
  });
}

absl::StatusOr<v1::CompleteResponse> CopilotClient::Complete(const v1::CompleteRequest& request,
                                                             const CallOptions& call) const {
  return Unary<v1::CompleteResponse>(
      request, call,
      [](auto& stub, auto* ctx, auto& req, auto* resp) { return stub.Complete(ctx, req, resp); });
}

absl::Status CopilotClient::StreamRun(const v1::StreamRunRequest& request,
                                      absl::FunctionRef<void(const v1::MessageChunk&)> on_chunk,
                                      const CallOptions& call) const {
  grpc::ClientContext context;
  if (absl::Status prepared = Prepare(context, call); !prepared.ok()) return prepared;
  std::unique_ptr<grpc::ClientReaderInterface<v1::StreamRunResponse>> reader =
      stub_->StreamRun(&context, request);
  v1::StreamRunResponse response;
  while (reader->Read(&response)) on_chunk(response.chunk());
  return FromGrpcStatus(reader->Finish());
}

absl::Status CopilotClient::StreamComplete(
    const v1::StreamCompleteRequest& request,
    absl::FunctionRef<void(const v1::MessageChunk&)> on_chunk, const CallOptions& call) const {
  grpc::ClientContext context;
  if (absl::Status prepared = Prepare(context, call); !prepared.ok()) return prepared;
  std::unique_ptr<grpc::ClientReaderInterface<v1::StreamCompleteResponse>> reader =
      stub_->StreamComplete(&context, request);
  v1::StreamCompleteResponse response;
  while (reader->Read(&response)) on_chunk(response.chunk());
  return FromGrpcStatus(reader->Finish());
}

absl::StatusOr<CopilotClient> MakeCopilotClient(const ClientOptions& options) {
  if (options.target.empty()) {
    return absl::InvalidArgumentError("ClientOptions.target must not be empty");
  }
  if (options.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat("ClientOptions.timeout must be positive, got ",
                                                   absl::FormatDuration(options.timeout)));
  }
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (options.use_tls || !options.tls_root_certs_path.empty()) {
    grpc::SslCredentialsOptions ssl;
    if (!options.tls_root_certs_path.empty()) {
      absl::StatusOr<std::string> roots = ReadFile(options.tls_root_certs_path);
      if (!roots.ok()) return roots.status();
      ssl.pem_root_certs = *std::move(roots);
    }
    credentials = grpc::SslCredentials(ssl);
  } else {
    credentials = grpc::InsecureChannelCredentials();
  }
  grpc::ChannelArguments args;
  args.SetUserAgentPrefix(kUserAgent);
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(options.target, credentials, args);
  return CopilotClient(v1::CopilotService::NewStub(channel), options);
}

}  // namespace copilot::client
