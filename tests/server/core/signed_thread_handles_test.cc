// Signing-key rotation of thread handles (key ids, previous keys, "th1_" handles of the first
// format) and the end-user ID mapping (format-preserving, its own key). The basics (round trip,
// tenant binding, tampering) are in tenant_core_test.cc.
#include "server/core/signed_thread_handles.h"

#include <cstdint>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/common/crypto.h"
#include "server/core/validation.h"

namespace copilot::gateway {
namespace {

constexpr char kTax[] = "7c0e5d3a-4c1b-4f57-9a51-1f1f3e0a0001";
constexpr char kThread[] = "0b8e5f0e-9a4c-4b7a-8f43-2f6f0e1c2d3e";
constexpr char kUser[] = "5a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";

const std::string kKeyA(32, 'a');
const std::string kKeyB(32, 'b');
const std::string kKeyC(32, 'c');
const std::string kUserIdKey(32, 'u');

Tenant MakeTenant(std::string id) {
  Tenant tenant;
  tenant.id = std::move(id);
  return tenant;
}

std::string Bytes(absl::string_view uuid) {
  std::string hex;
  for (char c : uuid) {
    if (c != '-') hex.push_back(c);
  }
  return absl::HexStringToBytes(hex);
}

std::string Unbase64(absl::string_view handle) {
  std::string bytes;
  EXPECT_TRUE(absl::WebSafeBase64Unescape(handle.substr(4), &bytes)) << handle;
  return bytes;
}

std::string Base64(absl::string_view bytes) {
  std::string encoded;
  absl::WebSafeBase64Escape(bytes, &encoded);
  return encoded;
}

// A handle of the first format ("th1_", no key id) for `tenant`, thread kThread on kTax,
// signed with `key`: what gateways before key rotation handed out.
std::string V1Handle(const std::string& key, const std::string& tenant) {
  const std::string payload = absl::StrCat("\x01", Bytes(kThread), Bytes(kTax));
  const std::string handle_key = HmacSha256(key, "copilot-gateway thread handle v1");
  const std::string tag =
      HmacSha256(handle_key, absl::StrCat(tenant.size(), ":", tenant, payload)).substr(0, 16);
  return absl::StrCat("th1_", Base64(absl::StrCat(payload, tag)));
}

ThreadHandleKeys Keys(std::string current, std::vector<std::string> previous = {},
                      std::string user_id_key = "") {
  return ThreadHandleKeys{std::move(current), std::move(previous), std::move(user_id_key)};
}

ThreadHandleKeys Rotated() { return Keys(kKeyB, {kKeyA}); }

void ExpectTaxThread(const absl::StatusOr<ThreadRef>& thread) {
  ASSERT_TRUE(thread.ok()) << thread.status();
  EXPECT_EQ(thread->upstream_id, kThread);
  EXPECT_EQ(thread->assistant_id, kTax);
}

// ---- The handle's bytes ------------------------------------------------------------------------

// ToCaller's handle, built here from the format's definition: "th2_", then base64url of the key
// id, the payload (kind 1: both lower-case UUIDs as 16 bytes each; 2: the thread's UUID alone;
// 3: length-prefixed raw IDs, for anything else) and the tag over key id, tenant and payload.
// Also for the same thread asked for again (the per-thread memo), for another tenant, and under
// another instance with another key.
TEST(SignedThreadHandlesFormatTest, AHandleIsTheFormatsBytesForEveryKindOfId) {
  auto expected = [](const std::string& key, const std::string& tenant,
                     const std::string& payload) {
    const std::string key_id =
        HmacSha256(key, "copilot-gateway thread signing key id").substr(0, 4);
    const std::string handle_key = HmacSha256(key, "copilot-gateway thread handle v2");
    const std::string tag =
        HmacSha256(handle_key, absl::StrCat(key_id, tenant.size(), ":", tenant, payload))
            .substr(0, 16);
    return absl::StrCat("th2_", Base64(absl::StrCat(key_id, payload, tag)));
  };
  auto raw = [](const std::string& id, const std::string& assistant) {
    return absl::StrCat("\x03", std::string(1, static_cast<char>(id.size())), id,
                        std::string(1, static_cast<char>(assistant.size())), assistant);
  };
  const std::string upper = absl::AsciiStrToUpper(kThread);
  std::string bad_dash = kThread;
  bad_dash[8] = 'a';
  std::string not_hex = kThread;
  not_hex[35] = 'g';
  std::string dash_in_hex = kThread;
  dash_in_hex[7] = '-';
  const std::vector<std::pair<ThreadRef, std::string>> cases = {
      {{kThread, kTax}, absl::StrCat("\x01", Bytes(kThread), Bytes(kTax))},
      {{kThread, ""}, absl::StrCat("\x02", Bytes(kThread))},
      {{upper, kTax}, raw(upper, kTax)},
      {{kThread, absl::AsciiStrToUpper(kTax)}, raw(kThread, absl::AsciiStrToUpper(kTax))},
      {{std::string(kThread).substr(0, 35), kTax}, raw(std::string(kThread).substr(0, 35), kTax)},
      {{bad_dash, kTax}, raw(bad_dash, kTax)},
      {{not_hex, kTax}, raw(not_hex, kTax)},
      {{dash_in_hex, kTax}, raw(dash_in_hex, kTax)},
      {{"thread_abc", "asst"}, raw("thread_abc", "asst")},
  };
  SignedThreadHandles a(Keys(kKeyA));
  for (const auto& [thread, payload] : cases) {
    for (const char* tenant : {"acme", "acme", "globex"}) {
      const std::string handle = a.ToCaller(MakeTenant(tenant), thread);
      EXPECT_EQ(handle, expected(kKeyA, tenant, payload)) << thread.upstream_id << " " << tenant;
      const absl::StatusOr<ThreadRef> back = a.ToUpstream(MakeTenant(tenant), handle, "thread_id");
      ASSERT_TRUE(back.ok()) << back.status();
      EXPECT_EQ(back->upstream_id, thread.upstream_id);
      EXPECT_EQ(back->assistant_id, thread.assistant_id);
    }
    // Another instance with another key right after: its own handle, not the memo's.
    SignedThreadHandles c(Keys(kKeyC));
    EXPECT_EQ(c.ToCaller(MakeTenant("globex"), thread), expected(kKeyC, "globex", payload));
  }
}

// ---- Key rotation ---------------------------------------------------------------------------

TEST(SignedThreadHandlesRotationTest, NewHandlesCarryTheCurrentKeysId) {
  const SignedThreadHandles handles(Rotated());
  const std::string handle = handles.ToCaller(MakeTenant("a"), ThreadRef{kThread, kTax});
  ASSERT_EQ(handle.substr(0, 4), "th2_");
  const std::string key_id = SignedThreadHandles::KeyId(kKeyB);
  ASSERT_EQ(key_id.size(), 4u);
  EXPECT_EQ(key_id, HmacSha256(kKeyB, "copilot-gateway thread signing key id").substr(0, 4));
  EXPECT_EQ(Unbase64(handle).substr(0, 4), key_id);
  EXPECT_NE(SignedThreadHandles::KeyId(kKeyA), key_id);
  EXPECT_EQ(handles.KeyIdsHex(),
            (std::vector<std::string>{absl::BytesToHexString(key_id),
                                      absl::BytesToHexString(SignedThreadHandles::KeyId(kKeyA))}));
}

TEST(SignedThreadHandlesRotationTest, AHandleSignedWithAPreviousKeyStillVerifies) {
  const Tenant a = MakeTenant("a");
  const std::string under_a = SignedThreadHandles(kKeyA).ToCaller(a, ThreadRef{kThread, kTax});
  const SignedThreadHandles rotated(Rotated());
  ExpectTaxThread(rotated.ToUpstream(a, under_a, "thread_id"));
  // And what the rotated gateway hands out now verifies on it, and again after A is dropped.
  const std::string under_b = rotated.ToCaller(a, ThreadRef{kThread, kTax});
  ExpectTaxThread(rotated.ToUpstream(a, under_b, "thread_id"));
  const SignedThreadHandles dropped(Keys(kKeyB));
  ExpectTaxThread(dropped.ToUpstream(a, under_b, "thread_id"));
  EXPECT_EQ(dropped.ToUpstream(a, under_a, "thread_id").status(), ThreadNotFound());
}

TEST(SignedThreadHandlesRotationTest, FirstFormatHandlesVerifyUnderAnyConfiguredKey) {
  const Tenant a = MakeTenant("a");
  const std::string v1 = V1Handle(kKeyA, "a");
  ExpectTaxThread(SignedThreadHandles(kKeyA).ToUpstream(a, v1, "thread_id"));
  ExpectTaxThread(SignedThreadHandles(Rotated()).ToUpstream(a, v1, "thread_id"));
  // A as the second of two previous keys.
  ExpectTaxThread(SignedThreadHandles(Keys(kKeyB, {kKeyC, kKeyA})).ToUpstream(a, v1, "thread_id"));
  EXPECT_EQ(SignedThreadHandles(kKeyB).ToUpstream(a, v1, "thread_id").status(), ThreadNotFound());
  // Still bound to its tenant.
  EXPECT_EQ(SignedThreadHandles(Rotated()).ToUpstream(MakeTenant("b"), v1, "thread_id").status(),
            ThreadNotFound());
}

TEST(SignedThreadHandlesRotationTest, AHandleOfAnUnknownKeyIsExactlyThreadNotFound) {
  const Tenant a = MakeTenant("a");
  const SignedThreadHandles rotated(Rotated());
  const std::string under_c = SignedThreadHandles(kKeyC).ToCaller(a, ThreadRef{kThread, kTax});
  EXPECT_EQ(rotated.ToUpstream(a, under_c, "thread_id").status(), ThreadNotFound());
  EXPECT_EQ(rotated.ToUpstream(a, V1Handle(kKeyC, "a"), "thread_id").status(), ThreadNotFound());
  // C's handle relabelled with A's key id: the id picks A, whose tag does not match.
  std::string relabelled = Unbase64(under_c);
  relabelled.replace(0, 4, SignedThreadHandles::KeyId(kKeyA));
  EXPECT_EQ(rotated.ToUpstream(a, absl::StrCat("th2_", Base64(relabelled)), "thread_id").status(),
            ThreadNotFound());
}

TEST(SignedThreadHandlesRotationTest, TamperedHandlesAreThreadNotFound) {
  const Tenant a = MakeTenant("a");
  const SignedThreadHandles rotated(Rotated());
  for (const std::string& handle : {rotated.ToCaller(a, ThreadRef{kThread, kTax}),
                                    SignedThreadHandles(kKeyA).ToCaller(a, {kThread, kTax})}) {
    const std::string bytes = Unbase64(handle);
    // Every bit of key id, payload and tag.
    for (std::size_t bit = 0; bit < bytes.size() * 8; ++bit) {
      std::string tampered = bytes;
      tampered[bit / 8] = static_cast<char>(tampered[bit / 8] ^ (1 << (bit % 8)));
      EXPECT_EQ(rotated.ToUpstream(a, absl::StrCat("th2_", Base64(tampered)), "thread_id").status(),
                ThreadNotFound())
          << "bit " << bit;
    }
    const std::vector<std::string> wrong = {
        absl::StrCat("th1_", handle.substr(4)),             // The same bytes as the first format.
        absl::StrCat("th3_", handle.substr(4)),             // Unknown format.
        handle.substr(0, handle.size() - 1),                // Cut.
        absl::StrCat("th2_", Base64(bytes.substr(0, 20))),  // Key id and tag only.
        absl::StrCat("th2_", Base64(bytes.substr(0, 4))),   // Key id only.
        "th2_",
        "th2_!!!!",
        "TH2_" + handle.substr(4)};
    for (const std::string& handle_text : wrong) {
      EXPECT_EQ(rotated.ToUpstream(a, handle_text, "thread_id").status(), ThreadNotFound())
          << handle_text;
    }
  }
}

TEST(SignedThreadHandlesRotationTest, TenantBindingHoldsForEveryKey) {
  const SignedThreadHandles rotated(Rotated());
  const Tenant a = MakeTenant("a");
  for (const std::string& handle :
       {rotated.ToCaller(a, ThreadRef{kThread, kTax}),
        SignedThreadHandles(kKeyA).ToCaller(a, ThreadRef{kThread, kTax}), V1Handle(kKeyA, "a")}) {
    ExpectTaxThread(rotated.ToUpstream(a, handle, "thread_id"));
    EXPECT_EQ(rotated.ToUpstream(MakeTenant("b"), handle, "thread_id").status(), ThreadNotFound());
    EXPECT_EQ(rotated.ToUpstream(MakeTenant("a1"), handle, "thread_id").status(), ThreadNotFound());
  }
}

TEST(SignedThreadHandlesRotationTest, RepeatedKeysAreHarmless) {
  const SignedThreadHandles handles(Keys(kKeyB, {kKeyB, kKeyA, kKeyA}));
  EXPECT_EQ(handles.KeyIdsHex().size(), 2u);
  const Tenant a = MakeTenant("a");
  ExpectTaxThread(handles.ToUpstream(
      a, SignedThreadHandles(kKeyA).ToCaller(a, ThreadRef{kThread, kTax}), "thread_id"));
}

// ---- End-user IDs ---------------------------------------------------------------------------

std::string UuidText(const std::string& bytes) {
  const std::string hex = absl::BytesToHexString(bytes);
  return absl::StrCat(hex.substr(0, 8), "-", hex.substr(8, 4), "-", hex.substr(12, 4), "-",
                      hex.substr(16, 4), "-", hex.substr(20, 12));
}

// `count` random version-4 UUIDs (seeded: repeatable).
std::vector<std::string> RandomV4Uuids(int count) {
  std::mt19937_64 random(20240611);
  std::vector<std::string> uuids;
  for (int i = 0; i < count; ++i) {
    std::string bytes(16, '\0');
    for (char& byte : bytes) byte = static_cast<char>(random() & 0xFF);
    bytes[6] = static_cast<char>((bytes[6] & 0x0F) | 0x40);
    bytes[8] = static_cast<char>((bytes[8] & 0x3F) | 0x80);
    uuids.push_back(UuidText(bytes));
  }
  return uuids;
}

// Version nibble and RFC 4122 variant (10xx) of a canonical UUID text.
bool IsV4(absl::string_view uuid) {
  return IsUuid(uuid) && uuid[14] == '4' && std::string("89ab").find(uuid[19]) != std::string::npos;
}

TEST(SignedThreadHandlesUserIdTest, AVersion4UuidStaysAVersion4UuidAndMapsBack) {
  const SignedThreadHandles handles(Keys(kKeyB, {kKeyA}, kUserIdKey));
  const Tenant a = MakeTenant("a");
  std::set<std::string> seen;
  for (const std::string& user : RandomV4Uuids(2000)) {
    ASSERT_TRUE(IsV4(user)) << user;
    const std::string upstream = handles.UserToUpstream(a, user);
    EXPECT_TRUE(IsV4(upstream)) << user << " -> " << upstream;
    EXPECT_EQ(upstream, absl::AsciiStrToLower(upstream));
    EXPECT_NE(upstream, user);
    EXPECT_EQ(handles.UserToUpstream(a, user), upstream);  // Deterministic.
    EXPECT_EQ(handles.UserToCaller(a, upstream), user);
    seen.insert(upstream);
  }
  EXPECT_EQ(seen.size(), 2000u);
  // Upper case in, the same upstream user; the caller gets the canonical lower-case form back.
  const std::string upper = absl::AsciiStrToUpper(kUser);
  EXPECT_EQ(handles.UserToUpstream(a, upper), handles.UserToUpstream(a, kUser));
  EXPECT_EQ(handles.UserToCaller(a, handles.UserToUpstream(a, upper)), kUser);
}

TEST(SignedThreadHandlesUserIdTest, OtherVersionsKeepTheirVersionAndVariant) {
  const SignedThreadHandles handles(kKeyA);
  const Tenant a = MakeTenant("a");
  for (const char* user : {"6ba7b810-9dad-11d1-80b4-00c04fd430c8",     // v1
                           "886313e1-3b8a-5372-9b90-0c9aee199e5d",     // v5
                           "01890a5d-ac96-774b-bcce-b302099a8057",     // v7
                           "00000000-0000-0000-0000-000000000000",     // nil
                           "ffffffff-ffff-ffff-ffff-ffffffffffff"}) {  // max
    const std::string upstream = handles.UserToUpstream(a, user);
    ASSERT_TRUE(IsUuid(upstream)) << upstream;
    EXPECT_NE(upstream, user);
    EXPECT_EQ(upstream[14], user[14]) << user << " -> " << upstream;  // Version.
    const auto variant = [](char hex_digit) {
      int value = 0;
      absl::SimpleHexAtoi(std::string(1, hex_digit), &value);
      return value >> 2;  // The top two bits.
    };
    EXPECT_EQ(variant(upstream[19]), variant(user[19])) << user << " -> " << upstream;
    EXPECT_EQ(handles.UserToCaller(a, upstream), user);
  }
}

TEST(SignedThreadHandlesUserIdTest, TenantsGetDistinctUpstreamIds) {
  const SignedThreadHandles handles(Keys(kKeyA, {}, kUserIdKey));
  const Tenant a = MakeTenant("a");
  const Tenant b = MakeTenant("b");
  for (const std::string& user : RandomV4Uuids(200)) {
    const std::string for_a = handles.UserToUpstream(a, user);
    EXPECT_NE(for_a, handles.UserToUpstream(b, user)) << user;
    EXPECT_NE(handles.UserToCaller(b, for_a), user);
  }
}

TEST(SignedThreadHandlesUserIdTest, RotatingTheSigningKeyKeepsUpstreamIdsWithAUserIdKey) {
  const SignedThreadHandles before(Keys(kKeyA, {}, kUserIdKey));
  const SignedThreadHandles during(Keys(kKeyB, {kKeyA}, kUserIdKey));
  const SignedThreadHandles after(Keys(kKeyC, {}, kUserIdKey));
  const Tenant a = MakeTenant("a");
  for (const std::string& user : RandomV4Uuids(50)) {
    const std::string upstream = before.UserToUpstream(a, user);
    EXPECT_EQ(during.UserToUpstream(a, user), upstream);
    EXPECT_EQ(after.UserToUpstream(a, user), upstream);
    EXPECT_EQ(after.UserToCaller(a, upstream), user);
  }
  // Another user-ID key is another mapping.
  EXPECT_NE(SignedThreadHandles(Keys(kKeyA, {}, kKeyC)).UserToUpstream(a, kUser),
            before.UserToUpstream(a, kUser));
}

TEST(SignedThreadHandlesUserIdTest, WithoutAUserIdKeyTheCurrentSigningKeyScopesThem) {
  const Tenant a = MakeTenant("a");
  const std::string fallback = SignedThreadHandles(kKeyA).UserToUpstream(a, kUser);
  EXPECT_TRUE(IsV4(fallback)) << fallback;
  // The same derivation as a configured user-ID key: configuring the signing key's bytes as the
  // user-ID key keeps every upstream ID.
  EXPECT_EQ(SignedThreadHandles(Keys(kKeyA, {}, kKeyA)).UserToUpstream(a, kUser), fallback);
  EXPECT_EQ(SignedThreadHandles(Keys(kKeyB, {kKeyA}, kKeyA)).UserToUpstream(a, kUser), fallback);
  // Without one, rotating the signing key changes them (what the start-up warning says).
  EXPECT_NE(SignedThreadHandles(Keys(kKeyB, {kKeyA})).UserToUpstream(a, kUser), fallback);
}

TEST(SignedThreadHandlesUserIdTest, DiffersFromTheFirstScheme) {
  // The first scheme: AES-128 of the 16 UUID bytes under a per-tenant key from the signing key.
  const Tenant a = MakeTenant("a");
  const std::string old_key =
      HmacSha256(HmacSha256(kKeyA, "copilot-gateway user id v1"), "1:a").substr(0, 16);
  const SignedThreadHandles handles(kKeyA);
  for (const std::string& user : RandomV4Uuids(20)) {
    EXPECT_NE(handles.UserToUpstream(a, user), UuidText(Aes128EncryptBlock(old_key, Bytes(user))));
  }
}

TEST(SignedThreadHandlesUserIdTest, PinnedMapping) {
  // Upstream identities must not change between releases: a change here changes every end
  // user's upstream ID. (Checked against a separate Python implementation: the user key is
  // HMAC-SHA-256(HMAC-SHA-256(user_id_key, "copilot-gateway user id v2"), "1:a")[0:16].)
  const SignedThreadHandles handles(Keys(kKeyA, {}, kUserIdKey));
  EXPECT_EQ(handles.UserToUpstream(MakeTenant("a"), kUser), "3199b5f3-83f6-4abb-8cf5-43f21b8b66d6");
}

TEST(SignedThreadHandlesUserIdTest, NonUuidsPassUnchangedAndDoNotMapBack) {
  const SignedThreadHandles handles(kKeyA);
  const Tenant a = MakeTenant("a");
  EXPECT_EQ(handles.UserToUpstream(a, ""), "");
  EXPECT_EQ(handles.UserToUpstream(a, "bob"), "bob");
  EXPECT_EQ(handles.UserToCaller(a, "bob"), "");
  EXPECT_EQ(handles.UserToCaller(a, ""), "");
}

}  // namespace
}  // namespace copilot::gateway

