#include "server/common/crypto.h"

#include <string>
#include <thread>
#include <vector>

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

// RFC 4231 test cases 1, 2 and 6 (6: a 131-byte key, hashed first), and HmacSha256 for keys
// around the 64-byte block and empty data.
TEST(CryptoTest, PreparedHmacKeyMatchesKnownAnswersAndTheOneShot) {
  EXPECT_EQ(absl::BytesToHexString(HmacSha256Key(std::string(20, '\x0b')).Sign("Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  EXPECT_EQ(absl::BytesToHexString(HmacSha256Key("Jefe").Sign("what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  EXPECT_EQ(
      absl::BytesToHexString(HmacSha256Key(std::string(131, '\xaa'))
                                 .Sign("Test Using Larger Than Block-Size Key - Hash Key First")),
      "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
  for (std::size_t key_size : {0, 1, 32, 63, 64, 65, 200}) {
    const std::string key(key_size, 'k');
    const HmacSha256Key prepared(key);
    for (const std::string& data : {std::string(), std::string("x"), std::string(1000, 'd')}) {
      EXPECT_EQ(prepared.Sign(data), HmacSha256(key, data)) << key_size << " " << data.size();
    }
  }
}

// One prepared key (and its copies) signs from many threads at once, every MAC right.
TEST(CryptoTest, PreparedHmacKeySignsFromManyThreads) {
  const HmacSha256Key key("thread-handle-key");
  const std::string expected = HmacSha256("thread-handle-key", "payload");
  std::vector<std::thread> threads;
  std::vector<int> wrong(8, 0);
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t, copy = key] {
      for (int i = 0; i < 2000; ++i) {
        if ((i % 2 == 0 ? key : copy).Sign("payload") != expected) ++wrong[t];
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (int t = 0; t < 8; ++t) EXPECT_EQ(wrong[t], 0) << "thread " << t;
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
