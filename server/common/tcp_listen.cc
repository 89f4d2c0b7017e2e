#include "server/common/tcp_listen.h"

#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "server/common/errors.h"

namespace copilot::gateway {

std::optional<HostPort> SplitHostPort(absl::string_view listen) {
  absl::string_view host;
  absl::string_view port;
  if (absl::ConsumePrefix(&listen, "[")) {
    const size_t close = listen.find(']');
    if (close == absl::string_view::npos || listen.substr(close + 1, 1) != ":") {
      return std::nullopt;
    }
    host = listen.substr(0, close);
    port = listen.substr(close + 2);
  } else {
    const size_t colon = listen.rfind(':');
    if (colon == absl::string_view::npos) return std::nullopt;
    host = listen.substr(0, colon);
    port = listen.substr(colon + 1);
    if (absl::StrContains(host, ':')) return std::nullopt;
  }
  int number = 0;
  if (host.empty() || port.empty() ||
      !std::all_of(port.begin(), port.end(),
                   [](char c) { return absl::ascii_isdigit(static_cast<unsigned char>(c)); }) ||
      !absl::SimpleAtoi(port, &number) || number > 65535) {
    return std::nullopt;
  }
  return HostPort{std::string(host), std::string(port)};
}

absl::StatusOr<ListeningSocket> ListenTcp(const std::string& listen, absl::string_view purpose) {
  auto cannot = [&listen, purpose](absl::string_view why) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", listen, purpose, ": ", why));
  };
  const std::optional<HostPort> split = SplitHostPort(listen);
  if (!split.has_value()) return cannot("expected HOST:PORT or [IPV6]:PORT, port 0-65535");
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const int resolved = getaddrinfo(split->host.c_str(), split->port.c_str(), &hints, &found);
  if (resolved != 0) return cannot(gai_strerror(resolved));
  // The first address that takes a listening socket (a host name may have several).
  ListeningSocket listening;
  std::string why = "no address";
  for (const addrinfo* address = found; address != nullptr && listening.fd < 0;
       address = address->ai_next) {
    const int fd = socket(address->ai_family, address->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                          address->ai_protocol);
    if (fd < 0) {
      why = absl::StrCat("socket: ", ErrnoText(errno));
      continue;
    }
    const int one = 1;
    const int zero = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (address->ai_family == AF_INET6)
      setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    if (bind(fd, address->ai_addr, address->ai_addrlen) != 0) {
      why = absl::StrCat("bind: ", ErrnoText(errno));
      close(fd);
      continue;
    }
    if (::listen(fd, SOMAXCONN) != 0) {
      why = absl::StrCat("listen: ", ErrnoText(errno));
      close(fd);
      continue;
    }
    listening.fd = fd;
  }
  freeaddrinfo(found);
  if (listening.fd < 0) return cannot(why);
  sockaddr_storage bound{};
  socklen_t length = sizeof bound;
  if (getsockname(listening.fd, reinterpret_cast<sockaddr*>(&bound), &length) != 0) {
    const std::string error = ErrnoText(errno);
    close(listening.fd);
    return cannot(absl::StrCat("getsockname: ", error));
  }
  listening.port =
      ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                        : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  return listening;
}

}  // namespace copilot::gateway
