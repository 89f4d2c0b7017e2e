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
  // --tls-http2 on|off: the TLS listener offers HTTP/2 (ALPN h2 before http/1.1). Default off.
  bool tls_http2 = false;
  // --h2-max-concurrent-streams, --h2-goaway-after, --h2-refuse-every: H2Options.
  int64_t h2_max_concurrent_streams = 100;
  int64_t h2_goaway_after = 0;
  int64_t h2_refuse_every = 0;
  // --shutdown-grace-ms: on SIGTERM, GOAWAY on HTTP/2 connections, then wait up to this long for
  // the requests in progress before exiting (0: exit at once).
  int64_t shutdown_grace_ms = 0;
  std::optional<uint64_t> seed;  // absent: main picks a random one
};

// Parses argv[1..]. Accepts "--flag value" and "--flag=value". Errors name the flag.
absl::StatusOr<EmulatorOptions> ParseCommandLine(const std::vector<std::string>& args);

// One line per flag, for --help and errors.
std::string Usage();

}  // namespace copilot::emulator

#endif  // COPILOT_TESTS_EMULATOR_EMULATOR_OPTIONS_H_
