// Runs after every integration test (ctest fixture cleanup): no gateway log written during the
// suite contains any secret the tests configured (API keys, licences, bearer tokens, signing
// and user-ID keys). Gateways started through GatewayProcess log into GatewayLogDir(), emptied
// before the suite by the fixture's setup.
#include <dirent.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/server/integration/gateway_process.h"

namespace copilot::gateway::testing {
namespace {

// Every secret value the integration tests configure (keep in step when adding tests).
const std::vector<std::string> kSecrets = {
    // Upstream API keys.
    "test-api-key", "sk-very-secret-key", "not-the-key", "upstream-key-of-c",
    // Licences.
    "LIC-TEST-0001", "LIC-SECRET-777", "LIC-A-TAX", "LIC-B", "LIC-C-HR", "LIC-a", "LIC-d",
    // Bearer tokens (the config holds only their digests).
    "token-a-7f3e", "token-b-91c2", "token-b-rotated-0d4a", "token-c-55aa", "token-nobody-has",
    "token-a", "token-d", "token-e-in-clear",
    // Thread signing keys.
    "test-signing-key-0123456789abcdef0123456789", "a-different-signing-key-0123456789abcdef",
    "rotation-signing-key-A-0123456789abcdef01", "rotation-signing-key-B-0123456789abcdef01",
    // User-ID keys.
    "rotation-user-id-key-0123456789abcdef0123"};

TEST(LogSecretScan, NoGatewayLogOfTheSuiteContainsAConfiguredSecret) {
  DIR* dir = opendir(GatewayLogDir().c_str());
  ASSERT_NE(dir, nullptr) << "no gateway logs in " << GatewayLogDir();
  std::vector<std::string> files;
  while (dirent* entry = readdir(dir)) {
    const std::string name = entry->d_name;
    if (name.size() > 4 && name.substr(name.size() - 4) == ".log") {
      files.push_back(GatewayLogDir() + "/" + name);
    }
  }
  closedir(dir);
  ASSERT_FALSE(files.empty()) << "no gateway logs in " << GatewayLogDir();
  std::size_t bytes = 0;
  for (const std::string& file : files) {
    std::ifstream in(file);
    std::stringstream text;
    text << in.rdbuf();
    const std::string log = text.str();
    bytes += log.size();
    for (const std::string& secret : kSecrets) {
      const std::size_t at = log.find(secret);
      EXPECT_EQ(at, std::string::npos)
          << secret << " in " << file << ": ..."
          << log.substr(at == std::string::npos ? 0 : (at > 80 ? at - 80 : 0), 200);
    }
  }
  std::cout << "scanned " << files.size() << " gateway logs, " << bytes << " bytes, for "
            << kSecrets.size() << " secrets\n";
}

}  // namespace
}  // namespace copilot::gateway::testing
