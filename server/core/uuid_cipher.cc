#include "server/core/uuid_cipher.h"

#include <cstdint>
#include <string>

#include "server/common/crypto.h"

namespace copilot::gateway {
namespace {

constexpr uint64_t kMask61 = (uint64_t{1} << 61) - 1;
constexpr uint64_t kMask62 = (uint64_t{1} << 62) - 1;
constexpr char kRoundDomain = 0x55;  // First byte of every round function input.

uint64_t LoadBigEndian(absl::string_view bytes) {
  uint64_t value = 0;
  for (int i = 0; i < 8; ++i) value = (value << 8) | static_cast<unsigned char>(bytes[i]);
  return value;
}

void StoreBigEndian(uint64_t value, char* out) {
  for (int i = 7; i >= 0; --i) {
    out[i] = static_cast<char>(value & 0xFF);
    value >>= 8;
  }
}

// A UUID as the two 61-bit Feistel halves of its 122 free bits, and the 6 fixed bits.
struct Halves {
  uint64_t left;
  uint64_t right;
  uint8_t fixed;  // version << 2 | top two variant bits
};

Halves Split(absl::string_view uuid) {
  const uint64_t high = LoadBigEndian(uuid.substr(0, 8));
  const uint64_t low = LoadBigEndian(uuid.substr(8, 8));
  const auto version = static_cast<uint8_t>((high >> 12) & 0xF);     // Byte 6, high nibble.
  const auto variant = static_cast<uint8_t>(low >> 62);              // Byte 8, top two bits.
  const uint64_t high_free = ((high >> 16) << 12) | (high & 0xFFF);  // 60 bits.
  const uint64_t low_free = low & kMask62;                           // 62 bits.
  return Halves{(high_free << 1) | (low_free >> 61), low_free & kMask61,
                static_cast<uint8_t>((version << 2) | variant)};
}

std::string Join(const Halves& halves) {
  const uint64_t high_free = halves.left >> 1;
  const uint64_t low_free = ((halves.left & 1) << 61) | halves.right;
  const uint64_t high =
      ((high_free >> 12) << 16) | ((uint64_t{halves.fixed} >> 2) << 12) | (high_free & 0xFFF);
  const uint64_t low = ((uint64_t{halves.fixed} & 3) << 62) | low_free;
  std::string uuid(16, '\0');
  StoreBigEndian(high, uuid.data());
  StoreBigEndian(low, uuid.data() + 8);
  return uuid;
}

// F(round, x): 61 bits of AES-128 of (domain, round, fixed bits, x).
uint64_t Round(absl::string_view key, int round, uint8_t fixed, uint64_t half) {
  std::string block(16, '\0');
  block[0] = kRoundDomain;
  block[1] = static_cast<char>(round);
  block[2] = static_cast<char>(fixed);
  StoreBigEndian(half, block.data() + 8);
  return LoadBigEndian(Aes128EncryptBlock(key, block)) & kMask61;
}

}  // namespace

std::string EncryptUuid(absl::string_view key, absl::string_view uuid) {
  Halves halves = Split(uuid);
  for (int round = 0; round < kUuidCipherRounds; ++round) {
    const uint64_t mixed = halves.left ^ Round(key, round, halves.fixed, halves.right);
    halves.left = halves.right;
    halves.right = mixed;
  }
  return Join(halves);
}

std::string DecryptUuid(absl::string_view key, absl::string_view uuid) {
  Halves halves = Split(uuid);
  for (int round = kUuidCipherRounds - 1; round >= 0; --round) {
    const uint64_t unmixed = halves.right ^ Round(key, round, halves.fixed, halves.left);
    halves.right = halves.left;
    halves.left = unmixed;
  }
  return Join(halves);
}

}  // namespace copilot::gateway
