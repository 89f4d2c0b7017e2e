#include "server/transport/curl_transport.h"

#include <curl/curl.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <queue>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/common/errors.h"
#include "server/transport/h2_stream_refusals.h"

namespace copilot::gateway {
namespace {

using SteadyClock = std::chrono::steady_clock;
using SteadyTime = SteadyClock::time_point;

constexpr int kMaxEvents = 256;
// The automatic bound on HTTP/2 connections (CurlTransportOptions::max_connections 0): the
// stream cap assumed per connection (SETTINGS_MAX_CONCURRENT_STREAMS: 100 is what common servers
// announce and what RFC 9113 recommends at least), and connections allowed beyond the need.
// The spare connections are shared by the loops (each at least kMinSpareConnectionsPerLoop).
constexpr long kHttp2StreamsPerConnection = 100;
constexpr long kHttp2SpareConnections = 8;
constexpr long kMinSpareConnectionsPerLoop = 2;
constexpr int kMaxEventLoops = 64;
// Connection pools (HttpRequest::connection_pool) a loop keeps apart at most; requests naming
// others use the shared pool. The gateway names one per tenant, and tenants are configured.
constexpr std::size_t kMaxConnectionPools = 1024;
// Connections one connection cache of a pool holds before the pool opens another cache, over
// HTTP/1.x with the connection bounds left to the load (CurlTransport::Loop::CacheFor). libcurl
// 7.88 walks every connection of a cache twice per transfer: looking for one to reuse (the busy
// ones too) and, in curl_multi_remove_handle, for "connect-only" ones to close. With 5,000 held
// transfers on a loop that was 17% of the gateway's CPU while they started, and 30% while they
// ended (perf, gateway_bench --calls 10000). A pool at a steady 64 calls a loop stays in one.
constexpr int64_t kConnectionsPerCache = 128;

// Easy handles of ended transfers a loop keeps, reset, for its next transfers. curl_easy_init
// and curl_easy_cleanup cost ~16,000 instructions a call (of ~369,000, callgrind); a reset and
// the options set again, a fraction of that. Each kept handle holds ~6 KiB, and the 16 KiB
// receive buffer of an HTTP/2 transfer (see SetOptions): about 1.4 MiB per loop at most.
// Enough for the transfers one loop ends and starts again between two turns at full load; a burst
// beyond it frees the rest as before.
constexpr std::size_t kMaxSpareHandles = 64;

void EnsureCurlGlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

// Work handed to the loop by other threads.
struct Command {
  enum class Kind { kStart, kCancel, kResume, kStop, kTimer };
  Kind kind = Kind::kStart;
  uint64_t id = 0;
  uint32_t pool = 0;                             // kStart only: PoolLoads::Placement.
  HttpRequest request;                           // kStart only.
  std::shared_ptr<HttpTransferHandler> handler;  // kStart only.
  absl::Duration delay;                          // kTimer only.
  absl::AnyInvocable<void() &&> task;            // kTimer only.
};

// The queue between other threads and the loop, with its wakeup. Shared with every transfer
// handle, so it outlives the transport when a handle does.
// Thread-safe.
class Mailbox {
 public:
  explicit Mailbox(int wake_fd) : wake_fd_(wake_fd) {}

  // Queues `command` and wakes the loop; false (nothing queued, `command` untouched) once
  // closed.
  bool Post(Command& command) {
    absl::MutexLock lock(&mu_);
    if (closed_) return false;
    const bool was_empty = queue_.empty();
    queue_.push_back(std::move(command));
    if (was_empty) {
      // The loop reads the eventfd before it takes the queue, so one write per non-empty
      // stretch of the queue is enough. Written under the lock: Close() cannot race it.
      const uint64_t one = 1;
      ssize_t written = write(wake_fd_, &one, sizeof(one));
      (void)written;  // EAGAIN means the counter is already non-zero: the loop will wake.
    }
    return true;
  }

  std::vector<Command> TakeAll() {
    absl::MutexLock lock(&mu_);
    std::vector<Command> out;
    out.swap(queue_);
    return out;
  }

  // No more posts; the wakeup fd may be closed afterwards.
  void Close() {
    absl::MutexLock lock(&mu_);
    closed_ = true;
  }

 private:
  const int wake_fd_;
  absl::Mutex mu_;
  std::vector<Command> queue_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

// What the caller holds. Thread-safe: it only posts.
class CurlTransferHandle final : public HttpTransfer {
 public:
  CurlTransferHandle(std::shared_ptr<Mailbox> mailbox, uint64_t id)
      : mailbox_(std::move(mailbox)), id_(id) {}
  void Cancel() override { Post(Command::Kind::kCancel); }
  void Resume() override { Post(Command::Kind::kResume); }

 private:
  void Post(Command::Kind kind) {
    Command command;
    command.kind = kind;
    command.id = id_;
    mailbox_->Post(command);  // After Shutdown the transfer is over: a no-op.
  }

  const std::shared_ptr<Mailbox> mailbox_;
  const uint64_t id_;
};

// What a caller is told to wait before trying again when max_transfers are in flight: upstream
// calls take seconds, so some will have ended by then.
constexpr absl::Duration kTransfersExhaustedRetryDelay = absl::Seconds(1);

absl::Status TransfersExhaustedStatus(int64_t max_transfers) {
  absl::Status status = MakeError(
      absl::StatusCode::kResourceExhausted,
      absl::StrCat("the gateway already has ", max_transfers, " upstream transfers in flight"),
      "upstream_transfers_exhausted", {{"max_transfers", absl::StrCat(max_transfers)}});
  SetRetryDelay(status, kTransfersExhaustedRetryDelay);
  AddQuotaViolation(
      status, "upstream_transfers",
      absl::StrCat("at most ", max_transfers, " upstream transfers in flight per gateway process"));
  return status;
}

// Idempotent in HTTP (RFC 9110, 9.2.2): the upstream may safely see the request twice.
bool IsIdempotent(absl::string_view method) {
  return method == "GET" || method == "HEAD" || method == "PUT" || method == "DELETE" ||
         method == "OPTIONS";
}

absl::Status OptionRefused(absl::string_view option, absl::string_view why) {
  return MakeError(absl::StatusCode::kInternal,
                   absl::StrCat("libcurl refused option ", option, ": ", why),
                   "transport_misconfigured", {{"curl_option", std::string(option)}});
}

// EasyOptions and MultiOptions set options on one handle and check every result, keeping the
// first failure (the options after it are skipped), so a run of options needs one check at its
// end. Not thread-safe (loop thread, or Create before the loop runs).
class EasyOptions {
 public:
  explicit EasyOptions(CURL* easy) : easy_(easy) {}
  template <typename T>
  void Set(CURLoption option, T value) {
    if (!status_.ok()) return;
    const CURLcode code = curl_easy_setopt(easy_, option, value);
    if (code == CURLE_OK) return;
    const curl_easyoption* info = curl_easy_option_by_id(option);
    status_ = OptionRefused(info != nullptr ? absl::StrCat("CURLOPT_", info->name)
                                            : absl::StrCat("CURLOPT #", static_cast<int>(option)),
                            curl_easy_strerror(code));
  }
  // OK, or INTERNAL "transport_misconfigured" naming the first option libcurl refused.
  const absl::Status& status() const { return status_; }

 private:
  CURL* const easy_;
  absl::Status status_;
};

class MultiOptions {
 public:
  explicit MultiOptions(CURLM* multi) : multi_(multi) {}
  // libcurl has no name lookup for multi options: `name` is the CURLMOPT_ spelling.
  template <typename T>
  void Set(CURLMoption option, absl::string_view name, T value) {
    if (!status_.ok()) return;
    const CURLMcode code = curl_multi_setopt(multi_, option, value);
    if (code != CURLM_OK) status_ = OptionRefused(name, curl_multi_strerror(code));
  }
  const absl::Status& status() const { return status_; }

 private:
  CURLM* const multi_;
  absl::Status status_;
};

// Milliseconds for a libcurl option: at least 1 (0 would mean "no limit"), at most a day.
long ClampedMillis(absl::Duration duration) {
  const int64_t ms = absl::ToInt64Milliseconds(absl::Ceil(duration, absl::Milliseconds(1)));
  return static_cast<long>(std::clamp<int64_t>(ms, 1, 24 * 3600 * 1000));
}

// For libcurl's whole-second connection ages: libcurl keeps a connection whose age, rounded
// down to whole seconds, is at most n, i.e. younger than n + 1 seconds. The n that keeps none
// as old as `age`: floor(age) - 1, at least 0 (then: younger than 1 s).
long WholeSecondsBelow(absl::Duration age) {
  const int64_t seconds = absl::ToInt64Seconds(absl::Floor(age, absl::Seconds(1)));
  return static_cast<long>(std::clamp<int64_t>(seconds - 1, 0, 365 * 24 * 3600));
}

}  // namespace

// Which loop a transfer goes to (CurlTransport::Start): the loop with the fewest transfers of
// OTHER connection pools in flight; among those, one no other pool used in the last
// kPoolRecency; then the fewest in flight; then the first. One pool's transfers spread over all
// loops evenly (each loop's share of its connections); transfers of different pools keep to
// different loops as long as there are loops enough. A loop reads an HTTP/2 connection whole in
// one turn, several megabytes of one tenant's answers at once (~15 ms measured), and every other
// transfer on that loop waits for the turn to end; on another loop (another thread) it does not.
// The recency step keeps a pool from spreading onto a loop another pool left a moment ago (the
// other pool's next transfer would then share it): without it, under adversarial_bench 12% of the
// victim's stream chunks came through a loop shared with the attacker, their gap p99 50-72 ms
// against 25-30 ms on loops of their own.
// Thread-safe.
class CurlTransport::PoolLoads {
 public:
  explicit PoolLoads(std::size_t loops) : per_loop_(loops) {}

