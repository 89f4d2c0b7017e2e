// Keeping secrets (API keys, licences, tokens) out of text that leaves the gateway.
#ifndef COPILOT_GATEWAY_SERVER_COMMON_SECRETS_H_
#define COPILOT_GATEWAY_SERVER_COMMON_SECRETS_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "google/protobuf/message.h"

namespace copilot::gateway {

// What a secret is replaced with.
inline constexpr absl::string_view kRedacted = "[redacted]";

// `text` with every occurrence of each non-empty secret replaced by kRedacted. Used on text the
// upstream wrote (error bodies, stream error lines) before any of it reaches a caller or a log:
// the upstream may echo what the gateway sent it.
std::string RedactSecrets(absl::string_view text, absl::Span<const std::string> secrets);

// The length of the longest end of `text` that is the beginning of a secret, not all of it: a
// streamed answer holds those bytes back until the next piece shows whether the secret
// follows (a licence split across two chunks). 0 when no secret starts at the end.
size_t SecretPrefixAtEnd(absl::string_view text, absl::Span<const std::string> secrets);

// RedactSecrets on every string field of `message`, recursively: nested messages, repeated
// fields, map keys and values, google.protobuf.Struct values. Used on upstream answers after
// they were decoded (an answer may echo meta_data.user_data.licence back). Returns whether
// anything was replaced.
bool RedactSecretsInMessage(google::protobuf::Message& message,
                            absl::Span<const std::string> secrets);

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_COMMON_SECRETS_H_
