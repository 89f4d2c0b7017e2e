// The tenant a call is made for: who the caller is to the gateway, and what it sends upstream.
#ifndef COPILOT_GATEWAY_SERVER_COMMON_TENANT_H_
#define COPILOT_GATEWAY_SERVER_COMMON_TENANT_H_

#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/string_view.h"
#include "server/common/limit_types.h"

namespace copilot::gateway {

// Plain data, immutable once built (shared between calls as shared_ptr<const Tenant>; a config
// reload builds new ones, so a call keeps the tenant it started with). Holds the licences and
// the tenant's own API key: never log it.
struct Tenant {
  // Configured identifier; safe to log and to use as a metrics label.
  std::string id;
  // Sent upstream as meta_data.user_data.licence when the assistant has no licence of its own;
  // empty sends none.
  std::string licence;
  // Licences for particular assistants (keys: lower-case assistant UUIDs).
  absl::flat_hash_map<std::string, std::string> assistant_licences;
  // Every assistant is allowed; otherwise only those in allowed_assistants.
  bool all_assistants = true;
  // Lower-case assistant UUIDs (used when all_assistants is false).
  absl::flat_hash_set<std::string> allowed_assistants;
  // The upstream API key for this tenant's calls; empty uses the gateway's.
  std::string api_key;
  // Its rate and concurrency limits and its weight for the upstream budget.
  TenantLimits limits;

  bool Allows(absl::string_view assistant_id) const {
    return all_assistants || allowed_assistants.contains(absl::AsciiStrToLower(assistant_id));
  }
  // Whether the tenant's config names `assistant_id` (a bounded set: safe as a metrics label).
  bool Names(absl::string_view assistant_id) const {
    const std::string id = absl::AsciiStrToLower(assistant_id);
    return allowed_assistants.contains(id) || assistant_licences.contains(id);
  }
  const std::string& LicenceFor(absl::string_view assistant_id) const {
    auto it = assistant_licences.find(absl::AsciiStrToLower(assistant_id));
    return it == assistant_licences.end() ? licence : it->second;
  }
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_COMMON_TENANT_H_
