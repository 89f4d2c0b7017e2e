#include "server/core/signed_thread_handles.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "server/common/crypto.h"
#include "server/common/errors.h"
#include "server/core/uuid_cipher.h"
#include "server/core/validation.h"

namespace copilot::gateway {
namespace {

std::atomic<uint64_t> next_instance{1};  // SignedThreadHandles::instance_.

constexpr absl::string_view kPrefix = "th2_";    // Key id, payload, tag.
constexpr absl::string_view kV1Prefix = "th1_";  // Payload, tag (no key id).
constexpr std::size_t kKeyIdBytes = 4;
constexpr std::size_t kTagBytes = 16;
// Payload kinds (first payload byte).
constexpr char kBothUuids = 1;       // thread UUID (16) + assistant UUID (16)
constexpr char kThreadUuidOnly = 2;  // thread UUID (16), assistant unknown
constexpr char kRaw = 3;             // len (1) + thread, len (1) + assistant

// The value of a lower-case hex digit; -1 for anything else.
int LowerHexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// 16 bytes for a lower-case canonical UUID; empty for anything else (kept raw instead, so a
// handle always gives back the exact upstream ID). Read in one pass, instead of a UUID check,
// a lower-cased copy and a hex decode, on every answer's handle.
std::string UuidBytes(absl::string_view text) {
  if (text.size() != 36) return "";
  std::string bytes(16, '\0');
  std::size_t out = 0;
  for (std::size_t i = 0; i < text.size();) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (text[i] != '-') return "";
      ++i;
      continue;
    }
    const int high = LowerHexValue(text[i]);
    const int low = LowerHexValue(text[i + 1]);
    if (high < 0 || low < 0) return "";
    bytes[out++] = static_cast<char>(high << 4 | low);
    i += 2;
  }
  return bytes;
}

std::string UuidText(absl::string_view bytes) {
  const std::string hex = absl::BytesToHexString(bytes);
  return absl::StrCat(hex.substr(0, 8), "-", hex.substr(8, 4), "-", hex.substr(12, 4), "-",
                      hex.substr(16, 4), "-", hex.substr(20, 12));
}

std::string Payload(const ThreadRef& thread) {
  const std::string thread_bytes = UuidBytes(thread.upstream_id);
  const std::string assistant_bytes = UuidBytes(thread.assistant_id);
  if (!thread_bytes.empty() && thread.assistant_id.empty()) {
    return absl::StrCat(std::string(1, kThreadUuidOnly), thread_bytes);
  }
  if (!thread_bytes.empty() && !assistant_bytes.empty()) {
    return absl::StrCat(std::string(1, kBothUuids), thread_bytes, assistant_bytes);
  }
  // Upstream IDs are UUIDs; anything else still round-trips (IDs over 255 bytes are cut, and
  // such a handle then names no thread the upstream knows).
  const std::string id = thread.upstream_id.substr(0, 255);
  const std::string assistant = thread.assistant_id.substr(0, 255);
  return absl::StrCat(std::string(1, kRaw), std::string(1, static_cast<char>(id.size())), id,
                      std::string(1, static_cast<char>(assistant.size())), assistant);
}

bool ParsePayload(absl::string_view payload, ThreadRef& out) {
  if (payload.empty()) return false;
  const char kind = payload.front();
  payload.remove_prefix(1);
  if (kind == kBothUuids && payload.size() == 32) {
    out = {UuidText(payload.substr(0, 16)), UuidText(payload.substr(16))};
    return true;
  }
  if (kind == kThreadUuidOnly && payload.size() == 16) {
    out = {UuidText(payload), ""};
    return true;
  }
  if (kind == kRaw && !payload.empty()) {
    const std::size_t id_size = static_cast<unsigned char>(payload[0]);
    if (payload.size() < 1 + id_size + 1) return false;
    const std::size_t assistant_size = static_cast<unsigned char>(payload[1 + id_size]);
    if (payload.size() != 2 + id_size + assistant_size) return false;
    out = {std::string(payload.substr(1, id_size)),
           std::string(payload.substr(2 + id_size, assistant_size))};
    return true;
  }
  return false;
}

// The tenant ID, length-prefixed so that (tenant, payload) pairs cannot collide.
std::string TenantPrefix(const Tenant& tenant) {
  return absl::StrCat(tenant.id.size(), ":", tenant.id);
}

// The first kTagBytes of HMAC-SHA-256(handle_key, message).
std::string Tag(const HmacSha256Key& handle_key, absl::string_view message) {
  return handle_key.Sign(message).substr(0, kTagBytes);
}

// Splits base64url(prefix_bytes || payload || tag); false when too short or not the canonical
// unpadded base64url the gateway writes. absl's decoder also accepts padding, whitespace and
// non-zero trailing bits: several spellings of one handle would all verify (found by the
// thread_handles fuzzer), and a request_id retry re-spelling it would look like another request.
bool Unpack(absl::string_view encoded, std::size_t prefix_bytes, std::string& bytes,
            absl::string_view& prefix, absl::string_view& payload, absl::string_view& tag) {
  if (!absl::WebSafeBase64Unescape(encoded, &bytes) || bytes.size() <= prefix_bytes + kTagBytes) {
    return false;
  }
  std::string canonical;
  absl::WebSafeBase64Escape(bytes, &canonical);
  if (canonical != encoded) return false;
  const absl::string_view all(bytes);
  prefix = all.substr(0, prefix_bytes);
  payload = all.substr(prefix_bytes, all.size() - prefix_bytes - kTagBytes);
  tag = all.substr(all.size() - kTagBytes);
  return true;
}

}  // namespace

