#include "server/common/crypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/random/random.h"

namespace copilot::gateway {

std::string Sha256(absl::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(data.data(), data.size(), digest, &length, EVP_sha256(), nullptr);
  return {reinterpret_cast<const char*>(digest), length};
}

std::string HmacSha256(absl::string_view key, absl::string_view data) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), mac, &length);
  return {reinterpret_cast<const char*>(mac), length};
}

namespace {

std::string Aes128Block(absl::string_view key, absl::string_view block, bool encrypt) {
  unsigned char out[32];
  int length = 0;
  EVP_CIPHER_CTX* context = EVP_CIPHER_CTX_new();
  EVP_CipherInit_ex(context, EVP_aes_128_ecb(), nullptr,
                    reinterpret_cast<const unsigned char*>(key.data()), nullptr, encrypt ? 1 : 0);
  EVP_CIPHER_CTX_set_padding(context, 0);
  EVP_CipherUpdate(context, out, &length, reinterpret_cast<const unsigned char*>(block.data()),
                   static_cast<int>(block.size()));
  EVP_CIPHER_CTX_free(context);
  return {reinterpret_cast<const char*>(out), static_cast<std::size_t>(length)};
}

}  // namespace

std::string Aes128EncryptBlock(absl::string_view key, absl::string_view block) {
  return Aes128Block(key, block, true);
}

std::string Aes128DecryptBlock(absl::string_view key, absl::string_view block) {
  return Aes128Block(key, block, false);
}

std::string RandomBytes(std::size_t count) {
  std::string bytes(count, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(bytes.data()), static_cast<int>(count)) != 1) {
    std::abort();  // No randomness: nothing secret can be made safely.
  }
  return bytes;
}

std::string IdentifierBytes(std::size_t count) {
  thread_local absl::BitGen bitgen;
  std::string bytes(count, '\0');
  for (std::size_t i = 0; i < count; i += sizeof(uint64_t)) {
    const uint64_t word = absl::Uniform<uint64_t>(bitgen);
    std::memcpy(bytes.data() + i, &word, std::min(sizeof(word), count - i));
  }
  return bytes;
}

bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  if (a.size() != b.size()) return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace copilot::gateway
