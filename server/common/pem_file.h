// Start-up checks of the PEM files the gateway is configured with, so that a missing or
// unreadable file stops the start naming its setting, rather than failing every handshake later
// (gRPC's certificate watcher and libcurl read them per connection and only log).
#ifndef COPILOT_GATEWAY_SERVER_COMMON_PEM_FILE_H_
#define COPILOT_GATEWAY_SERVER_COMMON_PEM_FILE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace copilot::gateway {

enum class PemKind {
  kCertificates,  // One or more "-----BEGIN CERTIFICATE-----" blocks.
  kPrivateKey,    // A "-----BEGIN ... PRIVATE KEY-----" block (PKCS#8, RSA or EC).
};

// OK when `path` can be read and holds a block of `kind`. Otherwise INVALID_ARGUMENT
// "<setting>: cannot read <path>: <why>" or "<setting>: <path> holds no PEM certificate"
// ("... no PEM private key"); the first 4 MiB are looked at. The contents are not echoed: a key
// file's bytes are secret.
absl::Status CheckPemFile(absl::string_view setting, const std::string& path, PemKind kind);

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_COMMON_PEM_FILE_H_
