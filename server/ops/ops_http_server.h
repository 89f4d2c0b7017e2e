// The operations HTTP listener (its own port, never the gRPC one): GET /metrics (Prometheus
// text format), /healthz (liveness) and /readyz (readiness: 503 while starting or draining).
#ifndef COPILOT_GATEWAY_SERVER_OPS_OPS_HTTP_SERVER_H_
#define COPILOT_GATEWAY_SERVER_OPS_OPS_HTTP_SERVER_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

class CivetServer;

namespace copilot::gateway {

// What the endpoints answer. Called on the listener's own threads, concurrently.
struct OpsHandlers {
  std::function<std::string()> metrics;  // The /metrics body.
  std::function<bool()> live;            // /healthz: 200 when true, 503 otherwise.
  std::function<bool()> ready;           // /readyz: 200 when true, 503 otherwise.
};

// A small civetweb server with two worker threads. Thread-safe; stops when destroyed.
class OpsHttpServer {
 public:
  // Listens on `listen` (HOST:PORT, port 0 picks a free one).
  static absl::StatusOr<std::unique_ptr<OpsHttpServer>> Start(const std::string& listen,
                                                              OpsHandlers handlers);
  ~OpsHttpServer();
  OpsHttpServer(const OpsHttpServer&) = delete;
  OpsHttpServer& operator=(const OpsHttpServer&) = delete;

  // HOST:PORT actually listened on.
  const std::string& address() const { return address_; }
  int port() const { return port_; }

 private:
  class Handler;
  OpsHttpServer() = default;

  OpsHandlers handlers_;
  std::unique_ptr<Handler> metrics_;
  std::unique_ptr<Handler> healthz_;
  std::unique_ptr<Handler> readyz_;
  std::unique_ptr<CivetServer> server_;
  std::string address_;
  int port_ = 0;
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_OPS_OPS_HTTP_SERVER_H_
