// Upstream JSON -> proto (server/upstream/json_mapping.h) for the response body of every
// endpoint: the assistant list, an assistant, a thread, a message (add message, run, chat
// completion), a message page; the same bytes as one stream line (chunk or error line) and as
// a timestamp.
//
// Properties: rapidjson reads the text as nlohmann::json reads it; nothing throws or crashes; a
// failure is INTERNAL "upstream_bad_response" within errors.h's bounds; a success has its required
// IDs, valid google.protobuf.Timestamps, and serializes into bytes a caller's client parses back.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"
#include "google/protobuf/timestamp.pb.h"
#include "nlohmann/json.hpp"
#include "server/upstream/json_mapping.h"
#include "tests/fuzz/fuzz_support.h"

namespace copilot::gateway {
namespace {

void CheckTimestamp(const google::protobuf::Timestamp& time, absl::string_view what) {
  FUZZ_CHECK(time.seconds() >= -62135596800 && time.seconds() <= 253402300799, what);
  FUZZ_CHECK(time.nanos() >= 0 && time.nanos() <= 999999999, what);
}

// What the service adapter sends is what a client parses.
void CheckRoundTrip(const google::protobuf::Message& message, absl::string_view what) {
  std::string bytes;
  FUZZ_CHECK(message.SerializeToString(&bytes), what);
  std::unique_ptr<google::protobuf::Message> back(message.New());
  FUZZ_CHECK(back->ParseFromString(bytes), std::string(what) + " does not parse back");
  FUZZ_CHECK(back->ByteSizeLong() == bytes.size(), what);
}

void CheckFailure(const absl::Status& status, absl::string_view what) {
  FUZZ_CHECK(status.code() == absl::StatusCode::kInternal, what);
  FUZZ_CHECK(fuzz::Reason(status) == kBadResponseReason, what);
  fuzz::CheckErrorIsBounded(status, what);
}

void CheckMessage(const v1::Message& message) {
  FUZZ_CHECK(!message.id().empty(), "message without id");
  CheckTimestamp(message.create_time(), "message create_time");
  CheckRoundTrip(message, "message");
}

template <typename T, typename Check>
void Expect(const absl::StatusOr<T>& result, absl::string_view what, Check check) {
  if (!result.ok()) return CheckFailure(result.status(), what);
  check(*result);
}

}  // namespace
}  // namespace copilot::gateway

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace gw = copilot::gateway;
  namespace v1 = copilot::v1;
  const absl::string_view body(reinterpret_cast<const char*>(data), size);

  gw::Expect(gw::ParseAssistantList(body), "assistant list",
             [](const std::vector<v1::Assistant>& list) {
               for (const v1::Assistant& assistant : list) {
                 FUZZ_CHECK(!assistant.id().empty(), "assistant without id");
                 gw::CheckRoundTrip(assistant, "assistant");
               }
             });
  gw::Expect(gw::ParseAssistant(body), "assistant", [](const v1::Assistant& assistant) {
    FUZZ_CHECK(!assistant.id().empty(), "assistant without id");
    gw::CheckRoundTrip(assistant, "assistant");
  });
  gw::Expect(gw::ParseThread(body), "thread", [](const v1::Thread& thread) {
    FUZZ_CHECK(!thread.id().empty(), "thread without id");
    gw::CheckTimestamp(thread.create_time(), "thread create_time");
    gw::CheckTimestamp(thread.update_time(), "thread update_time");
    gw::CheckRoundTrip(thread, "thread");
  });
  gw::Expect(gw::ParseMessage(body), "message", gw::CheckMessage);
  gw::Expect(gw::ParseMessagePage(body), "message page", [](const gw::MessagePage& page) {
    for (const v1::Message& message : page.messages) gw::CheckMessage(message);
  });

  // One NDJSON stream line, as the stream decoder reads it.
  const absl::StatusOr<gw::JsonDocument> line = gw::ParseJson(body, "stream line");
  if (!line.ok()) {
    gw::CheckFailure(line.status(), "stream line");
  } else if (!gw::IsStreamErrorLine(*line)) {
    gw::Expect(gw::MessageChunkFromJson(*line), "stream chunk", [](const v1::MessageChunk& chunk) {
      FUZZ_CHECK(!chunk.message_id().empty(), "chunk without message_id");
      gw::CheckTimestamp(chunk.create_time(), "chunk create_time");
      gw::CheckRoundTrip(chunk, "chunk");
    });
  }

  // rapidjson (what the gateway decodes with) accepts what nlohmann::json accepts, to the same
  // values (bounded_json.h).
  gw::JsonDocument document;
  rapidjson::ParseErrorCode error = rapidjson::kParseErrorNone;
  const gw::JsonRead read = gw::ParseUpstreamJson(body, document, &error);
  if (read != gw::JsonRead::kTooDeep && read != gw::JsonRead::kTooManyValues) {
    const nlohmann::json reference =
        nlohmann::json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
    // The one difference left (bounded_json.h): a number with an exponent past 308 that
    // nlohmann read as zero or the largest doubles.
    const bool known_difference =
        read == gw::JsonRead::kNotJson && error == rapidjson::kParseErrorNumberTooBig;
    if (!known_difference) {
      FUZZ_CHECK((read == gw::JsonRead::kOk) == !reference.is_discarded(),
                 read == gw::JsonRead::kOk ? "rapidjson accepts what nlohmann refuses"
                                           : "rapidjson refuses what nlohmann accepts");
    }
    if (read == gw::JsonRead::kOk) {
      FUZZ_CHECK(gw::NlohmannFromJson(document).dump() == reference.dump(),
                 "rapidjson and nlohmann read different values");
    }
  }

  // The whole input as a timestamp field's text.
  if (size <= 64) {
    auto time = gw::ParseTimestamp(body);
    if (time.ok()) gw::CheckTimestamp(*time, "ParseTimestamp");
  }
  return 0;
}
