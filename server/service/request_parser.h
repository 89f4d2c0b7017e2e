// Request messages read from the wire by the service itself (the raw callback methods of
// CopilotServiceAdapter), so that a request gRPC could not deserialize still gets a clear
// status, a call log line and its metrics: invalid UTF-8 in a string field (proto3 refuses it)
// is INVALID_ARGUMENT naming the field, any other undecodable message INVALID_ARGUMENT on
// "request". gRPC's own deserialization would answer an empty-message error and log nothing.
#ifndef COPILOT_GATEWAY_SERVER_SERVICE_REQUEST_PARSER_H_
#define COPILOT_GATEWAY_SERVER_SERVICE_REQUEST_PARSER_H_

#include <grpcpp/support/byte_buffer.h>

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"

namespace copilot::gateway {

// The path of the first string field of `bytes`, read as a `type` message, whose value is not
// valid UTF-8 ("message.content", "messages[2].tool_calls[0].id"); empty when there is none or
// the bytes are not a well-formed message. Nesting deeper than protobuf's recursion limit is
// not searched.
std::string InvalidUtf8FieldPath(const google::protobuf::Descriptor& type, absl::string_view bytes);

// Parses `buffer` into `message`: OK, or INVALID_ARGUMENT (reason INVALID_REQUEST) with a
// BadRequest naming the field. Never logs.
absl::Status ParseRequest(const grpc::ByteBuffer& buffer, google::protobuf::Message& message);

// `message` serialized into `buffer`: OK, or INTERNAL when it cannot be.
absl::Status SerializeResponse(const google::protobuf::Message& message, grpc::ByteBuffer& buffer);

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_SERVICE_REQUEST_PARSER_H_
