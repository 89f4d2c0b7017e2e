// Format-preserving encryption of UUIDs: a keyed permutation of the UUIDs of each version and
// variant, so that an encrypted version-4 UUID is again a valid version-4 UUID.
//
// Construction. A UUID is 128 bits, 6 of which are fixed by RFC 4122 and kept unchanged here:
// the version (the high nibble of byte 6) and the two top bits of the variant (byte 8). The
// other 122 bits, in order, are split into two 61-bit halves L and R and put through a balanced
// Feistel network of kUuidCipherRounds (10) rounds:
//
//   (L, R) -> (R, L xor F(i, R))          for round i = 0 .. 9
//   F(i, x) = the first 61 bits of AES-128_K(0x55 || i || fixed || 0^5 || x as 8 bytes, big-endian)
//
// where `fixed` is the byte holding the 6 kept bits (version << 2 | variant), so UUIDs of
// different versions go through independent permutations. Each round is invertible whatever F is
// (given (R, L xor F(i, R)), R is known, hence F(i, R), hence L), so the whole is a permutation
// of the 2^122 values of each version/variant, and Decrypt runs the rounds backwards. With AES as
// the pseudo-random round function, 3 rounds already give a pseudo-random permutation and 4 a
// strong one (Luby-Rackoff, up to about 2^30 queries for 61-bit halves); more rounds push that
// bound towards 2^61 (Patarin). 10 rounds is what NIST SP 800-38G FF1 uses over AES too.
// Deterministic: the same key and UUID always give the same result.
//
// Stateless functions; thread-safe.
#ifndef COPILOT_GATEWAY_SERVER_CORE_UUID_CIPHER_H_
#define COPILOT_GATEWAY_SERVER_CORE_UUID_CIPHER_H_

#include <string>

#include "absl/strings/string_view.h"

namespace copilot::gateway {

inline constexpr int kUuidCipherRounds = 10;

// `uuid`: the 16 bytes of a UUID; `key`: 16 bytes (AES-128). Returns 16 bytes with the same
// version nibble and top two variant bits as `uuid`. Both must have exactly those sizes.
std::string EncryptUuid(absl::string_view key, absl::string_view uuid);

// The inverse of EncryptUuid under the same key.
std::string DecryptUuid(absl::string_view key, absl::string_view uuid);

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_CORE_UUID_CIPHER_H_
