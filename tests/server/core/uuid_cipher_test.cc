#include "server/core/uuid_cipher.h"

#include <cstdint>
#include <random>
#include <set>
#include <string>

#include "absl/strings/escaping.h"
#include "gtest/gtest.h"

namespace copilot::gateway {
namespace {

const std::string kKey(16, 'k');

// The 6 bits EncryptUuid keeps: version nibble and the top two variant bits.
int FixedBits(const std::string& uuid) {
  return ((static_cast<unsigned char>(uuid[6]) >> 4) << 2) |
         (static_cast<unsigned char>(uuid[8]) >> 6);
}

std::string RandomBytes16(std::mt19937_64& random) {
  std::string bytes(16, '\0');
  for (char& byte : bytes) byte = static_cast<char>(random() & 0xFF);
  return bytes;
}

TEST(UuidCipherTest, KeepsTheFixedBitsAndInvertsForEveryVersionAndVariant) {
  std::mt19937_64 random(7);
  for (int fixed = 0; fixed < 64; ++fixed) {
    for (int i = 0; i < 50; ++i) {
      std::string uuid = RandomBytes16(random);
      uuid[6] = static_cast<char>(((fixed >> 2) << 4) | (uuid[6] & 0x0F));
      uuid[8] = static_cast<char>(((fixed & 3) << 6) | (uuid[8] & 0x3F));
      const std::string encrypted = EncryptUuid(kKey, uuid);
      ASSERT_EQ(encrypted.size(), 16u);
      EXPECT_EQ(FixedBits(encrypted), fixed) << absl::BytesToHexString(uuid);
      EXPECT_NE(encrypted, uuid);
      EXPECT_EQ(DecryptUuid(kKey, encrypted), uuid) << absl::BytesToHexString(uuid);
    }
  }
}

TEST(UuidCipherTest, EveryFreeBitMattersAndChangesAboutHalfTheOutput) {
  std::mt19937_64 random(11);
  const std::string uuid = RandomBytes16(random);
  const std::string encrypted = EncryptUuid(kKey, uuid);
  std::set<std::string> outputs;
  int changed_bits = 0;
  int flips = 0;
  for (int bit = 0; bit < 128; ++bit) {
    const bool fixed = (bit >= 48 && bit < 52) || bit == 64 || bit == 65;  // MSB-first numbering.
    if (fixed) continue;
    std::string flipped = uuid;
    flipped[bit / 8] = static_cast<char>(flipped[bit / 8] ^ (0x80 >> (bit % 8)));
    const std::string out = EncryptUuid(kKey, flipped);
    outputs.insert(out);
    for (int j = 0; j < 16; ++j) {
      changed_bits += __builtin_popcount(static_cast<unsigned char>(out[j] ^ encrypted[j]));
    }
    ++flips;
  }
  EXPECT_EQ(flips, 122);
  EXPECT_EQ(outputs.size(), 122u);
  EXPECT_EQ(outputs.count(encrypted), 0u);
  // 122 free output bits, each flipping with probability 1/2: the mean is 61 per input flip.
  const double mean = static_cast<double>(changed_bits) / flips;
  EXPECT_GT(mean, 55);
  EXPECT_LT(mean, 67);
}

TEST(UuidCipherTest, DifferentKeysGiveDifferentPermutations) {
  std::mt19937_64 random(13);
  const std::string other_key(16, 'l');
  for (int i = 0; i < 100; ++i) {
    const std::string uuid = RandomBytes16(random);
    EXPECT_NE(EncryptUuid(kKey, uuid), EncryptUuid(other_key, uuid));
  }
}

TEST(UuidCipherTest, KnownAnswer) {
  // Pins the construction: changing it changes every end user's upstream ID. The value was
  // checked against a separate Python implementation of the header's description (AES from the
  // `cryptography` package).
  const std::string uuid = absl::HexStringToBytes("5a1b2c3d4e5f4a6b8c7d9e0f1a2b3c4d");
  EXPECT_EQ(absl::BytesToHexString(EncryptUuid(kKey, uuid)), "7245be9407f44affb9bf786b69e6466f");
}

}  // namespace
}  // namespace copilot::gateway
