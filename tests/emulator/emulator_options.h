// The emulator's start-up configuration and its command line (docs/emulator.md).
#ifndef COPILOT_TESTS_EMULATOR_EMULATOR_OPTIONS_H_
#define COPILOT_TESTS_EMULATOR_EMULATOR_OPTIONS_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tests/emulator/error_bodies.h"
#include "tests/emulator/faults.h"
#include "tests/emulator/rate_limiter.h"

namespace copilot::emulator {

// Plain data, validated by ParseCommandLine.
struct EmulatorOptions {
  std::string listen_host = "127.0.0.1";
  int listen_port = 0;
  // Every accepted `api-key` header value (--api-key, repeatable: each tenant may have its own
  // upstream key); at least one.
  std::vector<std::string> api_keys;
  ErrorShape error_shape = ErrorShape::kOld;
  int64_t stream_delay_ms = 20;
  int64_t response_delay_ms = 0;
  std::vector<FaultRule> faults;
  // --rate-limits off|tier0 and --answer-rps/--answer-rpm/--other-rps/--other-rpm (any of which
  // turns enforcement on; the others keep their tier-0 values). Default: off.
  RateLimitConfig rate_limits;
  size_t max_record = 10000;
  // --tls-listen HOST:PORT with --tls-cert FILE and --tls-key FILE: a second listener serving
  // the same API over HTTPS (tls_listen_port -1: none).
  std::string tls_listen_host;
  int tls_listen_port = -1;
  std::string tls_cert_file;
  std::string tls_key_file;
  // --keep-alive-timeout-ms: HttpServer::Options::keep_alive_timeout (0: none).
  int64_t keep_alive_timeout_ms = 0;
  std::optional<uint64_t> seed;  // absent: main picks a random one
};

// Parses argv[1..]. Accepts "--flag value" and "--flag=value". Errors name the flag.
absl::StatusOr<EmulatorOptions> ParseCommandLine(const std::vector<std::string>& args);

// One line per flag, for --help and errors.
std::string Usage();

}  // namespace copilot::emulator

#endif  // COPILOT_TESTS_EMULATOR_EMULATOR_OPTIONS_H_
