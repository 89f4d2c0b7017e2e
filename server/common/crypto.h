// The few cryptographic primitives the gateway needs, over OpenSSL's libcrypto.
#ifndef COPILOT_GATEWAY_SERVER_COMMON_CRYPTO_H_
#define COPILOT_GATEWAY_SERVER_COMMON_CRYPTO_H_

#include <cstddef>
#include <memory>
#include <string>

#include "absl/strings/string_view.h"

namespace copilot::gateway {

// SHA-256 of `data`: 32 raw bytes.
std::string Sha256(absl::string_view data);

// HMAC-SHA-256 of `data` under `key`: 32 raw bytes.
std::string HmacSha256(absl::string_view key, absl::string_view data);

// An HMAC-SHA-256 key prepared once: Sign(data) equals HmacSha256(key, data). HmacSha256 costs
// OpenSSL 3 a fetch of the algorithm and a new MAC context on every call; Sign only copies two
// digest states hashed over the padded key at construction. For keys used on every call (thread
// handles; the gain is in README "Performance", instructions per call). Immutable once built:
// Sign may be called from any number of threads; copies share the prepared states (a moved-from
// key must not sign). SHA-256 comes from the providers loaded when it is first used.
class HmacSha256Key {
 public:
  explicit HmacSha256Key(absl::string_view key);
  std::string Sign(absl::string_view data) const;

 private:
  std::shared_ptr<const void> inner_;  // EVP_MD_CTX after the key XOR ipad block.
  std::shared_ptr<const void> outer_;  // EVP_MD_CTX after the key XOR opad block.
};

// AES-128 of one 16-byte `block` under a 16-byte `key` (a keyed permutation of 16-byte values;
// no mode, no padding). Both must be exactly 16 bytes.
std::string Aes128EncryptBlock(absl::string_view key, absl::string_view block);
std::string Aes128DecryptBlock(absl::string_view key, absl::string_view block);

// `count` bytes from the system's cryptographic random source. For keys and secrets.
std::string RandomBytes(std::size_t count);

// `count` unpredictable bytes for identifiers that are not secrets (request and trace IDs): a
// per-thread absl::BitGen (Randen, seeded from the system's random source), with no system call
// per use. OpenSSL's RAND_bytes calls getpid() each time (its fork check): three per call on
// the hot path, 20% of the gateway's system calls. Not for keys; not fork-safe.
std::string IdentifierBytes(std::size_t count);

// Whether `a` and `b` are equal, in time that depends only on their lengths (for comparing
// secrets and MACs).
bool ConstantTimeEquals(absl::string_view a, absl::string_view b);

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_COMMON_CRYPTO_H_
