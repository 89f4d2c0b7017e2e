// The one place caller-facing thread IDs are mapped to and from upstream thread IDs, and
// caller user IDs to and from the upstream's.
//
// Production uses SignedThreadHandles (signed_thread_handles.h): a handle names the upstream
// thread and its assistant and is bound to its tenant by an HMAC, so a caller can only use
// threads created for its own tenant. IdentityThreadHandles (handle == upstream ID) is for unit
// tests of the use cases.
#ifndef COPILOT_GATEWAY_SERVER_CORE_THREAD_HANDLES_H_
#define COPILOT_GATEWAY_SERVER_CORE_THREAD_HANDLES_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/common/tenant.h"

namespace copilot::gateway {

// An upstream thread as a handle names it. `assistant_id` may be empty (unknown).
struct ThreadRef {
  std::string upstream_id;
  std::string assistant_id;
};

// Maps thread and user IDs between callers and the upstream. Implementations are thread-safe.
class ThreadHandles {
 public:
  virtual ~ThreadHandles() = default;
  // The upstream thread behind `handle` given by `tenant` in request field `field`. NOT_FOUND
  // (exactly as for a thread that does not exist) when the handle is not the tenant's.
  virtual absl::StatusOr<ThreadRef> ToUpstream(const Tenant& tenant, absl::string_view handle,
                                               absl::string_view field) const = 0;
  // The handle `tenant` sees for `thread`.
  virtual std::string ToCaller(const Tenant& tenant, const ThreadRef& thread) const = 0;
  // The upstream user ID for a caller's end-user UUID (empty stays empty), so that one tenant's
  // end users never appear as another's upstream.
  virtual std::string UserToUpstream(const Tenant& tenant, absl::string_view user_id) const = 0;
  // The inverse of UserToUpstream; IDs it cannot map back are returned empty.
  virtual std::string UserToCaller(const Tenant& tenant, absl::string_view user_id) const = 0;
};

// Caller handle == upstream ID, user IDs unchanged. For tests. Thread-safe; stateless.
class IdentityThreadHandles final : public ThreadHandles {
 public:
  absl::StatusOr<ThreadRef> ToUpstream(const Tenant&, absl::string_view handle,
                                       absl::string_view) const override {
    return ThreadRef{std::string(handle), ""};
  }
  std::string ToCaller(const Tenant&, const ThreadRef& thread) const override {
    return thread.upstream_id;
  }
  std::string UserToUpstream(const Tenant&, absl::string_view user_id) const override {
    return std::string(user_id);
  }
  std::string UserToCaller(const Tenant&, absl::string_view user_id) const override {
    return std::string(user_id);
  }
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_CORE_THREAD_HANDLES_H_
