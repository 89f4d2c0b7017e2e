#include "server/core/request_id_store.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/common/errors.h"

namespace copilot::gateway {
struct RequestIdStore::Waiter::State {
  uint64_t id = 0;
  std::string tenant;
  std::weak_ptr<RequestIdStore::State> store;
  std::weak_ptr<RequestIdStore::Entry> entry;
  // Under the store's mutex.
  Callback on_result;
  std::unique_ptr<AdmissionLease> lease;
  bool ended = false;
};

struct RequestIdStore::Entry {
  std::string key;
  std::string tenant;
  std::string fingerprint;
  bool completed = false;
  std::size_t bytes = 0;  // What it counts against the budgets.
  std::string result;     // The serialized response, once completed.
  absl::Status failure;   // Instead of `result`: a failure remembered (outcome unknown).
  std::vector<std::shared_ptr<Waiter::State>> waiters;
};

struct RequestIdStore::TenantUsage {
  std::size_t bytes = 0;
  std::size_t entries = 0;
  int waiters = 0;
  // Its completed entries in completion order, which is expiry order.
  struct Completed {
    absl::Time expiry;  // Monotonic: an NTP step neither forgets nor keeps entries.
    std::weak_ptr<Entry> entry;
  };
  std::deque<Completed> completed;
};

struct RequestIdStore::Attempt::Data {
  std::weak_ptr<RequestIdStore::State> store;
  std::shared_ptr<Entry> entry;
  std::atomic<bool> completed{false};
};

struct RequestIdStore::State {
  State(const Clock& clock, RequestIdLimits limits) : clock(clock), limits(limits) {
    tenant_max_bytes = static_cast<std::size_t>(
        std::floor(static_cast<double>(limits.max_bytes) * limits.max_tenant_share));
    tenant_max_entries = std::max<std::size_t>(
        limits.max_entries > 0 ? 1 : 0,
        static_cast<std::size_t>(
            std::floor(static_cast<double>(limits.max_entries) * limits.max_tenant_share)));
  }

  // Forgets completed entries whose TTL has passed, for every tenant.
  void PurgeExpired() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    const absl::Time now = clock.Monotonic();
    for (auto& [tenant, usage] : tenants) {
      while (!usage.completed.empty() && usage.completed.front().expiry <= now) {
        ForgetOldest(usage);
      }
    }
  }

  // Forgets `usage`'s oldest completed entry.
  void ForgetOldest(TenantUsage& usage) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    std::shared_ptr<Entry> entry = usage.completed.front().entry.lock();
    usage.completed.pop_front();
    if (entry == nullptr) return;
    auto it = entries.find(entry->key);
    if (it != entries.end() && it->second == entry) Erase(it);
  }

  void Erase(absl::flat_hash_map<std::string, std::shared_ptr<Entry>>::iterator it)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    const Entry& entry = *it->second;
    TenantUsage& usage = tenants[entry.tenant];
    usage.bytes -= entry.bytes;
    usage.entries -= 1;
    bytes -= entry.bytes;
    entries.erase(it);
  }

  // The tenant holding the most bytes among those with completed entries; null when none.
  TenantUsage* LargestEvictable() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    TenantUsage* largest = nullptr;
    for (auto& [tenant, usage] : tenants) {
      if (!usage.completed.empty() && (largest == nullptr || usage.bytes > largest->bytes)) {
        largest = &usage;
      }
    }
    return largest;
  }

  // Makes room for `cost` more bytes and `count` more entries of `tenant`; false when the
  // tenant's share or the whole store is full of attempts still in flight.
  bool MakeRoom(const std::string& tenant, std::size_t cost, std::size_t count)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    TenantUsage& usage = tenants[tenant];
    auto tenant_fits = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
      return usage.bytes + cost <= tenant_max_bytes && usage.entries + count <= tenant_max_entries;
    };
    while (!tenant_fits() && !usage.completed.empty()) ForgetOldest(usage);
    if (!tenant_fits()) return false;
    auto store_fits = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
      return bytes + cost <= limits.max_bytes && entries.size() + count <= limits.max_entries;
    };
    while (!store_fits()) {
      TenantUsage* largest = LargestEvictable();
      if (largest == nullptr) return false;
      ForgetOldest(*largest);
    }
    return true;
  }

  const Clock& clock;
  const RequestIdLimits limits;
  std::size_t tenant_max_bytes = 0;
  std::size_t tenant_max_entries = 0;
  mutable absl::Mutex mu;
  std::size_t bytes ABSL_GUARDED_BY(mu) = 0;
  absl::flat_hash_map<std::string, std::shared_ptr<Entry>> entries ABSL_GUARDED_BY(mu);
  absl::flat_hash_map<std::string, TenantUsage> tenants ABSL_GUARDED_BY(mu);
  int waiters ABSL_GUARDED_BY(mu) = 0;
  uint64_t next_waiter_id ABSL_GUARDED_BY(mu) = 0;
};

