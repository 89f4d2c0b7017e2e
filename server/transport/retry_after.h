// Reading an HTTP Retry-After header (RFC 9110 10.2.3), shared by the retry decorator (which
// waits for it) and the upstream status table (which hands it to callers as RetryInfo).
#ifndef COPILOT_GATEWAY_SERVER_TRANSPORT_RETRY_AFTER_H_
#define COPILOT_GATEWAY_SERVER_TRANSPORT_RETRY_AFTER_H_

#include <optional>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace copilot::gateway {

// The wait a Retry-After value asks for: delta-seconds or an HTTP-date (IMF-fixdate, or the
// obsolete RFC 850 and asctime forms) relative to the wall time `now`, never negative.
// nullopt when the value is empty or unreadable.
std::optional<absl::Duration> ParseRetryAfterValue(absl::string_view value, absl::Time now);

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_TRANSPORT_RETRY_AFTER_H_
