// LimitStore in Redis: the limits are shared by every gateway replica (issue #5, "shared mode").
// Each decision is one atomic Lua script (server/limits/redis_scripts.h) run with the Redis
// server's clock, so N replicas together admit what one would.
#ifndef COPILOT_GATEWAY_SERVER_LIMITS_REDIS_LIMIT_STORE_H_
#define COPILOT_GATEWAY_SERVER_LIMITS_REDIS_LIMIT_STORE_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/core/shared_request_ids.h"
#include "server/limits/limit_store.h"

namespace copilot::gateway {

// TLS to Redis ("rediss://"). hiredis 0.14 (Debian 12) has no TLS: the store then speaks RESP
// over its own OpenSSL connection (server/limits/tls_redis_transport.h). Plain data.
struct RedisTlsOptions {
  bool enabled = false;
  // PEM bundle of the CAs that may sign the server's certificate; empty: the system's trust
  // store. The certificate must name the host (a DNS SAN, or an IP SAN for an IP address).
  std::string ca_file;
  // Client certificate (chain) and its key, PEM, for Redis's `tls-auth-clients yes`; both or
  // neither.
  std::string cert_file;
  std::string key_file;
};

// Where the Redis server is and how patient to be with it. Plain data; validated by Create.
struct RedisLimitStoreOptions {
  std::string host = "127.0.0.1";
  int port = 6379;
  // With tls.enabled: TLS 1.2 or later, the server's certificate and host name verified. The
  // files are read by Create (an unreadable one is INVALID_ARGUMENT naming the field) and again
  // at every connection, so renewed certificates apply from the next reconnection.
  RedisTlsOptions tls;
  // AUTH: none when `password` is empty; "AUTH <username> <password>" (Redis 6 ACL) when
  // `username` is set, else "AUTH <password>".
  std::string username;
  std::string password;
  int database = 0;  // SELECT, when not 0.
  // Bound on establishing a connection (TCP connect, and the TLS handshake with tls).
  absl::Duration connect_timeout = absl::Milliseconds(500);
  // Bound on each round trip (socket send/receive timeout), also AUTH, SELECT and SCRIPT LOAD.
  absl::Duration command_timeout = absl::Milliseconds(250);
  // Keys are "<key_prefix>:{<key>}:rate|win|slots". No braces allowed in the prefix.
  std::string key_prefix = "copilot";
  // Reconnection: the first attempt after a failure waits `initial_backoff`, each further
  // failed attempt doubles the wait up to `max_backoff`. Calls made meanwhile fail at once.
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(2);
  // An idle connection is checked with PING this often (so healthy() follows Redis without
  // traffic).
  absl::Duration health_check_interval = absl::Seconds(1);
  // At most this many queued decisions go to Redis in one round trip (pipelining).
  int max_pipeline = 128;
};

// Parses "redis://[[username]:password@]host[:port][/database]" into `base` (which provides
// the timeouts, the key prefix and the TLS files). "rediss://" is the same over TLS: the scheme
// sets tls.enabled. Userinfo is percent-decoded; an IPv6 host is written in brackets.
// INVALID_ARGUMENT, naming the part, otherwise.
absl::StatusOr<RedisLimitStoreOptions> ParseRedisUrl(absl::string_view url,
                                                     RedisLimitStoreOptions base = {});

// Thread-safe. One thread of the store owns the Redis connection: calls queue a request and
// return at once; the thread sends the queued requests in one pipelined round trip
// (blocking I/O bounded by the timeouts: hiredis's own, or OpenSSL's for TLS; see
// redis_transport.h) and runs every `done` on itself, so callbacks must not block (they may
// call the store again). Limits that limit nothing (per_second <= 0, no window with
// max_requests > 0, max <= 0 slots) are decided inline without Redis.
//
// Failure: when Redis is unreachable, times out, drops the connection, fails the TLS handshake
// (an untrusted certificate, another host's, a server not speaking TLS) or a script fails, the
// affected callbacks get UNAVAILABLE with the reason, within command_timeout of being sent
// (a call queued behind a stalled round trip or a reconnection attempt waits for it to end).
// The thread reconnects by itself with back-off; between attempts calls fail at once.
// A decision that waited in the queue past command_timeout (Redis slower than the decisions
// asked of it) fails with UNAVAILABLE instead of being sent. A release (ReleaseSlot) that fails
// is sent again while Redis is away, for kReleaseRetryWindow.
// healthy() says whether the store is connected and its last round trip succeeded. The
// clock of the back-off is the steady clock (this is I/O, like CurlTransport's loop); the
// decisions use Redis's TIME only.
//
// Destruction fails every queued call with UNAVAILABLE "store shut down" (each callback runs
// exactly once), waits for a round trip in progress (at most command_timeout) or a connection
// attempt (connect_timeout, then command_timeout for each set-up command) and joins the
// thread; it must not run on the store's thread (i.e. inside a callback).
class RedisLimitStore final : public LimitStore {
 public:
  // Validates `options` (INVALID_ARGUMENT naming the field) and starts the thread, which
  // connects in the background: the store is usable at once (calls fail with UNAVAILABLE
  // until Redis answers).
  static absl::StatusOr<std::unique_ptr<RedisLimitStore>> Create(RedisLimitStoreOptions options);
  ~RedisLimitStore() override;

