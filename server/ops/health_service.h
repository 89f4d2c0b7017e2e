// grpc.health.v1.Health, served by the gateway itself rather than by gRPC's default service:
// Watch streams, which anyone who reaches the port may open without credentials, are capped.
// gRPC's default service keeps every Watch open without bound (5,000 of them took +89 MiB), and
// gRPC's memory quota does not account for them.
//
// Semantics follow the health-checking protocol (grpc/health/v1/health.proto): Check answers the
// service's status or NOT_FOUND for a service never set; Watch sends the current status at once
// (SERVICE_UNKNOWN for a service never set) and then every change, until the caller cancels or
// the server shuts down. Past `max_watches` concurrent Watch streams, a new one is refused with
// RESOURCE_EXHAUSTED (kubelet's gRPC probes use Check, which is never capped).
#ifndef COPILOT_GATEWAY_SERVER_OPS_HEALTH_SERVICE_H_
#define COPILOT_GATEWAY_SERVER_OPS_HEALTH_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace copilot::gateway {

// Thread-safe: gRPC calls the handlers concurrently; SetServingStatus may be called from any
// thread. Must outlive the grpc::Server it is registered with.
class HealthService final : public grpc::health::v1::Health::CallbackService {
 public:
  explicit HealthService(int max_watches) : max_watches_(max_watches) {}

  // Sets `service`'s status ("" is the server as a whole) and tells its watchers.
  void SetServingStatus(const std::string& service, bool serving);

  grpc::ServerUnaryReactor* Check(grpc::CallbackServerContext* context,
                                  const grpc::health::v1::HealthCheckRequest* request,
                                  grpc::health::v1::HealthCheckResponse* response) override;
  grpc::ServerWriteReactor<grpc::health::v1::HealthCheckResponse>* Watch(
      grpc::CallbackServerContext* context,
      const grpc::health::v1::HealthCheckRequest* request) override;

  // Watch streams open now (copilot_gateway_health_watches).
  int watches() const;

 private:
  class WatchReactor;
  struct Watcher;
  using Status = grpc::health::v1::HealthCheckResponse::ServingStatus;
  Status StatusOf(const std::string& service) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Unregister(const std::shared_ptr<Watcher>& watcher);

  const int max_watches_;
  mutable absl::Mutex mu_;
  std::map<std::string, Status> statuses_ ABSL_GUARDED_BY(mu_);
  // Every change gets the next version, so that a watcher told of two changes out of order
  // keeps the newer one.
  uint64_t version_ ABSL_GUARDED_BY(mu_) = 0;
  std::set<std::shared_ptr<Watcher>> watchers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_OPS_HEALTH_SERVICE_H_
