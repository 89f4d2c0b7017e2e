// The TLS listener: client certificates (SPIFFE ID or DNS SAN) mapped to tenants, bearer tokens
// over TLS, and certificates from a foreign CA refused.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/common/crypto.h"
#include "tests/server/integration/integration_fixture.h"

namespace copilot::gateway::testing {
namespace {

namespace v1 = ::copilot::v1;

std::string Cert(const std::string& name) {
  return absl::StrCat(COPILOT_TEST_CERTS_DIR, "/", name);
}

std::string Read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

class GatewayMtlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto emulator = emulator::testing::EmulatorProcess::Start({});
    ASSERT_TRUE(emulator.ok()) << emulator.status();
    emulator_ = std::move(*emulator).release();
    GatewayProcessOptions options;
    options.upstream_url = emulator_->base_url() + "/agents";
    options.identity = "bearer";
    options.extra_yaml =
        absl::StrCat("tls:\n  listen: \"127.0.0.1:0\"\n  cert_file: \"", Cert("server.pem"),
                     "\"\n  key_file: \"", Cert("server.key"), "\"\n  client_ca_file: \"",
                     Cert("ca.pem"), "\"\n  identity: [mtls, bearer]\n", "tenants:\n",
                     "  - id: a\n    spiffe_ids: [\"spiffe://example.org/ns/a/sa/app\"]\n",
                     "    bearer_token_sha256: [\"", absl::BytesToHexString(Sha256("tls-token-a")),
                     "\"]\n", "    licence: LIC-MTLS-A\n    assistants: [{id: \"*\"}]\n",
                     "  - id: b\n    spiffe_ids: [\"spiffe://example.org/ns/b/sa/app\"]\n",
                     "    assistants: [{id: \"*\"}]\n",
                     "  - id: c\n    dns_names: [\"batch.internal.example\"]\n",
                     "    assistants: [{id: \"*\"}]\n");
    auto gateway = GatewayProcess::Start(options);
    ASSERT_TRUE(gateway.ok()) << gateway.status();
    gateway_ = std::move(*gateway).release();
    ASSERT_GT(gateway_->tls_port(), 0);
  }
  static void TearDownTestSuite() {
    if (gateway_ != nullptr) {
      EXPECT_EQ(gateway_->Stop().value_or(-1), 0);
    }
    delete gateway_;
    delete emulator_;
    gateway_ = nullptr;
    emulator_ = nullptr;
  }

  // A stub over TLS presenting client certificate `client` (none when empty), trusting `ca`.
  static std::unique_ptr<v1::CopilotService::Stub> StubAs(const std::string& client,
                                                          const std::string& ca = "ca.pem") {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = Read(Cert(ca));
    if (!client.empty()) {
      ssl.pem_cert_chain = Read(Cert(client + ".pem"));
      ssl.pem_private_key = Read(Cert(client + ".key"));
    }
    grpc::ChannelArguments args;
    args.SetSslTargetNameOverride("localhost");
    return v1::CopilotService::NewStub(grpc::CreateCustomChannel(
        absl::StrCat("127.0.0.1:", gateway_->tls_port()), grpc::SslCredentials(ssl), args));
  }

  static grpc::Status GetThread(v1::CopilotService::Stub& stub, const std::string& thread,
                                const std::string& token = "") {
    grpc::ClientContext context;
    SetTimeout(context, absl::Seconds(10));
    if (!token.empty()) context.AddMetadata("authorization", "Bearer " + token);
    v1::GetThreadRequest r;
    r.set_thread_id(thread);
    v1::GetThreadResponse out;
    return stub.GetThread(&context, r, &out);
  }

  static inline emulator::testing::EmulatorProcess* emulator_ = nullptr;
  static inline GatewayProcess* gateway_ = nullptr;
};