  RedisLimitStore(const RedisLimitStore&) = delete;
  RedisLimitStore& operator=(const RedisLimitStore&) = delete;

  void TakeRate(const std::string& key, const RateLimit& limit,
                StoreCallback<StepResult> done) override;
  void TakeWindows(const std::string& key, const std::vector<WindowLimit>& windows,
                   StoreCallback<StepResult> done) override;
  // Lease ids are 128 random bits in hex (unique across replicas).
  void AcquireSlot(const std::string& key, int64_t max, absl::Duration ttl,
                   StoreCallback<SlotResult> done) override;
  // Dropped when Redis is unavailable (the lease then expires with its ttl).
  void ReleaseSlot(const std::string& key, const std::string& lease_id) override;
  // Keys "<prefix>:{<group>}:<step key>": one hash tag per group.
  void AddToCounters(const std::string& group, const std::vector<CounterStep>& steps,
                     StoreCallback<CounterResult> done) override;

  // The request_id scripts of RedisRequestIds (server/limits/redis_request_ids.h), on the
  // whole Redis key `redis_key` with `args` (redis_scripts::kRequestIdClaim and
  // kRequestIdFinish). The claim is sent after `delay` (a waiting retry polls); the finish is
  // fire and forget (dropped when Redis is unavailable).
  void ClaimRequestId(std::string redis_key, std::vector<std::string> args, absl::Duration delay,
                      SharedRequestIds::ClaimCallback done);
  void FinishRequestId(std::string redis_key, std::vector<std::string> args);

  // What destruction does, earlier: every queued call fails with UNAVAILABLE "store shut down"
  // (its callback runs now, while the objects it reaches still exist), later calls fail inline,
  // the thread is joined. Idempotent; not on the store's thread.
  void Stop();

  const std::string& key_prefix() const { return options_.key_prefix; }

  // Connected, the last round trip (command or health check) succeeded and Redis took its
  // scripts, and no decision taken from the queue in the last 10 s had waited past
  // command_timeout.
  bool healthy() const {
    return healthy_.load(std::memory_order_relaxed) && !backlogged_.load(std::memory_order_relaxed);
  }
  // How long a failed release (a slot's ZREM) is sent again while Redis is away.
  static constexpr absl::Duration kReleaseRetryWindow = absl::Minutes(15);

  // The Redis key of `kind` ("rate", "win" or "slots") for `key`: "<prefix>:{<key>}:<kind>".
  // Every key of one `key` has the same hash tag, so its script runs on one Cluster node.
  static std::string RedisKey(absl::string_view prefix, absl::string_view key,
                              absl::string_view kind);

 private:
  struct Request;
  class Connection;

  explicit RedisLimitStore(RedisLimitStoreOptions options);

  // Queues `request` (to be sent after `delay`), or fails it inline with "store shut down"
  // after destruction began.
  void Submit(std::unique_ptr<Request> request, absl::Duration delay = absl::ZeroDuration());
  // Moves the delayed requests that are due to the queue; returns when the next one is due.
  std::chrono::steady_clock::time_point PromoteDueRequests() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string RandomHex128() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool HasWorkOrStop() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  void Run();
  // The store's thread: whether decisions taken from the queue lately had waited too long (one
  // in the last 10 s); logs each change.
  void SetBacklogged(bool backlogged);

  const RedisLimitStoreOptions options_;
  std::atomic<bool> healthy_{false};
  std::atomic<bool> backlogged_{false};

  mutable absl::Mutex mu_;
  std::deque<std::unique_ptr<Request>> queue_ ABSL_GUARDED_BY(mu_);
  // Requests to send later, by when they are due; delayed_changed_ wakes the thread to
  // recompute its wait.
  std::multimap<std::chrono::steady_clock::time_point, std::unique_ptr<Request>> delayed_
      ABSL_GUARDED_BY(mu_);
  bool delayed_changed_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  absl::BitGen bitgen_ ABSL_GUARDED_BY(mu_);

  std::mutex join_mu_;  // Stop() from two threads joins once.
  std::thread thread_;
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_LIMITS_REDIS_LIMIT_STORE_H_
