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
  // `authorization: Bearer <token>` metadata, over TLS and plaintext channels
  // alike; not sent when empty. Must be printable ASCII without surrounding
  // spaces (errors about it never quote it). Over an insecure channel it
  // travels in clear text: use TLS outside test setups.
  std::string token;
  // Deadline of every call unless CallOptions::timeout overrides it. Must be
  // positive: no call leaves without a deadline.
  absl::Duration timeout = absl::Seconds(120);
  // TLS instead of plaintext (the default, meant for local and in-cluster
  // use behind a mesh). Setting any tls_* field below implies it.
  bool use_tls = false;
  // PEM file with the root certificates to trust; empty means gRPC's default
  // roots (the system's).
  std::string tls_root_certs_path;
  // PEM files with the client certificate chain and its private key,
  // presented for mutual TLS. Both or neither.
  std::string tls_cert_chain_path;
  std::string tls_private_key_path;
  // The name the server's certificate must carry, also sent as SNI, instead
  // of the target's host: e.g. "localhost" when dialling 127.0.0.1 with a
  // certificate for localhost. Empty: the target's host.
  std::string tls_server_name;

  // Whether the channel uses TLS: use_tls or any tls_* field set.
  bool UsesTls() const {
    return use_tls || !tls_root_certs_path.empty() || !tls_cert_chain_path.empty() ||
           !tls_private_key_path.empty() || !tls_server_name.empty();
  }
};

// Per-call overrides. Plain data.
struct CallOptions {
  // Replaces ClientOptions::timeout for this call. Must be positive.
  std::optional<absl::Duration> timeout;
};

}  // namespace copilot::client

#endif  // COPILOT_CLIENT_CLIENT_OPTIONS_H_