  // How long a loop counts as another pool's after that pool's last transfer there started or
  // ended. Longer than the pauses between one busy tenant's calls; short enough that a tenant
  // that went quiet leaves its loops to the others within a second.
  static constexpr SteadyClock::duration kPoolRecency = std::chrono::seconds(1);

  struct Placement {
    uint32_t pool = 0;     // A small number for the pool (0: the shared pool, and every
                           // pool past kMaxConnectionPools).
    std::size_t loop = 0;  // The loop picked.
  };

  // Picks the loop for a transfer of `pool` (as above) and counts it there until Done. One lock
  // per transfer started.
  Placement Pick(const std::string& pool, SteadyTime now) {
    absl::MutexLock lock(&mu_);
    Placement placement;
    if (!pool.empty()) {
      if (auto it = ids_.find(pool); it != ids_.end()) {
        placement.pool = it->second;
      } else if (ids_.size() < kMaxConnectionPools) {
        placement.pool = static_cast<uint32_t>(ids_.size() + 1);
        ids_.emplace(pool, placement.pool);
      }
    }
    const uint32_t id = placement.pool;
    // Lexicographic: other pools' transfers in flight, another pool there lately, all in flight.
    std::tuple<int64_t, bool, int64_t> best{INT64_MAX, true, INT64_MAX};
    for (std::size_t i = 0; i < per_loop_.size(); ++i) {
      const Loads& loads = per_loop_[i];
      const int64_t own = id < loads.by_pool.size() ? loads.by_pool[id] : 0;
      const std::tuple<int64_t, bool, int64_t> key{
          loads.total - own, loads.UsedLatelyByOtherThan(id, now), loads.total};
      if (key < best) {
        placement.loop = i;
        best = key;
      }
    }
    Loads& loads = per_loop_[placement.loop];
    if (id >= loads.by_pool.size()) loads.by_pool.resize(id + 1, 0);
    ++loads.by_pool[id];
    ++loads.total;
    loads.Used(id, now);
    return placement;
  }

  void Done(std::size_t loop, uint32_t pool, SteadyTime now) {
    absl::MutexLock lock(&mu_);
    Loads& loads = per_loop_[loop];
    --loads.by_pool[pool];
    --loads.total;
    loads.Used(pool, now);
  }

 private:
  struct Use {
    uint32_t pool = 0;
    SteadyTime at;  // Default: the clock's epoch, long ago.
  };
  struct Loads {
    // Whether a pool other than `pool` started or ended a transfer here within kPoolRecency.
    // The last two distinct pools to use the loop suffice: the latest pool other than `pool`
    // is one of them.
    bool UsedLatelyByOtherThan(uint32_t pool, SteadyTime now) const {
      return std::any_of(latest.begin(), latest.end(), [&](const Use& use) {
        return use.pool != pool && use.at != SteadyTime() && now - use.at < kPoolRecency;
      });
    }
    void Used(uint32_t pool, SteadyTime now) {
      if (latest[0].pool != pool || latest[0].at == SteadyTime()) latest[1] = latest[0];
      latest[0] = Use{pool, now};
    }

    int64_t total = 0;
    std::vector<int64_t> by_pool;  // Indexed by pool ID.
    std::array<Use, 2> latest;     // The last two distinct pools to use the loop, latest first.
  };
  absl::Mutex mu_;
  std::unordered_map<std::string, uint32_t> ids_ ABSL_GUARDED_BY(mu_);
  std::vector<Loads> per_loop_ ABSL_GUARDED_BY(mu_);
};

// Everything the loop thread owns. Only the loop thread touches it after construction, except
// mailbox_, in_flight_ and admitted_ (thread-safe).
class CurlTransport::Loop final : public H2SessionObserver {
 public:
  // `options` are the transport's with this loop's share of the connection bounds (Create);
  // `admitted` counts the transfers in flight on all the loops of one transport, against
  // options.max_transfers.
  // `loads` counts the transfers of each connection pool on each loop (this one is `index`).
  static absl::StatusOr<std::unique_ptr<Loop>> Create(
      const CurlTransportOptions& options, long spare_connections,
      std::shared_ptr<std::atomic<int64_t>> admitted, std::shared_ptr<PoolLoads> loads,
      std::size_t index);
  ~Loop() override;

  const std::shared_ptr<Mailbox>& mailbox() const { return mailbox_; }
  // The thread body: returns after a kStop command, every transfer completed.
  void Run();

  // Thread-safe. Takes one of the transport's max_transfers slots for a new transfer on this
  // loop; false when none is free. A slot is given back right before the transfer's OnComplete.
  bool Admit();
  // Also ends the count of the transfer's pool on this loop (PoolLoads::Pick).
  void Release(uint32_t pool) {
    admitted_->fetch_sub(1, std::memory_order_relaxed);
    in_flight_.fetch_sub(1, std::memory_order_relaxed);
    loads_->Done(index_, pool, SteadyClock::now());
  }
  int64_t max_transfers() const { return options_.max_transfers; }
  // Thread-safe: the transfers admitted to this loop and not yet completed (its load).
  int64_t in_flight() const { return in_flight_.load(std::memory_order_relaxed); }

 private:
  // A connection cache of a pool (HttpRequest::connection_pool): the multi handle's own (the
  // shared pool's first) or a share handle's. The data of the socket callbacks of the
  // connections made in it (libcurl keeps CURLOPT_CLOSESOCKETDATA with each connection).
  struct ConnectionCache {
    Loop* loop = nullptr;
    CURLSH* share = nullptr;  // Null: the multi handle's cache.
    int64_t connections = 0;  // Sockets open for its connections (OnOpenSocket, OnCloseSocket).
    int64_t transfers = 0;    // Transfers in flight that use it.
  };
  // A pool's caches, the first made with the pool; more over HTTP/1.x under load (CacheFor).
  using ConnectionPool = std::vector<std::unique_ptr<ConnectionCache>>;

  // One transfer in progress.
  struct Transfer {
    uint64_t id = 0;
    uint32_t pool = 0;  // PoolLoads::Placement.
    Loop* loop = nullptr;
    CURL* easy = nullptr;
    ConnectionCache* cache = nullptr;  // Where its connection is looked for and kept.
    curl_slist* headers = nullptr;
    std::string body;  // CURLOPT_POSTFIELDS points into it.
    std::shared_ptr<HttpTransferHandler> handler;
    HttpResponseHead head;
    bool idempotent = false;        // The method may be repeated safely (GET, DELETE).
    bool response_started = false;  // A response byte arrived (a header line or body bytes).
    bool headers_delivered = false;
    bool paused = false;  // The handler's OnData returned false; no Resume yet.
    // Took max_read_per_turn in this turn of the loop: paused in libcurl until the turn ends.
    bool yielded = false;
    bool may_yield = false;      // Over HTTP/1.x (set with the headers).
    bool http2 = false;          // Over HTTP/2 (set with the headers).
    uint64_t turn = 0;           // The loop turn turn_bytes counts.
    std::size_t turn_bytes = 0;  // Response bytes taken in that turn.
    std::size_t skip = 0;        // Bytes libcurl will deliver again that the handler already has.
    std::size_t body_bytes = 0;
    std::size_t max_body_bytes = 0;
    bool too_large = false;
    bool connect_timeout_first = false;  // The connect timeout fires before the deadline.
    int sends = 0;                       // Times libcurl was about to send the request.
    // Sends whose HTTP/2 stream the upstream refused (did not process); whether the latest did.
    int refused_sends = 0;
    bool latest_send_refused = false;
    bool resend_refused = false;          // A second send of a POST was refused.
    std::optional<CURLcode> held_result;  // Finished while paused: waits for Resume.
    SteadyTime last_activity;
    SteadyClock::duration stall_timeout{};
    bool stall_armed = false;  // Has an entry in stall_heap_.
    char error[CURL_ERROR_SIZE] = {};
  };
  using StallEntry = std::pair<SteadyTime, uint64_t>;

  Loop(CurlTransportOptions options, long spare_connections,
       std::shared_ptr<std::atomic<int64_t>> admitted, std::shared_ptr<PoolLoads> loads,
       std::size_t index, int epoll_fd, int wake_fd, CURLM* multi)
      : options_(std::move(options)),
        spare_connections_(spare_connections),
        admitted_(std::move(admitted)),
        loads_(std::move(loads)),
        index_(index),
        epoll_fd_(epoll_fd),
        wake_fd_(wake_fd),
        multi_(multi),
        mailbox_(std::make_shared<Mailbox>(wake_fd)) {
    shared_pool_.push_back(std::make_unique<ConnectionCache>(ConnectionCache{.loop = this}));
  }

