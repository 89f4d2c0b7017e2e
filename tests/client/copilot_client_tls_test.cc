// CopilotClient over TLS and mutual TLS, against a FakeCopilotService serving
// the test certificates (tests/certs/make-test-certs.sh), and the checks
// MakeCopilotClient makes of the TLS options and the token.
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/copilot_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/fake_copilot_service.h"
#include "tests/client/test_certs.h"

namespace copilot::client {
namespace {

using ::copilot::client::testing::ClientCerts;
using ::copilot::client::testing::FakeCopilotService;
using ::copilot::client::testing::RecordedCall;
using ::copilot::client::testing::TestCertPath;
using ::copilot::client::testing::TestServerCredentials;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

constexpr char kTenantA[] = "spiffe://example.org/ns/a/sa/app";

// TLS options trusting ca.pem and checking the server's certificate for
// "localhost" while dialling `target` (127.0.0.1:PORT).
ClientOptions TlsOptions(const std::string& target) {
  ClientOptions options;
  options.target = target;
  options.token = "tok-acme";
  options.timeout = absl::Seconds(10);
  options.tls_root_certs_path = TestCertPath("ca.pem");
  options.tls_server_name = "localhost";
  return options;
}

// Presents client certificate `name` (.pem and .key).
ClientOptions WithClientCert(ClientOptions options, const std::string& name) {
  options.tls_cert_chain_path = TestCertPath(name + ".pem");
  options.tls_private_key_path = TestCertPath(name + ".key");
  return options;
}

absl::Status CallListAssistants(const ClientOptions& options) {
  absl::StatusOr<CopilotClient> client = MakeCopilotClient(options);
  if (!client.ok()) return client.status();
  return client->ListAssistants({}).status();
}

class CopilotClientTlsTest : public ::testing::Test {
 protected:
  void StartFake(ClientCerts client_certs) {
    fake_ = FakeCopilotService::Start(TestServerCredentials(client_certs));
    fake_->SetResponse("ListAssistants", v1::ListAssistantsResponse());
  }

  RecordedCall OnlyCall() {
    std::vector<RecordedCall> calls = fake_->calls();
    EXPECT_EQ(calls.size(), 1u);
    return calls.empty() ? RecordedCall{} : calls[0];
  }

