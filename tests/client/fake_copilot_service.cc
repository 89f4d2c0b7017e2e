#include "tests/client/fake_copilot_service.h"

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpcpp/security/auth_context.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"

namespace copilot::client::testing {
namespace {

// Deadlines further away than this count as "no deadline" (gRPC reports an
// infinite deadline as the far future).
constexpr absl::Duration kNoDeadline = absl::Hours(24 * 365);
// How often a held call checks whether it was cancelled.
constexpr absl::Duration kHoldPoll = absl::Milliseconds(5);

}  // namespace

std::string RecordedCall::Metadata(const std::string& key) const {
  auto it = metadata.find(key);
  return it == metadata.end() ? "" : it->second;
}

std::vector<std::string> RecordedCall::AuthProperty(const std::string& name) const {
  std::vector<std::string> values;
  auto [begin, end] = auth_properties.equal_range(name);
  for (auto it = begin; it != end; ++it) values.push_back(it->second);
  return values;
}

std::unique_ptr<FakeCopilotService> FakeCopilotService::Start(
    std::shared_ptr<grpc::ServerCredentials> credentials) {
  std::unique_ptr<FakeCopilotService> fake(new FakeCopilotService());
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0",
                           credentials != nullptr ? credentials : grpc::InsecureServerCredentials(),
                           &port);
  builder.RegisterService(fake.get());
  fake->server_ = builder.BuildAndStart();
  if (fake->server_ == nullptr || port == 0) {
    std::cerr << "FakeCopilotService: cannot start a gRPC server on 127.0.0.1\n";
    std::abort();
  }
  fake->target_ = absl::StrCat("127.0.0.1:", port);
  return fake;
}

FakeCopilotService::~FakeCopilotService() {
  // Cancels calls still held after a short grace period.
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(200));
  server_->Wait();
}

void FakeCopilotService::SetResponse(const std::string& method,
                                     const google::protobuf::Message& response) {
  std::shared_ptr<google::protobuf::Message> copy(response.New());
  copy->CopyFrom(response);
  absl::MutexLock lock(&mu_);
  Script& script = scripts_[method];
  script.status = grpc::Status::OK;
  script.response = std::move(copy);
  script.scripted = true;
}

void FakeCopilotService::SetError(const std::string& method, grpc::Status status) {
  absl::MutexLock lock(&mu_);
  Script& script = scripts_[method];
  script.status = std::move(status);
  script.response = nullptr;
  script.chunks.clear();
  script.scripted = true;
}

void FakeCopilotService::SetStream(const std::string& method, std::vector<v1::MessageChunk> chunks,
                                   grpc::Status end, BeforeChunkHook before_chunk) {
  absl::MutexLock lock(&mu_);
  Script& script = scripts_[method];
  script.chunks = std::move(chunks);
  script.status = std::move(end);
  script.before_chunk = std::move(before_chunk);
  script.scripted = true;
}

void FakeCopilotService::SetHold(const std::string& method, absl::Duration hold) {
  absl::MutexLock lock(&mu_);
  scripts_[method].hold = hold;
}

std::vector<RecordedCall> FakeCopilotService::calls() const {
  absl::MutexLock lock(&mu_);
  return calls_;
}

std::vector<RecordedCall> FakeCopilotService::CallsTo(const std::string& method) const {
  absl::MutexLock lock(&mu_);
  std::vector<RecordedCall> out;
  for (const RecordedCall& call : calls_) {
    if (call.method == method) out.push_back(call);
  }
  return out;
}

FakeCopilotService::Script FakeCopilotService::Begin(const std::string& method,
                                                     grpc::ServerContext* context,
                                                     const google::protobuf::Message& request) {
  RecordedCall call;
  call.method = method;
  call.request.PackFrom(request);
  for (const auto& [key, value] : context->client_metadata()) {
    call.metadata.emplace(std::string(key.data(), key.size()),
                          std::string(value.data(), value.size()));
  }
  if (std::shared_ptr<const grpc::AuthContext> auth = context->auth_context(); auth != nullptr) {
    for (const grpc::AuthProperty& property : *auth) {
      call.auth_properties.emplace(std::string(property.first.data(), property.first.size()),
                                   std::string(property.second.data(), property.second.size()));
    }
  }
  const absl::Duration time_left =
      absl::FromChrono(context->deadline()) - absl::FromChrono(std::chrono::system_clock::now());
  if (time_left < kNoDeadline) call.time_left = time_left;

  Script script;
  {
    absl::MutexLock lock(&mu_);
    calls_.push_back(std::move(call));
    if (auto it = scripts_.find(method); it != scripts_.end()) script = it->second;
  }
  const absl::Time until = absl::Now() + script.hold;
  while (absl::Now() < until && !context->IsCancelled()) absl::SleepFor(kHoldPoll);
  return script;
}

