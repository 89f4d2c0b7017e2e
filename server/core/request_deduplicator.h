// AIP-155 request de-duplication: a retry carrying the same request_id as an earlier request
// does not repeat the operation.
//
// In-process only: with several replicas a retry that lands on another replica is not
// recognised (best-effort until shared state lands). Successful results are remembered for a
// TTL, bounded in number and in bytes (key, fingerprint and serialized result; the oldest
// completed entries are forgotten first, and a result larger than the whole budget is not
// remembered). Failures are not
// remembered: a retry after a failure runs again. A retry arriving while the first attempt is in
// flight waits for it and gets its result; if the first attempt was cancelled by its caller,
// waiters get ABORTED (retryable). A request reusing a request_id with a different body gets
// INVALID_ARGUMENT.
#ifndef COPILOT_GATEWAY_SERVER_CORE_REQUEST_DEDUPLICATOR_H_
#define COPILOT_GATEWAY_SERVER_CORE_REQUEST_DEDUPLICATOR_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/common/errors.h"
#include "server/core/clock.h"
#include "server/upstream/haufe_api.h"

namespace copilot::gateway {

// De-duplicates requests producing a `Result` (a response message). Thread-safe; never blocks
// beyond its own short critical sections; never runs a callback under its lock. May be
// destroyed while calls are in flight (they keep its state alive).
template <typename Result>
class RequestDeduplicator {
 public:
  using Callback = absl::AnyInvocable<void(absl::StatusOr<Result>) &&>;
  // Starts the real operation; runs `done` exactly once when it ends.
  using Start = absl::AnyInvocable<std::shared_ptr<UpstreamCall>(Callback done) &&>;

  RequestDeduplicator(const Clock& clock, absl::Duration ttl, std::size_t max_entries,
                      std::size_t max_bytes = kDefaultMaxBytes)
      : state_(std::make_shared<State>(clock, ttl, max_entries, max_bytes)) {}

  static constexpr std::size_t kDefaultMaxBytes = 64 * 1024 * 1024;
  // Book-keeping bytes counted per entry besides its key, fingerprint and result.
  static constexpr std::size_t kEntryOverheadBytes = 256;

  // Runs `start` unless a request with this `key` is running or recently succeeded. `fingerprint`
  // identifies the request body (a digest: it is kept for the TTL). `done` runs exactly once,
  // possibly inline.
  std::shared_ptr<UpstreamCall> Run(const std::string& key, std::string fingerprint, Callback done,
                                    Start start) {
    std::shared_ptr<Entry> entry;
    std::shared_ptr<UpstreamCall> waiter;
    std::optional<absl::StatusOr<Result>> immediate;
    {
      absl::MutexLock lock(&state_->mu);
      state_->PurgeExpired();
      auto it = state_->entries.find(key);
      if (it != state_->entries.end()) {
        Entry& found = *it->second;
        if (found.fingerprint != fingerprint) {
          absl::Status error =
              MakeError(absl::StatusCode::kInvalidArgument,
                        "request_id was already used for a different request", "REQUEST_ID_REUSED");
          AddFieldViolation(error, "request_id", "already used for a different request");
          immediate = std::move(error);
        } else if (found.completed) {
          immediate = found.result;
        } else {
          const uint64_t id = ++state_->next_waiter_id;
          found.waiters.push_back(Waiter{id, std::move(done)});
          waiter = std::make_shared<WaiterCall>(state_, it->second, id);
        }
      } else if (const std::size_t cost = key.size() + fingerprint.size() + kEntryOverheadBytes;
                 state_->MakeRoom(cost)) {
        entry = std::make_shared<Entry>();
        entry->fingerprint = std::move(fingerprint);
        entry->bytes = cost;
        state_->bytes += cost;
        state_->entries.emplace(key, entry);
      }
    }
    if (immediate.has_value()) {
      std::move(done)(*std::move(immediate));
      return std::make_shared<FinishedCall>();
    }
    if (waiter != nullptr) return waiter;
    if (entry == nullptr) return std::move(start)(std::move(done));  // Full of in-flight calls.
    return std::move(start)([state = state_, key, entry,
                             done = std::move(done)](absl::StatusOr<Result> result) mutable {
      State::Complete(*state, key, entry, result);
      std::move(done)(std::move(result));
    });
  }

  // Number of remembered requests (completed or in flight), for tests.
  std::size_t size() const {
    absl::MutexLock lock(&state_->mu);
    return state_->entries.size();
  }
  // Bytes they are counted as, for tests.
  std::size_t bytes() const {
    absl::MutexLock lock(&state_->mu);
    return state_->bytes;
  }

