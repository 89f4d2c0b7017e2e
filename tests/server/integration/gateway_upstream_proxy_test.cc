// The upstream behind a real forward proxy (tinyproxy), as behind a corporate egress proxy:
// proxy authentication refused, no_proxy, the environment's https_proxy only when the setting
// is absent, and `proxy: none`. Every RPC through the proxy with CONNECT and credentials runs
// as the "h2+proxy.*" tests (integration_fixture.h).
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "tests/server/integration/integration_fixture.h"

namespace copilot::gateway::testing {
namespace {

namespace v1 = ::copilot::v1;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::SizeIs;
using ::testing::StartsWith;

const std::string kCerts = COPILOT_TEST_CERTS_DIR;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

class GatewayUpstreamProxyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto emulator = emulator::testing::EmulatorProcess::Start(
        {.tls_cert_file = kCerts + "/server.pem", .tls_key_file = kCerts + "/server.key"});
    ASSERT_TRUE(emulator.ok()) << emulator.status();
    emulator_ = *std::move(emulator);
  }

  void TearDown() override {
    for (const std::string& path : files_) std::remove(path.c_str());
  }

  void StartProxy(ForwardProxyOptions options = {}) {
    auto proxy = ForwardProxy::Start(std::move(options));
    ASSERT_TRUE(proxy.ok()) << proxy.status();
    proxy_ = *std::move(proxy);
  }

  std::string TempFile(const std::string& contents) {
    char path[] = "/tmp/copilot_proxy_test_XXXXXX";
    const int fd = mkstemp(path);
    EXPECT_GE(fd, 0);
    close(fd);
    std::ofstream(path) << contents;
    files_.emplace_back(path);
    return path;
  }

  // A gateway for the emulator's HTTPS listener, trusting the test CA.
  GatewayProcessOptions Options() const {
    GatewayProcessOptions options;
    options.upstream_url = absl::StrCat("https://127.0.0.1:", emulator_->tls_port(), "/agents");
    options.upstream = {{"ca_file", kCerts + "/ca.pem"}};
    return options;
  }

  void StartGateway(GatewayProcessOptions options) {
    auto gateway = GatewayProcess::Start(std::move(options));
    ASSERT_TRUE(gateway.ok()) << gateway.status();
    gateway_ = *std::move(gateway);
  }

  grpc::Status ListAssistants() { return ListAssistantsThrough(*gateway_); }

  std::string GatewayLog() const { return ReadAll(gateway_->log_path()); }

  std::unique_ptr<emulator::testing::EmulatorProcess> emulator_;
  std::unique_ptr<ForwardProxy> proxy_;
  std::unique_ptr<GatewayProcess> gateway_;
  std::vector<std::string> files_;
};

// The proxy refuses the credentials (tinyproxy answers CONNECT with 401 where squid says 407):
// UNAVAILABLE upstream_proxy_error with the proxy's status, counted, logged once with libcurl's
// account of it; nothing reached the API and the password is in no log.
TEST_F(GatewayUpstreamProxyTest, AWrongProxyPasswordFailsUnavailableCountedAndLoggedOnce) {
  StartProxy({.username = "egress", .password = "right-password"});
  GatewayProcessOptions options = Options();
  options.upstream["proxy"] = proxy_->url();
  options.upstream["proxy_credentials_file"] = TempFile("egress:wrong-password\n");
  StartGateway(std::move(options));
  constexpr int kCalls = 3;
  for (int i = 0; i < kCalls; ++i) {
    grpc::Status status = ListAssistants();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
    EXPECT_EQ(Reason(status), "upstream_proxy_error");
    EXPECT_THAT(status.error_message(), HasSubstr("(HTTP 401)"));
    EXPECT_THAT(status.error_message(), Not(HasSubstr(proxy_->url())));
  }
  // A POST too: the proxy's refusal is not the upstream's answer (its CONNECT response headers
  // are kept from the transport), so nothing "may have been carried out": UNAVAILABLE.
  auto stub = v1::CopilotService::NewStub(gateway_->channel());
  grpc::ClientContext context;
  SetTimeout(context, absl::Seconds(10));
  v1::CreateThreadRequest create;
  create.set_assistant_id(kTaxAssistant);
  v1::CreateThreadResponse created;
  grpc::Status post = stub->CreateThread(&context, create, &created);
  EXPECT_EQ(post.error_code(), grpc::StatusCode::UNAVAILABLE) << post.error_message();
  EXPECT_EQ(Reason(post), "upstream_proxy_error");
  EXPECT_EQ(MetricValue(Scrape(*gateway_),
                        "copilot_gateway_upstream_transport_errors_total{reason="
                        "\"upstream_proxy_error\"}"),
            absl::StrCat(kCalls + 1));
  absl::StatusOr<nlohmann::json> records = emulator_->Requests();
  ASSERT_TRUE(records.ok());
  EXPECT_TRUE(records->empty()) << records->dump();
  EXPECT_THAT(proxy_->Requests(), Not(IsEmpty()));
  for (const std::string& request : proxy_->Requests()) {
    EXPECT_THAT(request, StartsWith("CONNECT 127.0.0.1:"));
  }
  // Log lines are written by the gateway's log-writer thread, in order: once every call's own
  // line is there, so is every warning of theirs.
  EXPECT_TRUE(Eventually([&] {
    int calls = 0;
    for (absl::string_view line : absl::StrSplit(GatewayLog(), '\n')) {
      calls += absl::StrContains(line, "\"msg\":\"call\"") ? 1 : 0;
    }
    return calls >= kCalls + 1;
  }));
  const std::string log = GatewayLog();
  int warnings = 0;
  for (absl::string_view line : absl::StrSplit(log, '\n')) {
    if (!absl::StrContains(line, "upstream proxy failed")) continue;
    ++warnings;
    EXPECT_THAT(std::string(line), HasSubstr("response 401"));
  }
  EXPECT_EQ(warnings, 1) << log;
  EXPECT_THAT(log, HasSubstr("as proxy user egress"));
  EXPECT_THAT(log, Not(HasSubstr("wrong-password")));
}

