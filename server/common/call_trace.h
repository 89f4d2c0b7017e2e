// What one incoming gRPC call learns on its way down the layers (its tenant, its upstream
// requests), for its metrics and its log line; and the correlation IDs it carries upstream.
#ifndef COPILOT_GATEWAY_SERVER_COMMON_CALL_TRACE_H_
#define COPILOT_GATEWAY_SERVER_COMMON_CALL_TRACE_H_

#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace copilot::gateway {

// Thread-safe: the service adapter creates it, the core records the tenant, the upstream
// transport records each request (on its event loop thread), the adapter reads it at the end.
class CallTrace {
 public:
  // `request_id`: sent upstream as x-request-id. `traceparent`: the W3C trace context sent
  // upstream (the caller's trace with the gateway's span as parent).
  CallTrace(std::string request_id, std::string traceparent)
      : request_id_(std::move(request_id)), traceparent_(std::move(traceparent)) {}

  const std::string& request_id() const { return request_id_; }
  const std::string& traceparent() const { return traceparent_; }

  // The tenant the call was resolved to (a configured tenant ID: never raw caller input).
  void SetTenant(std::string tenant_id) {
    absl::MutexLock lock(&mu_);
    tenant_ = std::move(tenant_id);
  }
  std::string tenant() const {
    absl::MutexLock lock(&mu_);
    return tenant_;
  }

  // One upstream request ended after `elapsed`, with HTTP status `http_status` (0: none).
  void AddUpstream(absl::Duration elapsed, int http_status) {
    absl::MutexLock lock(&mu_);
    upstream_time_ += elapsed;
    ++upstream_requests_;
    upstream_status_ = http_status;
  }
  // Time spent waiting to send an upstream request again (a retry's backoff): counted as
  // upstream time, since the upstream's failure caused it, not the gateway.
  void AddUpstreamWait(absl::Duration waited) {
    absl::MutexLock lock(&mu_);
    upstream_time_ += waited;
  }
  // Time spent waiting for upstream requests (summed), how many, the last one's HTTP status.
  absl::Duration upstream_time() const {
    absl::MutexLock lock(&mu_);
    return upstream_time_;
  }
  int upstream_requests() const {
    absl::MutexLock lock(&mu_);
    return upstream_requests_;
  }
  int upstream_status() const {
    absl::MutexLock lock(&mu_);
    return upstream_status_;
  }
  // What the last failed upstream request's transport said (for the log only; bounded).
  void SetUpstreamError(std::string detail) {
    absl::MutexLock lock(&mu_);
    upstream_error_ = std::move(detail);
  }
  std::string upstream_error() const {
    absl::MutexLock lock(&mu_);
    return upstream_error_;
  }

 private:
  const std::string request_id_;
  const std::string traceparent_;
  mutable absl::Mutex mu_;
  std::string tenant_ ABSL_GUARDED_BY(mu_);
  absl::Duration upstream_time_ ABSL_GUARDED_BY(mu_);
  int upstream_requests_ ABSL_GUARDED_BY(mu_) = 0;
  int upstream_status_ ABSL_GUARDED_BY(mu_) = 0;
  std::string upstream_error_ ABSL_GUARDED_BY(mu_);
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_COMMON_CALL_TRACE_H_
