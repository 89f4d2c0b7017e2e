#include "server/common/pem_file.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace copilot::gateway {
namespace {

using ::testing::HasSubstr;

class PemFileTest : public ::testing::Test {
 protected:
  // A file holding `text`, removed with the test.
  std::string Write(const std::string& name, const std::string& text) {
    const std::string path = absl::StrCat(::testing::TempDir(), "/pem-", getpid(), "-", name);
    std::ofstream(path, std::ios::binary) << text;
    written_.push_back(path);
    return path;
  }
  void TearDown() override {
    for (const std::string& path : written_) std::remove(path.c_str());
  }

 private:
  std::vector<std::string> written_;
};

constexpr char kCertificate[] = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

TEST_F(PemFileTest, AcceptsCertificatesAndEveryPrivateKeyShape) {
  EXPECT_TRUE(CheckPemFile("s", Write("cert", kCertificate), PemKind::kCertificates).ok());
  EXPECT_TRUE(CheckPemFile(
                  "s", Write("chain", absl::StrCat("bag attributes\n", kCertificate, kCertificate)),
                  PemKind::kCertificates)
                  .ok());
  for (const char* type : {"PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"}) {
    const std::string key =
        absl::StrCat("-----BEGIN ", type, "-----\nMIIE\n-----END ", type, "-----\n");
    EXPECT_TRUE(CheckPemFile("s", Write("key", key), PemKind::kPrivateKey).ok()) << type;
  }
}

TEST_F(PemFileTest, AMissingFileNamesTheSettingThePathAndWhy) {
  const absl::Status status =
      CheckPemFile("tls.cert_file", "/nonexistent/x.pem", PemKind::kCertificates);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(),
            "tls.cert_file: cannot read /nonexistent/x.pem: No such file or directory");
}

TEST_F(PemFileTest, TheWrongContentsAreRefusedWithoutEchoingThem) {
  const std::string key_path =
      Write("key", "-----BEGIN PRIVATE KEY-----\nSECRETBYTES\n-----END PRIVATE KEY-----\n");
  const absl::Status as_cert = CheckPemFile("tls.cert_file", key_path, PemKind::kCertificates);
  EXPECT_EQ(as_cert.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(as_cert.message(),
            absl::StrCat("tls.cert_file: ", key_path, " holds no PEM certificate"));
  const absl::Status as_key =
      CheckPemFile("tls.key_file", Write("cert", kCertificate), PemKind::kPrivateKey);
  EXPECT_THAT(as_key.message(), HasSubstr("holds no PEM private key"));
  // A certificate whose text merely mentions a private key is not one.
  EXPECT_FALSE(CheckPemFile("k", Write("mention", absl::StrCat(kCertificate, "PRIVATE KEY-----\n")),
                            PemKind::kPrivateKey)
                   .ok());
  EXPECT_FALSE(CheckPemFile("c", Write("empty", ""), PemKind::kCertificates).ok());
  // A directory cannot be read (EISDIR); nothing is thrown.
  const absl::Status directory = CheckPemFile("c", "/tmp", PemKind::kCertificates);
  EXPECT_EQ(directory.message(), "c: cannot read /tmp: Is a directory");
}

}  // namespace
}  // namespace copilot::gateway