absl::Status RequestIdReusedError() {
  absl::Status error =
      MakeError(absl::StatusCode::kInvalidArgument,
                "request_id was already used for a different request", "REQUEST_ID_REUSED");
  AddFieldViolation(error, "request_id", "already used for a different request");
  return error;
}

namespace {

absl::Status TooManyWaiters(absl::string_view tenant, absl::string_view scope, int max) {
  const std::string description = absl::StrCat("at most ", max, " retries may wait for the same ",
                                               scope, " while its first attempt runs");
  absl::Status error =
      MakeError(absl::StatusCode::kResourceExhausted, description, "request_id_waiters_exceeded");
  AddQuotaViolation(error, absl::StrCat("tenant:", tenant), description);
  SetRetryDelay(error, absl::Seconds(1));
  return error;
}

}  // namespace

RequestIdStore::RequestIdStore(const Clock& clock, RequestIdLimits limits)
    : state_(std::make_shared<State>(clock, limits)) {}

RequestIdStore::Lookup RequestIdStore::Begin(const std::string& tenant, const std::string& key,
                                             std::string fingerprint, Callback on_result) {
  Lookup lookup;
  State& state = *state_;
  absl::MutexLock lock(&state.mu);
  state.PurgeExpired();
  auto it = state.entries.find(key);
  if (it != state.entries.end()) {
    Entry& found = *it->second;
    if (found.fingerprint != fingerprint) {
      lookup.kind = Lookup::Kind::kRefused;
      lookup.result = RequestIdReusedError();
      return lookup;
    }
    if (found.completed) {
      lookup.kind = Lookup::Kind::kRemembered;
      if (found.failure.ok()) {
        lookup.result = found.result;
      } else {
        lookup.result = found.failure;
      }
      return lookup;
    }
    TenantUsage& usage = state.tenants[tenant];
    if (static_cast<int>(found.waiters.size()) >= state.limits.max_waiters_per_request) {
      lookup.kind = Lookup::Kind::kRefused;
      lookup.result = TooManyWaiters(tenant, "request_id", state.limits.max_waiters_per_request);
      return lookup;
    }
    if (usage.waiters >= state.limits.max_waiters_per_tenant) {
      lookup.kind = Lookup::Kind::kRefused;
      lookup.result =
          TooManyWaiters(tenant, "request_ids of a tenant", state.limits.max_waiters_per_tenant);
      return lookup;
    }
    auto waiter = std::make_shared<Waiter::State>();
    waiter->id = ++state.next_waiter_id;
    waiter->tenant = tenant;
    waiter->store = state_;
    waiter->entry = it->second;
    waiter->on_result = std::move(on_result);
    found.waiters.push_back(waiter);
    ++usage.waiters;
    ++state.waiters;
    lookup.kind = Lookup::Kind::kWaiting;
    lookup.waiter = std::shared_ptr<Waiter>(new Waiter(std::move(waiter)));
    return lookup;
  }
  lookup.kind = Lookup::Kind::kStart;
  // The key twice (the map's copy and the entry's), the fingerprint, the entry itself.
  const std::size_t cost = 2 * (key.size() + kStringOverheadBytes) + fingerprint.size() +
                           kStringOverheadBytes + kEntryOverheadBytes;
  if (!state.MakeRoom(tenant, cost, 1)) return lookup;  // Runs without being remembered.
  auto entry = std::make_shared<Entry>();
  entry->key = key;
  entry->tenant = tenant;
  entry->fingerprint = std::move(fingerprint);
  entry->bytes = cost;
  TenantUsage& usage = state.tenants[tenant];
  usage.bytes += cost;
  usage.entries += 1;
  state.bytes += cost;
  state.entries.emplace(key, entry);
  auto data = std::make_shared<Attempt::Data>();
  data->store = state_;
  data->entry = std::move(entry);
  lookup.attempt = std::shared_ptr<Attempt>(new Attempt(std::move(data)));
  return lookup;
}

RequestIdStore::Attempt::~Attempt() {
  if (!data_->completed.load()) {
    Complete(MakeError(absl::StatusCode::kAborted,
                       "the earlier request with this request_id ended without a result; retry",
                       "REQUEST_ABORTED"));
  }
}

