#include "tests/emulator/emulator_options.h"

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace copilot::emulator {
namespace {

absl::Status FlagError(absl::string_view flag, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", problem));
}

absl::Status ParseNonNegative(absl::string_view flag, absl::string_view value, int64_t& out) {
  if (!absl::SimpleAtoi(value, &out) || out < 0) {
    return FlagError(flag, absl::StrCat("expected a non-negative integer, got '", value, "'"));
  }
  return absl::OkStatus();
}

absl::Status ParseRateLimit(absl::string_view flag, absl::string_view value,
                            std::optional<int64_t>& out) {
  int64_t n = 0;
  if (!absl::SimpleAtoi(value, &n) || n < 1 || n > kMaxRateLimit) {
    return FlagError(
        flag, absl::StrCat("expected an integer from 1 to ", kMaxRateLimit, ", got '", value, "'"));
  }
  out = n;
  return absl::OkStatus();
}

}  // namespace

std::string Usage() {
  return "usage: haufe-emulator --listen HOST:PORT --api-key KEY [--api-key KEY]...\n"
         "         [--error-shape old|new] [--stream-delay-ms N] [--response-delay-ms N]\n"
         "         [--fault JSON]... [--max-record N] [--seed N] [--keep-alive-timeout-ms N]\n"
         "         [--tls-listen HOST:PORT --tls-cert FILE --tls-key FILE [--tls-http2 on|off]]\n"
         "         [--h2-max-concurrent-streams N] [--h2-goaway-after N] [--h2-refuse-every N]\n"
         "         [--shutdown-grace-ms N]\n"
         "         [--rate-limits off|tier0] [--answer-rps N] [--answer-rpm N]\n"
         "         [--other-rps N] [--other-rpm N]\n";
}

absl::StatusOr<EmulatorOptions> ParseCommandLine(const std::vector<std::string>& args) {
  EmulatorOptions options;
  bool have_listen = false;
  RateLimitUpdate rate_limits;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg.rfind("--", 0) != 0) return absl::InvalidArgumentError("unexpected argument: " + arg);
    std::string flag = arg.substr(2);
    std::string value;
    size_t eq = flag.find('=');
    if (eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
    } else {
      if (i + 1 >= args.size()) return FlagError(flag, "missing value");
      value = args[++i];
    }
    if (flag == "listen" || flag == "tls-listen") {
      size_t colon = value.rfind(':');
      int port = 0;
      if (colon == std::string::npos || !absl::SimpleAtoi(value.substr(colon + 1), &port) ||
          port < 0 || port > 65535) {
        return FlagError(flag, "expected HOST:PORT, got '" + value + "'");
      }
      (flag == "listen" ? options.listen_host : options.tls_listen_host) = value.substr(0, colon);
      (flag == "listen" ? options.listen_port : options.tls_listen_port) = port;
      have_listen = have_listen || flag == "listen";
    } else if (flag == "tls-cert" || flag == "tls-key") {
      if (value.empty()) return FlagError(flag, "must not be empty");
      (flag == "tls-cert" ? options.tls_cert_file : options.tls_key_file) = value;
    } else if (flag == "api-key") {
      if (value.empty()) return FlagError(flag, "must not be empty");
      options.api_keys.push_back(value);
    } else if (flag == "error-shape") {
      absl::StatusOr<ErrorShape> shape = ParseErrorShape(value);
      if (!shape.ok()) return FlagError(flag, shape.status().message());
      options.error_shape = *shape;
    } else if (flag == "stream-delay-ms") {
      if (absl::Status s = ParseNonNegative(flag, value, options.stream_delay_ms); !s.ok()) {
        return s;
      }
    } else if (flag == "response-delay-ms") {
      if (absl::Status s = ParseNonNegative(flag, value, options.response_delay_ms); !s.ok()) {
        return s;
      }
    } else if (flag == "fault") {
      absl::StatusOr<FaultRule> rule = ParseFaultRule(value);
      if (!rule.ok()) return FlagError(flag, rule.status().message());
      options.faults.push_back(*std::move(rule));
    } else if (flag == "max-record") {
      int64_t n = 0;
      if (absl::Status s = ParseNonNegative(flag, value, n); !s.ok()) return s;
      options.max_record = static_cast<size_t>(n);
    } else if (flag == "keep-alive-timeout-ms") {
      if (absl::Status s = ParseNonNegative(flag, value, options.keep_alive_timeout_ms); !s.ok()) {
        return s;
      }
    } else if (flag == "tls-http2") {
      if (value != "on" && value != "off") {
        return FlagError(flag, "expected on or off, got '" + value + "'");
      }
      options.tls_http2 = value == "on";
    } else if (flag == "h2-max-concurrent-streams") {
      if (absl::Status s = ParseNonNegative(flag, value, options.h2_max_concurrent_streams);
          !s.ok()) {
        return s;
      }
      if (options.h2_max_concurrent_streams < 1 || options.h2_max_concurrent_streams > 1000000) {
        return FlagError(flag, "expected 1 to 1000000");
      }
    } else if (flag == "h2-goaway-after") {
      if (absl::Status s = ParseNonNegative(flag, value, options.h2_goaway_after); !s.ok()) {
        return s;
      }
    } else if (flag == "h2-refuse-every") {
      if (absl::Status s = ParseNonNegative(flag, value, options.h2_refuse_every); !s.ok()) {
        return s;
      }
    } else if (flag == "shutdown-grace-ms") {
      if (absl::Status s = ParseNonNegative(flag, value, options.shutdown_grace_ms); !s.ok()) {
        return s;
      }
    } else if (flag == "seed") {
      uint64_t seed = 0;
      if (!absl::SimpleAtoi(value, &seed)) return FlagError(flag, "expected an integer");
      options.seed = seed;
    } else if (flag == "rate-limits") {
      if (value != "off" && value != "tier0") {
        return FlagError(flag, "expected off or tier0, got '" + value + "'");
      }
      rate_limits.mode = value;
    } else if (flag == "answer-rps") {
      if (absl::Status s = ParseRateLimit(flag, value, rate_limits.answer_rps); !s.ok()) return s;
    } else if (flag == "answer-rpm") {
      if (absl::Status s = ParseRateLimit(flag, value, rate_limits.answer_rpm); !s.ok()) return s;
    } else if (flag == "other-rps") {
      if (absl::Status s = ParseRateLimit(flag, value, rate_limits.other_rps); !s.ok()) return s;
    } else if (flag == "other-rpm") {
      if (absl::Status s = ParseRateLimit(flag, value, rate_limits.other_rpm); !s.ok()) return s;
    } else {
      return absl::InvalidArgumentError("unknown flag: --" + flag);
    }
  }
  if (!have_listen) return FlagError("listen", "is required");
  if (options.api_keys.empty()) return FlagError("api-key", "is required (at least one)");
  const bool tls_files = !options.tls_cert_file.empty() || !options.tls_key_file.empty();
  if (options.tls_listen_port >= 0 &&
      (options.tls_cert_file.empty() || options.tls_key_file.empty())) {
    return FlagError("tls-listen", "needs --tls-cert and --tls-key");
  }
  if (options.tls_listen_port < 0 && tls_files) {
    return FlagError("tls-cert", "--tls-cert and --tls-key need --tls-listen");
  }
  if (rate_limits.Contradicts()) {
    return FlagError("rate-limits",
                     "off cannot be combined with --answer-rps, --answer-rpm, --other-rps or "
                     "--other-rpm");
  }
  ApplyRateLimitUpdate(rate_limits, options.rate_limits);
  return options;
}

}  // namespace copilot::emulator