grpc::Status FakeCopilotService::Unary(const std::string& method, grpc::ServerContext* context,
                                       const google::protobuf::Message& request,
                                       google::protobuf::Message* response) {
  Script script = Begin(method, context, request);
  if (!script.scripted) {
    return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, absl::StrCat("not scripted: ", method));
  }
  if (!script.status.ok()) return script.status;
  if (script.response == nullptr || script.response->GetDescriptor() != response->GetDescriptor()) {
    return grpc::Status(grpc::StatusCode::INTERNAL,
                        absl::StrCat("fake scripted a wrong response type for ", method));
  }
  response->CopyFrom(*script.response);
  return grpc::Status::OK;
}

template <typename Response>
grpc::Status FakeCopilotService::Stream(const std::string& method, grpc::ServerContext* context,
                                        const google::protobuf::Message& request,
                                        grpc::ServerWriter<Response>* writer) {
  Script script = Begin(method, context, request);
  if (!script.scripted) {
    return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, absl::StrCat("not scripted: ", method));
  }
  for (size_t i = 0; i < script.chunks.size(); ++i) {
    if (script.before_chunk) script.before_chunk(static_cast<int>(i));
    Response response;
    *response.mutable_chunk() = script.chunks[i];
    if (!writer->Write(response)) return grpc::Status(grpc::StatusCode::CANCELLED, "write failed");
  }
  return script.status;
}

grpc::Status FakeCopilotService::ListAssistants(grpc::ServerContext* context,
                                                const v1::ListAssistantsRequest* request,
                                                v1::ListAssistantsResponse* response) {
  return Unary("ListAssistants", context, *request, response);
}

grpc::Status FakeCopilotService::GetUsage(grpc::ServerContext* context,
                                          const v1::GetUsageRequest* request,
                                          v1::GetUsageResponse* response) {
  return Unary("GetUsage", context, *request, response);
}

grpc::Status FakeCopilotService::CreateThread(grpc::ServerContext* context,
                                              const v1::CreateThreadRequest* request,
                                              v1::CreateThreadResponse* response) {
  return Unary("CreateThread", context, *request, response);
}

grpc::Status FakeCopilotService::GetThread(grpc::ServerContext* context,
                                           const v1::GetThreadRequest* request,
                                           v1::GetThreadResponse* response) {
  return Unary("GetThread", context, *request, response);
}

grpc::Status FakeCopilotService::DeleteThread(grpc::ServerContext* context,
                                              const v1::DeleteThreadRequest* request,
                                              v1::DeleteThreadResponse* response) {
  return Unary("DeleteThread", context, *request, response);
}

grpc::Status FakeCopilotService::AddMessage(grpc::ServerContext* context,
                                            const v1::AddMessageRequest* request,
                                            v1::AddMessageResponse* response) {
  return Unary("AddMessage", context, *request, response);
}

grpc::Status FakeCopilotService::ListMessages(grpc::ServerContext* context,
                                              const v1::ListMessagesRequest* request,
                                              v1::ListMessagesResponse* response) {
  return Unary("ListMessages", context, *request, response);
}

grpc::Status FakeCopilotService::Run(grpc::ServerContext* context, const v1::RunRequest* request,
                                     v1::RunResponse* response) {
  return Unary("Run", context, *request, response);
}

grpc::Status FakeCopilotService::StreamRun(grpc::ServerContext* context,
                                           const v1::StreamRunRequest* request,
                                           grpc::ServerWriter<v1::StreamRunResponse>* writer) {
  return Stream("StreamRun", context, *request, writer);
}

grpc::Status FakeCopilotService::Complete(grpc::ServerContext* context,
                                          const v1::CompleteRequest* request,
                                          v1::CompleteResponse* response) {
  return Unary("Complete", context, *request, response);
}

grpc::Status FakeCopilotService::StreamComplete(
    grpc::ServerContext* context, const v1::StreamCompleteRequest* request,
    grpc::ServerWriter<v1::StreamCompleteResponse>* writer) {
  return Stream("StreamComplete", context, *request, writer);
}

std::string DeadTarget() { return FakeCopilotService::Start()->target(); }

}  // namespace copilot::client::testing
