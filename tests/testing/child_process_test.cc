#include "tests/testing/child_process.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/testing/eventually.h"

namespace copilot::gateway::testing {
namespace {

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// A file name under the test's temporary directory, removed at the end of the test.
class TempPath {
 public:
  explicit TempPath(const std::string& name)
      : path_(absl::StrCat(::testing::TempDir(), "/child_process_test_", getpid(), "_", name)) {}
  ~TempPath() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

absl::StatusOr<std::unique_ptr<ChildProcess>> Shell(const std::string& script,
                                                    ChildProcessOptions options = {}) {
  options.argv = {"/bin/sh", "-c", script};
  return ChildProcess::Start(std::move(options));
}

TEST(ChildProcessTest, WaitReturnsTheExitCodeAgainAndAgain) {
  auto child = Shell("exit 3");
  ASSERT_TRUE(child.ok()) << child.status();
  EXPECT_GT((*child)->pid(), 0);
  EXPECT_EQ((*child)->Wait().value_or(-1), 3);
  EXPECT_FALSE((*child)->Running());
  EXPECT_EQ((*child)->Wait().value_or(-1), 3);
  EXPECT_EQ((*child)->Kill().value_or(-1), 3);  // Already reaped: nothing is signalled.
}

TEST(ChildProcessTest, FindsTheProgramOnPathAndPassesArguments) {
  TempPath out("out");
  auto child =
      ChildProcess::Start({.argv = {"echo", "one", "two words"}, .stdout_path = out.path()});
  ASSERT_TRUE(child.ok()) << child.status();
  EXPECT_EQ((*child)->Wait().value_or(-1), 0);
  EXPECT_EQ(ReadAll(out.path()), "one two words\n");
}

TEST(ChildProcessTest, SetsTheEnvironmentOverTheParents) {
  TempPath out("out");
  setenv("CHILD_PROCESS_TEST_KEPT", "kept", 1);
  setenv("CHILD_PROCESS_TEST_REPLACED", "old", 1);
  auto child = Shell(
      "echo \"$CHILD_PROCESS_TEST_KEPT $CHILD_PROCESS_TEST_REPLACED $EXTRA\"",
      {.env = {{"CHILD_PROCESS_TEST_REPLACED", "new"}, {"EXTRA", "x"}}, .stdout_path = out.path()});
  ASSERT_TRUE(child.ok()) << child.status();
  EXPECT_EQ((*child)->Wait().value_or(-1), 0);
  EXPECT_EQ(ReadAll(out.path()), "kept new x\n");
}

TEST(ChildProcessTest, AnEnvironmentOfItsOwn) {
  TempPath out("out");
  setenv("CHILD_PROCESS_TEST_KEPT", "kept", 1);
  auto child = Shell("echo \"[$CHILD_PROCESS_TEST_KEPT] $ONLY\"",
                     {.env = {{"ONLY", "me"}}, .inherit_env = false, .stdout_path = out.path()});
  ASSERT_TRUE(child.ok()) << child.status();
  EXPECT_EQ((*child)->Wait().value_or(-1), 0);
  EXPECT_EQ(ReadAll(out.path()), "[] me\n");
}

TEST(ChildProcessTest, CapturesStdoutAndStderrSeparately) {
  TempPath out("out");
  TempPath err("err");
  { std::ofstream(out.path()) << "old contents, truncated\n"; }
  auto child =
      Shell("echo to-out; echo to-err >&2", {.stdout_path = out.path(), .stderr_path = err.path()});
  ASSERT_TRUE(child.ok()) << child.status();
  EXPECT_EQ((*child)->Wait().value_or(-1), 0);
  EXPECT_EQ(ReadAll(out.path()), "to-out\n");
  EXPECT_EQ(ReadAll(err.path()), "to-err\n");
}

TEST(ChildProcessTest, AProgramThatCannotRunIsAnError) {
  auto missing = ChildProcess::Start({.argv = {"/nonexistent/program"}});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(missing.status().message().find("/nonexistent/program"), std::string::npos);
  EXPECT_EQ(ChildProcess::Start({}).status().code(), absl::StatusCode::kInvalidArgument);
  auto unwritable = ChildProcess::Start({.argv = {"true"}, .stdout_path = "/nonexistent/dir/out"});
  EXPECT_EQ(unwritable.status().code(), absl::StatusCode::kInternal);
}

TEST(ChildProcessTest, TerminateEndsAPoliteChildWithSigterm) {
  auto child = ChildProcess::Start({.argv = {"sleep", "30"}});
  ASSERT_TRUE(child.ok()) << child.status();
  EXPECT_TRUE((*child)->Running());
  const absl::Time start = absl::Now();
  EXPECT_EQ((*child)->Terminate(absl::Seconds(20)).value_or(-1), 128 + SIGTERM);
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  EXPECT_FALSE((*child)->Running());
}

TEST(ChildProcessTest, TerminateKillsAChildIgnoringSigtermAfterTheGrace) {
  TempPath ready("ready");
  // The ignored disposition survives exec: sleep ignores SIGTERM too.
  auto child = Shell(absl::StrCat("trap '' TERM; touch ", ready.path(), "; exec sleep 30"));
  ASSERT_TRUE(child.ok()) << child.status();
  ASSERT_TRUE(Eventually([&] { return access(ready.path().c_str(), F_OK) == 0; }));
  const absl::Time start = absl::Now();
  EXPECT_EQ((*child)->Terminate(absl::Milliseconds(200)).value_or(-1), 128 + SIGKILL);
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(200));
}

TEST(ChildProcessTest, KillAndSignal) {
  auto child = ChildProcess::Start({.argv = {"sleep", "30"}});
  ASSERT_TRUE(child.ok()) << child.status();
  (*child)->Signal(SIGSTOP);
  (*child)->Signal(SIGCONT);
  EXPECT_TRUE((*child)->Running());
  EXPECT_EQ((*child)->Kill().value_or(-1), 128 + SIGKILL);
  EXPECT_FALSE((*child)->Running());
}

TEST(ChildProcessTest, DestroyingARunningChildKillsIt) {
  pid_t pid = 0;
  {
    auto child = ChildProcess::Start({.argv = {"sleep", "30"}});
    ASSERT_TRUE(child.ok()) << child.status();
    pid = (*child)->pid();
  }
  EXPECT_NE(kill(pid, 0), 0);  // Gone and reaped (a zombie would still accept signal 0).
}

void NoOp(int) {}

TEST(ChildProcessTest, WaitSurvivesSignalsInterruptingIt) {
  // A handler installed without SA_RESTART: waitpid fails with EINTR when it runs.
  struct sigaction action = {};
  struct sigaction previous = {};
  action.sa_handler = NoOp;
  sigemptyset(&action.sa_mask);
  action.sa_flags = 0;
  ASSERT_EQ(sigaction(SIGUSR1, &action, &previous), 0);
  auto child = Shell("sleep 0.5; exit 4");
  ASSERT_TRUE(child.ok()) << child.status();
  const pthread_t waiter = pthread_self();
  std::atomic<bool> waited{false};
  std::thread interrupter([&] {
    while (!waited) {
      pthread_kill(waiter, SIGUSR1);
      absl::SleepFor(absl::Milliseconds(20));
    }
  });
  EXPECT_EQ((*child)->Wait().value_or(-1), 4);
  waited = true;
  interrupter.join();
  sigaction(SIGUSR1, &previous, nullptr);
}

}  // namespace
}  // namespace copilot::gateway::testing