TEST_F(GatewayMtlsTest, ClientCertificatesAreTenants) {
  auto a = StubAs("tenant-a");
  grpc::ClientContext context;
  SetTimeout(context, absl::Seconds(10));
  v1::CreateThreadRequest create;
  create.set_assistant_id(kHrAssistant);
  v1::CreateThreadResponse created;
  grpc::Status status = a->CreateThread(&context, create, &created);
  ASSERT_TRUE(status.ok()) << status.error_message();
  const std::string thread = created.thread().id();

  EXPECT_EQ(GetThread(*a, thread).error_code(), grpc::StatusCode::OK);
  EXPECT_EQ(GetThread(*StubAs("tenant-b"), thread).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(GetThread(*StubAs("dns-client"), thread).error_code(), grpc::StatusCode::NOT_FOUND);
  // No certificate: a bearer token still works over TLS; nothing at all is UNAUTHENTICATED.
  EXPECT_EQ(GetThread(*StubAs(""), thread, "tls-token-a").error_code(), grpc::StatusCode::OK);
  EXPECT_EQ(GetThread(*StubAs(""), thread).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  // A certificate for the same SPIFFE ID from another CA never gets past the handshake.
  const grpc::Status stranger = GetThread(*StubAs("stranger"), thread);
  EXPECT_EQ(stranger.error_code(), grpc::StatusCode::UNAVAILABLE) << stranger.error_message();
}

TEST_F(GatewayMtlsTest, PlaintextListenerStillWantsABearerToken) {
  auto plain = v1::CopilotService::NewStub(gateway_->NewChannel());
  EXPECT_EQ(GetThread(*plain, "th1_x").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(GetThread(*plain, "th1_x", "tls-token-a").error_code(), grpc::StatusCode::NOT_FOUND);
}

// The serial number of the certificate `port` serves (openssl s_client), "" if none.
std::string ServedSerial(int port) {
  const std::string command = absl::StrCat(
      "openssl s_client -connect 127.0.0.1:", port,
      " -servername localhost </dev/null 2>/dev/null | openssl x509 -noout -serial 2>/dev/null");
  std::string out;
  if (FILE* pipe = popen(command.c_str(), "r")) {
    char buffer[256];
    while (fgets(buffer, sizeof(buffer), pipe) != nullptr) out += buffer;
    pclose(pipe);
  }
  return out;
}

std::string FileSerial(const std::string& pem) {
  std::string out;
  if (FILE* pipe = popen(absl::StrCat("openssl x509 -noout -serial -in ", pem).c_str(), "r")) {
    char buffer[256];
    while (fgets(buffer, sizeof(buffer), pipe) != nullptr) out += buffer;
    pclose(pipe);
  }
  return out;
}

TEST(GatewayTlsRotationTest, ServerCertificateFilesAreReloaded) {
  // The gateway serves copies, which the test then replaces (a Kubernetes secret update).
  const std::string dir = absl::StrCat(::testing::TempDir(), "/tls-rotation-", getpid());
  ASSERT_EQ(system(absl::StrCat("mkdir -p ", dir, " && cp ", Cert("server.pem"), " ", dir,
                                "/tls.crt && cp ", Cert("server.key"), " ", dir, "/tls.key")
                       .c_str()),
            0);
  auto emulator = emulator::testing::EmulatorProcess::Start({});
  ASSERT_TRUE(emulator.ok()) << emulator.status();
  GatewayProcessOptions options;
  options.upstream_url = (*emulator)->base_url() + "/agents";
  options.extra_yaml = absl::StrCat("tls:\n  listen: \"127.0.0.1:0\"\n  cert_file: \"", dir,
                                    "/tls.crt\"\n  key_file: \"", dir,
                                    "/tls.key\"\n  identity: [bearer]\n  refresh_interval: 1s\n");
  auto gateway = GatewayProcess::Start(options);
  ASSERT_TRUE(gateway.ok()) << gateway.status();
  const std::string first = FileSerial(Cert("server.pem"));
  const std::string second = FileSerial(Cert("server2.pem"));
  ASSERT_FALSE(first.empty());
  ASSERT_NE(first, second);
  EXPECT_EQ(ServedSerial((*gateway)->tls_port()), first);
  ASSERT_EQ(system(absl::StrCat("cp ", Cert("server2.key"), " ", dir, "/tls.key.new && cp ",
                                Cert("server2.pem"), " ", dir, "/tls.crt.new && mv ", dir,
                                "/tls.key.new ", dir, "/tls.key && mv ", dir, "/tls.crt.new ", dir,
                                "/tls.crt")
                       .c_str()),
            0);
  std::string served;
  for (int i = 0; i < 100 && served != second; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    served = ServedSerial((*gateway)->tls_port());
  }
  EXPECT_EQ(served, second) << "the new certificate was not picked up within 10 s";
  EXPECT_EQ((*gateway)->Stop().value_or(-1), 0);
  system(absl::StrCat("rm -rf ", dir).c_str());
}

// Certificate files that cannot be read, or hold the wrong thing, stop the start naming the
// setting: gRPC's certificate watcher would only log it and fail every handshake.
TEST(GatewayTlsFilesTest, UnreadableOrWrongFilesFailTheStart) {
  struct Case {
    std::string cert, key, client_ca, setting, why;
  };
  const std::vector<Case> cases = {
      {"/nonexistent/tls.crt", Cert("server.key"), "", "tls.cert_file",
       "cannot read /nonexistent/tls.crt: No such file or directory"},
      {Cert("server.pem"), "/nonexistent/tls.key", "", "tls.key_file",
       "cannot read /nonexistent/tls.key"},
      {Cert("server.key"), Cert("server.key"), "", "tls.cert_file", "holds no PEM certificate"},
      {Cert("server.pem"), Cert("server.pem"), "", "tls.key_file", "holds no PEM private key"},
      {Cert("server.pem"), Cert("server.key"), "/nonexistent/ca.pem", "tls.client_ca_file",
       "cannot read /nonexistent/ca.pem"},
  };
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    GatewayProcessOptions options;
    options.upstream_url = "http://127.0.0.1:9/agents";
    options.extra_yaml = absl::StrCat(
        "tls:\n  listen: \"127.0.0.1:0\"\n  cert_file: \"", c.cert, "\"\n  key_file: \"", c.key,
        "\"\n", c.client_ca.empty() ? "" : "  client_ca_file: \"", c.client_ca,
        c.client_ca.empty() ? "" : "\"\n", "  identity: [bearer]\n");
    options.startup_timeout = absl::Seconds(10);
    options.stderr_path = absl::StrCat(GatewayLogDir(), "/tls-files-", getpid(), "-", i, ".log");
    auto gateway = GatewayProcess::Start(options);
    ASSERT_FALSE(gateway.ok()) << c.setting;
    const std::string log = Read(options.stderr_path);
    EXPECT_TRUE(absl::StrContains(log, absl::StrCat(c.setting, ": ")) &&
                absl::StrContains(log, c.why))
        << c.setting << " / " << c.why << ":\n"
        << log;
    // The key file's contents are never echoed.
    EXPECT_FALSE(absl::StrContains(log, "PRIVATE KEY")) << log;
  }
}

}  // namespace
}  // namespace copilot::gateway::testing
