// The memory behind AIP-155 request de-duplication: which (tenant, method, request_id) keys are
// in flight or recently succeeded, their results, and the retries waiting for them.
//
// One store serves every method and tenant, with one budget of memory and entries, so that the
// configured bound is the real bound:
//   - Results are kept as the serialized response (what is counted is the string's capacity
//     plus a fixed per-entry overhead), not as protobuf objects, whose real size is several
//     times their serialized size.
//   - Each tenant may use at most `max_tenant_share` of the bytes and of the entries. Making
//     room forgets the tenant's own oldest completed entries first; when the whole store is
//     full, the oldest completed entry of the tenant using the most bytes goes. So a tenant
//     flooding the store with request_ids only ever evicts its own entries once it holds its
//     share, and a tenant using less than the others is the last to lose anything.
//   - Retries waiting for an attempt in flight are bounded per request and per tenant; beyond
//     that they are refused (RESOURCE_EXHAUSTED, reason "request_id_waiters_exceeded").
// Completed entries are forgotten after `ttl`. Failures are not remembered, except those
// whose outcome is unknown (the request may have reached the upstream).
#ifndef COPILOT_GATEWAY_SERVER_CORE_REQUEST_ID_STORE_H_
#define COPILOT_GATEWAY_SERVER_CORE_REQUEST_ID_STORE_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/common/clock.h"
#include "server/upstream/haufe_api.h"

namespace copilot::gateway {

// The bounds of a RequestIdStore (config: request_ids). Plain data.
struct RequestIdLimits {
  absl::Duration ttl = absl::Minutes(10);
  // 0 disables de-duplication (nothing is remembered).
  std::size_t max_entries = 100000;
  std::size_t max_bytes = 64 * 1024 * 1024;
  double max_tenant_share = 0.25;
  int max_waiters_per_request = 8;
  int max_waiters_per_tenant = 64;
};

// INVALID_ARGUMENT (reason REQUEST_ID_REUSED, a field violation on request_id): the request_id
// was already used for a different request body.
absl::Status RequestIdReusedError();

// Released when a waiting retry ends (its hold on the tenant's limits). See WaiterAdmission.
class AdmissionLease {
 public:
  virtual ~AdmissionLease() = default;
};

// Thread-safe; never blocks beyond its own short critical sections; never runs a callback under
// its lock. May be destroyed while attempts are in flight (they keep its state alive).
class RequestIdStore {
 public:
  // A serialized response (the first attempt's result) or why it failed.
  using Callback = absl::AnyInvocable<void(absl::StatusOr<std::string>) &&>;

  // Book-keeping bytes counted per entry besides its strings: the entry, its hash-map slot, its
  // shared_ptr control block and its place in the expiry queue. Each string (the key, held
  // twice, the fingerprint and the result) counts its bytes plus kStringOverheadBytes (a
  // terminator and the allocator's header and rounding). Checked against the heap the store
  // really takes in request_id_store_test.
  static constexpr std::size_t kEntryOverheadBytes = 256;
  static constexpr std::size_t kStringOverheadBytes = 32;

  // A retry waiting for the first attempt. Cancel() stops waiting (its callback gets
  // CANCELLED); Fail() ends the wait with `status` (e.g. the tenant's limit refused it); Hold()
  // keeps `lease` until the wait ends (dropped at once when it already ended). Thread-safe.
  class Waiter final : public UpstreamCall {
   public:
    void Cancel() override;
    void Resume() override {}
    void Fail(absl::Status status);
    void Hold(std::unique_ptr<AdmissionLease> lease);

   private:
    friend class RequestIdStore;
    struct State;
    explicit Waiter(std::shared_ptr<State> state) : state_(std::move(state)) {}
    const std::shared_ptr<State> state_;
  };

  // Handed to the first attempt: Complete() records its result (remembered when OK and there is
  // room) and answers the waiters; only the first call counts. Thread-safe.
  class Attempt {
   public:
    // An attempt dropped without a result (a broken callback contract) completes as ABORTED,
    // so that it never pins its entry and its waiters.
    ~Attempt();
    // With `remember_failure`, a failure is remembered like a result (for the TTL: later
    // lookups get it as kRemembered), for a request whose outcome is unknown.
    void Complete(absl::StatusOr<std::string> result, bool remember_failure = false);

   private:
    friend class RequestIdStore;
    struct Data;
    explicit Attempt(std::shared_ptr<Data> data) : data_(std::move(data)) {}
    const std::shared_ptr<Data> data_;
  };

  // What Begin decided.
  struct Lookup {
    enum class Kind {
      kStart,       // Run the request; report its result to `attempt` (when not null).
      kRemembered,  // `result` is the earlier attempt's result.
      kRefused,     // `result` is the error (request_id reused for another body, too many
                    // waiters).
      kWaiting,     // `waiter` waits; its callback gets the result.
    };
    Kind kind = Kind::kStart;
    absl::StatusOr<std::string> result;
    std::shared_ptr<Attempt> attempt;  // kStart; null when the store had no room (not remembered).
    std::shared_ptr<Waiter> waiter;    // kWaiting.
  };

  RequestIdStore(const Clock& clock, RequestIdLimits limits);

  // Looks `key` (tenant, method and request_id together) up for `tenant`. `fingerprint`
  // identifies the request body (a digest: it is kept for the TTL). `on_result` is used only
  // when the lookup is kWaiting: it then runs exactly once, with the first attempt's result,
  // ABORTED when that attempt was cancelled or ran out of time, or the status of Cancel/Fail.
  Lookup Begin(const std::string& tenant, const std::string& key, std::string fingerprint,
               Callback on_result);

  // For metrics and tests.
  std::size_t entries() const;
  std::size_t bytes() const;
  std::size_t tenant_bytes(const std::string& tenant) const;
  std::size_t tenant_entries(const std::string& tenant) const;
  int waiters() const;

 private:
  struct Entry;
  struct TenantUsage;
  struct State;
  const std::shared_ptr<State> state_;
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_CORE_REQUEST_ID_STORE_H_
