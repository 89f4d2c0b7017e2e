// A credential-less client that makes the gateway's gRPC transport buffer request bodies: over
// HTTP/2 (prior knowledge, as gRPC), `streams` calls, each on a connection of its own, declare
// one message of `message_bytes` and send all of it but the last byte, as fast as the server's
// flow control lets them, then hold the stream open. Only gRPC's memory quota stands
// between this and the process's memory (the service never sees a message).
#ifndef COPILOT_GATEWAY_TESTS_SERVER_INTEGRATION_SLOW_GRPC_BODIES_H_
#define COPILOT_GATEWAY_TESTS_SERVER_INTEGRATION_SLOW_GRPC_BODIES_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/time/time.h"

namespace copilot::gateway::testing {

struct SlowGrpcBodiesOptions {
  int port = 0;
  int streams = 400;
  std::size_t message_bytes = 4 * 1024 * 1024 - 64;
  absl::Duration hold = absl::Seconds(8);
};

struct SlowGrpcBodiesResult {
  int64_t bytes_sent = 0;  // Request body bytes the server let through.
  int streams_ended = 0;   // Streams the server ended (reset or answered) before the hold ran out.
  int connections_used = 0;  // Connections the streams went over.
};

// Runs for options.hold, then closes every stream.
SlowGrpcBodiesResult RunSlowGrpcBodies(const SlowGrpcBodiesOptions& options);

}  // namespace copilot::gateway::testing

#endif  // COPILOT_GATEWAY_TESTS_SERVER_INTEGRATION_SLOW_GRPC_BODIES_H_
