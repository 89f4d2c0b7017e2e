#include "server/limits/redis_request_ids.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/common/crypto.h"
#include "server/common/log.h"

namespace copilot::gateway {
namespace {

std::string Millis(absl::Duration duration) {
  return absl::StrCat(std::max<int64_t>(1, absl::ToInt64Milliseconds(duration)));
}

absl::string_view ResultName(SharedRequestIds::Lookup::Kind kind) {
  using Kind = SharedRequestIds::Lookup::Kind;
  switch (kind) {
    case Kind::kStart:
      return "claimed";
    case Kind::kDone:
      return "remembered";
    case Kind::kInFlight:
      return "in_flight";
    case Kind::kReused:
      return "reused";
    case Kind::kUnknown:
      return "unknown";
  }
  return "unknown";
}

}  // namespace

RedisRequestIds::RedisRequestIds(RedisLimitStore& store, RedisRequestIdsOptions options,
                                 SharedRequestIdEvents* events)
    : store_(store), options_(std::move(options)), events_(events) {}

std::string RedisRequestIds::RedisKey(const std::string& key) const {
  // Hashed: bounded, and no tenant name or request_id in Redis's key space.
  return RedisLimitStore::RedisKey(
      options_.key_prefix, absl::StrCat("rid:", absl::BytesToHexString(Sha256(key))), "request");
}

void RedisRequestIds::Claim(const std::string& key, const std::string& fingerprint,
                            absl::Duration lease, absl::Duration delay, ClaimCallback done) {
  std::string token;
  {
    absl::MutexLock lock(&mu_);
    token = absl::StrFormat("%016x%016x", absl::Uniform<uint64_t>(bitgen_),
                            absl::Uniform<uint64_t>(bitgen_));
  }
  std::vector<std::string> args = {fingerprint, token, Millis(lease), Millis(options_.ttl)};
  store_.ClaimRequestId(
      RedisKey(key), std::move(args), delay,
      [this, token, done = std::move(done)](absl::StatusOr<Lookup> claim) mutable {
        if (!claim.ok()) {
          Reported(false, claim.status());
          if (events_ != nullptr) events_->SharedRequestIdLookup("unavailable");
          return std::move(done)(absl::UnavailableError(
              absl::StrCat("request_id de-duplication across replicas unavailable: ",
                           claim.status().message())));
        }
        Reported(true, absl::OkStatus());
        if (events_ != nullptr) events_->SharedRequestIdLookup(ResultName(claim->kind));
        if (claim->kind == Lookup::Kind::kStart) claim->token = token;
        std::move(done)(*std::move(claim));
      });
}

void RedisRequestIds::Finish(const std::string& key, const std::string& token,
                             const absl::StatusOr<std::string>& result, bool outcome_unknown) {
  const bool keep = result.ok() && result->size() <= options_.max_result_bytes;
  const char* state = keep ? "1" : (!result.ok() && outcome_unknown ? "u" : "0");
  store_.FinishRequestId(RedisKey(key),
                         {token, state, keep ? *result : std::string(), Millis(options_.ttl)});
}

void RedisRequestIds::Reported(bool available, const absl::Status& status) {
  if (available_.exchange(available) == available) return;
  if (available) {
    Log(LogLevel::kInfo, "request_id de-duplication across replicas available again", {});
    return;
  }
  Log(LogLevel::kWarning, "request_id de-duplication across replicas unavailable",
      {{"error", std::string(status.message())},
       {"on_failure", options_.fail_open ? "fail_open: in-process de-duplication only"
                                         : "fail_closed: calls with a request_id are refused"}});
}

}  // namespace copilot::gateway