  // libcurl callbacks.
  static int OnSocket(CURL* easy, curl_socket_t socket, int what, void* loop, void* socket_ptr);
  // Their data is the ConnectionCache the connection is made in.
  static curl_socket_t OnOpenSocket(void* cache, curlsocktype purpose, curl_sockaddr* address);
  static int OnCloseSocket(void* cache, curl_socket_t socket);
  static int OnTimer(CURLM* multi, long timeout_ms, void* loop);
  static size_t OnHeader(char* data, size_t size, size_t count, void* transfer);
  static size_t OnWrite(char* data, size_t size, size_t count, void* transfer);
  static int OnPrerequest(void* transfer, char* remote_ip, char* local_ip, int remote_port,
                          int local_port);
  // H2SessionObserver: the upstream did not process the transfer's latest send.
  void OnStreamRefused(CURL* easy) override;
  // H2SessionObserver: the upstream speaks HTTP/2; from now on the connections are
  // bounded by the load. At once: libcurl goes on in the same call to hand the transfers waiting
  // for this connection to it, and to open new ones for those it cannot take. (Setting the
  // option is a plain field write in libcurl, safe from here: it is not a libcurl callback.)
  void OnHttp2Connection() override {
    http2_seen_ = true;
    UpdateConnectionBound();
  }
  // With max_connections 0 and an upstream that negotiated HTTP/2: sets libcurl's bound on
  // connections to the host to the connections the transfers need, kHttp2StreamsPerConnection
  // each, plus kHttp2SpareConnections. libcurl (7.88) otherwise opens a connection for each
  // transfer that finds the open ones at their stream cap while new ones are still connecting
  // (a new connection is not reusable before its TCP connect completes), so a burst of 300
  // opened 201 connections where 3 carry it.
  void UpdateConnectionBound();

  void HandleCommands();
  // A reset easy handle from spare_handles_, or a new one (null when out of memory).
  CURL* TakeHandle();
  // After curl_multi_remove_handle: keeps the transfer's handle for the next transfer (reset:
  // no option, header list, body or pool of this one carries over) or frees it. Only a handle
  // whose transfer ended normally is kept (an error, a cancel or a pause may leave state in it
  // that a reset does not clear), and none while the loop stops.
  void ReleaseHandle(Transfer& transfer, bool reusable);
  // Creates the transfer for `command` and adds it to the multi handle, or completes it with
  // the reason it could not start.
  void StartTransfer(Command& command);
  absl::Status SetHeaders(Transfer& transfer, const HttpHeaders& headers);
  absl::Status SetOptions(Transfer& transfer, const HttpRequest& request,
                          absl::Duration remaining) const;
  static void SetMethod(EasyOptions& set, const std::string& method, const std::string& body);
  void SetConnectionOptions(EasyOptions& set) const;
  // The cache a transfer of `request` uses: of its pool (the shared one for none, and past
  // kMaxConnectionPools), one that may hold an idle connection, else one with room for another,
  // else a new one (kConnectionsPerCache). A pool keeps one cache over HTTP/2 (its connections
  // are few and multiplexed) and with max_connections or max_cached_connections set (libcurl
  // applies them to each cache).
  ConnectionCache* CacheFor(const HttpRequest& request);
  // A cache of a new share handle added to `pool`; null when out of memory.
  ConnectionCache* AddCache(ConnectionPool& pool);
  void ResumeTransfer(Transfer& transfer);
  // Unpauses the transfers that took their max_read_per_turn in this turn.
  void ResumeYielded();
  void DrainDone();
  // With HTTP/2 transfers in flight: reads once more the sockets read in this turn (every
  // socket libcurl reads, when a stream was resumed in it), and again in the next turns those
  // that delivered bytes; completes the transfers that ended. See read_in_turn_.
  void ReadHttp2ConnectionsAgain();
  void CheckStalls(SteadyTime now);
  void ArmStall(Transfer& transfer, SteadyTime when);
  int NextTimeoutMs(SteadyTime now) const;
  void DeliverHeaders(Transfer& transfer);
  // Removes `transfer`, then calls its handler's OnComplete(status).
  void Complete(Transfer& transfer, absl::Status status);
  // Gives the transfer's slot back, then calls handler->OnComplete(status).
  void Finish(const std::shared_ptr<HttpTransferHandler>& handler, uint32_t pool,
              absl::Status status);
  absl::Status StatusFor(const Transfer& transfer, CURLcode result) const;
  // Whether the upstream may have acted on the request: a send that HTTP/2 did not say was
  // refused (never sent at all, or every send refused: it did not).
  static bool MaySendHaveActed(const Transfer& transfer) {
    return transfer.sends > transfer.refused_sends;
  }
  // A transport failure: UNAVAILABLE (safe to retry) unless a response byte arrived for a request
  // that is not idempotent, which the upstream may have carried out: then INTERNAL.
  static absl::Status TransportFailure(const Transfer& transfer, const std::string& message,
                                       absl::string_view reason,
                                       std::map<std::string, std::string> metadata);
  void StopAll();
  Transfer* Find(uint64_t id);
  // Runs the RunAfter tasks due by `now` (all of them when `now` is nullopt).
  void RunTimers(std::optional<SteadyTime> now);

  // The sockets registered with epoll. A connection's socket (opened and closed through
  // OnOpenSocket and OnCloseSocket, so its end is seen) stays registered while the connection
  // waits in the cache: the next transfer on it usually wants the same events, and then costs no
  // epoll_ctl (before: a DEL when each transfer ended and an ADD when the next began, two system
  // calls per call). An event on a socket libcurl is not watching takes it out of epoll then. The
  // other sockets (the resolver's) leave epoll when libcurl lets go of them.
  struct WatchedSocket {
    uint32_t events = 0;  // Registered with epoll for these (when `registered`).
    bool registered = false;
    bool wanted = false;  // libcurl watches it now.
    bool ours = false;    // Opened through OnOpenSocket.
  };
  std::unordered_map<curl_socket_t, WatchedSocket> sockets_;
  uint64_t turn_ = 0;              // Turns of Run's loop so far.
  std::vector<uint64_t> yielded_;  // Transfers that yielded in this turn (ResumeYielded).
  // The sockets libcurl read in this turn (at the top of a turn: those a second read delivered
  // from). libcurl 7.88 can leave frames of an HTTP/2 connection's streams in its own buffers,
  // already taken from the socket, and return: no socket event follows, and those streams
  // stalled until their deadline. Four 8 MiB answers at once over one connection: one to three
  // of them stopped exactly 8 MiB in, their last frame missing, in 5 of 6 rounds, the socket
  // itself empty (FIONREAD 0); a read 2 s later delivered it. Reading the sockets once more at
  // the end of each turn, and again while that delivers, delivers them (81 rounds, none
  // missing). Reading again only after a stream ended was not enough (4 of 16 rounds). After a
  // paused stream is resumed (curl_easy_pause) its frames may be buffered already, on a
  // connection not known here: every socket is read then.
  std::vector<curl_socket_t> read_in_turn_;
  bool http2_stream_resumed_ = false;  // In this turn (ResumeTransfer).
  int http2_transfers_ = 0;            // In flight, with their headers received over HTTP/2.
  uint64_t delivered_bytes_ = 0;       // Response bytes handed to handlers, all transfers.
  bool destroying_ = false;            // ~Loop runs: no more on_connections_changed.
  const CurlTransportOptions options_;
  const long spare_connections_;  // Beyond the need, in the automatic HTTP/2 bound.
  const std::shared_ptr<std::atomic<int64_t>> admitted_;
  const std::shared_ptr<PoolLoads> loads_;
  const std::size_t index_;
  const int epoll_fd_;
  const int wake_fd_;
  CURLM* const multi_;
  const std::shared_ptr<Mailbox> mailbox_;

