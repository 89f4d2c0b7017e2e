// Who a caller is: its credentials mapped to a tenant (issue "Tenants", README "Tenants").
#ifndef COPILOT_GATEWAY_SERVER_CORE_TENANT_DIRECTORY_H_
#define COPILOT_GATEWAY_SERVER_CORE_TENANT_DIRECTORY_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "server/common/tenant.h"

namespace copilot::gateway {

// What a call presented, as the service layer read it from gRPC. Plain data.
struct CallerCredentials {
  // The `authorization` metadata value, when sent.
  std::optional<std::string> authorization;
  // Identities of a verified client certificate: SPIFFE IDs ("spiffe://...") and DNS SANs
  // ("dns:NAME"). Empty without one.
  std::vector<std::string> peer_identities;
};

// Which identities a listener accepts.
struct ListenerIdentity {
  bool bearer = false;     // authorization: Bearer <token>
  bool mtls = false;       // a verified client certificate
  bool anonymous = false;  // nothing: the directory's anonymous tenant (identity: none)
};

// One tenant as the directory knows it.
struct DirectoryEntry {
  std::shared_ptr<const Tenant> tenant;
  std::vector<std::string> token_sha256;  // Raw 32-byte SHA-256 digests of its bearer tokens.
  std::vector<std::string> identities;    // Client-certificate identities (see above).
};

// An immutable snapshot of the configured tenants. Thread-safe (const after construction).
class TenantDirectory {
 public:
  TenantDirectory(std::vector<DirectoryEntry> entries, std::shared_ptr<const Tenant> anonymous);

  // The tenant of a call on a listener accepting `listener`. A bearer token, when sent, decides
  // (it must be valid: no fallback to other identities); then a client certificate; then the
  // anonymous tenant. UNAUTHENTICATED (ErrorInfo reason "missing_credentials" or
  // "invalid_credentials") otherwise; the message never repeats what the caller sent. Tokens
  // are compared as SHA-256 digests, in time independent of which tenant (if any) matches.
  absl::StatusOr<std::shared_ptr<const Tenant>> Resolve(const CallerCredentials& credentials,
                                                        const ListenerIdentity& listener) const;

  std::size_t size() const { return entries_.size(); }
  // The configured tenant (or the anonymous one) with this ID, or null.
  std::shared_ptr<const Tenant> FindById(absl::string_view id) const {
    for (const DirectoryEntry& entry : entries_) {
      if (entry.tenant->id == id) return entry.tenant;
    }
    return anonymous_ != nullptr && anonymous_->id == id ? anonymous_ : nullptr;
  }

 private:
  std::vector<DirectoryEntry> entries_;
  absl::flat_hash_map<std::string, std::size_t> by_identity_;
  std::shared_ptr<const Tenant> anonymous_;
};

// Holds the directory in force; a reload swaps it. Calls keep the tenant they resolved.
// Thread-safe.
class TenantResolver {
 public:
  explicit TenantResolver(std::shared_ptr<const TenantDirectory> directory)
      : directory_(std::move(directory)) {}
  void Replace(std::shared_ptr<const TenantDirectory> directory) {
    absl::MutexLock lock(&mu_);
    directory_ = std::move(directory);
  }
  std::shared_ptr<const TenantDirectory> Current() const {
    absl::MutexLock lock(&mu_);
    return directory_;
  }

 private:
  mutable absl::Mutex mu_;
  std::shared_ptr<const TenantDirectory> directory_ ABSL_GUARDED_BY(mu_);
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_CORE_TENANT_DIRECTORY_H_
