// One-line log events on stderr. Never pass secrets (API key, licence) to it.
#ifndef COPILOT_GATEWAY_SERVER_APP_LOG_H_
#define COPILOT_GATEWAY_SERVER_APP_LOG_H_

#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace copilot::gateway {

// Writes "<RFC 3339 UTC time> copilot-gateway: <line>\n" to stderr in one write. Thread-safe.
inline void LogLine(absl::string_view line) {
  const std::string text =
      absl::StrCat(absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone()),
                   " copilot-gateway: ", line, "\n");
  std::fwrite(text.data(), 1, text.size(), stderr);
  std::fflush(stderr);
}

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_APP_LOG_H_
