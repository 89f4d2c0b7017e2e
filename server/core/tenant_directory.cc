#include "server/core/tenant_directory.h"

#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "server/common/crypto.h"
#include "server/common/errors.h"

namespace copilot::gateway {
namespace {

absl::Status Unauthenticated(absl::string_view message, absl::string_view reason) {
  return MakeError(absl::StatusCode::kUnauthenticated, message, reason);
}

}  // namespace

TenantDirectory::TenantDirectory(std::vector<DirectoryEntry> entries,
                                 std::shared_ptr<const Tenant> anonymous)
    : entries_(std::move(entries)), anonymous_(std::move(anonymous)) {
  for (std::size_t i = 0; i < entries_.size(); ++i) {
    for (const std::string& identity : entries_[i].identities) by_identity_.emplace(identity, i);
  }
}

absl::StatusOr<std::shared_ptr<const Tenant>> TenantDirectory::Resolve(
    const CallerCredentials& credentials, const ListenerIdentity& listener) const {
  if (credentials.authorization.has_value()) {
    if (!listener.bearer) {
      return Unauthenticated("bearer tokens are not accepted on this listener",
                             "invalid_credentials");
    }
    absl::string_view value = absl::StripAsciiWhitespace(*credentials.authorization);
    if (value.size() < 7 || !absl::EqualsIgnoreCase(value.substr(0, 7), "bearer ")) {
      return Unauthenticated("the authorization metadata must be \"Bearer <token>\"",
                             "invalid_credentials");
    }
    const std::string digest = Sha256(absl::StripAsciiWhitespace(value.substr(7)));
    // Every configured digest is compared, whichever matches: the time taken does not say
    // which tenant (or whether any) a token belongs to.
    std::size_t match = entries_.size();
    for (std::size_t i = 0; i < entries_.size(); ++i) {
      for (const std::string& known : entries_[i].token_sha256) {
        if (ConstantTimeEquals(digest, known)) match = i;
      }
    }
    if (match == entries_.size()) {
      return Unauthenticated("the bearer token is not valid", "invalid_credentials");
    }
    return entries_[match].tenant;
  }
  if (listener.mtls && !credentials.peer_identities.empty()) {
    for (const std::string& identity : credentials.peer_identities) {
      auto it = by_identity_.find(identity);
      if (it != by_identity_.end()) return entries_[it->second].tenant;
    }
    return Unauthenticated("the client certificate is not mapped to a tenant",
                           "invalid_credentials");
  }
  if (listener.anonymous && anonymous_ != nullptr) return anonymous_;
  return Unauthenticated(
      listener.mtls ? "credentials required: a client certificate or authorization: Bearer <token>"
                    : "credentials required: authorization: Bearer <token>",
      "missing_credentials");
}

}  // namespace copilot::gateway
