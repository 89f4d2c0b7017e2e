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

}  // namespace
}  // namespace copilot::gateway