// upstream.no_proxy names the upstream's host: the proxy sees nothing.
TEST_F(GatewayUpstreamProxyTest, NoProxyGoesDirect) {
  StartProxy();
  GatewayProcessOptions options = Options();
  options.upstream["proxy"] = proxy_->url();
  options.upstream["no_proxy"] = "127.0.0.1";
  StartGateway(std::move(options));
  grpc::Status status = ListAssistants();
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_THAT(proxy_->Requests(), IsEmpty());
  EXPECT_TRUE(Eventually([&] {
    return absl::StrContains(GatewayLog(), "(from upstream.proxy), not for 127.0.0.1");
  })) << GatewayLog();
}

// Without upstream.proxy the environment's https_proxy is used, and the log says so.
TEST_F(GatewayUpstreamProxyTest, TheEnvironmentsHttpsProxyServesWhenTheSettingIsAbsent) {
  StartProxy();
  GatewayProcessOptions options = Options();
  options.env = {{"https_proxy", proxy_->url()}, {"no_proxy", ""}, {"NO_PROXY", ""}};
  StartGateway(std::move(options));
  grpc::Status status = ListAssistants();
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_THAT(proxy_->Requests(), ::testing::ElementsAre(absl::StrCat(
                                      "CONNECT 127.0.0.1:", emulator_->tls_port(), " HTTP/1.1")));
  const std::string expected = absl::StrCat("through proxy ", proxy_->url(), " (from https_proxy)");
  EXPECT_TRUE(Eventually([&] { return absl::StrContains(GatewayLog(), expected); }))
      << GatewayLog();
}

// `proxy: none` goes direct whatever the environment says.
TEST_F(GatewayUpstreamProxyTest, ProxyNoneIgnoresTheEnvironment) {
  StartProxy();
  GatewayProcessOptions options = Options();
  options.upstream["proxy"] = "none";
  options.env = {{"https_proxy", proxy_->url()}, {"HTTPS_PROXY", proxy_->url()}};
  StartGateway(std::move(options));
  grpc::Status status = ListAssistants();
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_THAT(proxy_->Requests(), IsEmpty());
  EXPECT_TRUE(Eventually([&] { return absl::StrContains(GatewayLog(), "direct (no proxy)"); }))
      << GatewayLog();
}

// Calls share tunnels: the proxy sees a few CONNECTs for many calls, not one per call.
TEST_F(GatewayUpstreamProxyTest, CallsReuseTheirTunnels) {
  StartProxy({.username = "egress", .password = "pw"});
  GatewayProcessOptions options = Options();
  options.upstream["proxy"] = proxy_->url();
  options.upstream["proxy_credentials_file"] = TempFile("egress:pw\n");
  StartGateway(std::move(options));
  constexpr int kCalls = 20;
  for (int i = 0; i < kCalls; ++i) {
    grpc::Status status = ListAssistants();
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  absl::StatusOr<nlohmann::json> records = emulator_->Requests();
  ASSERT_TRUE(records.ok());
  EXPECT_THAT(*records, SizeIs(kCalls));
  EXPECT_THAT(proxy_->Requests(), SizeIs(1)) << proxy_->Log();
}

}  // namespace
}  // namespace copilot::gateway::testing
