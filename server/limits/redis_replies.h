// What the limit scripts' replies (server/limits/redis_scripts.h) mean, read from a hiredis
// reply; and the commands as sent (RESP). Pure functions: thread-safe.
#ifndef COPILOT_GATEWAY_SERVER_LIMITS_REDIS_REPLIES_H_
#define COPILOT_GATEWAY_SERVER_LIMITS_REDIS_REPLIES_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/core/shared_request_ids.h"
#include "server/limits/limit_store.h"

struct redisReply;  // <hiredis/hiredis.h>

namespace copilot::gateway {

// The decision of the GCRA or sliding window script named `script_name`: an array of two
// integers {allowed (1), retry after in microseconds}. UNAVAILABLE for an error reply or any
// other shape.
absl::StatusOr<StepResult> StepResultFromReply(const redisReply& reply,
                                               absl::string_view script_name);

// Whether the concurrency slot script named `script_name` acquired the slot (the integer 1).
// UNAVAILABLE for an error reply or a reply that is not an integer.
absl::StatusOr<bool> SlotAcquiredFromReply(const redisReply& reply, absl::string_view script_name);

// The counters script's outcome: an array {added (1 or 0), refused index or -1, values...}
// with `count` values. UNAVAILABLE for an error reply or any other shape.
absl::StatusOr<CounterResult> CounterResultFromReply(const redisReply& reply,
                                                     absl::string_view script_name,
                                                     std::size_t count);

// What the request_id claim script (redis_scripts::kRequestIdClaim) answered: {'start'},
// {'done', result}, {'inflight', ms}, {'reused'} or {'unknown'}. The token is not set.
// UNAVAILABLE for an error reply or any other shape.
absl::StatusOr<SharedRequestIds::Lookup> RequestIdClaimFromReply(const redisReply& reply,
                                                                 absl::string_view script_name);

// Appends `command` (its arguments, binary-safe) to `out` in RESP, as hiredis formats it. False
// (and `out` unchanged) when out of memory.
bool AppendRedisCommand(const std::vector<std::string>& command, std::string& out);

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_LIMITS_REDIS_REPLIES_H_
