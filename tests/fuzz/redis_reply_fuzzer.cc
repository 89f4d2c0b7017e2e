// Redis replies as the limit store reads them: hiredis's reader (the library's own, as the
// store's connection uses it) on bytes from the server arriving in pieces, and every reply it
// produces interpreted as each limit script's answer (server/limits/redis_replies.h).
//
// Properties: no crash or leak for any reply shape; a decision is either a result or
// UNAVAILABLE; an allowed step never asks to wait.
//
// hiredis 0.14.1 trusts an array header's element count: "*2147483647\r\n" makes it calloc
// 16 GiB before any element arrives, and freeing the unfinished reply walks every slot (over
// 25 s for "*250250000", a timeout here). That is the library trusting the server, not our
// code, and no limit script answers with more than 2 elements: inputs announcing more than
// kMaxElements are skipped.
#include <fuzzer/FuzzedDataProvider.h>
#include <hiredis/hiredis.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/string_view.h"
#include "server/limits/redis_replies.h"
#include "tests/fuzz/fuzz_support.h"

namespace copilot::gateway {
namespace {

constexpr long long kMaxElements = 4096;

// True when some "*<count>" or "%<count>" header in `bytes` announces more than kMaxElements.
bool AnnouncesHugeArray(absl::string_view bytes) {
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    if (bytes[i] != '*' && bytes[i] != '%') continue;
    std::size_t end = i + 1;
    while (end < bytes.size() &&
           (absl::ascii_isdigit(static_cast<unsigned char>(bytes[end])) || bytes[end] == '-'))
      ++end;
    long long count = 0;
    if (end - i > 19 ||
        (absl::SimpleAtoi(bytes.substr(i + 1, end - i - 1), &count) && count > kMaxElements)) {
      return true;
    }
  }
  return false;
}

void Interpret(const redisReply& reply) {
  for (const char* name : {"GCRA script", "sliding window script"}) {
    absl::StatusOr<StepResult> step = StepResultFromReply(reply, name);
    if (step.ok()) {
      FUZZ_CHECK(!step->allowed || step->retry_after == absl::ZeroDuration(),
                 "an allowed step asks to wait");
    } else {
      FUZZ_CHECK(step.status().code() == absl::StatusCode::kUnavailable, step.status().ToString());
    }
  }
  absl::StatusOr<bool> slot = SlotAcquiredFromReply(reply, "concurrency slot script");
  FUZZ_CHECK(slot.ok() || slot.status().code() == absl::StatusCode::kUnavailable,
             slot.status().ToString());
  // The counters script's reply, for each count of counters a call could have sent.
  for (std::size_t count : {std::size_t{0}, std::size_t{1}, std::size_t{4}, reply.elements - 2}) {
    if (count > 64) continue;
    absl::StatusOr<CounterResult> counters =
        CounterResultFromReply(reply, "counters script", count);
    if (counters.ok()) {
      FUZZ_CHECK(counters->values.size() == count, "values do not match the counters sent");
      FUZZ_CHECK(counters->added == (counters->refused == -1), "added and refused disagree");
      FUZZ_CHECK(counters->refused < static_cast<int>(count), "refused index out of range");
    } else {
      FUZZ_CHECK(counters.status().code() == absl::StatusCode::kUnavailable,
                 counters.status().ToString());
    }
  }
  // The request_id claim script's reply: a result only for "done", never a token.
  absl::StatusOr<SharedRequestIds::Lookup> claim =
      RequestIdClaimFromReply(reply, "request_id claim script");
  if (claim.ok()) {
    FUZZ_CHECK(claim->token.empty(), "a token read from a reply");
    FUZZ_CHECK(claim->kind == SharedRequestIds::Lookup::Kind::kDone || claim->result.empty(),
               "a result without 'done'");
  } else {
    FUZZ_CHECK(claim.status().code() == absl::StatusCode::kUnavailable, claim.status().ToString());
  }
}

}  // namespace
}  // namespace copilot::gateway

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (copilot::gateway::AnnouncesHugeArray(
          absl::string_view(reinterpret_cast<const char*>(data), size))) {
    return -1;  // Not added to the corpus.
  }
  FuzzedDataProvider input(data, size);
  redisReader* reader = redisReaderCreate();
  FUZZ_CHECK(reader != nullptr, "redisReaderCreate");
  bool failed = false;
  while (!failed && input.remaining_bytes() > 0) {
    const std::size_t length = input.ConsumeIntegralInRange<std::size_t>(1, 64);
    const std::string piece = input.ConsumeBytesAsString(length);
    if (redisReaderFeed(reader, piece.data(), piece.size()) != REDIS_OK) break;
    for (;;) {
      void* reply = nullptr;
      if (redisReaderGetReply(reader, &reply) != REDIS_OK) {
        failed = true;
        break;
      }
      if (reply == nullptr) break;
      copilot::gateway::Interpret(*static_cast<redisReply*>(reply));
      freeReplyObject(reply);
    }
  }
  redisReaderFree(reader);
  return 0;
}
