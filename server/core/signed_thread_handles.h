// Thread handles bound to their tenant by an HMAC, and end-user IDs scoped per tenant.
//
// A handle is "th2_" + base64url(key id || payload || tag). The payload names the upstream
// thread and its assistant (16 bytes each when they are UUIDs, as they are upstream); the key id
// is KeyId() of the signing key (4 bytes), and tag is the first 16 bytes of
// HMAC-SHA-256(handle key, key id || tenant id || payload), the handle key derived from the
// signing key. Nothing is stored: any replica holding the same keys verifies any other's handles,
// across restarts.
//
// Rotation: new handles are signed with the current key; handles signed with a previous key
// still verify (the key id picks the key). Handles of the first format, "th1_" +
// base64url(payload || tag) with no key id, are tried against every configured key. A handle
// that does not verify for the caller's tenant (another tenant's, altered, signed with a key no
// longer configured, or not a handle at all) is NOT_FOUND with the same status a thread unknown
// upstream gets (ThreadNotFound()). Tags are compared in constant time.
//
// End-user IDs (UUIDs) are encrypted with EncryptUuid (uuid_cipher.h: a Feistel permutation that
// keeps the version and variant, so a v4 UUID stays a v4 UUID) under an AES key derived per
// tenant from the user-ID key: deterministic (the same end user is the same upstream user on
// every call and replica), reversible (answers show callers their own IDs), and disjoint between
// tenants. The user-ID key is separate from the signing keys, so rotating those leaves the end
// users' upstream identities alone; without one it is derived from the current signing key (as
// HMAC-SHA-256(key, "copilot-gateway user id v2"), the same derivation as from a configured
// user-ID key, so configuring the current signing key's bytes as the user-ID key changes
// nothing). A non-UUID user ID is sent unchanged (validation only lets UUIDs through).
#ifndef COPILOT_GATEWAY_SERVER_CORE_SIGNED_THREAD_HANDLES_H_
#define COPILOT_GATEWAY_SERVER_CORE_SIGNED_THREAD_HANDLES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "server/common/crypto.h"
#include "server/core/thread_handles.h"

namespace copilot::gateway {

// The NOT_FOUND of a thread the caller cannot see; the core also gives it for the upstream's
// own thread_not_found, so the two cannot be told apart.
absl::Status ThreadNotFound();

// The keys of SignedThreadHandles: secret bytes, never logged.
struct ThreadHandleKeys {
  // Signs new handles (and verifies them). At least 32 bytes recommended.
  std::string current;
  // Keys of earlier rotations: handles they signed still verify; nothing new is signed with them.
  std::vector<std::string> previous;
  // Scopes end-user IDs. Empty: derived from `current` (rotating it then changes every end user's
  // upstream ID).
  std::string user_id_key;
};

// Thread-safe: immutable after construction.
class SignedThreadHandles final : public ThreadHandles {
 public:
  explicit SignedThreadHandles(const ThreadHandleKeys& keys);
  // One signing key, which also scopes user IDs.
  explicit SignedThreadHandles(std::string signing_key);

  // The 4-byte key id of `signing_key` in the handles it signs: the first bytes of
  // HMAC-SHA-256(signing_key, "copilot-gateway thread signing key id"). Not secret.
  static std::string KeyId(absl::string_view signing_key);
  // The key ids in hex, the current key's first (for the start-up log).
  std::vector<std::string> KeyIdsHex() const;

  absl::StatusOr<ThreadRef> ToUpstream(const Tenant& tenant, absl::string_view handle,
                                       absl::string_view field) const override;
  std::string ToCaller(const Tenant& tenant, const ThreadRef& thread) const override;
  std::string UserToUpstream(const Tenant& tenant, absl::string_view user_id) const override;
  std::string UserToCaller(const Tenant& tenant, absl::string_view user_id) const override;

 private:
  // What is kept of one signing key (derived keys only; never logged).
  struct SigningKey {
    std::string id;        // KeyId()
    HmacSha256Key v1_key;  // Verifies "th1_" handles.
    HmacSha256Key v2_key;  // Signs and verifies "th2_" handles.
  };
  static SigningKey Derive(absl::string_view signing_key);
  std::string UserKey(const Tenant& tenant) const;

  // Tells instances apart for the per-thread memo of the last handle made (ToCaller): unique
  // for the process's life, so a later instance at the same address never reads an earlier
  // one's handle.
  const uint64_t instance_;
  std::vector<SigningKey> keys_;  // The current key first, then the previous ones.
  HmacSha256Key user_key_;        // Derived from the user-ID key; never logged.
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_CORE_SIGNED_THREAD_HANDLES_H_
