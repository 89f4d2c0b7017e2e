// The one place caller-facing thread IDs are mapped to and from upstream thread IDs.
//
// Today the mapping is the identity (IdentityThreadHandles). The tenants issue replaces it with
// a handle bound to its tenant by an HMAC, so a caller can only use threads it created; every
// use case goes through this interface, so that swap touches nothing else.
#ifndef COPILOT_GATEWAY_SERVER_CORE_THREAD_HANDLES_H_
#define COPILOT_GATEWAY_SERVER_CORE_THREAD_HANDLES_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/core/tenant.h"

namespace copilot::gateway {

// Maps thread IDs between callers and the upstream. Implementations are thread-safe.
class ThreadHandles {
 public:
  virtual ~ThreadHandles() = default;
  // The upstream thread ID behind `handle` given by `tenant` in request field `field`.
  // NOT_FOUND when the handle is not the tenant's; INVALID_ARGUMENT when it is malformed.
  virtual absl::StatusOr<std::string> ToUpstream(const Tenant& tenant, absl::string_view handle,
                                                 absl::string_view field) const = 0;
  // The handle `tenant` sees for upstream thread `upstream_id`.
  virtual std::string ToCaller(const Tenant& tenant, absl::string_view upstream_id) const = 0;
};

// Caller handle == upstream ID. Thread-safe; stateless.
class IdentityThreadHandles final : public ThreadHandles {
 public:
  absl::StatusOr<std::string> ToUpstream(const Tenant& tenant, absl::string_view handle,
                                         absl::string_view field) const override {
    return std::string(handle);
  }
  std::string ToCaller(const Tenant& tenant, absl::string_view upstream_id) const override {
    return std::string(upstream_id);
  }
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_CORE_THREAD_HANDLES_H_