  std::unordered_map<uint64_t, std::unique_ptr<Transfer>> transfers_;
  std::vector<CURL*> spare_handles_;  // At most kMaxSpareHandles (TakeHandle, ReleaseHandle).
  // The shared pool: the multi handle's cache first. The other pools: a share handle for each
  // cache (CURL_LOCK_DATA_CONNECT; libcurl then looks for connections to reuse only there, and
  // CURLMOPT_MAX_HOST_CONNECTIONS and MAXCONNECTS apply to each cache). Only this loop's thread
  // uses them, so they need no lock callbacks. The caches outlive their connections (~Loop).
  ConnectionPool shared_pool_;
  std::unordered_map<std::string, ConnectionPool> pools_;
  bool http2_seen_ = false;     // A connection to the upstream negotiated HTTP/2.
  long connection_bound_ = -1;  // The CURLMOPT_MAX_HOST_CONNECTIONS in force (-1: the option's).
  std::optional<SteadyTime> curl_timer_;
  std::priority_queue<StallEntry, std::vector<StallEntry>, std::greater<>> stall_heap_;
  // RunAfter tasks by due time (insertion order among equal times).
  std::multimap<SteadyTime, absl::AnyInvocable<void() &&>> timers_;
  bool stopping_ = false;
  // Transfers admitted to this loop and not yet completed: queued in the mailbox or in
  // transfers_.
  std::atomic<int64_t> in_flight_{0};
};

absl::StatusOr<std::unique_ptr<CurlTransport::Loop>> CurlTransport::Loop::Create(
    const CurlTransportOptions& options, long spare_connections,
    std::shared_ptr<std::atomic<int64_t>> admitted, std::shared_ptr<PoolLoads> loads,
    std::size_t index) {
  EnsureCurlGlobalInit();
  const int epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd < 0) {
    return MakeError(absl::StatusCode::kInternal, absl::StrCat("epoll_create1: ", ErrnoText(errno)),
                     "transport_setup");
  }
  const int wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd < 0) {
    close(epoll_fd);
    return MakeError(absl::StatusCode::kInternal, absl::StrCat("eventfd: ", ErrnoText(errno)),
                     "transport_setup");
  }
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.fd = wake_fd;
  CURLM* multi = curl_multi_init();
  if (multi == nullptr || epoll_ctl(epoll_fd, EPOLL_CTL_ADD, wake_fd, &event) != 0) {
    if (multi != nullptr) curl_multi_cleanup(multi);
    close(wake_fd);
    close(epoll_fd);
    return MakeError(absl::StatusCode::kInternal, "cannot set up the libcurl multi handle",
                     "transport_setup");
  }
  std::unique_ptr<Loop> loop(new Loop(options, spare_connections, std::move(admitted),
                                      std::move(loads), index, epoll_fd, wake_fd, multi));
  MultiOptions set(multi);
  set.Set(CURLMOPT_SOCKETFUNCTION, "CURLMOPT_SOCKETFUNCTION", &Loop::OnSocket);
  set.Set(CURLMOPT_SOCKETDATA, "CURLMOPT_SOCKETDATA", loop.get());
  set.Set(CURLMOPT_TIMERFUNCTION, "CURLMOPT_TIMERFUNCTION", &Loop::OnTimer);
  set.Set(CURLMOPT_TIMERDATA, "CURLMOPT_TIMERDATA", loop.get());
  set.Set(CURLMOPT_MAX_HOST_CONNECTIONS, "CURLMOPT_MAX_HOST_CONNECTIONS", options.max_connections);
  set.Set(CURLMOPT_MAX_TOTAL_CONNECTIONS, "CURLMOPT_MAX_TOTAL_CONNECTIONS", 0L);
  set.Set(CURLMOPT_PIPELINING, "CURLMOPT_PIPELINING",
          options.http2 ? CURLPIPE_MULTIPLEX : CURLPIPE_NOTHING);
  set.Set(CURLMOPT_MAXCONNECTS, "CURLMOPT_MAXCONNECTS",
          options.max_cached_connections > 0 ? options.max_cached_connections
                                             : static_cast<long>(options.max_transfers));
  if (!set.status().ok()) return set.status();  // ~Loop cleans up; the loop never ran.
  return loop;
}

CurlTransport::Loop::~Loop() {
  // Run() has returned: every transfer is gone (no easy handle uses a pool any more) and the
  // mailbox is closed. A pool's cached connections close here, through OnCloseSocket: sockets_
  // and epoll_fd_ are still alive (whoever counts connections may not be: not told).
  destroying_ = true;
  for (CURL* easy : spare_handles_) curl_easy_cleanup(easy);  // None holds a pool (ReleaseHandle).
  const auto cleanup = [](const ConnectionPool& pool) {
    for (const auto& cache : pool) {
      if (cache->share != nullptr) curl_share_cleanup(cache->share);  // Null: the multi's.
    }
  };
  for (const auto& [name, pool] : pools_) cleanup(pool);
  cleanup(shared_pool_);
  curl_multi_cleanup(multi_);
  close(wake_fd_);
  close(epoll_fd_);
}

CurlTransport::Loop::Transfer* CurlTransport::Loop::Find(uint64_t id) {
  auto it = transfers_.find(id);
  return it == transfers_.end() ? nullptr : it->second.get();
}

int CurlTransport::Loop::OnSocket(CURL* /*easy*/, curl_socket_t socket, int what, void* loop_ptr,
                                  void* /*socket_ptr*/) {
  auto* loop = static_cast<Loop*>(loop_ptr);
  WatchedSocket& watched = loop->sockets_[socket];
  if (what == CURL_POLL_REMOVE) {
    watched.wanted = false;
    if (!watched.ours) {
      if (watched.registered) epoll_ctl(loop->epoll_fd_, EPOLL_CTL_DEL, socket, nullptr);
      loop->sockets_.erase(socket);
    }
    return 0;
  }
  uint32_t events = 0;
  if (what == CURL_POLL_IN || what == CURL_POLL_INOUT) events |= EPOLLIN;
  if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT) events |= EPOLLOUT;
  watched.wanted = true;
  if (watched.registered && watched.events == events) return 0;
  epoll_event event{};
  event.events = events;
  event.data.fd = socket;
  if (watched.registered) {
    if (epoll_ctl(loop->epoll_fd_, EPOLL_CTL_MOD, socket, &event) != 0 && errno == ENOENT) {
      epoll_ctl(loop->epoll_fd_, EPOLL_CTL_ADD, socket, &event);
    }
  } else if (epoll_ctl(loop->epoll_fd_, EPOLL_CTL_ADD, socket, &event) != 0 && errno == EEXIST) {
    epoll_ctl(loop->epoll_fd_, EPOLL_CTL_MOD, socket, &event);
  }
  watched.registered = true;
  watched.events = events;
  return 0;
}

curl_socket_t CurlTransport::Loop::OnOpenSocket(void* cache_ptr, curlsocktype /*purpose*/,
                                                curl_sockaddr* address) {
  auto* cache = static_cast<ConnectionCache*>(cache_ptr);
  Loop* loop = cache->loop;
  const curl_socket_t socket =
      ::socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
  if (socket == CURL_SOCKET_BAD) return socket;
  ++cache->connections;
  // A new socket may reuse the number of one closed earlier: it starts unregistered.
  loop->sockets_[socket] = WatchedSocket{.ours = true};
  if (loop->options_.on_connections_changed) loop->options_.on_connections_changed(+1);
  return socket;
}

int CurlTransport::Loop::OnCloseSocket(void* cache_ptr, curl_socket_t socket) {
  auto* cache = static_cast<ConnectionCache*>(cache_ptr);
  Loop* loop = cache->loop;
  --cache->connections;
  loop->sockets_.erase(socket);  // close() takes it out of epoll.
  if (loop->options_.on_connections_changed && !loop->destroying_) {
    loop->options_.on_connections_changed(-1);
  }
  return close(socket);
}

int CurlTransport::Loop::OnTimer(CURLM* /*multi*/, long timeout_ms, void* loop_ptr) {
  auto* loop = static_cast<Loop*>(loop_ptr);
  if (timeout_ms < 0) {
    loop->curl_timer_.reset();
  } else {
    loop->curl_timer_ = SteadyClock::now() + std::chrono::milliseconds(timeout_ms);
  }
  return 0;
}

void CurlTransport::Loop::DeliverHeaders(Transfer& transfer) {
  if (transfer.headers_delivered) return;
  transfer.headers_delivered = true;
  long code = 0;
  curl_easy_getinfo(transfer.easy, CURLINFO_RESPONSE_CODE, &code);
  transfer.head.status = static_cast<int>(code);
  long version = CURL_HTTP_VERSION_NONE;
  curl_easy_getinfo(transfer.easy, CURLINFO_HTTP_VERSION, &version);
  // An upstream (or a load balancer in front of it) that answers HTTP/1.x again: one transfer
  // per connection, so no bound from the stream count.
  if (version != CURL_HTTP_VERSION_2_0 && version != CURL_HTTP_VERSION_NONE) http2_seen_ = false;
  // An HTTP/2 stream never yields (max_read_per_turn). Yielding streams passed the HTTP/2 test
  // (four 8 MiB answers at once on one connection, 27 rounds) once the stall that hung it was
  // fixed (read_in_turn_), but did not help the victim (`adversarial_bench --upstream h2`: the
  // same p99s under attack): libcurl reads an HTTP/2 connection, all its streams, at once.
  transfer.may_yield = version != CURL_HTTP_VERSION_2_0;
  transfer.http2 = version == CURL_HTTP_VERSION_2_0;
  if (transfer.http2) ++http2_transfers_;
  transfer.handler->OnHeaders(transfer.head);
}

size_t CurlTransport::Loop::OnHeader(char* data, size_t size, size_t count, void* transfer_ptr) {
  auto* transfer = static_cast<Transfer*>(transfer_ptr);
  const size_t length = size * count;
  transfer->response_started = true;
  transfer->last_activity = SteadyClock::now();
  // No-op once armed; the stall check re-arms itself from last_activity.
  transfer->loop->ArmStall(*transfer, transfer->last_activity + transfer->stall_timeout);
  if (transfer->headers_delivered) return length;  // Trailers: not part of the interface.
  absl::string_view line(data, length);
  if (absl::StartsWith(line, "HTTP/")) {
    transfer->head.headers.clear();  // A new status line (after a 1xx interim response).
    return length;
  }
  line = absl::StripAsciiWhitespace(line);
  if (line.empty()) {  // End of a header block.
    long code = 0;
    curl_easy_getinfo(transfer->easy, CURLINFO_RESPONSE_CODE, &code);
    if (code >= 200) transfer->loop->DeliverHeaders(*transfer);
    return length;
  }
  const size_t colon = line.find(':');
  if (colon == absl::string_view::npos) return length;
  transfer->head.headers.emplace_back(
      absl::AsciiStrToLower(absl::StripAsciiWhitespace(line.substr(0, colon))),
      std::string(absl::StripAsciiWhitespace(line.substr(colon + 1))));
  return length;
}

int CurlTransport::Loop::OnPrerequest(void* transfer_ptr, char* /*remote_ip*/, char* /*local_ip*/,
                                      int /*remote_port*/, int /*local_port*/) {
  auto* transfer = static_cast<Transfer*>(transfer_ptr);
  const bool latest_refused = transfer->latest_send_refused;
  transfer->latest_send_refused = false;
  if (++transfer->sends > 1 && !transfer->idempotent && !latest_refused) {
    // libcurl is about to send the request again because the connection it went out on died
    // before any response byte: the upstream may have carried it out (see the header). When the
    // upstream refused the stream it did not, and the send goes ahead.
    transfer->resend_refused = true;
    return CURL_PREREQFUNC_ABORT;
  }
  return CURL_PREREQFUNC_OK;
}

