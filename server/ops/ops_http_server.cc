#include "server/ops/ops_http_server.h"

#include <CivetServer.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <exception>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace copilot::gateway {
namespace {

void Respond(mg_connection* conn, int status, const char* content_type, const std::string& body,
             bool head) {
  const char* reason = status == 200 ? "OK" : status == 503 ? "Service Unavailable" : "Error";
  mg_printf(conn,
            "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
            "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
            status, reason, content_type, body.size());
  if (!head) mg_write(conn, body.data(), body.size());
}

}  // namespace

// One endpoint: GET and HEAD answer from `respond`.
class OpsHttpServer::Handler final : public CivetHandler {
 public:
  explicit Handler(std::function<void(mg_connection*, bool head)> respond)
      : respond_(std::move(respond)) {}
  bool handleGet(CivetServer* /*server*/, mg_connection* conn) override {
    respond_(conn, false);
    return true;
  }
  bool handleHead(CivetServer* /*server*/, mg_connection* conn) override {
    respond_(conn, true);
    return true;
  }

 private:
  const std::function<void(mg_connection*, bool)> respond_;
};

absl::StatusOr<std::unique_ptr<OpsHttpServer>> OpsHttpServer::Start(const std::string& listen,
                                                                    OpsHandlers handlers) {
  std::unique_ptr<OpsHttpServer> ops(new OpsHttpServer());
  ops->handlers_ = std::move(handlers);
  OpsHttpServer* self = ops.get();
  ops->metrics_ = std::make_unique<Handler>([self](mg_connection* conn, bool head) {
    Respond(conn, 200, "text/plain; version=0.0.4; charset=utf-8", self->handlers_.metrics(), head);
  });
  ops->healthz_ = std::make_unique<Handler>([self](mg_connection* conn, bool head) {
    const bool live = self->handlers_.live();
    Respond(conn, live ? 200 : 503, "text/plain", live ? "ok\n" : "not live\n", head);
  });
  ops->readyz_ = std::make_unique<Handler>([self](mg_connection* conn, bool head) {
    const bool ready = self->handlers_.ready();
    Respond(conn, ready ? 200 : 503, "text/plain", ready ? "ready\n" : "not ready\n", head);
  });
  // civetweb wants "[::]:PORT" for IPv6; a HOST:PORT with a bare IPv6 host is not ours to
  // guess, so the address is passed through.
  const std::vector<std::string> options = {
      "listening_ports",    listen,  "num_threads",       "2",
      "request_timeout_ms", "10000", "enable_keep_alive", "no"};
  try {
    ops->server_ = std::make_unique<CivetServer>(options);
  } catch (const std::exception& error) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", listen, " for /metrics: ", error.what()));
  }
  if (ops->server_->getContext() == nullptr) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", listen, " for /metrics"));
  }
  // civetweb matches handler URIs as prefixes unless they end in "$".
  ops->server_->addHandler("/metrics$", ops->metrics_.get());
  ops->server_->addHandler("/healthz$", ops->healthz_.get());
  ops->server_->addHandler("/readyz$", ops->readyz_.get());
  const std::vector<int> ports = ops->server_->getListeningPorts();
  if (ports.empty()) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", listen, " for /metrics"));
  }
  ops->port_ = ports.front();
  ops->address_ = absl::StrCat(listen.substr(0, listen.rfind(':')), ":", ops->port_);
  return ops;
}

OpsHttpServer::~OpsHttpServer() {
  if (server_ == nullptr) return;
  // civetweb's accept loop notices a stop only when its poll (2 s) returns: connect to it now
  // and then until it has stopped, so that a shutdown does not wait for that.
  std::atomic<bool> closed{false};
  std::thread closer([this, &closed] {
    server_->close();
    closed = true;
  });
  while (!closed) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0) {
      sockaddr_in address{};
      address.sin_family = AF_INET;
      address.sin_port = htons(static_cast<uint16_t>(port_));
      address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      (void)connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
      close(fd);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  closer.join();
}

}  // namespace copilot::gateway
