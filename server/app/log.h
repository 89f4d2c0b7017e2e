// Log events of the app layer, as structured JSON lines (server/common/log.h). Never pass
// secrets (API key, licence, tokens) to it.
#ifndef COPILOT_GATEWAY_SERVER_APP_LOG_H_
#define COPILOT_GATEWAY_SERVER_APP_LOG_H_

#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "server/common/log.h"

namespace copilot::gateway {

// An info line; a line starting with "warning: " is logged at warning level without the prefix.
inline void LogLine(absl::string_view line) {
  if (absl::ConsumePrefix(&line, "warning: ")) {
    Log(LogLevel::kWarning, line);
  } else {
    Log(LogLevel::kInfo, line);
  }
}

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_APP_LOG_H_
