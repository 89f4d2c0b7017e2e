// The `copilot` executable: takes its defaults from the environment
// (COPILOT_TARGET, COPILOT_TOKEN) and runs the CLI (client/cli/cli.h).
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "client/cli/cli.h"

namespace {

std::string EnvOrEmpty(const char* name) {
  // NOLINTNEXTLINE(concurrency-mt-unsafe): read before any other thread exists.
  const char* value = std::getenv(name);
  return value == nullptr ? "" : value;
}

}  // namespace

int main(int argc, char** argv) {
  copilot::client::cli::CliEnvironment env;
  env.target = EnvOrEmpty("COPILOT_TARGET");
  env.token = EnvOrEmpty("COPILOT_TOKEN");
  std::vector<std::string> args(argv + 1, argv + argc);
  return copilot::client::cli::RunCli(args, std::cout, std::cerr, env);
}
