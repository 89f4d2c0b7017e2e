#include "server/common/secrets.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace copilot::gateway {
namespace {

TEST(RedactSecretsTest, ReplacesEveryOccurrenceOfEverySecret) {
  const std::vector<std::string> secrets = {"key-123", "PI42"};
  EXPECT_EQ(RedactSecrets("key-123 and PI42, again key-123", secrets),
            "[redacted] and [redacted], again [redacted]");
}

TEST(RedactSecretsTest, EmptySecretsAndTextWithoutSecretsAreLeftAlone) {
  const std::vector<std::string> secrets = {"", "PI42"};
  EXPECT_EQ(RedactSecrets("nothing here", secrets), "nothing here");
  EXPECT_EQ(RedactSecrets("", secrets), "");
  EXPECT_EQ(RedactSecrets("abc", {}), "abc");
}

TEST(RedactSecretsTest, KeepsJsonValidWhenTheSecretIsInAString) {
  EXPECT_EQ(RedactSecrets(R"({"detail":"licence PI42"})", std::vector<std::string>{"PI42"}),
            R"({"detail":"licence [redacted]"})");
}

TEST(SecretPrefixAtEndTest, TheLongestEndThatBeginsASecretButIsNotAllOfIt) {
  const std::vector<std::string> secrets = {"", "PI42", "key-123"};
  EXPECT_EQ(SecretPrefixAtEnd("licence P", secrets), 1u);
  EXPECT_EQ(SecretPrefixAtEnd("licence PI4", secrets), 3u);
  EXPECT_EQ(SecretPrefixAtEnd("key: key-12", secrets), 6u);
  EXPECT_EQ(SecretPrefixAtEnd("ke", secrets), 2u);
  EXPECT_EQ(SecretPrefixAtEnd("licence PI42", secrets), 0u);  // Whole: RedactSecrets' job.
  EXPECT_EQ(SecretPrefixAtEnd("PIE", secrets), 0u);
  EXPECT_EQ(SecretPrefixAtEnd("", secrets), 0u);
  EXPECT_EQ(SecretPrefixAtEnd("P", {}), 0u);
}

}  // namespace
}  // namespace copilot::gateway
