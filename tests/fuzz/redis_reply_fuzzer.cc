// Redis replies as the limit store reads them: hiredis's reader (the library's own, as the
// store's connection uses it) on bytes from the server arriving in pieces, and every reply it
// produces interpreted as each limit script's answer (server/limits/redis_replies.h).
//
// Properties: no crash or leak for any reply shape; a decision is either a result or
// UNAVAILABLE; an allowed step never asks to wait.
//
// hiredis 0.14.1 has no bound on an array header's element count: "*2147483647\r\n" makes it
// calloc 16 GiB (untouched, so not resident) before any element arrives. That is the library
// trusting the server, not our code: calloc may return null here (the reader then reports out
// of memory) and scripts/fuzz.sh raises -malloc_limit_mb for this target.
#include <fuzzer/FuzzedDataProvider.h>
#include <hiredis/hiredis.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "server/limits/redis_replies.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" const char* __asan_default_options() { return "allocator_may_return_null=1"; }

namespace copilot::gateway {
namespace {

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
}

}  // namespace
}  // namespace copilot::gateway

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
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
