#include "tests/testing/child_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

extern char** environ;

namespace copilot::gateway::testing {
namespace {

// A file descriptor closed when it goes out of scope.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() { Reset(); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  void Reset(int fd = -1) {
    if (fd_ >= 0) close(fd_);
    fd_ = fd;
  }

 private:
  int fd_;
};

absl::Status Errno(absl::string_view what) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(errno)));
}

absl::StatusOr<int> OpenOutput(const std::string& path, Fd& fd) {
  if (path.empty()) return -1;
  const int opened = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (opened < 0) return Errno(absl::StrCat("open ", path));
  fd.Reset(opened);
  return opened;
}

// The child's environment: the parent's (when inherited) with `env` set over it.
std::vector<std::string> Environment(const ChildProcessOptions& options) {
  std::vector<std::string> out;
  if (options.inherit_env) {
    for (char** entry = environ; *entry != nullptr; ++entry) {
      const absl::string_view variable(*entry);
      bool replaced = false;
      for (const auto& [name, value] : options.env) {
        replaced = replaced || absl::StartsWith(variable, absl::StrCat(name, "="));
      }
      if (!replaced) out.emplace_back(variable);
    }
  }
  for (const auto& [name, value] : options.env) out.push_back(absl::StrCat(name, "=", value));
  return out;
}

int ExitCode(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ChildProcess>> ChildProcess::Start(ChildProcessOptions options) {
  if (options.argv.empty()) return absl::InvalidArgumentError("ChildProcess: no program");
  // Everything the child needs is prepared before fork: between fork and exec it may only make
  // async-signal-safe calls.
  std::vector<char*> argv;
  for (std::string& arg : options.argv) argv.push_back(arg.data());
  argv.push_back(nullptr);
  std::vector<std::string> environment = Environment(options);
  std::vector<char*> envp;
  for (std::string& variable : environment) envp.push_back(variable.data());
  envp.push_back(nullptr);
  Fd stdout_fd, stderr_fd;
  absl::StatusOr<int> out = OpenOutput(options.stdout_path, stdout_fd);
  if (!out.ok()) return out.status();
  absl::StatusOr<int> err = OpenOutput(options.stderr_path, stderr_fd);
  if (!err.ok()) return err.status();
  // The child writes its exec errno here; exec closing the pipe (CLOEXEC) means it ran.
  int exec_pipe[2];
  if (pipe2(exec_pipe, O_CLOEXEC) != 0) return Errno("pipe2");
  Fd exec_read(exec_pipe[0]), exec_write(exec_pipe[1]);

  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) return Errno("fork");
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);  // The parent died before prctl.
    if (*out >= 0) dup2(*out, STDOUT_FILENO);
    if (*err >= 0) dup2(*err, STDERR_FILENO);
    execvpe(argv[0], argv.data(), envp.data());
    const int error = errno;
    (void)!write(exec_pipe[1], &error, sizeof(error));
    _exit(127);
  }
  exec_write.Reset();
  std::unique_ptr<ChildProcess> child(new ChildProcess(pid));
  int exec_error = 0;
  ssize_t n;
  do {
    n = read(exec_read.get(), &exec_error, sizeof(exec_error));
  } while (n < 0 && errno == EINTR);
  if (n > 0) {
    (void)child->Wait();
    return absl::FailedPreconditionError(
        absl::StrCat("cannot execute ", options.argv[0], ": ", std::strerror(exec_error)));
  }
  return child;
}

ChildProcess::~ChildProcess() { (void)Kill(); }

void ChildProcess::ReapLocked(int flags) {
  if (exit_code_.has_value() || wait_error_.has_value()) return;
  int status = 0;
  pid_t done;
  do {
    done = waitpid(pid_, &status, flags);
  } while (done < 0 && errno == EINTR);
  if (done == pid_) {
    exit_code_ = ExitCode(status);
  } else if (done < 0) {
    wait_error_ = Errno(absl::StrCat("waitpid ", pid_));
  }
}

absl::StatusOr<int> ChildProcess::ResultLocked() const {
  if (wait_error_.has_value()) return *wait_error_;
  if (!exit_code_.has_value()) return absl::FailedPreconditionError("still running");
  return *exit_code_;
}

bool ChildProcess::Running() {
  absl::MutexLock lock(&mu_);
  ReapLocked(WNOHANG);
  return !exit_code_.has_value() && !wait_error_.has_value();
}

void ChildProcess::Signal(int signal) {
  absl::MutexLock lock(&mu_);
  // Once reaped the PID may belong to another process.
  if (!exit_code_.has_value() && !wait_error_.has_value()) kill(pid_, signal);
}

absl::StatusOr<int> ChildProcess::Terminate(absl::Duration grace) {
  Signal(SIGTERM);
  const absl::Time deadline = absl::Now() + grace;
  while (Running() && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
  return Kill();
}

absl::StatusOr<int> ChildProcess::Kill() {
  Signal(SIGKILL);
  return Wait();
}

absl::StatusOr<int> ChildProcess::Wait() {
  absl::MutexLock lock(&mu_);
  ReapLocked(0);
  return ResultLocked();
}

}  // namespace copilot::gateway::testing