void CurlTransport::Loop::UpdateConnectionBound() {
  if (options_.max_connections != 0) return;
  if (!http2_seen_) {
    if (connection_bound_ != -1) curl_multi_setopt(multi_, CURLMOPT_MAX_HOST_CONNECTIONS, 0L);
    connection_bound_ = -1;
    return;
  }
  const auto transfers = static_cast<long>(transfers_.size());
  const long bound = (transfers + kHttp2StreamsPerConnection - 1) / kHttp2StreamsPerConnection +
                     spare_connections_;
  if (bound == connection_bound_) return;
  // Cannot fail: a long for a known option, outside any libcurl callback.
  curl_multi_setopt(multi_, CURLMOPT_MAX_HOST_CONNECTIONS, bound);
  connection_bound_ = bound;
}

void CurlTransport::Loop::OnStreamRefused(CURL* easy) {
  // Every transfer of this thread's multi handle is one of ours.
  Transfer* transfer = nullptr;
  curl_easy_getinfo(easy, CURLINFO_PRIVATE, &transfer);
  // A refusal after a response byte breaks the protocol (RFC 9113 8.7): not taken at its word.
  if (transfer == nullptr || transfer->sends == 0 || transfer->response_started ||
      transfer->latest_send_refused) {
    return;
  }
  transfer->latest_send_refused = true;
  ++transfer->refused_sends;
}

size_t CurlTransport::Loop::OnWrite(char* data, size_t size, size_t count, void* transfer_ptr) {
  auto* transfer = static_cast<Transfer*>(transfer_ptr);
  const size_t length = size * count;
  if (transfer->paused || transfer->yielded) return CURL_WRITEFUNC_PAUSE;
  transfer->response_started = true;
  transfer->last_activity = SteadyClock::now();
  absl::string_view piece(data, length);
  const size_t skipped = std::min(transfer->skip, piece.size());
  transfer->skip -= skipped;
  piece.remove_prefix(skipped);
  if (piece.empty()) return length;
  transfer->loop->DeliverHeaders(*transfer);  // In case no blank header line was seen.
  transfer->body_bytes += piece.size();
  transfer->loop->delivered_bytes_ += piece.size();
  if (transfer->body_bytes > transfer->max_body_bytes) {
    transfer->too_large = true;
    return 0;  // CURLE_WRITE_ERROR.
  }
  if (!transfer->handler->OnData(piece)) {
    transfer->paused = true;
    // libcurl keeps this whole buffer and delivers it again, from its start, on unpause.
    transfer->skip = length;
    return CURL_WRITEFUNC_PAUSE;
  }
  Loop& loop = *transfer->loop;
  if (loop.options_.max_read_per_turn > 0 && transfer->may_yield) {
    if (transfer->turn != loop.turn_) {
      transfer->turn = loop.turn_;
      transfer->turn_bytes = 0;
    }
    transfer->turn_bytes += piece.size();
    if (transfer->turn_bytes >= loop.options_.max_read_per_turn) {
      // The handler has these bytes; libcurl keeps the buffer, delivers it again on the
      // unpause at the end of this turn (skipped), and reads on in a later turn.
      transfer->yielded = true;
      transfer->skip = length;
      loop.yielded_.push_back(transfer->id);
      if (loop.options_.on_read_yield) loop.options_.on_read_yield();
      return CURL_WRITEFUNC_PAUSE;
    }
  }
  return length;
}

void CurlTransport::Loop::ResumeYielded() {
  if (yielded_.empty()) return;
  std::vector<uint64_t> yielded;
  yielded.swap(yielded_);  // A transfer that yields again during its unpause: the next turn.
  for (uint64_t id : yielded) {
    Transfer* transfer = Find(id);
    if (transfer == nullptr || !transfer->yielded) continue;  // Completed (or cancelled).
    transfer->yielded = false;  // (Not paused by its handler: OnWrite never calls it then.)
    // Delivers the kept buffer at once (skipped); libcurl reads on when the loop next runs it.
    curl_easy_pause(transfer->easy, CURLPAUSE_CONT);
  }
}

void CurlTransport::Loop::StartTransfer(Command& command) {
  std::shared_ptr<HttpTransferHandler> handler = std::move(command.handler);
  HttpRequest& request = command.request;
  const absl::Duration remaining = request.deadline - absl::Now();
  if (remaining <= absl::ZeroDuration()) {
    Finish(handler, command.pool,
           MakeError(absl::StatusCode::kDeadlineExceeded,
                     "the deadline passed before the upstream request was sent", "upstream_timeout",
                     {{"request_sent", "false"}}));
    return;
  }
  CURL* easy = TakeHandle();
  if (easy == nullptr) {
    Finish(
        handler, command.pool,
        MakeError(absl::StatusCode::kInternal, "curl_easy_init failed", "transport_misconfigured"));
    return;
  }
  auto owned = std::make_unique<Transfer>();
  Transfer& transfer = *owned;
  transfer.id = command.id;
  transfer.pool = command.pool;
  transfer.loop = this;
  transfer.easy = easy;
  transfer.handler = std::move(handler);
  transfer.body = std::move(request.body);
  transfer.idempotent = IsIdempotent(request.method);
  transfer.max_body_bytes = request.max_response_bytes;
  transfer.last_activity = SteadyClock::now();
  if (request.stall_timeout > absl::ZeroDuration() && request.stall_timeout < absl::Hours(24)) {
    transfer.stall_timeout = std::chrono::duration_cast<SteadyClock::duration>(
        absl::ToChronoNanoseconds(request.stall_timeout));
  }
  transfer.cache = CacheFor(request);
  ++transfer.cache->transfers;
  transfers_.emplace(transfer.id, std::move(owned));  // From here on Complete() cleans up.
  absl::Status status = SetHeaders(transfer, request.headers);
  if (status.ok()) status = SetOptions(transfer, request, remaining);
  if (status.ok() && transfer.cache->share != nullptr) {
    // Read when the handle is added to the multi handle: set before.
    EasyOptions set(easy);
    set.Set(CURLOPT_SHARE, transfer.cache->share);
    status = set.status();
  }
  if (status.ok()) {
    if (const CURLMcode added = curl_multi_add_handle(multi_, easy); added != CURLM_OK) {
      status = MakeError(absl::StatusCode::kInternal,
                         absl::StrCat("curl_multi_add_handle: ", curl_multi_strerror(added)),
                         "transport_misconfigured");
    }
  }
  if (!status.ok()) Complete(transfer, std::move(status));
  // The stall timer starts with the first response byte (OnHeader): a blocking run answers only
  // when the whole answer is ready, so the wait for the first byte is bounded by the deadline
  // alone, not by the stall timeout.
}

absl::Status CurlTransport::Loop::SetHeaders(Transfer& transfer, const HttpHeaders& headers) {
  std::string line;  // One buffer for every line: curl_slist_append copies it.
  for (std::size_t i = 0; i <= headers.size(); ++i) {
    if (i == headers.size()) {
      line = "Expect:";
    } else if (const auto& [name, value] = headers[i]; value.empty()) {
      // "name;" is libcurl's spelling of a header with an empty value.
      line.assign(name).append(";");
    } else {
      line.assign(name).append(": ").append(value);
    }
    curl_slist* appended = curl_slist_append(transfer.headers, line.c_str());
    if (appended == nullptr) {
      return MakeError(absl::StatusCode::kInternal,
                       "cannot build the request headers (out of memory)",
                       "transport_misconfigured");
    }
    transfer.headers = appended;
  }
  return absl::OkStatus();
}