void RequestIdStore::Attempt::Complete(absl::StatusOr<std::string> result, bool remember_failure) {
  if (data_->completed.exchange(true)) return;
  std::shared_ptr<State> state = data_->store.lock();
  const std::shared_ptr<Entry>& entry = data_->entry;
  std::vector<std::shared_ptr<Waiter::State>> waiters;
  std::vector<std::unique_ptr<AdmissionLease>> leases;  // Released after the lock.
  std::vector<Callback> callbacks;
  if (state != nullptr) {
    absl::MutexLock lock(&state->mu);
    waiters = std::move(entry->waiters);
    entry->waiters.clear();
    for (const auto& waiter : waiters) {
      waiter->ended = true;
      callbacks.push_back(std::move(waiter->on_result));
      if (waiter->lease != nullptr) leases.push_back(std::move(waiter->lease));
    }
    TenantUsage& usage = state->tenants[entry->tenant];
    usage.waiters -= static_cast<int>(waiters.size());
    state->waiters -= static_cast<int>(waiters.size());
    auto it = state->entries.find(entry->key);
    const bool mine = it != state->entries.end() && it->second == entry;
    if (mine && (result.ok() || remember_failure)) {
      // Counted as the string's allocation (its bytes and the allocator's header); the entry
      // itself is already counted. A failure: its message and its payloads, roughly.
      const std::size_t result_bytes =
          result.ok() ? result->size() + kStringOverheadBytes
                      : result.status().ToString().size() + kEntryOverheadBytes;
      // This entry is in flight, so MakeRoom cannot forget it.
      if (state->MakeRoom(entry->tenant, result_bytes, 0)) {
        entry->completed = true;
        if (result.ok()) {
          entry->result.assign(*result);
        } else {
          entry->failure = result.status();
        }
        entry->bytes += result_bytes;
        usage.bytes += result_bytes;
        state->bytes += result_bytes;
        usage.completed.push_back({state->clock.Monotonic() + state->limits.ttl, entry});
      } else {
        state->Erase(it);  // Too large to remember: the next try runs again.
      }
    } else if (mine) {
      state->Erase(it);  // A failure: the next try runs again.
    }
  }
  for (Callback& callback : callbacks) {
    if (!result.ok() && (result.status().code() == absl::StatusCode::kCancelled ||
                         result.status().code() == absl::StatusCode::kDeadlineExceeded)) {
      // The first attempt's own cancel or deadline says nothing about the waiter's call, which
      // may have a later deadline: tell it to retry instead.
      std::move(callback)(MakeError(
          absl::StatusCode::kAborted,
          "the earlier request with this request_id was cancelled or ran out of time; retry",
          "REQUEST_ABORTED"));
    } else {
      std::move(callback)(result);
    }
  }
}

void RequestIdStore::Waiter::Cancel() { Fail(CancelledByCaller()); }

void RequestIdStore::Waiter::Fail(absl::Status status) {
  Callback callback;
  std::unique_ptr<AdmissionLease> lease;
  std::shared_ptr<RequestIdStore::State> store = state_->store.lock();
  if (store == nullptr) return;
  {
    absl::MutexLock lock(&store->mu);
    if (state_->ended) return;
    state_->ended = true;
    callback = std::move(state_->on_result);
    lease = std::move(state_->lease);
    if (std::shared_ptr<Entry> entry = state_->entry.lock()) {
      auto& list = entry->waiters;
      list.erase(std::remove(list.begin(), list.end(), state_), list.end());
    }
    store->tenants[state_->tenant].waiters -= 1;
    store->waiters -= 1;
  }
  lease.reset();
  std::move(callback)(std::move(status));
}

void RequestIdStore::Waiter::Hold(std::unique_ptr<AdmissionLease> lease) {
  std::shared_ptr<RequestIdStore::State> store = state_->store.lock();
  if (store == nullptr) return;
  {
    absl::MutexLock lock(&store->mu);
    if (!state_->ended) {
      state_->lease = std::move(lease);
      return;
    }
  }
  // Already answered: `lease` is released here, outside the lock.
}

std::size_t RequestIdStore::entries() const {
  absl::MutexLock lock(&state_->mu);
  return state_->entries.size();
}

std::size_t RequestIdStore::bytes() const {
  absl::MutexLock lock(&state_->mu);
  return state_->bytes;
}

std::size_t RequestIdStore::tenant_bytes(const std::string& tenant) const {
  absl::MutexLock lock(&state_->mu);
  auto it = state_->tenants.find(tenant);
  return it == state_->tenants.end() ? 0 : it->second.bytes;
}

std::size_t RequestIdStore::tenant_entries(const std::string& tenant) const {
  absl::MutexLock lock(&state_->mu);
  auto it = state_->tenants.find(tenant);
  return it == state_->tenants.end() ? 0 : it->second.entries;
}

int RequestIdStore::waiters() const {
  absl::MutexLock lock(&state_->mu);
  return state_->waiters;
}

}  // namespace copilot::gateway
