// Thread handles bound to their tenant by an HMAC, and end-user IDs scoped per tenant.
//
// A handle is "th1_" + base64url(payload || tag), where payload names the upstream thread and
// its assistant (16 bytes each when they are UUIDs, as they are upstream) and tag is the first
// 16 bytes of HMAC-SHA-256(handle key, tenant id || payload). Nothing is stored: any replica
// holding the same signing key verifies any other's handles, across restarts. A handle that does
// not verify for the caller's tenant (another tenant's, altered, or not a handle at all) is
// NOT_FOUND with the same status a thread unknown upstream gets (ThreadNotFound()).
//
// End-user IDs (UUIDs) are encrypted with AES-128 under a key derived per tenant, one block, so
// the mapping is a permutation: deterministic (the same end user is the same upstream user on
// every call and replica), reversible (answers show callers their own IDs), and disjoint
// between tenants. A non-UUID user ID is sent unchanged (validation only lets UUIDs through).
#ifndef COPILOT_GATEWAY_SERVER_CORE_SIGNED_THREAD_HANDLES_H_
#define COPILOT_GATEWAY_SERVER_CORE_SIGNED_THREAD_HANDLES_H_

#include <string>

#include "absl/status/status.h"
#include "server/core/thread_handles.h"

namespace copilot::gateway {

// The NOT_FOUND of a thread the caller cannot see; the core also gives it for the upstream's
// own thread_not_found, so the two cannot be told apart.
absl::Status ThreadNotFound();

class SignedThreadHandles final : public ThreadHandles {
 public:
  // `signing_key`: secret bytes shared by every replica (at least 32 bytes recommended).
  explicit SignedThreadHandles(std::string signing_key);

  absl::StatusOr<ThreadRef> ToUpstream(const Tenant& tenant, absl::string_view handle,
                                       absl::string_view field) const override;
  std::string ToCaller(const Tenant& tenant, const ThreadRef& thread) const override;
  std::string UserToUpstream(const Tenant& tenant, absl::string_view user_id) const override;
  std::string UserToCaller(const Tenant& tenant, absl::string_view user_id) const override;

 private:
  std::string Tag(const Tenant& tenant, absl::string_view payload) const;
  std::string UserKey(const Tenant& tenant) const;

  const std::string handle_key_;  // Derived from the signing key; never logged.
  const std::string user_key_;    // Derived from the signing key; never logged.
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_CORE_SIGNED_THREAD_HANDLES_H_
