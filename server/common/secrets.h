// Keeping secrets (API keys, licences, tokens) out of text that leaves the gateway.
#ifndef COPILOT_GATEWAY_SERVER_COMMON_SECRETS_H_
#define COPILOT_GATEWAY_SERVER_COMMON_SECRETS_H_

#include <string>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace copilot::gateway {

// What a secret is replaced with.
inline constexpr absl::string_view kRedacted = "[redacted]";

// `text` with every occurrence of each non-empty secret replaced by kRedacted. Used on text the
// upstream wrote (error bodies, stream error lines) before any of it reaches a caller or a log:
// the upstream may echo what the gateway sent it.
std::string RedactSecrets(absl::string_view text, absl::Span<const std::string> secrets);

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_COMMON_SECRETS_H_
