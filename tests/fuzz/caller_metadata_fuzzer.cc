// What a caller sends in its metadata: x-request-id and traceparent (RequestIdFor,
// TraceparentFor in server/ops/call_observer.h) and the bearer token of `authorization`
// (TenantDirectory::Resolve, server/core/tenant_directory.h).
//
// Properties: a request ID is the caller's when it is 1-128 characters of [A-Za-z0-9._:/+=-],
// else 32 new hex digits; the traceparent sent upstream is always a valid version-00 one that
// keeps a valid caller's trace ID and flags; Resolve picks exactly the tenant whose token follows
// "Bearer " (any case, surrounding blanks), falls back to certificates and the anonymous tenant
// only without a token, and its errors are UNAUTHENTICATED with a fixed text that never repeats
// what the caller sent.
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "server/common/crypto.h"
#include "server/core/tenant_directory.h"
#include "server/ops/call_observer.h"
#include "tests/fuzz/fuzz_support.h"

namespace copilot::gateway {
namespace {

bool IsLowerHex(absl::string_view text) {
  return std::all_of(text.begin(), text.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

void CheckRequestId(const std::optional<std::string>& sent) {
  const std::string id = RequestIdFor(sent);
  const bool valid = sent.has_value() && !sent->empty() && sent->size() <= 128 &&
                     std::all_of(sent->begin(), sent->end(), [](char c) {
                       return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
                              absl::string_view("._:/+=-").find(c) != absl::string_view::npos;
                     });
  if (valid) {
    FUZZ_CHECK(id == *sent, "a valid x-request-id was replaced");
  } else {
    FUZZ_CHECK(id.size() == 32 && IsLowerHex(id), "a generated request ID is not 32 hex digits");
  }
}

void CheckTraceparent(const std::optional<std::string>& sent) {
  const std::string out = TraceparentFor(sent);
  FUZZ_CHECK(out.size() == 55, "traceparent length");
  FUZZ_CHECK(absl::StartsWith(out, "00-") && out[35] == '-' && out[52] == '-', "traceparent form");
  const std::string trace_id = out.substr(3, 32);
  const std::string parent = out.substr(36, 16);
  FUZZ_CHECK(IsLowerHex(trace_id) && IsLowerHex(parent) && IsLowerHex(out.substr(53)),
             "traceparent not lower-case hex");
  FUZZ_CHECK(trace_id != std::string(32, '0') && parent != std::string(16, '0'),
             "all-zero trace or span ID");
  if (sent.has_value() && sent->size() == 55 && absl::StartsWith(*sent, "00-") &&
      (*sent)[35] == '-' && (*sent)[52] == '-' && IsLowerHex(sent->substr(3, 32)) &&
      IsLowerHex(sent->substr(36, 16)) && IsLowerHex(sent->substr(53)) &&
      sent->substr(3, 32) != std::string(32, '0') && sent->substr(36, 16) != std::string(16, '0')) {
    FUZZ_CHECK(trace_id == sent->substr(3, 32), "a valid caller trace was not continued");
    FUZZ_CHECK(out.substr(53) == sent->substr(53), "the caller's trace flags were lost");
  }
}

constexpr const char* kTokens[] = {"alpha-token-0123456789", "beta-token-9876543210"};

const TenantDirectory& Directory() {
  static const TenantDirectory* const kDirectory = [] {
    std::vector<DirectoryEntry> entries;
    for (const char* id : {"alpha", "beta"}) {
      auto tenant = std::make_shared<Tenant>();
      tenant->id = id;
      DirectoryEntry entry;
      entry.tenant = tenant;
      entry.token_sha256.push_back(Sha256(kTokens[entries.size()]));
      entry.identities.push_back(std::string("spiffe://fuzz/") + id);
      entries.push_back(std::move(entry));
    }
    auto anonymous = std::make_shared<Tenant>();
    anonymous->id = "anonymous";
    return new TenantDirectory(std::move(entries), std::move(anonymous));
  }();
  return *kDirectory;
}

// The tenant the README's rules give, or nullopt for UNAUTHENTICATED.
std::optional<std::string> ExpectedTenant(const CallerCredentials& credentials,
                                          const ListenerIdentity& listener) {
  if (credentials.authorization.has_value()) {
    if (!listener.bearer) return std::nullopt;
    absl::string_view value = absl::StripAsciiWhitespace(*credentials.authorization);
    if (value.size() < 7 || !absl::EqualsIgnoreCase(value.substr(0, 7), "bearer ")) {
      return std::nullopt;
    }
    const absl::string_view token = absl::StripAsciiWhitespace(value.substr(7));
    if (token == kTokens[0]) return "alpha";
    if (token == kTokens[1]) return "beta";
    return std::nullopt;
  }
  if (listener.mtls && !credentials.peer_identities.empty()) {
    for (const std::string& identity : credentials.peer_identities) {
      if (identity == "spiffe://fuzz/alpha") return "alpha";
      if (identity == "spiffe://fuzz/beta") return "beta";
    }
    return std::nullopt;
  }
  if (listener.anonymous) return "anonymous";
  return std::nullopt;
}

void CheckResolve(const CallerCredentials& credentials, const ListenerIdentity& listener) {
  const absl::StatusOr<std::shared_ptr<const Tenant>> tenant =
      Directory().Resolve(credentials, listener);
  const std::optional<std::string> expected = ExpectedTenant(credentials, listener);
  if (tenant.ok()) {
    FUZZ_CHECK(expected.has_value() && (*tenant)->id == *expected, "resolved the wrong tenant");
    return;
  }
  FUZZ_CHECK(!expected.has_value(), "refused a caller with valid credentials");
  FUZZ_CHECK(tenant.status().code() == absl::StatusCode::kUnauthenticated,
             tenant.status().ToString());
  const std::string reason = fuzz::Reason(tenant.status());
  FUZZ_CHECK(reason == "missing_credentials" || reason == "invalid_credentials", reason);
  static constexpr absl::string_view kMessages[] = {
      "bearer tokens are not accepted on this listener",
      "the authorization metadata must be \"Bearer <token>\"",
      "the bearer token is not valid",
      "the client certificate is not mapped to a tenant",
      "credentials required: a client certificate or authorization: Bearer <token>",
      "credentials required: authorization: Bearer <token>",
  };
  FUZZ_CHECK(std::find(std::begin(kMessages), std::end(kMessages), tenant.status().message()) !=
                 std::end(kMessages),
             "an error text that is not one of the fixed ones");
  fuzz::CheckErrorIsBounded(tenant.status(), "Resolve");
}

}  // namespace
}  // namespace copilot::gateway

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace gw = copilot::gateway;
  FuzzedDataProvider input(data, size);
  gw::ListenerIdentity listener;
  listener.bearer = input.ConsumeBool();
  listener.mtls = input.ConsumeBool();
  listener.anonymous = input.ConsumeBool();
  const bool absent = input.ConsumeIntegralInRange(0, 7) == 0;
  const std::string value = input.ConsumeRemainingBytesAsString();
  const std::optional<std::string> sent = absent ? std::nullopt : std::optional<std::string>(value);

  gw::CheckRequestId(sent);
  gw::CheckTraceparent(sent);
  gw::CallerCredentials credentials;
  credentials.authorization = sent;
  gw::CheckResolve(credentials, listener);
  // The same bytes as client-certificate identities (one per line), without a token.
  gw::CallerCredentials certificate;
  certificate.peer_identities = absl::StrSplit(value, '\n', absl::SkipEmpty());
  gw::CheckResolve(certificate, listener);
  return 0;
}
