// The one absl::Status -> grpc::Status conversion, for every gRPC service the gateway serves
// (copilot.v1 in server/service/, grpc.health.v1 in server/ops/).
#ifndef COPILOT_GATEWAY_SERVER_COMMON_GRPC_STATUS_H_
#define COPILOT_GATEWAY_SERVER_COMMON_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace copilot::gateway {

// Code and message carry over; the google.rpc details (server/common/errors.h) travel as the
// serialized google.rpc.Status that gRPC sends in `grpc-status-details-bin`. An error without an
// ErrorInfo gets one whose reason is the code's name (e.g. "DEADLINE_EXCEEDED"), so every error
// a caller sees has one. Stateless and thread-safe.
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_COMMON_GRPC_STATUS_H_