 private:
  struct Waiter {
    uint64_t id;
    Callback done;
  };
  struct Entry {
    std::string fingerprint;
    bool completed = false;
    bool ended = false;     // The first attempt finished (successfully or not).
    std::size_t bytes = 0;  // What it counts against max_bytes.
    absl::StatusOr<Result> result;
    std::vector<Waiter> waiters;
  };
  struct State {
    State(const Clock& clock, absl::Duration ttl, std::size_t max_entries, std::size_t max_bytes)
        : clock(clock), ttl(ttl), max_entries(max_entries), max_bytes(max_bytes) {}

    // Forgets completed entries whose TTL has passed.
    void PurgeExpired() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
      const absl::Time now = clock.Now();
      while (!completed.empty() && completed.front().expiry <= now) Forget();
    }
    // Forgets the oldest completed entry.
    void Forget() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
      auto it = entries.find(completed.front().key);
      if (it != entries.end() && it->second == completed.front().entry.lock()) Erase(it);
      completed.pop_front();
    }
    void Erase(typename absl::flat_hash_map<std::string, std::shared_ptr<Entry>>::iterator it)
        ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
      bytes -= it->second->bytes;
      entries.erase(it);
    }
    // Makes room for one entry of `cost` bytes; false when the entries still in flight fill
    // the budget.
    bool MakeRoom(std::size_t cost) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
      while ((entries.size() >= max_entries || bytes + cost > max_bytes) && !completed.empty()) {
        Forget();
      }
      return entries.size() < max_entries && bytes + cost <= max_bytes;
    }

    static void Complete(State& state, const std::string& key, const std::shared_ptr<Entry>& entry,
                         const absl::StatusOr<Result>& result) {
      std::vector<Waiter> waiters;
      {
        absl::MutexLock lock(&state.mu);
        waiters = std::move(entry->waiters);
        entry->ended = true;
        auto it = state.entries.find(key);
        const bool mine = it != state.entries.end() && it->second == entry;
        const std::size_t result_bytes = result.ok() ? result->ByteSizeLong() : 0;
        if (result.ok() && mine && entry->bytes + result_bytes <= state.max_bytes) {
          entry->completed = true;
          entry->result = result;
          entry->bytes += result_bytes;
          state.bytes += result_bytes;
          state.completed.push_back(Completed{state.clock.Now() + state.ttl, key, entry});
          // Oldest first; this newest one goes last, if the calls in flight leave no room.
          while (state.bytes > state.max_bytes && !state.completed.empty()) state.Forget();
        } else if (mine) {
          state.Erase(it);  // A failure, or a result too large to remember: the next try runs.
        }
      }
      for (Waiter& waiter : waiters) {
        // The first attempt's own cancel or deadline says nothing about the waiter's call, which
        // may have a later deadline: tell it to retry instead.
        if (!result.ok() && (result.status().code() == absl::StatusCode::kCancelled ||
                             result.status().code() == absl::StatusCode::kDeadlineExceeded)) {
          std::move(waiter.done)(MakeError(
              absl::StatusCode::kAborted,
              "the earlier request with this request_id was cancelled or ran out of time; retry",
              "REQUEST_ABORTED"));
        } else {
          std::move(waiter.done)(result);
        }
      }
    }

    struct Completed {
      absl::Time expiry;
      std::string key;
      std::weak_ptr<Entry> entry;
    };

    const Clock& clock;
    const absl::Duration ttl;
    const std::size_t max_entries;
    const std::size_t max_bytes;
    mutable absl::Mutex mu;
    std::size_t bytes ABSL_GUARDED_BY(mu) = 0;
    absl::flat_hash_map<std::string, std::shared_ptr<Entry>> entries ABSL_GUARDED_BY(mu);
    // Completed entries in completion order, which is expiry order.
    std::deque<Completed> completed ABSL_GUARDED_BY(mu);
    uint64_t next_waiter_id ABSL_GUARDED_BY(mu) = 0;
  };

  // A retry waiting for the first attempt. Cancel() stops waiting. Thread-safe.
  class WaiterCall final : public UpstreamCall {
   public:
    WaiterCall(std::shared_ptr<State> state, std::shared_ptr<Entry> entry, uint64_t id)
        : state_(std::move(state)), entry_(std::move(entry)), id_(id) {}
    void Cancel() override {
      Callback done;
      {
        absl::MutexLock lock(&state_->mu);
        auto& waiters = entry_->waiters;
        for (auto it = waiters.begin(); it != waiters.end(); ++it) {
          if (it->id == id_) {
            done = std::move(it->done);
            waiters.erase(it);
            break;
          }
        }
      }
      if (done) std::move(done)(absl::CancelledError("cancelled by the caller"));
    }
    void Resume() override {}

   private:
    std::shared_ptr<State> state_;
    std::shared_ptr<Entry> entry_;
    uint64_t id_;
  };

  std::shared_ptr<State> state_;
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_CORE_REQUEST_DEDUPLICATOR_H_
