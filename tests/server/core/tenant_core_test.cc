// Tenants in the core: thread handles bound to their tenant, scoped end-user IDs, allowed
// assistants, licences per assistant and API keys per tenant.
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "server/common/errors.h"
#include "server/core/copilot_core.h"
#include "server/core/signed_thread_handles.h"
#include "server/core/validation.h"
#include "tests/server/core/fake_haufe_api.h"

namespace copilot::gateway {
namespace {

namespace v1 = ::copilot::v1;
using ::copilot::gateway::testing::FakeClock;
using ::copilot::gateway::testing::FakeHaufeApi;

constexpr char kTax[] = "7c0e5d3a-4c1b-4f57-9a51-1f1f3e0a0001";
constexpr char kHr[] = "7c0e5d3a-4c1b-4f57-9a51-1f1f3e0a0002";
constexpr char kThread[] = "0b8e5f0e-9a4c-4b7a-8f43-2f6f0e1c2d3e";
constexpr char kUser[] = "5a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";

Tenant MakeTenant(std::string id) {
  Tenant tenant;
  tenant.id = std::move(id);
  tenant.licence = "LIC-" + tenant.id;
  return tenant;
}

// ---- SignedThreadHandles -------------------------------------------------------------------

TEST(SignedThreadHandlesTest, RoundTripsForItsTenant) {
  SignedThreadHandles handles(std::string(32, 'k'));
  const Tenant a = MakeTenant("a");
  const std::string handle = handles.ToCaller(a, ThreadRef{kThread, kTax});
  EXPECT_EQ(handle.rfind("th2_", 0), 0u) << handle;
  EXPECT_EQ(handle.find(kThread), std::string::npos) << "the upstream ID shows through";
  absl::StatusOr<ThreadRef> thread = handles.ToUpstream(a, handle, "thread_id");
  ASSERT_TRUE(thread.ok()) << thread.status();
  EXPECT_EQ(thread->upstream_id, kThread);
  EXPECT_EQ(thread->assistant_id, kTax);
  // Without an assistant, and with IDs that are not UUIDs: still exact.
  thread = handles.ToUpstream(a, handles.ToCaller(a, ThreadRef{kThread, ""}), "thread_id");
  ASSERT_TRUE(thread.ok());
  EXPECT_EQ(thread->upstream_id, kThread);
  EXPECT_EQ(thread->assistant_id, "");
  thread = handles.ToUpstream(a, handles.ToCaller(a, ThreadRef{"Odd-ID", "x"}), "thread_id");
  ASSERT_TRUE(thread.ok());
  EXPECT_EQ(thread->upstream_id, "Odd-ID");
  EXPECT_EQ(thread->assistant_id, "x");
}

TEST(SignedThreadHandlesTest, AnyHandleThatIsNotTheTenantsIsTheSameNotFound) {
  SignedThreadHandles handles(std::string(32, 'k'));
  const Tenant a = MakeTenant("a");
  const Tenant b = MakeTenant("b");
  const std::string handle = handles.ToCaller(a, ThreadRef{kThread, kTax});
  std::string tampered = handle;
  tampered[10] = tampered[10] == 'A' ? 'B' : 'A';
  SignedThreadHandles other_key(std::string(32, 'x'));
  for (const std::string& wrong :
       {handles.ToCaller(b, ThreadRef{kThread, kTax}), tampered, std::string(kThread),
        std::string("th2_"), std::string("th2_!!!"), handle.substr(0, handle.size() - 2)}) {
    absl::StatusOr<ThreadRef> thread = handles.ToUpstream(a, wrong, "thread_id");
    EXPECT_EQ(thread.status(), ThreadNotFound()) << wrong;
  }
  EXPECT_EQ(handles.ToUpstream(b, handle, "thread_id").status(), ThreadNotFound());
  EXPECT_EQ(other_key.ToUpstream(a, handle, "thread_id").status(), ThreadNotFound());
  // A tenant whose ID is a prefix of another's cannot borrow its handles either.
  EXPECT_EQ(handles
                .ToUpstream(MakeTenant("a1"), handles.ToCaller(MakeTenant("a"), {kThread, ""}),
                            "thread_id")
                .status(),
            ThreadNotFound());
}

TEST(SignedThreadHandlesTest, ReplicasWithTheSameKeyAgree) {
  SignedThreadHandles one(std::string(32, 'k'));
  SignedThreadHandles two(std::string(32, 'k'));
  const Tenant a = MakeTenant("a");
  EXPECT_TRUE(two.ToUpstream(a, one.ToCaller(a, ThreadRef{kThread, kHr}), "thread_id").ok());
}

TEST(SignedThreadHandlesTest, UserIdsAreScopedPerTenantAndReversible) {
  SignedThreadHandles handles(std::string(32, 'k'));
  const Tenant a = MakeTenant("a");
  const Tenant b = MakeTenant("b");
  const std::string for_a = handles.UserToUpstream(a, kUser);
  const std::string for_b = handles.UserToUpstream(b, kUser);
  EXPECT_TRUE(IsUuid(for_a)) << for_a;
  EXPECT_NE(for_a, kUser);
  EXPECT_NE(for_a, for_b);
  EXPECT_EQ(handles.UserToUpstream(a, kUser), for_a);  // Deterministic.
  EXPECT_EQ(handles.UserToCaller(a, for_a), kUser);
  EXPECT_NE(handles.UserToCaller(b, for_a), kUser);
  EXPECT_EQ(handles.UserToUpstream(a, ""), "");
}

// ---- The core with tenants -----------------------------------------------------------------

class TenantCoreTest : public ::testing::Test {
 protected:
  TenantCoreTest() : handles_(std::string(32, 's')), core_(api_, clock_, handles_, Options()) {
    Tenant a = MakeTenant("a");
    a.all_assistants = false;
    a.allowed_assistants = {kTax};
    a.assistant_licences[kTax] = "LIC-A-TAX";
    a_ = std::make_shared<const Tenant>(std::move(a));
    Tenant b = MakeTenant("b");
    b.api_key = "KEY-B";
    b_ = std::make_shared<const Tenant>(std::move(b));
  }

