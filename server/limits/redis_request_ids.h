// SharedRequestIds in Redis: the request_id de-duplication state of every replica (an in-flight
// marker with its owner and lease, then the result for the TTL) in one hash per request_id,
// "<prefix>:{rid:<hex SHA-256 of the key>}", changed only by the atomic scripts
// redis_scripts::kRequestIdClaim and kRequestIdFinish over RedisLimitStore's connection.
#ifndef COPILOT_GATEWAY_SERVER_LIMITS_REDIS_REQUEST_IDS_H_
#define COPILOT_GATEWAY_SERVER_LIMITS_REDIS_REQUEST_IDS_H_

#include <atomic>
#include <cstddef>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/random/random.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/core/shared_request_ids.h"
#include "server/limits/limit_events.h"
#include "server/limits/redis_limit_store.h"

namespace copilot::gateway {

// Plain data.
struct RedisRequestIdsOptions {
  std::string key_prefix = "copilot";               // RedisLimitStoreOptions::key_prefix.
  absl::Duration ttl = absl::Minutes(10);           // How long a result is kept.
  std::size_t max_result_bytes = 16 * 1024 * 1024;  // Larger results are not kept.
  bool fail_open = true;
};

// Thread-safe. `store` and `events` (may be null) must outlive this object.
class RedisRequestIds final : public SharedRequestIds {
 public:
  RedisRequestIds(RedisLimitStore& store, RedisRequestIdsOptions options,
                  SharedRequestIdEvents* events);

  void Claim(const std::string& key, const std::string& fingerprint, absl::Duration lease,
             absl::Duration delay, ClaimCallback done) override;
  void Finish(const std::string& key, const std::string& token,
              const absl::StatusOr<std::string>& result, bool outcome_unknown) override;
  bool fail_open() const override { return options_.fail_open; }

  // The Redis key of `key`.
  std::string RedisKey(const std::string& key) const;

 private:
  // Logs when Redis stops (or starts again) answering the claims.
  void Reported(bool available, const absl::Status& status);

  RedisLimitStore& store_;
  const RedisRequestIdsOptions options_;
  SharedRequestIdEvents* const events_;
  absl::Mutex mu_;
  absl::BitGen bitgen_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> available_{true};
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_LIMITS_REDIS_REQUEST_IDS_H_
