// A test double of copilot.v1.CopilotService: a real gRPC server on
// 127.0.0.1 (port 0) that records every call and answers from a script.
//
//   auto fake = FakeCopilotService::Start();
//   fake->SetResponse("GetThread", response);
//   fake->SetError("DeleteThread", MakeStatus(grpc::StatusCode::NOT_FOUND, "Thread not found",
//                                             error_info));
//   ... point a client at fake->target() ...
//   EXPECT_EQ(fake->CallsTo("GetThread")[0].RequestAs<v1::GetThreadRequest>().thread_id(), "t1");
//
// A method without a script fails with UNIMPLEMENTED "not scripted: <method>".
#ifndef COPILOT_TESTS_CLIENT_FAKE_COPILOT_SERVICE_H_
#define COPILOT_TESTS_CLIENT_FAKE_COPILOT_SERVICE_H_

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "copilot/v1/copilot_service.grpc.pb.h"
#include "google/protobuf/any.pb.h"
#include "google/rpc/status.pb.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"

namespace copilot::client::testing {

// One call as the fake received it. Plain data.
struct RecordedCall {
  // The RPC's name, e.g. "CreateThread".
  std::string method;
  google::protobuf::Any request;
  std::multimap<std::string, std::string> metadata;
  // How long the call had left until its deadline when it arrived; nullopt
  // when it came without a deadline.
  std::optional<absl::Duration> time_left;
  // The channel's auth context as the server saw it (GRPC_*_PROPERTY_NAME):
  // over TLS "transport_security_type" is "ssl", and with a verified client
  // certificate "x509_subject_alternative_name" holds each SAN and
  // "peer_spiffe_id" the SPIFFE ID (a single spiffe:// URI SAN).
  std::multimap<std::string, std::string> auth_properties;

  // The request, unpacked (default-constructed if it is of another type).
  template <typename Request>
  Request RequestAs() const {
    Request r;
    request.UnpackTo(&r);
    return r;
  }
  // The value of metadata `key`, or "" when absent.
  std::string Metadata(const std::string& key) const;
  // Every value of auth property `name`, in the order gRPC listed them.
  std::vector<std::string> AuthProperty(const std::string& name) const;
};

// Called on the server's thread before the fake writes stream chunk `index`.
using BeforeChunkHook = std::function<void(int index)>;

// Thread-safe: scripts and records are guarded by a mutex; the gRPC server
// runs the handlers on its own threads.
class FakeCopilotService final : public v1::CopilotService::Service {
 public:
  // Serves on 127.0.0.1 on a free port, with `credentials` (plaintext when
  // null; tests/client/test_certs.h makes TLS ones). Crashes the test on
  // failure: a test double that cannot start is a broken test, not a case to
  // handle.
  static std::unique_ptr<FakeCopilotService> Start(
      std::shared_ptr<grpc::ServerCredentials> credentials = nullptr);
  ~FakeCopilotService() override;

  // "127.0.0.1:<port>".
  std::string target() const { return target_; }

  // Answers every later call of the unary `method` with `response`.
  void SetResponse(const std::string& method, const google::protobuf::Message& response);
  // Fails every later call of `method` (unary or streaming) with `status`.
  void SetError(const std::string& method, grpc::Status status);
  // Answers every later call of the streaming `method` with `chunks`, then
  // ends the stream with `end`.
  void SetStream(const std::string& method, std::vector<v1::MessageChunk> chunks,
                 grpc::Status end = grpc::Status::OK, BeforeChunkHook before_chunk = nullptr);
  // Holds every later call of `method` for `hold` before answering, or until
  // the call is cancelled or its deadline passes, whichever comes first.
  void SetHold(const std::string& method, absl::Duration hold);

  // Every call received so far, in arrival order.
  std::vector<RecordedCall> calls() const;
  // The calls of one method.
  std::vector<RecordedCall> CallsTo(const std::string& method) const;

  grpc::Status ListAssistants(grpc::ServerContext* context,
                              const v1::ListAssistantsRequest* request,
                              v1::ListAssistantsResponse* response) override;
  grpc::Status GetUsage(grpc::ServerContext* context, const v1::GetUsageRequest* request,
                        v1::GetUsageResponse* response) override;
  grpc::Status CreateThread(grpc::ServerContext* context, const v1::CreateThreadRequest* request,
                            v1::CreateThreadResponse* response) override;
  grpc::Status GetThread(grpc::ServerContext* context, const v1::GetThreadRequest* request,
                         v1::GetThreadResponse* response) override;
  grpc::Status DeleteThread(grpc::ServerContext* context, const v1::DeleteThreadRequest* request,
                            v1::DeleteThreadResponse* response) override;
  grpc::Status AddMessage(grpc::ServerContext* context, const v1::AddMessageRequest* request,
                          v1::AddMessageResponse* response) override;
  grpc::Status ListMessages(grpc::ServerContext* context, const v1::ListMessagesRequest* request,
                            v1::ListMessagesResponse* response) override;
  grpc::Status Run(grpc::ServerContext* context, const v1::RunRequest* request,
                   v1::RunResponse* response) override;
  grpc::Status StreamRun(grpc::ServerContext* context, const v1::StreamRunRequest* request,
                         grpc::ServerWriter<v1::StreamRunResponse>* writer) override;
  grpc::Status Complete(grpc::ServerContext* context, const v1::CompleteRequest* request,
                        v1::CompleteResponse* response) override;
  grpc::Status StreamComplete(grpc::ServerContext* context,
                              const v1::StreamCompleteRequest* request,
                              grpc::ServerWriter<v1::StreamCompleteResponse>* writer) override;

 private:
  struct Script {
    grpc::Status status = grpc::Status::OK;
    std::shared_ptr<const google::protobuf::Message> response;
    std::vector<v1::MessageChunk> chunks;
    BeforeChunkHook before_chunk;
    absl::Duration hold = absl::ZeroDuration();
    bool scripted = false;
  };

  FakeCopilotService() = default;

  // Records the call and returns its script, after holding it if scripted to.
  Script Begin(const std::string& method, grpc::ServerContext* context,
               const google::protobuf::Message& request);
  grpc::Status Unary(const std::string& method, grpc::ServerContext* context,
                     const google::protobuf::Message& request, google::protobuf::Message* response);
  template <typename Response>
  grpc::Status Stream(const std::string& method, grpc::ServerContext* context,
                      const google::protobuf::Message& request,
                      grpc::ServerWriter<Response>* writer);

  std::unique_ptr<grpc::Server> server_;
  std::string target_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Script> scripts_ ABSL_GUARDED_BY(mu_);
  std::vector<RecordedCall> calls_ ABSL_GUARDED_BY(mu_);
};

// A gRPC error status carrying `details` (ErrorInfo, RetryInfo, ...) in a
// google.rpc.Status in error_details(), as the gateway sends them.
template <typename... Details>
grpc::Status MakeStatus(grpc::StatusCode code, const std::string& message,
                        const Details&... details) {
  google::rpc::Status rpc;
  rpc.set_code(static_cast<int>(code));
  rpc.set_message(message);
  (rpc.add_details()->PackFrom(details), ...);
  return grpc::Status(code, message, rpc.SerializeAsString());
}

// A target nothing listens on: the address of a fake that was started and
// shut down.
std::string DeadTarget();

}  // namespace copilot::client::testing

#endif  // COPILOT_TESTS_CLIENT_FAKE_COPILOT_SERVICE_H_
