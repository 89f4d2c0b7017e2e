// ParseRedisUrl (server/limits/redis_limit_store.h) on any `redis.url` config value.
//
// Properties: a rejection is INVALID_ARGUMENT with a fixed text that never repeats the URL (it
// may hold a password); an accepted URL has a host, a port in 1..65535 and a database >= 0,
// and written back in canonical form (userinfo percent-encoded, an IPv6 host in brackets) it
// parses to the same options (TLS included: rediss://).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/limits/redis_limit_store.h"
#include "tests/fuzz/fuzz_support.h"

namespace copilot::gateway {
namespace {

std::string Encode(absl::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out += {'%', kHex[c >> 4], kHex[c & 0xF]};
    }
  }
  return out;
}

std::string Canonical(const RedisLimitStoreOptions& options) {
  std::string url = options.tls.enabled ? "rediss://" : "redis://";
  if (!options.username.empty() || !options.password.empty()) {
    absl::StrAppend(&url, Encode(options.username), ":", Encode(options.password), "@");
  }
  const bool brackets = absl::StrContains(options.host, ':');
  absl::StrAppend(&url, brackets ? "[" : "", options.host, brackets ? "]" : "", ":", options.port,
                  "/", options.database);
  return url;
}

}  // namespace
}  // namespace copilot::gateway

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace gw = copilot::gateway;
  const std::string url(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<gw::RedisLimitStoreOptions> options = gw::ParseRedisUrl(url);
  if (!options.ok()) {
    FUZZ_CHECK(options.status().code() == absl::StatusCode::kInvalidArgument,
               options.status().ToString());
    // Fixed texts only: the URL may hold a password.
    static constexpr absl::string_view kMessages[] = {
        "redis url: must start with redis:// or rediss:// (TLS)",
        "redis url: query and fragment are not supported",
        "redis url: userinfo must be [username]:password",
        "redis url: invalid percent-encoding in the username",
        "redis url: invalid percent-encoding in the password",
        "redis url: unterminated [ in the host",
        "redis url: expected :port after the host",
        "redis url: the host is empty",
        "redis url: the port must be a number in 1..65535",
        "redis url: the database must be a number >= 0",
    };
    FUZZ_CHECK(std::find(std::begin(kMessages), std::end(kMessages), options.status().message()) !=
                   std::end(kMessages),
               "an error text that is not one of the fixed ones");
    return 0;
  }
  FUZZ_CHECK(!options->host.empty(), "empty host");
  FUZZ_CHECK(options->port >= 1 && options->port <= 65535, "port out of range");
  FUZZ_CHECK(options->database >= 0, "negative database");
  // Hosts with brackets or a '/' (after the authority) cannot be written back unambiguously.
  if (absl::StrContains(options->host, '[') || absl::StrContains(options->host, ']')) return 0;
  const std::string canonical = gw::Canonical(*options);
  absl::StatusOr<gw::RedisLimitStoreOptions> again = gw::ParseRedisUrl(canonical);
  FUZZ_CHECK(again.ok(), canonical + ": " + again.status().ToString());
  FUZZ_CHECK(again->host == options->host && again->port == options->port &&
                 again->database == options->database && again->username == options->username &&
                 again->password == options->password && again->tls.enabled == options->tls.enabled,
             canonical);
  return 0;
}
