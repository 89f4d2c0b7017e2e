#include "server/common/crypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "absl/random/random.h"

namespace copilot::gateway {
namespace {

// SHA-256 fetched from OpenSSL's providers once (EVP_sha256() is fetched again, under the
// library's lock, on each use). Never freed.
const EVP_MD* Sha256Digest() {
  static const EVP_MD* const digest = [] {
    const EVP_MD* fetched = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    return fetched != nullptr ? fetched : EVP_sha256();
  }();
  return digest;
}

// AES-128-ECB, fetched once for the same reason.
const EVP_CIPHER* Aes128Cipher() {
  static const EVP_CIPHER* const cipher = [] {
    const EVP_CIPHER* fetched = EVP_CIPHER_fetch(nullptr, "AES-128-ECB", nullptr);
    return fetched != nullptr ? fetched : EVP_aes_128_ecb();
  }();
  return cipher;
}

}  // namespace

std::string Sha256(absl::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(data.data(), data.size(), digest, &length, Sha256Digest(), nullptr);
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

constexpr std::size_t kSha256BlockBytes = 64;

struct MdCtxDeleter {
  void operator()(EVP_MD_CTX* context) const { EVP_MD_CTX_free(context); }
};

// A SHA-256 state that has hashed one block: the key XOR `pad`.
std::shared_ptr<const void> PaddedKeyState(absl::string_view key, unsigned char pad) {
  unsigned char block[kSha256BlockBytes];
  for (std::size_t i = 0; i < kSha256BlockBytes; ++i) {
    block[i] = static_cast<unsigned char>((i < key.size() ? key[i] : 0) ^ pad);
  }
  std::shared_ptr<EVP_MD_CTX> context(EVP_MD_CTX_new(), MdCtxDeleter());
  if (context == nullptr || EVP_DigestInit_ex(context.get(), Sha256Digest(), nullptr) != 1 ||
      EVP_DigestUpdate(context.get(), block, sizeof(block)) != 1) {
    std::abort();  // libcrypto without SHA-256 or memory: nothing can be signed.
  }
  OPENSSL_cleanse(block, sizeof(block));
  return context;
}

// The calling thread's scratch digest context.
EVP_MD_CTX* ScratchContext() {
  thread_local std::unique_ptr<EVP_MD_CTX, MdCtxDeleter> context(EVP_MD_CTX_new());
  return context.get();
}

std::string Aes128Block(absl::string_view key, absl::string_view block, bool encrypt) {
  unsigned char out[32];
  int length = 0;
  EVP_CIPHER_CTX* context = EVP_CIPHER_CTX_new();
  EVP_CipherInit_ex(context, Aes128Cipher(), nullptr,
                    reinterpret_cast<const unsigned char*>(key.data()), nullptr, encrypt ? 1 : 0);
  EVP_CIPHER_CTX_set_padding(context, 0);
  EVP_CipherUpdate(context, out, &length, reinterpret_cast<const unsigned char*>(block.data()),
                   static_cast<int>(block.size()));
  EVP_CIPHER_CTX_free(context);
  return {reinterpret_cast<const char*>(out), static_cast<std::size_t>(length)};
}

}  // namespace

HmacSha256Key::HmacSha256Key(absl::string_view key) {
  // RFC 2104: a key longer than the hash's block is hashed first.
  std::string hashed = key.size() > kSha256BlockBytes ? Sha256(key) : std::string();
  const absl::string_view block_key = hashed.empty() ? key : absl::string_view(hashed);
  inner_ = PaddedKeyState(block_key, 0x36);
  outer_ = PaddedKeyState(block_key, 0x5c);
  if (!hashed.empty()) OPENSSL_cleanse(hashed.data(), hashed.size());
}

std::string HmacSha256Key::Sign(absl::string_view data) const {
  EVP_MD_CTX* scratch = ScratchContext();
  unsigned char inner[EVP_MAX_MD_SIZE];
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int inner_length = 0;
  unsigned int mac_length = 0;
  if (scratch == nullptr ||
      EVP_MD_CTX_copy_ex(scratch, static_cast<const EVP_MD_CTX*>(inner_.get())) != 1 ||
      EVP_DigestUpdate(scratch, data.data(), data.size()) != 1 ||
      EVP_DigestFinal_ex(scratch, inner, &inner_length) != 1 ||
      EVP_MD_CTX_copy_ex(scratch, static_cast<const EVP_MD_CTX*>(outer_.get())) != 1 ||
      EVP_DigestUpdate(scratch, inner, inner_length) != 1 ||
      EVP_DigestFinal_ex(scratch, mac, &mac_length) != 1) {
    std::abort();  // Only out of memory: a wrong MAC would be worse than no answer.
  }
  return {reinterpret_cast<const char*>(mac), mac_length};
}

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
