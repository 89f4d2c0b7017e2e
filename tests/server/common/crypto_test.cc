#include "server/common/crypto.h"

#include <string>

#include "absl/strings/escaping.h"
#include "gtest/gtest.h"

namespace copilot::gateway {
namespace {

// Known-answer tests: FIPS 180-2 for SHA-256, RFC 4231 test case 2 for HMAC-SHA-256.
TEST(CryptoTest, Sha256KnownAnswer) {
  EXPECT_EQ(absl::BytesToHexString(Sha256("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(absl::BytesToHexString(Sha256("")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(CryptoTest, HmacSha256KnownAnswer) {
  EXPECT_EQ(absl::BytesToHexString(HmacSha256("Jefe", "what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

// FIPS 197 appendix C.1 (AES-128).
TEST(CryptoTest, Aes128BlockKnownAnswerAndInverse) {
  std::string key, plain;
  for (int i = 0; i < 16; ++i) {
    key.push_back(static_cast<char>(i));
    plain.push_back(static_cast<char>(i * 0x11));
  }
  const std::string cipher = Aes128EncryptBlock(key, plain);
  EXPECT_EQ(absl::BytesToHexString(cipher), "69c4e0d86a7b0430d8cdb78070b4c55a");
  EXPECT_EQ(Aes128DecryptBlock(key, cipher), plain);
}

TEST(CryptoTest, ConstantTimeEquals) {
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abcd"));
}

}  // namespace
}  // namespace copilot::gateway
