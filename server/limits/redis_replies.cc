#include "server/limits/redis_replies.h"

#include <hiredis/hiredis.h>

#include "absl/strings/str_cat.h"

namespace copilot::gateway {
namespace {

// An error reply as UNAVAILABLE, or OK for any other reply.
absl::Status ErrorOf(const redisReply& reply, absl::string_view script_name) {
  if (reply.type != REDIS_REPLY_ERROR) return absl::OkStatus();
  return absl::UnavailableError(
      absl::StrCat("redis ", script_name, " failed: ", absl::string_view(reply.str, reply.len)));
}

absl::Status Unexpected(absl::string_view script_name) {
  return absl::UnavailableError(absl::StrCat("redis ", script_name, ": unexpected reply"));
}

}  // namespace

absl::StatusOr<StepResult> StepResultFromReply(const redisReply& reply,
                                               absl::string_view script_name) {
  if (absl::Status error = ErrorOf(reply, script_name); !error.ok()) return error;
  if (reply.type != REDIS_REPLY_ARRAY || reply.elements != 2 ||
      reply.element[0]->type != REDIS_REPLY_INTEGER ||
      reply.element[1]->type != REDIS_REPLY_INTEGER) {
    return Unexpected(script_name);
  }
  StepResult result;
  result.allowed = reply.element[0]->integer == 1;
  result.retry_after =
      result.allowed ? absl::ZeroDuration() : absl::Microseconds(reply.element[1]->integer);
  return result;
}

absl::StatusOr<bool> SlotAcquiredFromReply(const redisReply& reply, absl::string_view script_name) {
  if (absl::Status error = ErrorOf(reply, script_name); !error.ok()) return error;
  if (reply.type != REDIS_REPLY_INTEGER) return Unexpected(script_name);
  return reply.integer == 1;
}

absl::StatusOr<CounterResult> CounterResultFromReply(const redisReply& reply,
                                                     absl::string_view script_name,
                                                     std::size_t count) {
  if (absl::Status error = ErrorOf(reply, script_name); !error.ok()) return error;
  if (reply.type != REDIS_REPLY_ARRAY || reply.elements != count + 2) {
    return Unexpected(script_name);
  }
  for (std::size_t i = 0; i < reply.elements; ++i) {
    if (reply.element[i]->type != REDIS_REPLY_INTEGER) return Unexpected(script_name);
  }
  CounterResult result;
  result.added = reply.element[0]->integer == 1;
  const long long refused = reply.element[1]->integer;
  if (result.added != (refused == -1) || refused < -1 || refused >= static_cast<long long>(count)) {
    return Unexpected(script_name);
  }
  result.refused = static_cast<int>(refused);
  for (std::size_t i = 0; i < count; ++i) result.values.push_back(reply.element[i + 2]->integer);
  return result;
}

absl::StatusOr<SharedRequestIds::Lookup> RequestIdClaimFromReply(const redisReply& reply,
                                                                 absl::string_view script_name) {
  if (absl::Status error = ErrorOf(reply, script_name); !error.ok()) return error;
  if (reply.type != REDIS_REPLY_ARRAY || reply.elements < 1 || reply.elements > 2) {
    return Unexpected(script_name);
  }
  for (std::size_t i = 0; i < reply.elements; ++i) {
    if (reply.element[i]->type != REDIS_REPLY_STRING) return Unexpected(script_name);
  }
  using Kind = SharedRequestIds::Lookup::Kind;
  const absl::string_view word(reply.element[0]->str, reply.element[0]->len);
  SharedRequestIds::Lookup claim;
  if (word == "done" && reply.elements == 2) {
    claim.kind = Kind::kDone;
    claim.result.assign(reply.element[1]->str, reply.element[1]->len);
    return claim;
  }
  if (word == "inflight" && reply.elements == 2) {
    claim.kind = Kind::kInFlight;
    return claim;
  }
  if (reply.elements != 1) return Unexpected(script_name);
  if (word == "start") {
    claim.kind = Kind::kStart;
  } else if (word == "reused") {
    claim.kind = Kind::kReused;
  } else if (word == "unknown") {
    claim.kind = Kind::kUnknown;
  } else {
    return Unexpected(script_name);
  }
  return claim;
}

bool AppendRedisCommand(const std::vector<std::string>& command, std::string& out) {
  std::vector<const char*> argv;
  std::vector<size_t> lengths;
  for (const std::string& arg : command) {
    argv.push_back(arg.data());
    lengths.push_back(arg.size());
  }
  char* formatted = nullptr;
  const int length = redisFormatCommandArgv(&formatted, static_cast<int>(argv.size()), argv.data(),
                                            lengths.data());
  if (length < 0) return false;
  out.append(formatted, static_cast<size_t>(length));
  redisFreeCommand(formatted);
  return true;
}

}  // namespace copilot::gateway
