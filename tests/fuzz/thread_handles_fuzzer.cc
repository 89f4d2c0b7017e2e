// Thread handles and user IDs (server/core/thread_handles.h, SignedThreadHandles): a caller's
// handle, fuzzed, decoded and verified; and the round trips of what the gateway hands out.
// Only the ThreadHandles interface and the constructor are used, so the target keeps building
// while the signing keys change.
//
// Properties: a handle that does not verify is NOT_FOUND exactly like an unknown thread
// (ThreadNotFound()); a handle verifies in one spelling only; a handle verified for one tenant
// does not verify for another; what ToCaller gives back decodes to the same thread (IDs up to
// 255 bytes) for its tenant only; UserToCaller undoes UserToUpstream for UUIDs, other user IDs
// pass unchanged.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "server/core/signed_thread_handles.h"
#include "server/core/validation.h"
#include "tests/fuzz/fuzz_support.h"

namespace copilot::gateway {
namespace {

const ThreadHandles& Handles() {
  static const auto* const kHandles = new SignedThreadHandles("fuzz signing key, 32 bytes long..");
  return *kHandles;
}

Tenant MakeTenant(std::string id) {
  Tenant tenant;
  tenant.id = std::move(id);
  return tenant;
}

bool SameRef(const ThreadRef& a, const ThreadRef& b) {
  return a.upstream_id == b.upstream_id && a.assistant_id == b.assistant_id;
}

}  // namespace
}  // namespace copilot::gateway

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace gw = copilot::gateway;
  FuzzedDataProvider input(data, size);
  const gw::ThreadHandles& handles = gw::Handles();
  const gw::Tenant tenant = gw::MakeTenant(input.ConsumeRandomLengthString(16));
  const gw::Tenant other = gw::MakeTenant(tenant.id + "x");
  const int mode = input.ConsumeIntegralInRange(0, 2);

  if (mode == 0) {  // A handle as a caller sends it.
    const std::string handle = input.ConsumeRemainingBytesAsString();
    absl::StatusOr<gw::ThreadRef> ref = handles.ToUpstream(tenant, handle, "thread_id");
    if (!ref.ok()) {
      FUZZ_CHECK(ref.status() == gw::ThreadNotFound(), ref.status().ToString());
      return 0;
    }
    // Only what ToCaller gave out verifies: it names the same thread, and in one spelling only
    // (this target once found padded, whitespace and unused-bit spellings of one handle
    // verifying): the base64 after the "th1_"/"th2_" prefix is canonical, and a current (th2_)
    // handle is exactly what ToCaller gives for its thread.
    const std::string canonical = handles.ToCaller(tenant, *ref);
    absl::StatusOr<gw::ThreadRef> again = handles.ToUpstream(tenant, canonical, "thread_id");
    FUZZ_CHECK(again.ok() && gw::SameRef(*again, *ref), "a verified handle does not round-trip");
    std::string bytes;
    std::string reencoded;
    FUZZ_CHECK(handle.size() > 4 && absl::WebSafeBase64Unescape(handle.substr(4), &bytes),
               "a verified handle is not base64");
    absl::WebSafeBase64Escape(bytes, &reencoded);
    FUZZ_CHECK(reencoded == handle.substr(4), "a non-canonical spelling of a handle verified");
    if (absl::StartsWith(handle, "th2_")) {
      FUZZ_CHECK(canonical == handle, "a current handle verified in another spelling");
    }
    FUZZ_CHECK(!handles.ToUpstream(other, handle, "thread_id").ok(), "verified for two tenants");
  } else if (mode == 1) {  // A thread the gateway names for a caller.
    gw::ThreadRef thread;
    thread.upstream_id = input.ConsumeRandomLengthString(300);
    thread.assistant_id = input.ConsumeRemainingBytesAsString();
    const std::string handle = handles.ToCaller(tenant, thread);
    absl::StatusOr<gw::ThreadRef> back = handles.ToUpstream(tenant, handle, "thread_id");
    FUZZ_CHECK(back.ok(), "a handle the gateway gave out does not verify");
    const gw::ThreadRef expected{thread.upstream_id.substr(0, 255),
                                 thread.assistant_id.substr(0, 255)};
    FUZZ_CHECK(gw::SameRef(*back, expected), "the handle names another thread");
    FUZZ_CHECK(handles.ToUpstream(other, handle, "thread_id").status() == gw::ThreadNotFound(),
               "another tenant's handle verified");
  } else {  // End-user IDs.
    const std::string user_id = input.ConsumeRemainingBytesAsString();
    const std::string upstream = handles.UserToUpstream(tenant, user_id);
    if (gw::IsUuid(user_id)) {
      FUZZ_CHECK(gw::IsUuid(upstream), "a UUID mapped to a non-UUID");
      FUZZ_CHECK(handles.UserToCaller(tenant, upstream) == absl::AsciiStrToLower(user_id),
                 "UserToCaller does not undo UserToUpstream");
      FUZZ_CHECK(handles.UserToUpstream(other, user_id) != upstream,
                 "two tenants' end users map to one upstream user");
    } else {
      FUZZ_CHECK(upstream == user_id, "a non-UUID user ID was changed");
    }
    handles.UserToCaller(tenant, user_id);
  }
  return 0;
}
