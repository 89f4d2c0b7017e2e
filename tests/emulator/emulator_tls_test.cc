// The emulator's HTTPS listener (--tls-listen): the same API as the plain one, verified with the
// test CA, connections kept alive, and refused handshakes counted.
#include <string>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/emulator/testing/emulator_process.h"

namespace copilot::emulator {
namespace {

using testing::EmulatorProcess;
using testing::HttpClient;
using testing::HttpResponse;
using testing::RequestOptions;
using testing::SendHttpRequest;

const std::string kCerts = COPILOT_TEST_CERTS_DIR;

class EmulatorTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto emulator = EmulatorProcess::Start(
        {.tls_cert_file = kCerts + "/server.pem", .tls_key_file = kCerts + "/server.key"});
    ASSERT_TRUE(emulator.ok()) << emulator.status();
    emulator_ = *std::move(emulator);
  }

  RequestOptions Trusting(const std::string& ca) const {
    return {.headers = {{"api-key", emulator_->api_key()}}, .ca_file = kCerts + "/" + ca};
  }

  std::unique_ptr<EmulatorProcess> emulator_;
};

TEST_F(EmulatorTlsTest, ServesTheApiOverHttpsAndRecordsItWithThePlainOnes) {
  ASSERT_GT(emulator_->tls_port(), 0);
  EXPECT_NE(emulator_->tls_port(), emulator_->port());
  HttpResponse created = SendHttpRequest(
      "POST", emulator_->tls_api_url() + "/threads",
      R"({"assistant_id":"7c0e5d3a-4c1b-4f57-9a51-1f1f3e0a0002"})", Trusting("ca.pem"));
  ASSERT_TRUE(created.ok()) << created.curl_error;
  HttpResponse listed =
      SendHttpRequest("GET", emulator_->tls_api_url() + "/assistants", "", Trusting("ca.pem"));
  ASSERT_TRUE(listed.ok()) << listed.curl_error;
  EXPECT_EQ(listed.status, 200);
  EXPECT_TRUE(listed.Json().is_array()) << listed.body;
  absl::StatusOr<nlohmann::json> records = emulator_->Requests();  // Over plain HTTP.
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 2u) << records->dump();
  EXPECT_EQ((*records)[1]["route"], "list_assistants");
}

TEST_F(EmulatorTlsTest, KeepsConnectionsAlive) {
  HttpClient client;
  for (int i = 0; i < 3; ++i) {
    HttpResponse r =
        client.Send("GET", emulator_->tls_api_url() + "/assistants", "", Trusting("ca.pem"));
    ASSERT_TRUE(r.ok()) << r.curl_error;
    EXPECT_EQ(client.last_new_connections(), i == 0 ? 1 : 0);
  }
}

TEST_F(EmulatorTlsTest, AClientThatDoesNotTrustTheCertificateIsCounted) {
  HttpResponse r = SendHttpRequest("GET", emulator_->tls_api_url() + "/assistants", "",
                                   Trusting("other-ca.pem"));
  EXPECT_EQ(r.curl_code, CURLE_PEER_FAILED_VERIFICATION) << r.curl_error;
  // The server sees the client's alert on its own schedule.
  absl::StatusOr<nlohmann::json> stats;
  for (int i = 0; i < 500; ++i) {
    stats = emulator_->Stats();
    ASSERT_TRUE(stats.ok()) << stats.status();
    if ((*stats)["tls_handshake_failures"] == 1) break;
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ((*stats)["tls_handshake_failures"], 1) << stats->dump();
  absl::StatusOr<nlohmann::json> records = emulator_->Requests();
  ASSERT_TRUE(records.ok());
  EXPECT_TRUE(records->empty()) << records->dump();
}

TEST(EmulatorTlsStartTest, ABadCertificateFileFailsTheStartNamingIt) {
  auto emulator = EmulatorProcess::Start({.startup_timeout = absl::Seconds(5),
                                          .tls_cert_file = "/nonexistent/server.pem",
                                          .tls_key_file = kCerts + "/server.key"});
  ASSERT_FALSE(emulator.ok());
}

}  // namespace
}  // namespace copilot::emulator
