#include "server/transport/http_transport.h"

#include "server/common/errors.h"

namespace copilot::gateway {

absl::Status TransportShutdownStatus(bool request_sent) {
  return MakeError(absl::StatusCode::kCancelled, "the upstream transport is shutting down",
                   "transport_shutdown", {{"request_sent", request_sent ? "true" : "false"}});
}

absl::Status TransferCancelledStatus(bool request_sent) {
  return MakeError(absl::StatusCode::kCancelled, "the upstream call was cancelled",
                   "upstream_call_cancelled", {{"request_sent", request_sent ? "true" : "false"}});
}

}  // namespace copilot::gateway
