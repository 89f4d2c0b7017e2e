// HaufeClient's buffered calls (every endpoint but the streams) over a fake transport that
// answers with a fuzzed status line, Retry-After and body (in pieces), or fails.
//
// Properties: the callback runs exactly once; a 2xx body either parses or is INTERNAL
// "upstream_bad_response" naming the HTTP status; a non-2xx answer is never OK; every error
// keeps errors.h's bounds; one made from an error body never contains the API key or licence
// the call sent.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/upstream/haufe_client.h"
#include "server/upstream/json_mapping.h"
#include "tests/fuzz/fake_transport.h"
#include "tests/fuzz/fuzz_support.h"

namespace copilot::gateway {
namespace {

constexpr char kApiKey[] = "fuzz-api-key";
constexpr char kLicence[] = "fuzz-licence";

struct Result {
  int calls = 0;
  absl::Status status;
  std::string answer;  // Every string of a successful answer, for the secret check.
};

void Collect(const google::protobuf::Message& message, std::string& out) {
  out += message.SerializeAsString();
}
void Collect(const std::vector<copilot::v1::Assistant>& assistants, std::string& out) {
  for (const auto& assistant : assistants) Collect(assistant, out);
}
void Collect(const MessagePage& page, std::string& out) {
  for (const auto& message : page.messages) Collect(message, out);
  out += page.next_cursor;
}

template <typename T>
UpstreamCallback<T> Record(Result& result) {
  return [&result](absl::StatusOr<T> value) {
    ++result.calls;
    result.status = value.status();
    if (value.ok()) Collect(*value, result.answer);
  };
}

// Starts the call `which` names; its callback fills `result`.
std::shared_ptr<UpstreamCall> StartCall(HaufeClient& client, int which, Result& result) {
  UpstreamCallOptions options;
  options.api_key = kApiKey;
  options.licence = kLicence;
  switch (which) {
    case 0:
      return client.ListAssistants(options, Record<std::vector<copilot::v1::Assistant>>(result));
    case 1:
      return client.GetAssistant(options, "a-1", Record<copilot::v1::Assistant>(result));
    case 2:
      return client.CreateThread(options, {.assistant_id = "a-1"},
                                 Record<copilot::v1::Thread>(result));
    case 3:
      return client.GetThread(options, "t-1", Record<copilot::v1::Thread>(result));
    case 4:
      return client.DeleteThread(options, "t-1", [&result](absl::Status status) {
        ++result.calls;
        result.status = std::move(status);
      });
    case 5:
      return client.AddMessage(options, "t-1", copilot::v1::MessageInput(),
                               Record<copilot::v1::Message>(result));
    case 6:
      return client.ListMessages(options, "t-1", 10, "", Record<MessagePage>(result));
    case 7:
      return client.Run(options, {.thread_id = "t-1"}, Record<copilot::v1::Message>(result));
    default:
      return client.Complete(options, {.assistant_id = "a-1"},
                             Record<copilot::v1::Message>(result));
  }
}

}  // namespace
}  // namespace copilot::gateway

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace gw = copilot::gateway;
  namespace fuzz = copilot::gateway::fuzz;
  FuzzedDataProvider input(data, size);
  auto transport = std::make_shared<fuzz::FakeTransport>();
  gw::HaufeClient client({.base_url = "http://upstream.test/agents"}, transport,
                         [] { return absl::FromUnixSeconds(1700000000); });
  gw::Result result;
  const int which = input.ConsumeIntegralInRange(0, 8);
  std::shared_ptr<gw::UpstreamCall> call = gw::StartCall(client, which, result);
  FUZZ_CHECK(transport->handler != nullptr, "no transfer started");
  gw::HttpTransferHandler& handler = *transport->handler;

  gw::HttpResponseHead head;
  switch (input.ConsumeIntegralInRange(0, 3)) {
    case 0:
      head.status = input.ConsumeIntegralInRange(0, 999);
      break;
    case 1:
      head.status = input.ConsumeIntegralInRange(400, 599);
      break;
    default:
      head.status = which == 2 ? 201 : which == 4 ? 204 : 200;
  }
  if (input.ConsumeBool()) {
    head.headers.emplace_back("retry-after", input.ConsumeRandomLengthString(40));
  }
  handler.OnHeaders(head);
  const int ending = input.ConsumeIntegralInRange(0, 15);
  while (input.remaining_bytes() > 0) {
    const std::size_t length = input.ConsumeIntegralInRange<std::size_t>(0, 256);
    FUZZ_CHECK(handler.OnData(input.ConsumeBytesAsString(length)), "a buffered call paused");
  }
  const bool failed = ending == 0;
  handler.OnComplete(failed ? fuzz::TransportFailure(ending) : absl::OkStatus());
  handler.OnComplete(absl::OkStatus());  // Late events change nothing.
  FUZZ_CHECK(result.calls == 1, "callback ran " + std::to_string(result.calls) + " times");

  const bool success = head.status >= 200 && head.status < 300;
  if (result.status.ok()) {
    FUZZ_CHECK(success && !failed, "OK without a 2xx answer");
    // Answers are redacted too (an upstream may echo meta_data.user_data.licence).
    FUZZ_CHECK(result.answer.find(gw::kApiKey) == std::string::npos, "the API key in an answer");
    FUZZ_CHECK(result.answer.find(gw::kLicence) == std::string::npos, "the licence in an answer");
    return 0;
  }
  fuzz::CheckErrorIsBounded(result.status, "buffered call");
  if (success && !failed) {
    FUZZ_CHECK(result.status.code() == absl::StatusCode::kInternal, "2xx body error code");
    FUZZ_CHECK(fuzz::Reason(result.status) == gw::kBadResponseReason, "2xx body error reason");
    auto info = gw::GetErrorInfo(result.status);
    FUZZ_CHECK(info->metadata().contains("http_status") &&
                   info->metadata().at("http_status") == absl::StrCat(head.status),
               "2xx body error without its http_status");
  }
  // Everything the upstream wrote is redacted (server/common/secrets.h), whatever the status.
  const std::string text = gw::ToRpcStatus(result.status).SerializeAsString();
  FUZZ_CHECK(text.find(gw::kApiKey) == std::string::npos, "the API key in an error");
  FUZZ_CHECK(text.find(gw::kLicence) == std::string::npos, "the licence in an error");
  return 0;
}
