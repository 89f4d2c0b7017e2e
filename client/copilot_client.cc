#include "client/copilot_client.h"

#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "client/error_details.h"
#include "client/read_file.h"
#include "grpc/support/time.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"

namespace copilot::client {
namespace {

constexpr char kUserAgent[] = "copilot-cpp-client/0.1";

// The contents of the PEM file at `path`; `what` names it in errors.
absl::StatusOr<std::string> ReadPemFile(const std::string& path, absl::string_view what) {
  absl::StatusOr<std::string> contents = ReadWholeFile(path);
  if (!contents.ok()) {
    return absl::NotFoundError(
        absl::StrCat("cannot read ", what, " ", path, ": ", contents.status().message()));
  }
  if (!absl::StrContains(*contents, "-----BEGIN ")) {
    return absl::InvalidArgumentError(absl::StrCat(what, " ", path, " holds no PEM data"));
  }
  return contents;
}

// gRPC channel credentials for `options`: TLS (with the files read) or
// plaintext.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeCredentials(
    const ClientOptions& options) {
  if (!options.UsesTls()) return grpc::InsecureChannelCredentials();
  if (options.tls_cert_chain_path.empty() != options.tls_private_key_path.empty()) {
    return absl::InvalidArgumentError(
        "ClientOptions.tls_cert_chain_path and ClientOptions.tls_private_key_path go together: "
        "set both or neither");
  }
  grpc::SslCredentialsOptions ssl;
  if (!options.tls_root_certs_path.empty()) {
    absl::StatusOr<std::string> roots =
        ReadPemFile(options.tls_root_certs_path, "TLS root certificates");
    if (!roots.ok()) return roots.status();
    ssl.pem_root_certs = *std::move(roots);
  }
  if (!options.tls_cert_chain_path.empty()) {
    absl::StatusOr<std::string> chain =
        ReadPemFile(options.tls_cert_chain_path, "TLS client certificate");
    if (!chain.ok()) return chain.status();
    absl::StatusOr<std::string> key =
        ReadPemFile(options.tls_private_key_path, "TLS client private key");
    if (!key.ok()) return key.status();
    ssl.pem_cert_chain = *std::move(chain);
    ssl.pem_private_key = *std::move(key);
  }
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::SslCredentials(ssl);
  if (credentials == nullptr) return absl::InternalError("gRPC refused the TLS credentials");
  return credentials;
}

}  // namespace

absl::Status CheckBearerToken(absl::string_view token) {
  for (size_t i = 0; i < token.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(token[i]);
    if (c < 0x21 || c > 0x7e) {
      // Names the position, never the token or the byte: errors get printed.
      return absl::InvalidArgumentError(
          absl::StrCat("token may hold only printable ASCII without spaces; byte ", i + 1, " of ",
                       token.size(), " is not"));
    }
  }
  return absl::OkStatus();
}

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

absl::StatusOr<v1::GetUsageResponse> CopilotClient::GetUsage(const v1::GetUsageRequest& request,
                                                             const CallOptions& call) const {
  return Unary<v1::GetUsageResponse>(
      request, call,
      [](auto& stub, auto* ctx, auto& req, auto* resp) { return stub.GetUsage(ctx, req, resp); });
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
  if (absl::Status token = CheckBearerToken(options.token); !token.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("ClientOptions.", token.message()));
  }
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials = MakeCredentials(options);
  if (!credentials.ok()) return credentials.status();
  grpc::ChannelArguments args;
  args.SetUserAgentPrefix(kUserAgent);
  if (!options.tls_server_name.empty()) args.SetSslTargetNameOverride(options.tls_server_name);
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(options.target, *credentials, args);
  return CopilotClient(v1::CopilotService::NewStub(channel), options);
}

}  // namespace copilot::client
