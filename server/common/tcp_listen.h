// A listening TCP socket of our own, for the listeners whose connections the gateway accepts
// itself (the ops HTTP server, and the gRPC ports, whose connections it counts and bounds).
#ifndef COPILOT_GATEWAY_SERVER_COMMON_TCP_LISTEN_H_
#define COPILOT_GATEWAY_SERVER_COMMON_TCP_LISTEN_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace copilot::gateway {

struct HostPort {
  std::string host;
  std::string port;
};

// HOST:PORT or [IPV6]:PORT with a port of 0-65535; nullopt otherwise (a bare IPv6 address too).
std::optional<HostPort> SplitHostPort(absl::string_view listen);

struct ListeningSocket {
  int fd = -1;   // Non-blocking, close-on-exec; the caller closes it.
  int port = 0;  // As bound (port 0 in `listen` picks a free one).
};

// Listens on `listen` (IPV4:PORT, [IPV6]:PORT or HOSTNAME:PORT): the first address the name
// resolves to that takes a listening socket, with SO_REUSEADDR (not SO_REUSEPORT: a second
// process on the port fails) and, for IPv6, both stacks. UNAVAILABLE "cannot listen on
// <listen><purpose>: <why>" otherwise.
absl::StatusOr<ListeningSocket> ListenTcp(const std::string& listen, absl::string_view purpose);

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_COMMON_TCP_LISTEN_H_
