// The TLS test certificates (tests/certs/make-test-certs.sh) for client tests:
// their paths, and server credentials for a FakeCopilotService that serves
// TLS. Needs the COPILOT_TEST_CERTS_DIR compile definition, which linking the
// copilot_test_certs CMake target provides.
//
//   auto fake = FakeCopilotService::Start(TestServerCredentials(ClientCerts::kRequireAndVerify));
//   options.tls_root_certs_path = TestCertPath("ca.pem");
//   options.tls_cert_chain_path = TestCertPath("tenant-a.pem");
//   options.tls_private_key_path = TestCertPath("tenant-a.key");
//   options.tls_server_name = "localhost";
#ifndef COPILOT_TESTS_CLIENT_TEST_CERTS_H_
#define COPILOT_TESTS_CLIENT_TEST_CERTS_H_

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "grpcpp/security/server_credentials.h"

#ifndef COPILOT_TEST_CERTS_DIR
#error "link the copilot_test_certs CMake target, which defines COPILOT_TEST_CERTS_DIR"
#endif

namespace copilot::client::testing {

// "<COPILOT_TEST_CERTS_DIR>/<name>", e.g. TestCertPath("ca.pem").
inline std::string TestCertPath(absl::string_view name) {
  return absl::StrCat(COPILOT_TEST_CERTS_DIR, "/", name);
}

// The contents of test certificate file `name`. Crashes the test when it is
// missing: the build makes them (CMake target test_certs).
inline std::string ReadTestCert(absl::string_view name) {
  std::ifstream in(TestCertPath(name), std::ios::binary);
  if (!in) {
    std::cerr << "missing test certificate " << TestCertPath(name) << " (ninja test_certs)\n";
    std::abort();
  }
  std::ostringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

// What the server asks of the client's certificate.
enum class ClientCerts {
  kNone,              // asks for none
  kRequireAndVerify,  // requires one that chains to ca.pem
};

// TLS server credentials with server.pem (SAN localhost, 127.0.0.1), signed
// by ca.pem.
inline std::shared_ptr<grpc::ServerCredentials> TestServerCredentials(ClientCerts client_certs) {
  grpc::SslServerCredentialsOptions options(
      client_certs == ClientCerts::kNone
          ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
          : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  if (client_certs != ClientCerts::kNone) options.pem_root_certs = ReadTestCert("ca.pem");
  options.pem_key_cert_pairs.push_back({ReadTestCert("server.key"), ReadTestCert("server.pem")});
  return grpc::SslServerCredentials(options);
}

}  // namespace copilot::client::testing

#endif  // COPILOT_TESTS_CLIENT_TEST_CERTS_H_