absl::Status CurlTransport::Loop::SetOptions(Transfer& transfer, const HttpRequest& request,
                                             absl::Duration remaining) const {
  EasyOptions set(transfer.easy);
  set.Set(CURLOPT_URL, request.url.c_str());
  set.Set(CURLOPT_PROTOCOLS_STR, "http,https");
  set.Set(CURLOPT_NOSIGNAL, 1L);
  set.Set(CURLOPT_PRIVATE, &transfer);
  set.Set(CURLOPT_ERRORBUFFER, transfer.error);
  set.Set(CURLOPT_HEADERFUNCTION, &Loop::OnHeader);
  set.Set(CURLOPT_HEADERDATA, &transfer);
  set.Set(CURLOPT_WRITEFUNCTION, &Loop::OnWrite);
  set.Set(CURLOPT_WRITEDATA, &transfer);
  set.Set(CURLOPT_HTTPHEADER, transfer.headers);
  set.Set(CURLOPT_PREREQFUNCTION, &Loop::OnPrerequest);
  set.Set(CURLOPT_PREREQDATA, &transfer);
  set.Set(CURLOPT_TCP_KEEPALIVE, 1L);
  set.Set(CURLOPT_OPENSOCKETFUNCTION, &Loop::OnOpenSocket);
  set.Set(CURLOPT_OPENSOCKETDATA, transfer.cache);
  set.Set(CURLOPT_CLOSESOCKETFUNCTION, &Loop::OnCloseSocket);
  set.Set(CURLOPT_CLOSESOCKETDATA, transfer.cache);
  SetConnectionOptions(set);
  // CURLOPT_BUFFERSIZE is left at libcurl's 16 KiB (CURL_MAX_WRITE_SIZE): libcurl 7.88 refuses it
  // while the handle still holds its buffer, which a kept handle does after an HTTP/2 transfer
  // (multi_done returns before freeing it while the connection carries other streams), and a
  // reset handle must then find the size the buffer was made with. The buffer is allocated when
  // the transfer connects and untouched until it reads: at 4 KiB, 10,000 held Runs took the
  // same RSS (gateway_bench, 381 against 383-390 MiB).
  set.Set(CURLOPT_UPLOAD_BUFFERSIZE, 16L * 1024);  // libcurl's minimum.
  set.Set(CURLOPT_MAXFILESIZE_LARGE,
          static_cast<curl_off_t>(std::min<std::size_t>(request.max_response_bytes,
                                                        static_cast<std::size_t>(INT64_MAX))));
  if (options_.http2) {
    set.Set(CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_2TLS));
    // Wait for a connection that may multiplex instead of opening one per transfer in a burst.
    if (absl::StartsWith(request.url, "https:")) set.Set(CURLOPT_PIPEWAIT, 1L);
  } else {
    set.Set(CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_1_1));
  }
  const long connect_ms = ClampedMillis(request.connect_timeout);
  set.Set(CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
  transfer.connect_timeout_first = true;
  if (request.deadline != absl::InfiniteFuture()) {
    const long timeout_ms = ClampedMillis(remaining);
    set.Set(CURLOPT_TIMEOUT_MS, timeout_ms);
    transfer.connect_timeout_first = connect_ms < timeout_ms;
  }
  SetMethod(set, request.method, transfer.body);
  return set.status();
}

CURL* CurlTransport::Loop::TakeHandle() {
  if (spare_handles_.empty()) return curl_easy_init();
  CURL* easy = spare_handles_.back();
  spare_handles_.pop_back();
  return easy;
}

void CurlTransport::Loop::ReleaseHandle(Transfer& transfer, bool reusable) {
  CURL* easy = std::exchange(transfer.easy, nullptr);
  if (!reusable || stopping_ || spare_handles_.size() >= kMaxSpareHandles) {
    curl_easy_cleanup(easy);
    return;
  }
  // curl_easy_reset keeps a share: the next transfer may belong to another pool (or to none).
  // (A transfer whose CURLOPT_SHARE failed never ended normally: its handle is not kept.)
  if (transfer.cache->share != nullptr &&
      curl_easy_setopt(easy, CURLOPT_SHARE, nullptr) != CURLE_OK) {
    curl_easy_cleanup(easy);
    return;
  }
  curl_easy_reset(easy);
  spare_handles_.push_back(easy);
}

CurlTransport::Loop::ConnectionCache* CurlTransport::Loop::CacheFor(const HttpRequest& request) {
  ConnectionPool* pool = &shared_pool_;
  if (!request.connection_pool.empty()) {
    if (auto it = pools_.find(request.connection_pool); it != pools_.end()) {
      pool = &it->second;
    } else if (pools_.size() < kMaxConnectionPools) {
      ConnectionPool added;
      if (AddCache(added) != nullptr) {  // Out of memory: the shared pool still works.
        pool = &pools_.emplace(request.connection_pool, std::move(added)).first->second;
      }
    }
  }
  const bool one_cache = options_.max_connections != 0 || options_.max_cached_connections != 0 ||
                         (options_.http2 && absl::StartsWith(request.url, "https:"));
  if (one_cache) return pool->front().get();
  // More sockets than transfers: an idle connection (over HTTP/1.x a transfer holds one).
  for (const auto& cache : *pool) {
    if (cache->connections > cache->transfers) return cache.get();
  }
  for (const auto& cache : *pool) {
    if (std::max(cache->connections, cache->transfers) < kConnectionsPerCache) return cache.get();
  }
  if (ConnectionCache* added = AddCache(*pool)) return added;
  return pool->back().get();
}

CurlTransport::Loop::ConnectionCache* CurlTransport::Loop::AddCache(ConnectionPool& pool) {
  CURLSH* share = curl_share_init();
  if (share == nullptr) return nullptr;
  if (curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT) != CURLSHE_OK) {
    curl_share_cleanup(share);
    return nullptr;
  }
  pool.push_back(std::make_unique<ConnectionCache>(ConnectionCache{.loop = this, .share = share}));
  return pool.back().get();
}

