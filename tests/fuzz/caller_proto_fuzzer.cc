// A caller's request message: bytes read as each copilot.v1 request type the way the service
// reads them (server/service/request_parser.h: a message protobuf refuses is INVALID_ARGUMENT
// naming the field holding invalid UTF-8, or "request"), then the validation the core runs
// before any upstream call (server/core/validation.h), then the JSON body the gateway would
// send upstream for it (server/upstream/json_mapping.h).
//
// Properties: validation answers OK or INVALID_ARGUMENT "INVALID_REQUEST" with at least one
// field violation, within errors.h's bounds; every upstream request body built from a parsed
// request (tools and messages included) is valid JSON.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "copilot/v1/copilot_service.pb.h"
#include "nlohmann/json.hpp"
#include "server/common/log.h"
#include "server/core/validation.h"
#include "server/service/request_parser.h"
#include "server/upstream/json_mapping.h"
#include "tests/fuzz/fuzz_support.h"

namespace copilot::gateway {
namespace {

namespace v1 = copilot::v1;

void CheckValidation(const absl::Status& status) {
  if (status.ok()) return;
  FUZZ_CHECK(status.code() == absl::StatusCode::kInvalidArgument, status.ToString());
  FUZZ_CHECK(fuzz::Reason(status) == kInvalidRequestReason, status.ToString());
  auto bad = GetBadRequest(status);
  FUZZ_CHECK(bad.has_value() && bad->field_violations_size() > 0, "no field violation");
  fuzz::CheckErrorIsBounded(status, "validation");
}

void CheckBody(const std::string& body) {
  FUZZ_CHECK(nlohmann::json::accept(body), "an upstream request body that is not JSON");
}

template <typename Request>
bool Parse(const uint8_t* data, size_t size, Request& request) {
  grpc::Slice slice(data, size);
  grpc::ByteBuffer buffer(&slice, 1);
  const absl::Status status = ParseRequest(buffer, request);
  Request direct;
  const bool parses = direct.ParseFromArray(data, static_cast<int>(size));
  FUZZ_CHECK(status.ok() == parses, "ParseRequest and protobuf disagree: " + status.ToString());
  if (!status.ok()) CheckValidation(status);  // The same shape as a validation failure.
  return status.ok();
}

std::vector<google::protobuf::Struct> Tools(
    const google::protobuf::RepeatedPtrField<google::protobuf::Struct>& tools) {
  return {tools.begin(), tools.end()};
}

template <typename Request>
void CheckCompletion(const Request& request) {
  CompletionParams params;
  params.assistant_id = request.assistant_id();
  params.messages.assign(request.messages().begin(), request.messages().end());
  params.user_id = request.user_id();
  params.thread_id = request.thread_id();
  params.tools = Tools(request.tools());
  CheckBody(CompletionBody(params, "licence"));
}

void Run(int which, const uint8_t* data, size_t size) {
  // libprotobuf's complaint about invalid UTF-8 goes to the (debug) JSON log, as in the server.
  static const bool routed = (RouteProtobufLogs(), true);
  (void)routed;
  const ValidationLimits limits;
  switch (which) {
    case 0: {
      v1::ListAssistantsRequest request;
      if (Parse(data, size, request)) CheckValidation(ValidateListAssistants(request));
      break;
    }
    case 1: {
      v1::CreateThreadRequest request;
      if (!Parse(data, size, request)) break;
      CheckValidation(ValidateCreateThread(request, limits));
      CheckBody(CreateThreadBody({request.assistant_id(), request.user_id(), request.title()}));
      break;
    }
    case 2: {
      v1::GetThreadRequest request;
      if (Parse(data, size, request)) CheckValidation(ValidateGetThread(request));
      break;
    }
    case 3: {
      v1::DeleteThreadRequest request;
      if (Parse(data, size, request)) CheckValidation(ValidateDeleteThread(request));
      break;
    }
    case 4: {
      v1::AddMessageRequest request;
      if (!Parse(data, size, request)) break;
      CheckValidation(ValidateAddMessage(request, limits));
      CheckBody(CreateMessageBody(request.message()));
      break;
    }
    case 5: {
      v1::ListMessagesRequest request;
      if (Parse(data, size, request)) CheckValidation(ValidateListMessages(request, limits));
      break;
    }
    case 6: {
      v1::RunRequest request;
      if (!Parse(data, size, request)) break;
      CheckValidation(ValidateRun(request, limits));
      CheckBody(RunBody({request.thread_id(), Tools(request.tools())}, "licence"));
      break;
    }
    case 7: {
      v1::StreamRunRequest request;
      if (!Parse(data, size, request)) break;
      CheckValidation(ValidateStreamRun(request, limits));
      CheckBody(RunBody({request.thread_id(), Tools(request.tools())}, ""));
      break;
    }
    case 8: {
      v1::CompleteRequest request;
      if (!Parse(data, size, request)) break;
      CheckValidation(ValidateComplete(request, limits));
      CheckCompletion(request);
      break;
    }
    default: {
      v1::StreamCompleteRequest request;
      if (!Parse(data, size, request)) break;
      CheckValidation(ValidateStreamComplete(request, limits));
      CheckCompletion(request);
      break;
    }
  }
}

}  // namespace
}  // namespace copilot::gateway

// The first byte picks the request type; the rest is its wire form.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  copilot::gateway::Run(data[0] % 10, data + 1, size - 1);
  return 0;
}