  std::unique_ptr<FakeCopilotService> fake_;
};

TEST_F(CopilotClientTlsTest, TokenTravelsOverTls) {
  StartFake(ClientCerts::kNone);
  ASSERT_EQ(CallListAssistants(TlsOptions(fake_->target())), absl::OkStatus());
  RecordedCall call = OnlyCall();
  EXPECT_EQ(call.Metadata("authorization"), "Bearer tok-acme");
  EXPECT_THAT(call.AuthProperty("transport_security_type"), ElementsAre("ssl"));
  EXPECT_THAT(call.AuthProperty("x509_subject_alternative_name"), IsEmpty());
}

TEST_F(CopilotClientTlsTest, ServerNameOverrideIsWhatTheCertificateIsCheckedAgainst) {
  StartFake(ClientCerts::kNone);
  ClientOptions options = TlsOptions(fake_->target());
  // server.pem names localhost and 127.0.0.1, so the target's own host passes too.
  options.tls_server_name = "";
  EXPECT_EQ(CallListAssistants(options), absl::OkStatus());
  options.tls_server_name = "gateway.example";
  EXPECT_EQ(CallListAssistants(options).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(fake_->calls().size(), 1u);
}

TEST_F(CopilotClientTlsTest, ServerSignedByAnotherCaIsRefused) {
  StartFake(ClientCerts::kNone);
  ClientOptions options = TlsOptions(fake_->target());
  options.tls_root_certs_path = TestCertPath("other-ca.pem");
  EXPECT_EQ(CallListAssistants(options).code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(fake_->calls(), IsEmpty());
}

TEST_F(CopilotClientTlsTest, PlaintextClientCannotTalkToTlsServer) {
  StartFake(ClientCerts::kNone);
  ClientOptions options;
  options.target = fake_->target();
  options.timeout = absl::Seconds(10);
  EXPECT_EQ(CallListAssistants(options).code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(fake_->calls(), IsEmpty());
}

TEST_F(CopilotClientTlsTest, ClientCertificateCarriesTheSpiffeId) {
  StartFake(ClientCerts::kRequireAndVerify);
  ASSERT_EQ(CallListAssistants(WithClientCert(TlsOptions(fake_->target()), "tenant-a")),
            absl::OkStatus());
  RecordedCall call = OnlyCall();
  EXPECT_THAT(call.AuthProperty("peer_spiffe_id"), ElementsAre(kTenantA));
  EXPECT_THAT(call.AuthProperty("x509_subject_alternative_name"), ElementsAre(kTenantA));
  EXPECT_EQ(call.Metadata("authorization"), "Bearer tok-acme");
}

TEST_F(CopilotClientTlsTest, EachTenantPresentsItsOwnIdentity) {
  StartFake(ClientCerts::kRequireAndVerify);
  ASSERT_EQ(CallListAssistants(WithClientCert(TlsOptions(fake_->target()), "tenant-b")),
            absl::OkStatus());
  EXPECT_THAT(OnlyCall().AuthProperty("peer_spiffe_id"),
              ElementsAre("spiffe://example.org/ns/b/sa/app"));
}

TEST_F(CopilotClientTlsTest, DnsClientCertificateHasNoSpiffeId) {
  StartFake(ClientCerts::kRequireAndVerify);
  ASSERT_EQ(CallListAssistants(WithClientCert(TlsOptions(fake_->target()), "dns-client")),
            absl::OkStatus());
  RecordedCall call = OnlyCall();
  EXPECT_THAT(call.AuthProperty("peer_spiffe_id"), IsEmpty());
  EXPECT_THAT(call.AuthProperty("x509_subject_alternative_name"),
              ElementsAre("batch.internal.example"));
}

TEST_F(CopilotClientTlsTest, ImpostorSignedByAnotherCaIsRefused) {
  StartFake(ClientCerts::kRequireAndVerify);
  EXPECT_EQ(CallListAssistants(WithClientCert(TlsOptions(fake_->target()), "stranger")).code(),
            absl::StatusCode::kUnavailable);
  EXPECT_THAT(fake_->calls(), IsEmpty());
}

TEST_F(CopilotClientTlsTest, ServerRequiringAClientCertificateRefusesNone) {
  StartFake(ClientCerts::kRequireAndVerify);
  EXPECT_EQ(CallListAssistants(TlsOptions(fake_->target())).code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(fake_->calls(), IsEmpty());
}

// ---- option checks ------------------------------------------------------------

TEST(MakeCopilotClientTlsTest, ClientCertificateNeedsItsKeyAndTheKeyItsCertificate) {
  const absl::Status half_pair = absl::InvalidArgumentError(
      "ClientOptions.tls_cert_chain_path and ClientOptions.tls_private_key_path go together: set "
      "both or neither");
  ClientOptions cert_only;
  cert_only.tls_cert_chain_path = TestCertPath("tenant-a.pem");
  EXPECT_EQ(MakeCopilotClient(cert_only).status(), half_pair);
  ClientOptions key_only;
  key_only.tls_private_key_path = TestCertPath("tenant-a.key");
  EXPECT_EQ(MakeCopilotClient(key_only).status(), half_pair);
}

TEST(MakeCopilotClientTlsTest, UnreadableFilesAreNotFoundNamingWhatAndWhere) {
  ClientOptions cert = WithClientCert(ClientOptions(), "tenant-a");
  cert.tls_cert_chain_path = "/nonexistent/tenant.pem";
  EXPECT_EQ(MakeCopilotClient(cert).status(),
            absl::NotFoundError(
                "cannot read TLS client certificate /nonexistent/tenant.pem: No such file or "
                "directory"));
  ClientOptions key = WithClientCert(ClientOptions(), "tenant-a");
  key.tls_private_key_path = COPILOT_TEST_CERTS_DIR;
  EXPECT_EQ(MakeCopilotClient(key).status(),
            absl::NotFoundError(absl::StrCat("cannot read TLS client private key ",
                                             COPILOT_TEST_CERTS_DIR, ": Is a directory")));
}

TEST(MakeCopilotClientTlsTest, FileWithoutPemDataIsInvalid) {
  const std::string path = absl::StrCat(::testing::TempDir(), "/not-pem.", getpid());
  std::ofstream(path) << "not a certificate\n";
  ClientOptions options;
  options.tls_root_certs_path = path;
  EXPECT_EQ(MakeCopilotClient(options).status(),
            absl::InvalidArgumentError(
                absl::StrCat("TLS root certificates ", path, " holds no PEM data")));
  std::remove(path.c_str());
}

TEST(MakeCopilotClientTlsTest, TlsFieldsImplyTls) {
  ClientOptions options;
  EXPECT_FALSE(options.UsesTls());
  options.tls_server_name = "localhost";
  EXPECT_TRUE(options.UsesTls());
}

TEST(MakeCopilotClientTokenTest, TokenThatCannotBeAHeaderIsRejectedWithoutQuotingIt) {
  for (const std::string& token :
       {std::string("secret part"), std::string("secret\npart"), std::string("secr\xc3\xa9t")}) {
    ClientOptions options;
    options.token = token;
    absl::Status status = MakeCopilotClient(options).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(status.message(),
                HasSubstr("ClientOptions.token may hold only printable ASCII without spaces"));
    EXPECT_THAT(status.message(), Not(HasSubstr("secr")));
  }
  EXPECT_EQ(CheckBearerToken("secret part"),
            absl::InvalidArgumentError(
                "token may hold only printable ASCII without spaces; byte 7 of 11 is not"));
  EXPECT_EQ(CheckBearerToken("tok-acme.9~+/="), absl::OkStatus());
  EXPECT_EQ(CheckBearerToken(""), absl::OkStatus());
}

}  // namespace
}  // namespace copilot::client
