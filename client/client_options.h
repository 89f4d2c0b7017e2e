// Plain-data options of the Copilot client library.
#ifndef COPILOT_CLIENT_CLIENT_OPTIONS_H_
#define COPILOT_CLIENT_CLIENT_OPTIONS_H_

#include <optional>
#include <string>

#include "absl/time/time.h"

namespace copilot::client {

// How to reach and authenticate to the gateway. Plain data; validated once by
// MakeCopilotClient(). Not synchronized.
struct ClientOptions {
  // gRPC target, e.g. "127.0.0.1:50051" or "dns:///copilot.internal:443".
  std::string target = "127.0.0.1:50051";
  // Bearer token identifying the caller (the tenant). Sent on every call as
  // `authorization: Bearer <token>` metadata; not sent when empty. Over an
  // insecure channel it travels in clear text: use TLS outside test setups.
  std::string token;
  // Deadline of every call unless CallOptions::timeout overrides it. Must be
  // positive: no call leaves without a deadline.
  absl::Duration timeout = absl::Seconds(120);
  // TLS instead of plaintext (the default, meant for local and in-cluster
  // use behind a mesh).
  bool use_tls = false;
  // PEM file with the root certificates to trust; empty means gRPC's default
  // roots. Setting it implies use_tls.
  std::string tls_root_certs_path;
};

// Per-call overrides. Plain data.
struct CallOptions {
  // Replaces ClientOptions::timeout for this call. Must be positive.
  std::optional<absl::Duration> timeout;
};

}  // namespace copilot::client

#endif  // COPILOT_CLIENT_CLIENT_OPTIONS_H_
