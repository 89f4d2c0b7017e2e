#include "server/common/grpc_status.h"

#include <string>

#include "server/common/errors.h"

namespace copilot::gateway {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  absl::Status with_info = status;
  if (!GetErrorInfo(status).has_value()) {
    absl::Status info =
        MakeError(status.code(), status.message(), absl::StatusCodeToString(status.code()));
    with_info.SetPayload("type.googleapis.com/google.rpc.ErrorInfo",
                         *info.GetPayload("type.googleapis.com/google.rpc.ErrorInfo"));
  }
  google::rpc::Status rpc = ToRpcStatus(with_info);  // Bounded in size (errors.h).
  return {static_cast<grpc::StatusCode>(status.code()), rpc.message(), rpc.SerializeAsString()};
}

}  // namespace copilot::gateway
