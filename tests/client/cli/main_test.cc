// Runs the real `copilot` executable as a subprocess: the environment
// defaults, the exit code and the output streams as a shell sees them.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "google/rpc/error_details.pb.h"
#include "gtest/gtest.h"
#include "tests/client/fake_copilot_service.h"
#include "tests/client/test_certs.h"

namespace copilot::client::cli {
namespace {

using ::copilot::client::testing::ClientCerts;
using ::copilot::client::testing::FakeCopilotService;
using ::copilot::client::testing::MakeStatus;
using ::copilot::client::testing::RecordedCall;
using ::copilot::client::testing::TestCertPath;
using ::copilot::client::testing::TestServerCredentials;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

struct ProcessResult {
  int exit_code;
  std::string out;
  std::string err;
};

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

// Runs `env_assignments copilot args` through the shell. The arguments are
// test constants without quotes.
ProcessResult RunCopilot(const std::string& env_assignments, const std::string& args) {
  // Per process and test: ctest runs tests in parallel processes.
  const std::string base =
      absl::StrCat(::testing::TempDir(), "/copilot_main_test.", getpid(), ".",
                   ::testing::UnitTest::GetInstance()->current_test_info()->name());
  const std::string out_path = absl::StrCat(base, ".out");
  const std::string err_path = absl::StrCat(base, ".err");
  const std::string command =
      absl::StrCat("env -u COPILOT_TARGET -u COPILOT_TOKEN ", env_assignments, " '",
                   COPILOT_CLI_PATH, "' ", args, " >'", out_path, "' 2>'", err_path, "'");
  // NOLINTNEXTLINE(concurrency-mt-unsafe): only this test thread runs commands.
  const int status = std::system(command.c_str());
  ProcessResult result;
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  result.out = ReadAll(out_path);
  result.err = ReadAll(err_path);
  (void)std::remove(out_path.c_str());
  (void)std::remove(err_path.c_str());
  return result;
}

TEST(CopilotBinaryTest, ReadsTheEnvironmentAndExitsWithTheGrpcCode) {
  std::unique_ptr<FakeCopilotService> fake = FakeCopilotService::Start();
  google::rpc::ErrorInfo info;
  info.set_reason("thread_not_found");
  (*info.mutable_metadata())["http_status"] = "404";
  fake->SetError("GetThread", MakeStatus(grpc::StatusCode::NOT_FOUND, "Thread not found", info));

  ProcessResult r = RunCopilot(
      absl::StrCat("COPILOT_TARGET=", fake->target(), " COPILOT_TOKEN=tok-env"), "thread get t9");

  EXPECT_EQ(r.exit_code, 5);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err,
            "error: NOT_FOUND: Thread not found [reason: thread_not_found; upstream HTTP 404]\n");
  ASSERT_EQ(fake->calls().size(), 1u);
  EXPECT_EQ(fake->calls()[0].Metadata("authorization"), "Bearer tok-env");
}

TEST(CopilotBinaryTest, SuccessExitsZero) {
  std::unique_ptr<FakeCopilotService> fake = FakeCopilotService::Start();
  v1::CreateThreadResponse created;
  created.mutable_thread()->set_id("t-42");
  fake->SetResponse("CreateThread", created);
  ProcessResult r =
      RunCopilot("", absl::StrCat("--target ", fake->target(), " thread create --assistant a"));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "t-42\n");
}

TEST(CopilotBinaryTest, UsageErrorExitsSixtyFour) {
  ProcessResult r = RunCopilot("", "frobnicate");
  EXPECT_EQ(r.exit_code, 64);
  EXPECT_THAT(r.err, StartsWith("copilot: unknown command 'frobnicate'\n"));
}

TEST(CopilotBinaryTest, TokenFileOverMutualTls) {
  std::unique_ptr<FakeCopilotService> fake =
      FakeCopilotService::Start(TestServerCredentials(ClientCerts::kRequireAndVerify));
  fake->SetResponse("ListAssistants", v1::ListAssistantsResponse());
  const std::string token_path =
      absl::StrCat(::testing::TempDir(), "/copilot_main_test.", getpid(), ".token");
  std::ofstream(token_path) << "tok-b\n";

  ProcessResult r = RunCopilot(
      "COPILOT_TOKEN=tok-env",
      absl::StrCat("--target ", fake->target(), " --token-file ", token_path, " --tls-ca ",
                   TestCertPath("ca.pem"), " --tls-cert ", TestCertPath("tenant-b.pem"),
                   " --tls-key ", TestCertPath("tenant-b.key"),
                   " --tls-server-name localhost assistants"));
  (void)std::remove(token_path.c_str());

  EXPECT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(fake->calls().size(), 1u);
  const RecordedCall call = fake->calls()[0];
  EXPECT_EQ(call.Metadata("authorization"), "Bearer tok-b");
  EXPECT_THAT(call.AuthProperty("peer_spiffe_id"), ElementsAre("spiffe://example.org/ns/b/sa/app"));
}

TEST(CopilotBinaryTest, MissingTokenFileExitsSixtySix) {
  ProcessResult r =
      RunCopilot("COPILOT_TOKEN=tok-env", "--token-file /nonexistent/token assistants");
  EXPECT_EQ(r.exit_code, 66);
  EXPECT_EQ(r.err,
            "copilot: cannot read --token-file /nonexistent/token: No such file or directory\n");
}

TEST(CopilotBinaryTest, HelpExitsZero) {
  ProcessResult r = RunCopilot("", "--help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.out, HasSubstr("Exit codes:"));
}

}  // namespace
}  // namespace copilot::client::cli