namespace copilot::gateway {
namespace {

// Found by the thread_handles fuzzer: absl's base64 decoder also takes padding, whitespace and
// non-zero trailing bits, so several spellings of one handle verified.
TEST(SignedThreadHandlesTest, OnlyTheCanonicalSpellingOfAHandleVerifies) {
  const Tenant a = MakeTenant("a");
  const SignedThreadHandles handles(kKeyA);
  const std::string handle = handles.ToCaller(a, ThreadRef{kThread, kTax});
  ASSERT_TRUE(handles.ToUpstream(a, handle, "thread_id").ok());
  const std::string body = handle.substr(4);
  std::vector<std::string> respelled = {
      handle + "=", handle + "==", "th2_ " + body,
      absl::StrCat("th2_", body.substr(0, 10), "\n", body.substr(10))};
  // The last character of a length not divisible by 3 carries unused bits: set one.
  if (Unbase64(handle).size() % 3 != 0) {
    std::string bits = handle;
    bits.back() = bits.back() == 'A' ? 'B' : bits.back() == 'Q' ? 'R' : 'B';
    if (bits != handle) respelled.push_back(bits);
  }
  for (const std::string& text : respelled) {
    EXPECT_EQ(handles.ToUpstream(a, text, "thread_id").status(), ThreadNotFound()) << text;
  }
}

}  // namespace
}  // namespace copilot::gateway
