// request_id de-duplication shared by every gateway replica (AIP-155 across replicas): where
// a replica claims a request_id before running its request, finds the result of a request
// another replica ran, or learns that one is running it. Implemented over Redis by
// server/limits/redis_request_ids.h; the core uses it behind its in-process RequestIdStore
// (which still joins the retries that land on the same replica and bounds their memory).
#ifndef COPILOT_GATEWAY_SERVER_CORE_SHARED_REQUEST_IDS_H_
#define COPILOT_GATEWAY_SERVER_CORE_SHARED_REQUEST_IDS_H_

#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace copilot::gateway {

// Thread-safe; never blocks: callbacks run later, on the implementation's thread.
class SharedRequestIds {
 public:
  struct Lookup {
    enum class Kind {
      kStart,     // Claimed: run the request, then Finish(key, token, result).
      kDone,      // `result` is the earlier attempt's (a serialized response).
      kInFlight,  // Another attempt runs it: claim again later (it may finish or fail).
      kReused,    // The request_id was used for another request body.
      kUnknown,   // Whether the upstream acted is not known: the attempt failed after its
                  // request may have reached the upstream, or its lease ran out without a
                  // result (its replica stopped). Stays so for the result's TTL.
    };
    Kind kind = Kind::kStart;
    std::string result;  // kDone.
    std::string token;   // kStart.
  };
  using ClaimCallback = absl::AnyInvocable<void(absl::StatusOr<Lookup>) &&>;

  virtual ~SharedRequestIds() = default;

  // After `delay`, claims `key` (tenant, method and request_id together) for an attempt that
  // is over within `lease` (its upstream deadline), or says who has it. `fingerprint`
  // identifies the request body. UNAVAILABLE when the store cannot answer.
  virtual void Claim(const std::string& key, const std::string& fingerprint, absl::Duration lease,
                     absl::Duration delay, ClaimCallback done) = 0;

  // Records the result of the attempt that claimed `key` with `token`: kept for the TTL when
  // OK (and not too large); a failure with `outcome_unknown` (its request may have reached
  // the upstream) makes later claims kUnknown for the TTL; any other failure is forgotten, so
  // that the next try runs again. Dropped silently when the store cannot answer (a waiting
  // retry then meets the lease's end).
  virtual void Finish(const std::string& key, const std::string& token,
                      const absl::StatusOr<std::string>& result, bool outcome_unknown) = 0;

  // When the store cannot answer: true runs the request with in-process de-duplication only
  // (fail open), false refuses it with UNAVAILABLE (fail closed).
  virtual bool fail_open() const = 0;
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_CORE_SHARED_REQUEST_IDS_H_