absl::Status ThreadNotFound() {
  return MakeError(absl::StatusCode::kNotFound, "Thread not found", "thread_not_found",
                   {{"http_status", "404"}});
}

std::string SignedThreadHandles::KeyId(absl::string_view signing_key) {
  return HmacSha256(signing_key, "copilot-gateway thread signing key id").substr(0, kKeyIdBytes);
}

SignedThreadHandles::SigningKey SignedThreadHandles::Derive(absl::string_view signing_key) {
  return SigningKey{KeyId(signing_key),
                    HmacSha256Key(HmacSha256(signing_key, "copilot-gateway thread handle v1")),
                    HmacSha256Key(HmacSha256(signing_key, "copilot-gateway thread handle v2"))};
}

SignedThreadHandles::SignedThreadHandles(const ThreadHandleKeys& keys)
    : instance_(next_instance.fetch_add(1)),
      user_key_(HmacSha256(keys.user_id_key.empty() ? keys.current : keys.user_id_key,
                           "copilot-gateway user id v2")) {
  keys_.push_back(Derive(keys.current));
  std::vector<std::string> seen = {keys.current};
  for (const std::string& previous : keys.previous) {
    if (std::find(seen.begin(), seen.end(), previous) != seen.end()) continue;
    seen.push_back(previous);
    keys_.push_back(Derive(previous));
  }
}

SignedThreadHandles::SignedThreadHandles(std::string signing_key)
    : SignedThreadHandles(ThreadHandleKeys{std::move(signing_key), {}, ""}) {}

std::vector<std::string> SignedThreadHandles::KeyIdsHex() const {
  std::vector<std::string> ids;
  for (const SigningKey& key : keys_) ids.push_back(absl::BytesToHexString(key.id));
  return ids;
}

absl::StatusOr<ThreadRef> SignedThreadHandles::ToUpstream(const Tenant& tenant,
                                                          absl::string_view handle,
                                                          absl::string_view field) const {
  std::string bytes;
  absl::string_view key_id;
  absl::string_view payload;
  absl::string_view tag;
  ThreadRef thread;
  if (absl::ConsumePrefix(&handle, kPrefix)) {
    if (!Unpack(handle, kKeyIdBytes, bytes, key_id, payload, tag)) return ThreadNotFound();
    for (const SigningKey& key : keys_) {
      // Key ids are not secret; the tag comparison is constant-time.
      if (key.id != key_id) continue;
      const std::string message = absl::StrCat(key_id, TenantPrefix(tenant), payload);
      if (ConstantTimeEquals(tag, Tag(key.v2_key, message)) && ParsePayload(payload, thread)) {
        return thread;
      }
    }
    return ThreadNotFound();
  }
  if (absl::ConsumePrefix(&handle, kV1Prefix)) {
    if (!Unpack(handle, 0, bytes, key_id, payload, tag)) return ThreadNotFound();
    const std::string message = absl::StrCat(TenantPrefix(tenant), payload);
    for (const SigningKey& key : keys_) {
      if (ConstantTimeEquals(tag, Tag(key.v1_key, message)) && ParsePayload(payload, thread)) {
        return thread;
      }
    }
  }
  return ThreadNotFound();
}

std::string SignedThreadHandles::ToCaller(const Tenant& tenant, const ThreadRef& thread) const {
  // An answer's handle is asked for twice on the thread that completes it (its audit record,
  // then the response): the last one made on this thread is kept.
  struct Memo {
    uint64_t instance = 0;
    std::string tenant;
    ThreadRef thread;
    std::string handle;
  };
  thread_local Memo memo;
  if (memo.instance == instance_ && memo.tenant == tenant.id &&
      memo.thread.upstream_id == thread.upstream_id &&
      memo.thread.assistant_id == thread.assistant_id) {
    return memo.handle;
  }
  const SigningKey& current = keys_.front();
  const std::string payload = Payload(thread);
  const std::string message = absl::StrCat(current.id, TenantPrefix(tenant), payload);
  std::string encoded;
  absl::WebSafeBase64Escape(absl::StrCat(current.id, payload, Tag(current.v2_key, message)),
                            &encoded);
  std::string handle = absl::StrCat(kPrefix, encoded);
  memo = Memo{instance_, tenant.id, thread, handle};
  return handle;
}

std::string SignedThreadHandles::UserKey(const Tenant& tenant) const {
  return user_key_.Sign(TenantPrefix(tenant)).substr(0, 16);
}

std::string SignedThreadHandles::UserToUpstream(const Tenant& tenant,
                                                absl::string_view user_id) const {
  const std::string bytes = UuidBytes(absl::AsciiStrToLower(user_id));
  if (bytes.empty()) return std::string(user_id);
  return UuidText(EncryptUuid(UserKey(tenant), bytes));
}

std::string SignedThreadHandles::UserToCaller(const Tenant& tenant,
                                              absl::string_view user_id) const {
  const std::string bytes = UuidBytes(absl::AsciiStrToLower(user_id));
  if (bytes.empty()) return "";
  return UuidText(DecryptUuid(UserKey(tenant), bytes));
}

}  // namespace copilot::gateway