  static CoreOptions Options() {
    CoreOptions options;
    options.api_key = "GATEWAY-KEY";
    return options;
  }
  CallContext As(const std::shared_ptr<const Tenant>& tenant) {
    CallContext context;
    context.tenant = tenant;
    return context;
  }
  // Creates a thread on `assistant` for `tenant` and returns its handle.
  std::string CreateThreadFor(const std::shared_ptr<const Tenant>& tenant,
                              const std::string& assistant) {
    std::optional<absl::StatusOr<v1::CreateThreadResponse>> created;
    v1::CreateThreadRequest request;
    request.set_assistant_id(assistant);
    request.set_user_id(kUser);
    const int index = api_.call_count();
    core_.CreateThread(As(tenant), request,
                       [&](absl::StatusOr<v1::CreateThreadResponse> r) { created = std::move(r); });
    auto call = api_.WaitForCall(index);
    v1::Thread thread;
    thread.set_id(kThread);
    thread.set_assistant_id(assistant);
    thread.set_user_id(call->create.user_id);
    call->FinishThread(thread);
    EXPECT_TRUE(created.has_value() && created->ok());
    EXPECT_EQ((*created)->thread().user_id(), kUser) << "callers see their own user ID back";
    return (*created)->thread().id();
  }

  FakeHaufeApi api_;
  FakeClock clock_;
  SignedThreadHandles handles_;
  CopilotCore core_;
  std::shared_ptr<const Tenant> a_;
  std::shared_ptr<const Tenant> b_;
};

TEST_F(TenantCoreTest, AssistantNotAllowedIsPermissionDeniedBeforeAnyUpstreamCall) {
  std::optional<absl::Status> thread_status, complete_status;
  v1::CreateThreadRequest create;
  create.set_assistant_id(kHr);
  core_.CreateThread(As(a_), create, [&](absl::StatusOr<v1::CreateThreadResponse> r) {
    thread_status = r.status();
  });
  v1::CompleteRequest complete;
  complete.set_assistant_id(kHr);
  auto* message = complete.add_messages();
  message->set_role(v1::ROLE_USER);
  message->set_content("q");
  core_.Complete(As(a_), complete,
                 [&](absl::StatusOr<v1::CompleteResponse> r) { complete_status = r.status(); });
  EXPECT_EQ(thread_status->code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(GetErrorInfo(*thread_status)->reason(), "assistant_not_allowed");
  EXPECT_EQ(complete_status->code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(api_.call_count(), 0);
}

TEST_F(TenantCoreTest, ListAssistantsShowsOnlyAllowedOnes) {
  std::optional<absl::StatusOr<v1::ListAssistantsResponse>> listed;
  core_.ListAssistants(
      As(a_), {}, [&](absl::StatusOr<v1::ListAssistantsResponse> r) { listed = std::move(r); });
  v1::Assistant tax, hr;
  tax.set_id(kTax);
  hr.set_id(kHr);
  api_.WaitForCall(0)->FinishAssistants({tax, hr});
  ASSERT_TRUE(listed->ok());
  ASSERT_EQ((*listed)->assistants_size(), 1);
  EXPECT_EQ((*listed)->assistants(0).id(), kTax);
}

TEST_F(TenantCoreTest, RunUsesTheLicenceOfTheThreadsAssistantAndTheTenantsKey) {
  const std::string handle_a = CreateThreadFor(a_, kTax);
  EXPECT_NE(api_.WaitForCall(0)->create.user_id, kUser) << "user IDs are scoped upstream";
  EXPECT_EQ(api_.WaitForCall(0)->options.api_key, "GATEWAY-KEY");
  v1::RunRequest run;
  run.set_thread_id(handle_a);
  core_.Run(As(a_), run, [](absl::StatusOr<v1::RunResponse>) {});
  EXPECT_EQ(api_.WaitForCall(1)->run.thread_id, kThread);
  EXPECT_EQ(api_.WaitForCall(1)->options.licence, "LIC-A-TAX");

  const std::string handle_b = CreateThreadFor(b_, kHr);
  EXPECT_EQ(api_.WaitForCall(2)->options.api_key, "KEY-B");
  run.set_thread_id(handle_b);
  core_.Run(As(b_), run, [](absl::StatusOr<v1::RunResponse>) {});
  EXPECT_EQ(api_.WaitForCall(3)->options.licence, "LIC-b");  // b's default licence.
  EXPECT_EQ(api_.WaitForCall(3)->options.api_key, "KEY-B");
}

TEST_F(TenantCoreTest, AnotherTenantsThreadIsNotFoundWithoutAnUpstreamCall) {
  const std::string handle_a = CreateThreadFor(a_, kTax);
  const int before = api_.call_count();
  std::vector<absl::Status> statuses;
  auto record = [&](auto result) { statuses.push_back(result.status()); };
  v1::GetThreadRequest get;
  get.set_thread_id(handle_a);
  core_.GetThread(As(b_), get, record);
  v1::RunRequest run;
  run.set_thread_id(handle_a);
  core_.Run(As(b_), run, record);
  v1::DeleteThreadRequest del;
  del.set_thread_id(handle_a);
  core_.DeleteThread(As(b_), del, record);
  v1::ListMessagesRequest list;
  list.set_thread_id(handle_a);
  core_.ListMessages(As(b_), list, record);
  ASSERT_EQ(statuses.size(), 4u);
  for (const absl::Status& status : statuses) EXPECT_EQ(status, ThreadNotFound());
  EXPECT_EQ(api_.call_count(), before);
}

}  // namespace
}  // namespace copilot::gateway
