// The upstream over HTTPS when TLS fails: an unknown CA, a certificate for another host, an
// expired certificate. Each call fails UNAVAILABLE with reason upstream_tls_error (safe to
// retry: nothing was sent), the failure is counted by reason, and the log says why once.
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "tests/server/integration/integration_fixture.h"

namespace copilot::gateway::testing {
namespace {

namespace v1 = ::copilot::v1;
using ::testing::HasSubstr;

const std::string kCerts = COPILOT_TEST_CERTS_DIR;

struct TlsCase {
  std::string name;
  std::string served;   // The emulator's certificate (tests/certs/make-test-certs.sh).
  std::string trusted;  // upstream.ca_file; empty: the system's CAs.
  std::string cause;    // In libcurl's text of the failure, which the gateway logs.
};

void PrintTo(const TlsCase& c, std::ostream* os) { *os << c.name; }

class GatewayUpstreamTlsTest : public ::testing::TestWithParam<TlsCase> {
 protected:
  void SetUp() override {
    const TlsCase& c = GetParam();
    auto emulator = emulator::testing::EmulatorProcess::Start(
        {.tls_cert_file = kCerts + "/" + c.served + ".pem",
         .tls_key_file = kCerts + "/" + c.served + ".key"});
    ASSERT_TRUE(emulator.ok()) << emulator.status();
    emulator_ = *std::move(emulator);
    GatewayProcessOptions options;
    options.upstream_url = absl::StrCat("https://127.0.0.1:", emulator_->tls_port(), "/agents");
    if (!c.trusted.empty()) options.upstream["ca_file"] = kCerts + "/" + c.trusted + ".pem";
    auto gateway = GatewayProcess::Start(options);
    ASSERT_TRUE(gateway.ok()) << gateway.status();
    gateway_ = *std::move(gateway);
  }

  grpc::Status ListAssistants() { return ListAssistantsThrough(*gateway_); }

  std::unique_ptr<emulator::testing::EmulatorProcess> emulator_;
  std::unique_ptr<GatewayProcess> gateway_;
};

TEST_P(GatewayUpstreamTlsTest, FailsUnavailableCountedAndLoggedOnceWithTheCause) {
  constexpr int kCalls = 3;
  for (int i = 0; i < kCalls; ++i) {
    grpc::Status status = ListAssistants();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
    EXPECT_EQ(Reason(status), "upstream_tls_error");
    // libcurl's text (host, port, certificate details) is for the log, never for callers.
    EXPECT_THAT(status.error_message(), ::testing::Not(HasSubstr("certificate")));
  }
  EXPECT_EQ(MetricValue(Scrape(*gateway_),
                        "copilot_gateway_upstream_transport_errors_total{reason="
                        "\"upstream_tls_error\"}"),
            absl::StrCat(kCalls));
  absl::StatusOr<nlohmann::json> records = emulator_->Requests();
  ASSERT_TRUE(records.ok());
  EXPECT_TRUE(records->empty()) << records->dump();  // Nothing reached the API.
  // One warning with the cause for the three calls (each call's own log line has it too).
  // Log lines are written by the gateway's log-writer thread, in order: once the third call's
  // own line is there, every warning of the three calls is too.
  auto count_lines = [this](absl::string_view text) {
    int n = 0;
    std::ifstream log(gateway_->log_path());
    for (std::string line; std::getline(log, line);) n += absl::StrContains(line, text) ? 1 : 0;
    return n;
  };
  EXPECT_TRUE(Eventually([&] { return count_lines("\"msg\":\"call\"") >= kCalls; }));
  int warnings = 0;
  std::ifstream log(gateway_->log_path());
  for (std::string line; std::getline(log, line);) {
    if (!absl::StrContains(line, "upstream TLS failed")) continue;
    ++warnings;
    EXPECT_THAT(line, HasSubstr(GetParam().cause));
  }
  EXPECT_EQ(warnings, 1);
}

INSTANTIATE_TEST_SUITE_P(
    Certificates, GatewayUpstreamTlsTest,
    ::testing::Values(
        TlsCase{"UnknownCaWithTheSystemTrustStore", "server", "", "unable to get local issuer"},
        TlsCase{"UnknownCaWithAnotherBundle", "server", "other-ca", "unable to get local issuer"},
        TlsCase{"CertificateForAnotherHost", "elsewhere", "ca", "subject name"},
        TlsCase{"ExpiredCertificate", "expired", "ca", "expired"}),
    [](const ::testing::TestParamInfo<TlsCase>& info) { return info.param.name; });

// The same emulator certificate trusted through upstream.ca_file, with TLS 1.3 required: works.
TEST(GatewayUpstreamTlsSettingsTest, TheTestCaAndTls13Work) {
  auto emulator = emulator::testing::EmulatorProcess::Start(
      {.tls_cert_file = kCerts + "/server.pem", .tls_key_file = kCerts + "/server.key"});
  ASSERT_TRUE(emulator.ok()) << emulator.status();
  GatewayProcessOptions options;
  options.upstream_url = absl::StrCat("https://127.0.0.1:", (*emulator)->tls_port(), "/agents");
  options.upstream = {{"ca_file", kCerts + "/ca.pem"}, {"tls_min_version", "1.3"}};
  auto gateway = GatewayProcess::Start(options);
  ASSERT_TRUE(gateway.ok()) << gateway.status();
  auto stub = v1::CopilotService::NewStub((*gateway)->channel());
  grpc::ClientContext context;
  SetTimeout(context, absl::Seconds(10));
  v1::ListAssistantsResponse response;
  grpc::Status status = stub->ListAssistants(&context, v1::ListAssistantsRequest(), &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_GT(response.assistants_size(), 0);
}

// A ca_file that cannot be read stops the start-up, naming the setting.
TEST(GatewayUpstreamTlsSettingsTest, AnUnreadableCaFileFailsTheStart) {
  GatewayProcessOptions options;
  options.upstream_url = "https://127.0.0.1:9/agents";
  options.upstream = {{"ca_file", "/nonexistent/ca.pem"}};
  options.startup_timeout = absl::Seconds(10);
  options.stderr_path = absl::StrCat(GatewayLogDir(), "/unreadable-ca-", getpid(), ".log");
  auto gateway = GatewayProcess::Start(options);
  ASSERT_FALSE(gateway.ok());
  std::ifstream log(options.stderr_path);
  std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  EXPECT_THAT(text, HasSubstr("upstream.ca_file"));
  EXPECT_THAT(text, HasSubstr("/nonexistent/ca.pem"));
}

}  // namespace
}  // namespace copilot::gateway::testing