void CurlTransport::Loop::SetConnectionOptions(EasyOptions& set) const {
  set.Set(CURLOPT_MAXAGE_CONN, WholeSecondsBelow(options_.max_idle_connection_age));
  if (options_.max_connection_lifetime > absl::ZeroDuration()) {
    set.Set(CURLOPT_MAXLIFETIME_CONN,
            std::max(1L, WholeSecondsBelow(options_.max_connection_lifetime)));
  }
  const long tls = options_.tls_min_version == TlsVersion::k1_3 ? CURL_SSLVERSION_TLSv1_3
                                                                : CURL_SSLVERSION_TLSv1_2;
  set.Set(CURLOPT_SSLVERSION, tls);
  if (!options_.ca_file.empty()) set.Set(CURLOPT_CAINFO, options_.ca_file.c_str());
  // Always set: an empty proxy keeps libcurl from reading http_proxy and the like itself.
  set.Set(CURLOPT_PROXY, options_.proxy.c_str());
  if (options_.proxy.empty()) return;
  // The proxy's answer to CONNECT is not the upstream's response: kept from OnHeader, it would
  // mark a request the proxy refused as answered (and a POST as maybe carried out).
  set.Set(CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
  set.Set(CURLOPT_PROXY_SSLVERSION, tls);
  if (!options_.ca_file.empty()) set.Set(CURLOPT_PROXY_CAINFO, options_.ca_file.c_str());
  if (!options_.no_proxy.empty()) set.Set(CURLOPT_NOPROXY, options_.no_proxy.c_str());
  if (!options_.proxy_username.empty()) {
    set.Set(CURLOPT_PROXYAUTH, static_cast<long>(CURLAUTH_BASIC));
    set.Set(CURLOPT_PROXYUSERNAME, options_.proxy_username.c_str());
    set.Set(CURLOPT_PROXYPASSWORD, options_.proxy_password.c_str());
  }
}

void CurlTransport::Loop::SetMethod(EasyOptions& set, const std::string& method,
                                    const std::string& body) {
  if (method == "GET") {
    set.Set(CURLOPT_HTTPGET, 1L);
    return;
  }
  if (method != "POST") set.Set(CURLOPT_CUSTOMREQUEST, method.c_str());
  if (method == "POST" || !body.empty()) {
    set.Set(CURLOPT_POSTFIELDS, body.data());
    set.Set(CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  }
}

void CurlTransport::Loop::ArmStall(Transfer& transfer, SteadyTime when) {
  if (transfer.stall_armed || transfer.stall_timeout == SteadyClock::duration::zero()) return;
  transfer.stall_armed = true;
  stall_heap_.emplace(when, transfer.id);
}

void CurlTransport::Loop::ResumeTransfer(Transfer& transfer) {
  if (!transfer.paused) return;
  transfer.paused = false;
  transfer.last_activity = SteadyClock::now();
  ArmStall(transfer, transfer.last_activity + transfer.stall_timeout);
  // The handler delivers what it held back; it may pause again at once.
  if (!transfer.handler->OnData(absl::string_view())) {
    transfer.paused = true;
    return;
  }
  if (transfer.held_result.has_value()) {
    // No CURLPAUSE_CONT needed: removing a paused handle is legal (curl_multi_remove_handle(3)),
    // and libcurl 7.88 / >= 8.8 report no DONE while receiving is paused, so nothing is held back.
    Complete(transfer, StatusFor(transfer, *transfer.held_result));
    return;
  }
  // May call OnWrite at once with the bytes libcurl kept (the skipped ones first).
  curl_easy_pause(transfer.easy, CURLPAUSE_CONT);
  if (transfer.http2) http2_stream_resumed_ = true;
}

void CurlTransport::Loop::HandleCommands() {
  for (Command& command : mailbox_->TakeAll()) {
    switch (command.kind) {
      case Command::Kind::kStart:
        if (stopping_) {
          Finish(command.handler, command.pool, TransportShutdownStatus());
        } else {
          StartTransfer(command);
        }
        break;
      case Command::Kind::kCancel:
        if (Transfer* transfer = Find(command.id)) {
          Complete(*transfer, TransferCancelledStatus(MaySendHaveActed(*transfer)));
        }
        break;
      case Command::Kind::kResume:
        if (Transfer* transfer = Find(command.id)) ResumeTransfer(*transfer);
        break;
      case Command::Kind::kStop:
        stopping_ = true;
        break;
      case Command::Kind::kTimer:
        timers_.emplace(SteadyClock::now() + absl::ToChronoNanoseconds(command.delay),
                        std::move(command.task));
        break;
    }
  }
}

void CurlTransport::Loop::Complete(Transfer& transfer, absl::Status status) {
  // libcurl's clock for the transfer starts when this loop hands it to libcurl, so it leaves
  // out the wait in the mailbox; 0 when it never began.
  curl_off_t total_us = 0;
  if (curl_easy_getinfo(transfer.easy, CURLINFO_TOTAL_TIME_T, &total_us) != CURLE_OK) {
    total_us = 0;
  }
  curl_multi_remove_handle(multi_, transfer.easy);  // Closes an unfinished HTTP/1 connection.
  if (transfer.http2) --http2_transfers_;
  --transfer.cache->transfers;
  ReleaseHandle(transfer, status.ok() && !transfer.paused && !transfer.yielded &&
                              !transfer.held_result.has_value());
  curl_slist_free_all(transfer.headers);
  std::shared_ptr<HttpTransferHandler> handler = std::move(transfer.handler);
  const uint32_t pool = transfer.pool;
  transfers_.erase(transfer.id);  // `transfer` is gone from here on.
  if (total_us > 0) handler->OnUpstreamTime(absl::Microseconds(total_us));
  Finish(handler, pool, std::move(status));
}

void CurlTransport::Loop::Finish(const std::shared_ptr<HttpTransferHandler>& handler, uint32_t pool,
                                 absl::Status status) {
  Release(pool);  // First, so that a handler may start its next transfer in the freed slot.
  handler->OnComplete(std::move(status));
}

bool CurlTransport::Loop::Admit() {
  int64_t current = admitted_->load(std::memory_order_relaxed);
  do {
    if (current >= options_.max_transfers) return false;
  } while (!admitted_->compare_exchange_weak(current, current + 1, std::memory_order_relaxed));
  in_flight_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

absl::Status CurlTransport::Loop::TransportFailure(const Transfer& transfer,
                                                   const std::string& message,
                                                   absl::string_view reason,
                                                   std::map<std::string, std::string> metadata) {
  metadata["headers_received"] = transfer.headers_delivered ? "true" : "false";
  metadata["response_started"] = transfer.response_started ? "true" : "false";
  metadata["request_sent"] = MaySendHaveActed(transfer) ? "true" : "false";
  if (transfer.response_started && !transfer.idempotent) {
    return MakeError(absl::StatusCode::kInternal,
                     absl::StrCat(message, "; the upstream may have carried out the request"),
                     reason, metadata);
  }
  return MakeError(absl::StatusCode::kUnavailable, message, reason, metadata);
}

absl::Status CurlTransport::Loop::StatusFor(const Transfer& transfer, CURLcode result) const {
  if (result == CURLE_OK) return absl::OkStatus();
  std::map<std::string, std::string> metadata = {
      {"curl_code", absl::StrCat(static_cast<int>(result))},
      {"headers_received", transfer.headers_delivered ? "true" : "false"},
      {"response_started", transfer.response_started ? "true" : "false"},
      {"request_sent", MaySendHaveActed(transfer) ? "true" : "false"}};
  if (transfer.refused_sends > 0)
    metadata["streams_refused"] = absl::StrCat(transfer.refused_sends);
  // libcurl's own text names hosts, addresses and ports: for the log (the call's trace), never
  // for the caller.
  const std::string detail = transfer.error[0] != '\0' ? std::string(transfer.error)
                                                       : std::string(curl_easy_strerror(result));
  auto error = [&](absl::StatusCode code, absl::string_view what, absl::string_view reason) {
    absl::Status status = MakeError(code, what, reason, metadata);
    SetInternalDetail(status, detail);
    return status;
  };
  auto failure = [&](absl::string_view what, absl::string_view reason) {
    absl::Status status = TransportFailure(transfer, std::string(what), reason, metadata);
    SetInternalDetail(status, detail);
    return status;
  };
  if (transfer.resend_refused) {
    metadata["resend_refused"] = "true";
    metadata["connection_reused"] = "true";
    return failure(
        "the upstream connection closed before an answer to a request that was already sent; "
        "it was not sent again, since the upstream may have carried it out",
        "upstream_reset");
  }
  if (transfer.too_large || result == CURLE_FILESIZE_EXCEEDED) {
    return MakeError(
        absl::StatusCode::kInternal,
        absl::StrCat("the upstream response exceeds ", transfer.max_body_bytes, " bytes"),
        "upstream_response_too_large", metadata);
  }
  // The egress proxy answered CONNECT with an error (407: its credentials; 403: not allowed;
  // 502/503: it could not reach the upstream): nothing reached the upstream.
  long proxy_status = 0;
  curl_easy_getinfo(transfer.easy, CURLINFO_HTTP_CONNECTCODE, &proxy_status);
  if (proxy_status >= 300 && !transfer.response_started) {
    metadata["proxy_status"] = absl::StrCat(proxy_status);
    return failure(absl::StrCat("the egress proxy refused the tunnel to the upstream (HTTP ",
                                proxy_status, ")"),
                   "upstream_proxy_error");
  }
  switch (result) {
    case CURLE_COULDNT_RESOLVE_PROXY:
      return failure("cannot resolve the egress proxy", "upstream_proxy_error");
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
      return failure("cannot connect to the upstream", "upstream_unreachable");
    case CURLE_OPERATION_TIMEDOUT: {
      curl_off_t pretransfer = 0;
      curl_easy_getinfo(transfer.easy, CURLINFO_PRETRANSFER_TIME_T, &pretransfer);
      if (pretransfer == 0 && transfer.connect_timeout_first) {
        return failure("timed out connecting to the upstream", "upstream_unreachable");
      }
      return error(absl::StatusCode::kDeadlineExceeded,
                   "the deadline passed before the upstream answered", "upstream_timeout");
    }
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
      return failure("TLS with the upstream failed", "upstream_tls_error");
    case CURLE_GOT_NOTHING:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_BAD_CONTENT_ENCODING:
      // The upstream refused the latest send's stream and libcurl gave up on it (its 5 tries, or
      // a lone stream above a GOAWAY, which libcurl 7.88 reports as an HTTP/2 error).
      if (transfer.latest_send_refused) {
        return failure("the upstream refused the request's HTTP/2 stream (it did not process it)",
                       "upstream_refused_stream");
      }
      if (!transfer.response_started) {
        return failure("the upstream connection broke before a response", "upstream_reset");
      }
      return failure(transfer.headers_delivered
                         ? "the upstream connection broke after the response headers"
                         : "the upstream connection broke during the response headers",
                     "upstream_reset");
    case CURLE_UNSUPPORTED_PROTOCOL:
      // Also how libcurl 7.88 refuses an answer without an HTTP status line (HTTP/0.9, or some
      // other protocol on the upstream's port). Once the request went out, that is the upstream
      // answering wrongly, not our configuration: the same reason as an answer we cannot read,
      // and the circuit breaker counts it (ClassifyForBreaker).
      if (MaySendHaveActed(transfer)) {
        return error(
            transfer.idempotent ? absl::StatusCode::kUnavailable : absl::StatusCode::kInternal,
            transfer.idempotent
                ? "the upstream answered with something that is not HTTP"
                : "the upstream answered with something that is not HTTP; the upstream may have "
                  "carried out the request",
            "upstream_bad_response");
      }
      [[fallthrough]];
    case CURLE_URL_MALFORMAT:
    case CURLE_BAD_FUNCTION_ARGUMENT:
    case CURLE_UNKNOWN_OPTION:
    case CURLE_OUT_OF_MEMORY:
      return error(absl::StatusCode::kInternal, "the upstream request could not be made",
                   "transport_misconfigured");
    default:
      return failure("the upstream transfer failed", "upstream_transport_error");
  }
}

void CurlTransport::Loop::DrainDone() {
  int left = 0;
  while (CURLMsg* message = curl_multi_info_read(multi_, &left)) {
    if (message->msg != CURLMSG_DONE) continue;
    Transfer* transfer = nullptr;
    curl_easy_getinfo(message->easy_handle, CURLINFO_PRIVATE, &transfer);
    if (transfer == nullptr) continue;
    const CURLcode result = message->data.result;
    if (transfer->paused && result == CURLE_OK) {
      transfer->held_result = result;  // Completes after the handler's Resume.
      continue;
    }
    Complete(*transfer, StatusFor(*transfer, result));
  }
}

void CurlTransport::Loop::ReadHttp2ConnectionsAgain() {
  std::vector<curl_socket_t> sockets;
  sockets.swap(read_in_turn_);
  const bool resumed = std::exchange(http2_stream_resumed_, false);
  if (http2_transfers_ == 0) return;  // Over HTTP/1.x a connection carries one transfer.
  // A resumed stream's frames may be on any connection (which one is not known here).
  if (resumed) {
    for (const auto& [socket, watched] : sockets_) sockets.push_back(socket);
  }
  if (sockets.empty()) return;
  std::sort(sockets.begin(), sockets.end());
  sockets.erase(std::unique(sockets.begin(), sockets.end()), sockets.end());
  int running = 0;
  for (const curl_socket_t socket : sockets) {
    // Only a connection libcurl still reads; with nothing buffered, this costs libcurl's pass
    // over its transfers and one recv that returns EAGAIN.
    const auto watched = sockets_.find(socket);
    if (watched == sockets_.end() || !watched->second.wanted ||
        (watched->second.events & EPOLLIN) == 0) {
      continue;
    }
    const uint64_t delivered = delivered_bytes_;
    curl_multi_socket_action(multi_, socket, CURL_CSELECT_IN, &running);
    // It delivered: more may be buffered, so it is read again in the next turn.
    if (delivered_bytes_ != delivered) read_in_turn_.push_back(socket);
  }
  DrainDone();
}

void CurlTransport::Loop::CheckStalls(SteadyTime now) {
  while (!stall_heap_.empty() && stall_heap_.top().first <= now) {
    const uint64_t id = stall_heap_.top().second;
    stall_heap_.pop();
    Transfer* transfer = Find(id);
    if (transfer == nullptr) continue;
    transfer->stall_armed = false;
    if (transfer->paused) continue;  // Re-armed by Resume.
    const SteadyTime due = transfer->last_activity + transfer->stall_timeout;
    if (due > now) {
      ArmStall(*transfer, due);
      continue;
    }
    Complete(*transfer,
             TransportFailure(
                 *transfer,
                 absl::StrCat("the upstream sent nothing for ",
                              absl::FormatDuration(absl::FromChrono(transfer->stall_timeout))),
                 "upstream_stalled", {}));
  }
}

int CurlTransport::Loop::NextTimeoutMs(SteadyTime now) const {
  std::optional<SteadyTime> next = curl_timer_;
  if (!stall_heap_.empty() && (!next || stall_heap_.top().first < *next)) {
    next = stall_heap_.top().first;
  }
  if (!timers_.empty() && (!next || timers_.begin()->first < *next)) {
    next = timers_.begin()->first;
  }
  if (!next) return -1;
  if (*next <= now) return 0;
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(*next - now).count();
  return static_cast<int>(std::min<int64_t>(ms, 60 * 60 * 1000));
}

void CurlTransport::Loop::StopAll() {
  mailbox_->Close();
  HandleCommands();  // Whatever was queued before Close: Starts complete with the shutdown status.
  while (!transfers_.empty()) {
    Transfer& transfer = *transfers_.begin()->second;
    Complete(transfer, TransportShutdownStatus(MaySendHaveActed(transfer)));
  }
  // Early, so that whoever waits on a timer learns of the shutdown (their Start now completes
  // inline with the shutdown status; RunAfter now returns false).
  RunTimers(std::nullopt);
}

void CurlTransport::Loop::RunTimers(std::optional<SteadyTime> now) {
  while (!timers_.empty() && (!now || timers_.begin()->first <= *now)) {
    absl::AnyInvocable<void()&&> task = std::move(timers_.begin()->second);
    timers_.erase(timers_.begin());
    std::move(task)();
  }
}

void CurlTransport::Loop::Run() {
  // Named for `top -H`, perf and /proc/PID/task/*/comm (15 characters at most).
  pthread_setname_np(pthread_self(), absl::StrCat("curl-loop-", index_).c_str());
  ObserveH2SessionsOnThisThread(this);
  epoll_event events[kMaxEvents];
  int running = 0;
  while (true) {
    ++turn_;
    const int ready = epoll_wait(
        epoll_fd_, events, kMaxEvents,
        yielded_.empty() && read_in_turn_.empty() ? NextTimeoutMs(SteadyClock::now()) : 0);
    if (ready < 0 && errno != EINTR) std::abort();  // EBADF/EINVAL: a broken invariant.
    bool woken = false;
    for (int i = 0; i < ready; ++i) {
      const int fd = events[i].data.fd;
      if (fd == wake_fd_) {
        uint64_t count = 0;
        ssize_t got = read(wake_fd_, &count, sizeof(count));
        (void)got;
        woken = true;
        continue;
      }
      auto watched = sockets_.find(fd);
      if (watched == sockets_.end() || !watched->second.wanted) {
        // An idle connection the upstream closed or wrote to: out of epoll until libcurl wants
        // it again (level-triggered, it would wake the loop again and again).
        epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
        if (watched != sockets_.end()) watched->second.registered = false;
        continue;
      }
      int mask = 0;
      if (events[i].events & EPOLLIN) {
        mask |= CURL_CSELECT_IN;
        read_in_turn_.push_back(fd);
      }
      if (events[i].events & EPOLLOUT) mask |= CURL_CSELECT_OUT;
      if (events[i].events & (EPOLLERR | EPOLLHUP)) mask |= CURL_CSELECT_ERR;
      curl_multi_socket_action(multi_, fd, mask, &running);
    }
    if (woken) {
      HandleCommands();
      UpdateConnectionBound();
    }
    if (stopping_) break;
    if (curl_timer_ && *curl_timer_ <= SteadyClock::now()) {
      curl_timer_.reset();
      curl_multi_socket_action(multi_, CURL_SOCKET_TIMEOUT, 0, &running);
    }
    DrainDone();
    ReadHttp2ConnectionsAgain();
    UpdateConnectionBound();
    CheckStalls(SteadyClock::now());
    RunTimers(SteadyClock::now());
    ResumeYielded();
  }
  StopAll();
  ObserveH2SessionsOnThisThread(nullptr);
}

CurlTransport::CurlTransport(std::vector<std::shared_ptr<Loop>> loops,
                             std::shared_ptr<PoolLoads> loads)
    : loops_(std::move(loops)), loads_(std::move(loads)) {
  absl::MutexLock lock(&shutdown_mu_);
  for (const std::shared_ptr<Loop>& loop : loops_) {
    // The thread co-owns its loop, so that a Shutdown from the loop thread can let it finish.
    threads_.emplace_back([loop] { loop->Run(); });
  }
}

absl::StatusOr<std::unique_ptr<CurlTransport>> CurlTransport::Create(
    const CurlTransportOptions& options) {
  if (options.max_transfers < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CurlTransportOptions.max_transfers must be at least 1, not ", options.max_transfers));
  }
  if (options.event_loops < 1 || options.event_loops > kMaxEventLoops) {
    return absl::InvalidArgumentError(absl::StrCat("CurlTransportOptions.event_loops must be 1..",
                                                   kMaxEventLoops, ", not ", options.event_loops));
  }
  const long loops = options.event_loops;
  // The bounds on connections are the transport's: each loop has its share.
  CurlTransportOptions per_loop = options;
  if (options.max_connections > 0) {
    per_loop.max_connections = (options.max_connections + loops - 1) / loops;
  }
  if (options.max_cached_connections > 0) {
    per_loop.max_cached_connections = (options.max_cached_connections + loops - 1) / loops;
  }
  const long spare = std::max(kMinSpareConnectionsPerLoop, kHttp2SpareConnections / loops);
  auto admitted = std::make_shared<std::atomic<int64_t>>(0);
  auto loads = std::make_shared<PoolLoads>(static_cast<std::size_t>(loops));
  std::vector<std::shared_ptr<Loop>> created;
  for (long i = 0; i < loops; ++i) {
    absl::StatusOr<std::unique_ptr<Loop>> loop =
        Loop::Create(per_loop, spare, admitted, loads, static_cast<std::size_t>(i));
    if (!loop.ok()) return loop.status();  // The loops made so far never ran.
    created.push_back(*std::move(loop));
  }
  return std::unique_ptr<CurlTransport>(new CurlTransport(std::move(created), std::move(loads)));
}

CurlTransport::~CurlTransport() { Shutdown(); }

void CurlTransport::Shutdown() {
  absl::MutexLock lock(&shutdown_mu_);
  if (threads_.empty()) return;
  Command stop;
  stop.kind = Command::Kind::kStop;
  for (const std::shared_ptr<Loop>& loop : loops_) loop->mailbox()->Post(stop);
  for (std::thread& thread : threads_) {
    if (thread.get_id() == std::this_thread::get_id()) {
      // Called from a handler (e.g. the last reference dropped on this loop's thread): the loop
      // stops once that handler returns, and the thread's own reference keeps it alive until
      // then.
      thread.detach();
    } else {
      thread.join();
    }
  }
  threads_.clear();
}

int64_t CurlTransport::TransfersInFlight() const {
  int64_t total = 0;
  for (const std::shared_ptr<Loop>& loop : loops_) total += loop->in_flight();
  return total;
}

CurlTransport::Loop& CurlTransport::PickLoop() {
  // The loop with the fewest transfers in flight, the first of them on a tie (a timer's task is
  // short; transfers go by PoolLoads::Pick).
  Loop* best = loops_[0].get();
  int64_t best_load = best->in_flight();
  for (std::size_t i = 1; i < loops_.size() && best_load > 0; ++i) {
    Loop* loop = loops_[i].get();
    const int64_t load = loop->in_flight();
    if (load < best_load) {
      best = loop;
      best_load = load;
    }
  }
  return *best;
}

std::shared_ptr<HttpTransfer> CurlTransport::Start(HttpRequest request,
                                                   std::shared_ptr<HttpTransferHandler> handler) {
  const uint64_t id = next_id_.fetch_add(1, std::memory_order_relaxed);
  const PoolLoads::Placement placement = loads_->Pick(request.connection_pool, SteadyClock::now());
  const uint32_t pool = placement.pool;
  Loop& loop = *loops_[placement.loop];
  auto handle = std::make_shared<CurlTransferHandle>(loop.mailbox(), id);
  Command command;
  command.kind = Command::Kind::kStart;
  command.id = id;
  command.pool = pool;
  command.request = std::move(request);
  command.handler = handler;
  if (!loop.Admit()) {
    loads_->Done(placement.loop, pool, SteadyClock::now());
    handler->OnComplete(TransfersExhaustedStatus(loop.max_transfers()));
    return handle;
  }
  if (!loop.mailbox()->Post(command)) {
    loop.Release(pool);
    handler->OnComplete(TransportShutdownStatus());
  }
  return handle;
}

bool CurlTransport::RunAfter(absl::Duration delay, absl::AnyInvocable<void() &&> task) {
  Command command;
  command.kind = Command::Kind::kTimer;
  command.delay = std::max(delay, absl::ZeroDuration());
  command.task = std::move(task);
  return PickLoop().mailbox()->Post(command);
}

}  // namespace copilot::gateway
