#include "server/core/signed_thread_handles.h"

#include <cstdint>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "server/common/crypto.h"
#include "server/common/errors.h"
#include "server/core/validation.h"

namespace copilot::gateway {
namespace {

constexpr absl::string_view kPrefix = "th1_";
constexpr std::size_t kTagBytes = 16;
// Payload kinds (first payload byte).
constexpr char kBothUuids = 1;       // thread UUID (16) + assistant UUID (16)
constexpr char kThreadUuidOnly = 2;  // thread UUID (16), assistant unknown
constexpr char kRaw = 3;             // len (1) + thread, len (1) + assistant

// 16 bytes for a lower-case canonical UUID; empty for anything else (kept raw instead, so a
// handle always gives back the exact upstream ID).
std::string UuidBytes(absl::string_view text) {
  if (!IsUuid(text) || absl::AsciiStrToLower(text) != text) return "";
  std::string hex;
  for (char c : text) {
    if (c != '-') hex.push_back(c);
  }
  return absl::HexStringToBytes(hex);
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

std::string Derive(absl::string_view signing_key, absl::string_view purpose) {
  return HmacSha256(signing_key, purpose);
}

}  // namespace

absl::Status ThreadNotFound() {
  return MakeError(absl::StatusCode::kNotFound, "Thread not found", "thread_not_found",
                   {{"http_status", "404"}});
}

SignedThreadHandles::SignedThreadHandles(std::string signing_key)
    : handle_key_(Derive(signing_key, "copilot-gateway thread handle v1")),
      user_key_(Derive(signing_key, "copilot-gateway user id v1")) {}

std::string SignedThreadHandles::Tag(const Tenant& tenant, absl::string_view payload) const {
  // The tenant ID is length-prefixed so that (tenant, payload) pairs cannot collide.
  const std::string message = absl::StrCat(tenant.id.size(), ":", tenant.id, payload);
  return HmacSha256(handle_key_, message).substr(0, kTagBytes);
}

absl::StatusOr<ThreadRef> SignedThreadHandles::ToUpstream(const Tenant& tenant,
                                                          absl::string_view handle,
                                                          absl::string_view field) const {
  std::string bytes;
  if (!absl::ConsumePrefix(&handle, kPrefix) || !absl::WebSafeBase64Unescape(handle, &bytes) ||
      bytes.size() <= kTagBytes) {
    return ThreadNotFound();
  }
  const absl::string_view all(bytes);
  const absl::string_view payload = all.substr(0, all.size() - kTagBytes);
  const absl::string_view tag = all.substr(all.size() - kTagBytes);
  ThreadRef thread;
  if (!ConstantTimeEquals(tag, Tag(tenant, payload)) || !ParsePayload(payload, thread)) {
    return ThreadNotFound();
  }
  return thread;
}

std::string SignedThreadHandles::ToCaller(const Tenant& tenant, const ThreadRef& thread) const {
  const std::string payload = Payload(thread);
  std::string encoded;
  absl::WebSafeBase64Escape(absl::StrCat(payload, Tag(tenant, payload)), &encoded);
  return absl::StrCat(kPrefix, encoded);
}

std::string SignedThreadHandles::UserKey(const Tenant& tenant) const {
  return HmacSha256(user_key_, absl::StrCat(tenant.id.size(), ":", tenant.id)).substr(0, 16);
}

std::string SignedThreadHandles::UserToUpstream(const Tenant& tenant,
                                                absl::string_view user_id) const {
  const std::string bytes = UuidBytes(absl::AsciiStrToLower(user_id));
  if (bytes.empty()) return std::string(user_id);
  return UuidText(Aes128EncryptBlock(UserKey(tenant), bytes));
}

std::string SignedThreadHandles::UserToCaller(const Tenant& tenant,
                                              absl::string_view user_id) const {
  const std::string bytes = UuidBytes(absl::AsciiStrToLower(user_id));
  if (bytes.empty()) return "";
  return UuidText(Aes128DecryptBlock(UserKey(tenant), bytes));
}

}  // namespace copilot::gateway
