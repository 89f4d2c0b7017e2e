// The `copilot` command-line client, as a function tests can call in-process.
//
//   copilot [global flags] <command> [flags] [args]
//
// Commands: assistants; thread create|get|delete; message add; messages list;
// run; complete; ask (create a thread, add the question, stream the answer).
// `copilot --help` prints the full usage, including the exit codes:
//   0      success;
//   1..16  the gRPC status code of the failed call (5 NOT_FOUND,
//          14 UNAVAILABLE, 16 UNAUTHENTICATED, ...), so scripts can branch on
//          it without parsing text;
//   64     usage error (EX_USAGE), with a message on stderr;
//   66     a --token-file, --tls-ca, --tls-cert or --tls-key file cannot be
//          read (EX_NOINPUT).
// The bearer token comes from --token-file, --token or $COPILOT_TOKEN and is
// never printed, in errors either.
#ifndef COPILOT_CLIENT_CLI_CLI_H_
#define COPILOT_CLIENT_CLI_CLI_H_

#include <ostream>
#include <string>
#include <vector>

namespace copilot::client::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitUsage = 64;    // EX_USAGE from sysexits.h
inline constexpr int kExitNoInput = 66;  // EX_NOINPUT from sysexits.h

// Defaults the caller takes from the environment (main reads COPILOT_TARGET
// and COPILOT_TOKEN; nothing below main reads the environment). Plain data.
struct CliEnvironment {
  // Default of --target; empty means 127.0.0.1:50051.
  std::string target;
  // The token when neither --token-file nor --token is given (surrounding
  // whitespace trimmed); empty means no token.
  std::string token;
};

// Runs the CLI on `args` (argv without the program name), writing results to
// `out` and diagnostics to `err`, and returns the process exit code. Never
// throws. Reentrant: no global state, so tests may call it from several
// threads at once with different streams.
int RunCli(const std::vector<std::string>& args, std::ostream& out, std::ostream& err,
           const CliEnvironment& env = {});

}  // namespace copilot::client::cli

#endif  // COPILOT_CLIENT_CLI_CLI_H_
