// A child process for tests: a program started with its arguments and environment, its output
// optionally written to files, stopped politely (SIGTERM, then SIGKILL) or killed. The launchers
// of the real binaries (tests/server/integration/gateway_process.h, the emulator's
// tests/emulator/testing/emulator_process.h, tests/server/limits/redis_server.h) build on it.
//
//   auto child = ChildProcess::Start({.argv = {"/bin/sleep", "10"}});
//   ASSERT_TRUE(child.ok()) << child.status();
//   absl::StatusOr<int> code = (*child)->Terminate(absl::Seconds(1));  // 128 + SIGTERM
//
// The child gets SIGKILL when the test process dies (PR_SET_PDEATHSIG), so a crashed test leaves
// no servers behind. Every waitpid is retried on EINTR.
#ifndef COPILOT_GATEWAY_TESTS_TESTING_CHILD_PROCESS_H_
#define COPILOT_GATEWAY_TESTS_TESTING_CHILD_PROCESS_H_

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace copilot::gateway::testing {

struct ChildProcessOptions {
  // The program and its arguments. argv[0] names the program: a path, or (without a '/') a name
  // looked up on PATH.
  std::vector<std::string> argv = {};
  // Variables set in the child's environment (replacing the parent's value of the same name).
  std::vector<std::pair<std::string, std::string>> env = {};
  // False: the child's environment is `env` alone; true: the parent's, plus `env`.
  bool inherit_env = true;
  // Files the child's stdout / stderr go to (created or truncated, mode 0600); empty: the
  // parent's.
  std::string stdout_path = "";
  std::string stderr_path = "";
};

// Thread-safe: Running, Signal, Terminate, Kill and Wait may be called from any thread (a
// Wait that blocks holds up the others until the child exits).
class ChildProcess {
 public:
  // Forks and execs the program. Fails (and leaves no child behind) when the output files
  // cannot be opened or the program cannot be executed.
  static absl::StatusOr<std::unique_ptr<ChildProcess>> Start(ChildProcessOptions options);
  // Kills the child (SIGKILL) and reaps it unless it has already been reaped.
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // The child's process ID (still reported after it exited).
  pid_t pid() const { return pid_; }

  // True until the child has exited (it is reaped when found exited).
  bool Running();
  // Sends `signal` (e.g. SIGSTOP, SIGCONT) unless the child has been reaped.
  void Signal(int signal);
  // SIGTERM, wait up to `grace`, then SIGKILL. Returns the exit code, or 128 + the signal that
  // ended it (as a shell reports it).
  absl::StatusOr<int> Terminate(absl::Duration grace);
  // SIGKILL; then like Wait.
  absl::StatusOr<int> Kill();
  // Blocks until the child exits; its exit code, or 128 + the signal that ended it. Returns the
  // same again when called after the child was reaped.
  absl::StatusOr<int> Wait();

 private:
  explicit ChildProcess(pid_t pid) : pid_(pid) {}
  // waitpid(pid_, flags), retried on EINTR; records the exit once reaped.
  void ReapLocked(int flags) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<int> ResultLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const pid_t pid_;
  absl::Mutex mu_;
  std::optional<int> exit_code_ ABSL_GUARDED_BY(mu_);            // Set once reaped.
  std::optional<absl::Status> wait_error_ ABSL_GUARDED_BY(mu_);  // waitpid failed (not EINTR).
};

}  // namespace copilot::gateway::testing

#endif  // COPILOT_GATEWAY_TESTS_TESTING_CHILD_PROCESS_H_
