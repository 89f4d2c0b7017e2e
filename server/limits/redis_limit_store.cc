#include "server/limits/redis_limit_store.h"

#include <hiredis/hiredis.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <optional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "server/common/log.h"
#include "server/limits/hiredis_transport.h"
#include "server/limits/redis_replies.h"
#include "server/limits/redis_scripts.h"
#include "server/limits/redis_transport.h"
#include "server/limits/tls_redis_transport.h"

namespace copilot::gateway {
namespace {

using SteadyClock = std::chrono::steady_clock;

// The scripts, indexed by Script; kCommand is a plain command (ZREM).
enum Script : int {
  kGcra = 0,
  kWindows = 1,
  kAcquireSlot = 2,
  kCounters = 3,
  kRequestIdClaim = 4,
  kRequestIdFinish = 5,
  kCommand = 6
};
constexpr const char* kScriptText[] = {
    redis_scripts::kGcra,     redis_scripts::kWindows,        redis_scripts::kAcquireSlot,
    redis_scripts::kCounters, redis_scripts::kRequestIdClaim, redis_scripts::kRequestIdFinish};
constexpr const char* kScriptName[] = {
    "GCRA script",     "sliding window script",   "concurrency slot script",
    "counters script", "request_id claim script", "request_id finish script"};
constexpr int kScriptCount = 6;

// The lease of a slot with no maximum: decided inline, never stored.
constexpr char kUnlimitedLease[] = "unlimited";

std::string FormatDouble(double value) { return absl::StrFormat("%.17g", value); }

SteadyClock::duration ToSteady(absl::Duration duration) {
  return std::chrono::duration_cast<SteadyClock::duration>(absl::ToChronoNanoseconds(duration));
}

// Consumes a SIGPIPE raised on this thread by a write to a closed socket (blocked in Run).
void DrainSigpipe() {
  sigset_t pipe_set;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  const timespec zero{0, 0};
  while (sigtimedwait(&pipe_set, nullptr, &zero) == SIGPIPE) {
  }
}

bool ParseHex(char c, int& value) {
  if (c >= '0' && c <= '9') {
    value = c - '0';
  } else if (c >= 'a' && c <= 'f') {
    value = c - 'a' + 10;
  } else if (c >= 'A' && c <= 'F') {
    value = c - 'A' + 10;
  } else {
    return false;
  }
  return true;
}

absl::StatusOr<std::string> PercentDecode(absl::string_view text, absl::string_view part) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out.push_back(text[i]);
      continue;
    }
    int high = 0;
    int low = 0;
    if (i + 2 >= text.size() || !ParseHex(text[i + 1], high) || !ParseHex(text[i + 2], low)) {
      return absl::InvalidArgumentError(
          absl::StrCat("redis url: invalid percent-encoding in the ", part));
    }
    out.push_back(static_cast<char>(high * 16 + low));
    i += 2;
  }
  return out;
}

absl::Status Validate(const RedisLimitStoreOptions& options) {
  auto invalid = [](absl::string_view field, absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("redis.", field, ": ", why));
  };
  if (options.host.empty()) return invalid("host", "must not be empty");
  if (options.port < 1 || options.port > 65535) return invalid("port", "must be in 1..65535");
  if (options.database < 0) return invalid("database", "must be >= 0");
  if (!options.username.empty() && options.password.empty()) {
    return invalid("password", "must be set with a username");
  }
  if (options.connect_timeout <= absl::ZeroDuration()) {
    return invalid("connect_timeout", "must be positive");
  }
  if (options.command_timeout <= absl::ZeroDuration()) {
    return invalid("command_timeout", "must be positive");
  }
  if (options.key_prefix.empty() || absl::StrContains(options.key_prefix, '{') ||
      absl::StrContains(options.key_prefix, '}')) {
    return invalid("key_prefix", "must be non-empty and contain no braces");
  }
  if (options.initial_backoff <= absl::ZeroDuration()) {
    return invalid("initial_backoff", "must be positive");
  }
  if (options.max_backoff < options.initial_backoff) {
    return invalid("max_backoff", "must be >= initial_backoff");
  }
  if (options.health_check_interval <= absl::ZeroDuration()) {
    return invalid("health_check_interval", "must be positive");
  }
  if (options.max_pipeline < 1) return invalid("max_pipeline", "must be >= 1");
  const RedisTlsOptions& tls = options.tls;
  if (!tls.enabled) {
    for (const auto& [field, value] :
         {std::pair<absl::string_view, const std::string&>{"ca_file", tls.ca_file},
          {"cert_file", tls.cert_file},
          {"key_file", tls.key_file}}) {
      if (!value.empty()) return invalid(field, "only used with TLS (a rediss:// url)");
    }
    return absl::OkStatus();
  }
  if (!tls.cert_file.empty() && tls.key_file.empty()) {
    return invalid("key_file", "required with cert_file");
  }
  if (tls.cert_file.empty() && !tls.key_file.empty()) {
    return invalid("cert_file", "required with key_file");
  }
  return CheckRedisTlsFiles(tls);
}

}  // namespace

// One queued decision (or a release, which has no callback).
struct RedisLimitStore::Request {
  Script script = kCommand;
  // For a script: its keys (num_keys of them), then its ARGV. For kCommand: the whole command.
  std::vector<std::string> args;
  std::size_t num_keys = 1;
  StoreCallback<StepResult> step_done;
  StoreCallback<SlotResult> slot_done;
  StoreCallback<CounterResult> counters_done;
  SharedRequestIds::ClaimCallback claim_done;
  std::string lease_id;
  // When it was put in the queue (to fail it instead of sending it once it waited too long).
  SteadyClock::time_point queued_at;
  // A release (kCommand) that failed is queued again until then: its lease would otherwise hold
  // a slot of every replica until it expires.
  SteadyClock::time_point retry_until;
  bool failed = false;

  // Someone waits for its answer (not a release or a request_id's finish).
  bool Awaited() const { return script != kCommand && script != kRequestIdFinish; }

  void Fail(const absl::Status& status) {
    failed = true;
    if (claim_done) {
      std::move(claim_done)(status);
      claim_done = nullptr;
    }
    if (counters_done) {
      std::move(counters_done)(status);
      counters_done = nullptr;
    }
    if (step_done) {
      std::move(step_done)(status);
      step_done = nullptr;
    }
    if (slot_done) {
      std::move(slot_done)(status);
      slot_done = nullptr;
    }
  }

  // Runs the callback with the decision in `reply`, or UNAVAILABLE for an error reply.
  void Complete(const redisReply& reply) {
    if (script == kCommand || script == kRequestIdFinish) return;  // Fire and forget.
    const char* name = kScriptName[script];
    if (script == kRequestIdClaim) {
      absl::StatusOr<SharedRequestIds::Lookup> claim = RequestIdClaimFromReply(reply, name);
      if (!claim.ok()) return Fail(claim.status());
      std::move(claim_done)(*std::move(claim));
      claim_done = nullptr;
      return;
    }
    if (script == kCounters) {
      absl::StatusOr<CounterResult> result = CounterResultFromReply(reply, name, num_keys);
      if (!result.ok()) return Fail(result.status());
      std::move(counters_done)(*std::move(result));
      counters_done = nullptr;
      return;
    }
    if (script == kAcquireSlot) {
      absl::StatusOr<bool> acquired = SlotAcquiredFromReply(reply, name);
      if (!acquired.ok()) return Fail(acquired.status());
      SlotResult result;
      if (*acquired) {
        result.acquired = true;
        result.lease_id = lease_id;
      }
      std::move(slot_done)(std::move(result));
      slot_done = nullptr;
      return;
    }
    absl::StatusOr<StepResult> result = StepResultFromReply(reply, name);
    if (!result.ok()) return Fail(result.status());
    std::move(step_done)(*result);
    step_done = nullptr;
  }
};

// The connection and everything else the store's thread owns: not thread-safe, used by that
// thread only.
class RedisLimitStore::Connection {
 public:
  Connection(const RedisLimitStoreOptions& options, std::atomic<bool>& healthy)
      : options_(options),
        healthy_(healthy),
        endpoint_(absl::StrCat(options.host, ":", options.port)),
        next_attempt_(SteadyClock::now()) {}

  // When the last connection attempt ended (its time is not a queue's: a decision that waited
  // for it gets the attempt's outcome, not "waited for its turn").
  SteadyClock::time_point attempt_ended() const { return attempt_ended_; }

  // When the thread must act without a request: the next connection attempt, or the next
  // health check of an idle connection.
  SteadyClock::time_point NextTimedWork() const {
    if (transport_ == nullptr) return next_attempt_;
    return last_round_trip_ + ToSteady(options_.health_check_interval);
  }

  // Connects when due, then sends `batch` (or checks an idle connection's health).
  void Serve(std::vector<std::unique_ptr<Request>>& batch) {
    if (transport_ == nullptr && SteadyClock::now() >= next_attempt_) Connect();
    if (batch.empty()) {
      if (transport_ != nullptr && SteadyClock::now() >= NextTimedWork()) Ping();
      return;
    }
    if (transport_ == nullptr) {
      const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(
          std::max(next_attempt_ - SteadyClock::now(), SteadyClock::duration::zero()));
      const absl::Status status = absl::UnavailableError(
          absl::StrCat(last_error_, "; next connection attempt in ", wait.count(), "ms"));
      for (std::unique_ptr<Request>& request : batch) request->Fail(status);
      return;
    }
    Execute(batch);
  }

 private:
  void Connect() {
    absl::StatusOr<std::unique_ptr<RedisTransport>> transport =
        options_.tls.enabled ? ConnectTlsRedis(options_) : ConnectHiredis(options_);
    if (!transport.ok()) {
      ConnectFailed(absl::StrCat("cannot connect to redis at ", endpoint_, ": ",
                                 transport.status().message()));
      return;
    }
    // AUTH, SELECT and the scripts in one round trip.
    std::vector<std::vector<std::string>> commands;
    if (!options_.password.empty()) {
      if (options_.username.empty()) {
        commands.push_back({"AUTH", options_.password});
      } else {
        commands.push_back({"AUTH", options_.username, options_.password});
      }
    }
    if (options_.database != 0) commands.push_back({"SELECT", absl::StrCat(options_.database)});
    for (const char* script : kScriptText) commands.push_back({"SCRIPT", "LOAD", script});
    for (const std::vector<std::string>& command : commands) (*transport)->Append(command);
    std::string shas[kScriptCount];
    for (size_t i = 0; i < commands.size(); ++i) {
      absl::StatusOr<RedisReply> reply = (*transport)->ReadReply();
      if (!reply.ok()) {
        transport->reset();
        DrainSigpipe();
        // A TLS port resets (or answers garbage to) a plain connection's first command.
        const bool maybe_tls =
            !options_.tls.enabled && i == 0 && absl::IsUnavailable(reply.status());
        ConnectFailed(
            absl::StrCat("redis at ", endpoint_, " did not complete ", commands[i][0], ": ",
                         reply.status().message(),
                         maybe_tls ? " (if the server expects TLS, use a rediss:// url)" : ""));
        return;
      }
      if ((*reply)->type == REDIS_REPLY_ERROR) {
        // The error text never contains the password (Redis does not echo it).
        ConnectFailed(absl::StrCat("redis at ", endpoint_, " refused ", commands[i][0], ": ",
                                   absl::string_view((*reply)->str, (*reply)->len)));
        return;
      }
      const size_t first_script = commands.size() - kScriptCount;
      if (i >= first_script) {
        if ((*reply)->type != REDIS_REPLY_STRING) {
          ConnectFailed(absl::StrCat("redis at ", endpoint_, ": unexpected SCRIPT LOAD reply"));
          return;
        }
        shas[i - first_script] = std::string((*reply)->str, (*reply)->len);
      }
    }
    transport_ = *std::move(transport);
    for (int script = 0; script < kScriptCount; ++script) shas_[script] = std::move(shas[script]);
    backoff_ = absl::ZeroDuration();
    last_round_trip_ = SteadyClock::now();
    refusing_ = false;
    attempt_ended_ = last_round_trip_;
    SetHealthy(true, "");
  }

  void ConnectFailed(std::string reason) {
    backoff_ = backoff_ == absl::ZeroDuration() ? options_.initial_backoff
                                                : std::min(backoff_ * 2, options_.max_backoff);
    attempt_ended_ = SteadyClock::now();
    next_attempt_ = attempt_ended_ + ToSteady(backoff_);
    last_error_ = std::move(reason);
    SetHealthy(false, last_error_);
  }

  // Closes a broken connection. After a timeout the server may be stalled: wait the initial
  // back-off before reconnecting; after a closed connection try again at once.
  void Drop(std::string reason, bool timed_out) {
    transport_.reset();
    DrainSigpipe();
    backoff_ = timed_out ? options_.initial_backoff : absl::ZeroDuration();
    next_attempt_ = SteadyClock::now() + ToSteady(backoff_);
    last_error_ = std::move(reason);
    SetHealthy(false, last_error_);
  }

  // Publishes the health and logs each change (also the first state, so a gateway that
  // starts without Redis says so).
  void SetHealthy(bool healthy, const std::string& reason) {
    healthy_.store(healthy, std::memory_order_relaxed);
    if (reported_.has_value() && *reported_ == healthy) return;
    reported_ = healthy;
    if (healthy) {
      nlohmann::ordered_json fields = {{"redis", endpoint_}};
      if (options_.tls.enabled) fields["tls"] = true;  // Verified (else no connection).
      Log(LogLevel::kInfo, "redis limit store connected", fields);
    } else {
      Log(LogLevel::kWarning, "redis limit store unavailable",
          {{"redis", endpoint_}, {"error", reason}});
    }
  }

  // Queues `request` on the connection: EVALSHA, or EVAL with the script's text.
  bool AppendRequest(const Request& request, bool eval) {
    if (request.script == kCommand) return transport_->Append(request.args);
    std::vector<std::string> command;
    command.reserve(request.args.size() + 3);
    command.emplace_back(eval ? "EVAL" : "EVALSHA");
    command.push_back(eval ? kScriptText[request.script] : shas_[request.script]);
    command.push_back(absl::StrCat(request.num_keys));
    command.insert(command.end(), request.args.begin(), request.args.end());
    return transport_->Append(command);
  }

  // Sends `batch` in one round trip (plus one for scripts the server forgot) and completes
  // every request in it.
  void Execute(std::vector<std::unique_ptr<Request>>& batch) {
    std::vector<Request*> sent;
    for (std::unique_ptr<Request>& request : batch) {
      if (AppendRequest(*request, /*eval=*/false)) {
        sent.push_back(request.get());
      } else {
        request->Fail(absl::UnavailableError("redis: out of memory formatting a command"));
      }
    }
    std::vector<Request*> forgotten;  // NOSCRIPT: resent with EVAL.
    if (!ReadReplies(sent, &forgotten) || forgotten.empty()) return;
    std::vector<Request*> resent;
    for (Request* request : forgotten) {
      if (AppendRequest(*request, /*eval=*/true)) {
        resent.push_back(request);
      } else {
        request->Fail(absl::UnavailableError("redis: out of memory formatting a command"));
      }
    }
    ReadReplies(resent, nullptr);
  }

  // Reads one reply per request in `requests` and completes it; NOSCRIPT replies go to
  // `forgotten` when not null. On a connection failure fails the rest, drops the connection
  // and returns false.
  bool ReadReplies(const std::vector<Request*>& requests, std::vector<Request*>* forgotten) {
    bool read_only = false;
    std::string refusing;  // Redis refuses scripts as a whole (out of memory, disk, busy...).
    for (size_t i = 0; i < requests.size(); ++i) {
      absl::StatusOr<RedisReply> result = transport_->ReadReply();
      if (!result.ok()) {
        std::string reason = absl::StrCat("redis at ", endpoint_, ": ", result.status().message());
        const absl::Status status = absl::UnavailableError(reason);
        Drop(std::move(reason), absl::IsDeadlineExceeded(result.status()));
        for (size_t j = i; j < requests.size(); ++j) requests[j]->Fail(status);
        return false;
      }
      const RedisReply reply = *std::move(result);
      if (reply->type == REDIS_REPLY_ERROR) {
        const absl::string_view error(reply->str, reply->len);
        if (forgotten != nullptr && absl::StartsWith(error, "NOSCRIPT")) {
          forgotten->push_back(requests[i]);
          continue;
        }
        // A replica after a failover: reconnect (the address may lead to the new primary).
        if (absl::StartsWith(error, "READONLY")) read_only = true;
        for (const absl::string_view state :
             {"OOM", "MISCONF", "BUSY", "LOADING", "NOREPLICAS", "MASTERDOWN"}) {
          if (absl::StartsWith(error, state)) refusing = std::string(error.substr(0, 200));
        }
      }
      requests[i]->Complete(*reply);
    }
    last_round_trip_ = SteadyClock::now();
    if (read_only) {
      Drop(absl::StrCat("redis at ", endpoint_, " is a read-only replica"), false);
      return false;
    }
    // Connected, but every decision fails: as unhealthy as a broken connection (the degraded
    // gauge, its alert, a warning with Redis's reason), until a round trip goes through.
    refusing_ = !refusing.empty();
    SetHealthy(!refusing_, absl::StrCat("redis at ", endpoint_, " refuses scripts: ", refusing));
    return true;
  }

  void Ping() {
    if (!transport_->Append({"PING"})) return;
    absl::StatusOr<RedisReply> reply = transport_->ReadReply();
    if (!reply.ok()) {
      Drop(absl::StrCat("redis at ", endpoint_, ": health check: ", reply.status().message()),
           absl::IsDeadlineExceeded(reply.status()));
      return;
    }
    last_round_trip_ = SteadyClock::now();
    // A server that answers is healthy enough, unless it refused the last scripts (PING still
    // answers a server out of memory).
    if (!refusing_) SetHealthy(true, "");
  }

  const RedisLimitStoreOptions& options_;
  std::atomic<bool>& healthy_;
  const std::string endpoint_;
  std::unique_ptr<RedisTransport> transport_;
  std::string shas_[kScriptCount];
  absl::Duration backoff_ = absl::ZeroDuration();
  SteadyClock::time_point next_attempt_;
  SteadyClock::time_point last_round_trip_;
  std::string last_error_ = "not connected to redis yet";
  std::optional<bool> reported_;  // The health last logged.
  bool refusing_ = false;         // The last round trip's scripts were refused (ReadReplies).
  SteadyClock::time_point attempt_ended_;
};

absl::StatusOr<RedisLimitStoreOptions> ParseRedisUrl(absl::string_view url,
                                                     RedisLimitStoreOptions base) {
  absl::string_view rest = url;
  if (absl::ConsumePrefix(&rest, "rediss://")) {
    base.tls.enabled = true;
  } else if (absl::ConsumePrefix(&rest, "redis://")) {
    base.tls.enabled = false;
  } else {
    return absl::InvalidArgumentError("redis url: must start with redis:// or rediss:// (TLS)");
  }
  if (absl::StrContains(rest, '?') || absl::StrContains(rest, '#')) {
    return absl::InvalidArgumentError("redis url: query and fragment are not supported");
  }
  absl::string_view path;
  if (const size_t slash = rest.find('/'); slash != absl::string_view::npos) {
    path = rest.substr(slash + 1);
    rest = rest.substr(0, slash);
  }
  if (const size_t at = rest.rfind('@'); at != absl::string_view::npos) {
    const absl::string_view userinfo = rest.substr(0, at);
    rest = rest.substr(at + 1);
    const size_t colon = userinfo.find(':');
    if (colon == absl::string_view::npos) {
      return absl::InvalidArgumentError("redis url: userinfo must be [username]:password");
    }
    absl::StatusOr<std::string> username = PercentDecode(userinfo.substr(0, colon), "username");
    if (!username.ok()) return username.status();
    absl::StatusOr<std::string> password = PercentDecode(userinfo.substr(colon + 1), "password");
    if (!password.ok()) return password.status();
    base.username = *std::move(username);
    base.password = *std::move(password);
  }
  absl::string_view port;
  if (absl::StartsWith(rest, "[")) {
    const size_t close = rest.find(']');
    if (close == absl::string_view::npos) {
      return absl::InvalidArgumentError("redis url: unterminated [ in the host");
    }
    base.host = std::string(rest.substr(1, close - 1));
    absl::string_view after = rest.substr(close + 1);
    if (!after.empty() && !absl::ConsumePrefix(&after, ":")) {
      return absl::InvalidArgumentError("redis url: expected :port after the host");
    }
    port = after;
  } else if (const size_t colon = rest.rfind(':'); colon != absl::string_view::npos) {
    base.host = std::string(rest.substr(0, colon));
    port = rest.substr(colon + 1);
  } else {
    base.host = std::string(rest);
  }
  if (base.host.empty()) return absl::InvalidArgumentError("redis url: the host is empty");
  if (!port.empty()) {
    int value = 0;
    if (!absl::SimpleAtoi(port, &value) || value < 1 || value > 65535) {
      return absl::InvalidArgumentError("redis url: the port must be a number in 1..65535");
    }
    base.port = value;
  }
  if (!path.empty()) {
    int database = 0;
    if (!absl::SimpleAtoi(path, &database) || database < 0) {
      return absl::InvalidArgumentError("redis url: the database must be a number >= 0");
    }
    base.database = database;
  }
  return base;
}

std::string RedisLimitStore::RedisKey(absl::string_view prefix, absl::string_view key,
                                      absl::string_view kind) {
  return absl::StrCat(prefix, ":{", key, "}:", kind);
}

absl::StatusOr<std::unique_ptr<RedisLimitStore>> RedisLimitStore::Create(
    RedisLimitStoreOptions options) {
  if (absl::Status status = Validate(options); !status.ok()) return status;
  return std::unique_ptr<RedisLimitStore>(new RedisLimitStore(std::move(options)));
}

RedisLimitStore::RedisLimitStore(RedisLimitStoreOptions options) : options_(std::move(options)) {
  thread_ = std::thread([this] { Run(); });
}

RedisLimitStore::~RedisLimitStore() { Stop(); }

void RedisLimitStore::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  std::lock_guard<std::mutex> join(join_mu_);
  if (thread_.joinable()) thread_.join();
}

void RedisLimitStore::SetBacklogged(bool backlogged) {
  if (backlogged_.exchange(backlogged, std::memory_order_relaxed) == backlogged) return;
  const std::string endpoint = absl::StrCat(options_.host, ":", options_.port);
  if (backlogged) {
    Log(LogLevel::kWarning,
        "redis limit store backlogged: decisions wait past redis.command_timeout and fail",
        {{"redis", endpoint}});
  } else {
    Log(LogLevel::kInfo, "redis limit store keeps up again", {{"redis", endpoint}});
  }
}

bool RedisLimitStore::HasWorkOrStop() const { return stop_ || !queue_.empty() || delayed_changed_; }

SteadyClock::time_point RedisLimitStore::PromoteDueRequests() {
  delayed_changed_ = false;
  const SteadyClock::time_point now = SteadyClock::now();
  while (!delayed_.empty() && delayed_.begin()->first <= now) {
    delayed_.begin()->second->queued_at = now;
    queue_.push_back(std::move(delayed_.begin()->second));
    delayed_.erase(delayed_.begin());
  }
  return delayed_.empty() ? SteadyClock::time_point::max() : delayed_.begin()->first;
}

std::string RedisLimitStore::RandomHex128() {
  return absl::StrFormat("%016x%016x", absl::Uniform<uint64_t>(bitgen_),
                         absl::Uniform<uint64_t>(bitgen_));
}

void RedisLimitStore::Submit(std::unique_ptr<Request> request, absl::Duration delay) {
  {
    absl::MutexLock lock(&mu_);
    if (!stop_) {
      if (delay <= absl::ZeroDuration()) {
        request->queued_at = SteadyClock::now();
        queue_.push_back(std::move(request));
      } else {
        delayed_.emplace(SteadyClock::now() + ToSteady(delay), std::move(request));
        delayed_changed_ = true;
      }
      return;
    }
  }
  request->Fail(absl::UnavailableError("redis limit store: store shut down"));
}

void RedisLimitStore::Run() {
  // A write to a socket the server closed raises SIGPIPE on this thread: keep it pending
  // (Connection drains it) instead of letting it end the process.
  sigset_t pipe_set;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, nullptr);

  Connection connection(options_, healthy_);
  // A decision that waited in the queue longer than a round trip may take is failed instead of
  // sent: when Redis answers slower than decisions are asked for, the queue would otherwise grow
  // without end and every tenant's calls wait behind it (a review measured 40 s) while each
  // round trip still succeeds. Failed, the call falls back as when Redis is away.
  const SteadyClock::duration stale_after = ToSteady(options_.command_timeout);
  SteadyClock::time_point last_stale = SteadyClock::now() - std::chrono::hours(1);
  for (;;) {
    std::vector<std::unique_ptr<Request>> batch;
    std::vector<std::unique_ptr<Request>> stale;
    {
      absl::MutexLock lock(&mu_);
      const SteadyClock::time_point next_delayed = PromoteDueRequests();
      const SteadyClock::duration wait =
          std::min(connection.NextTimedWork(), next_delayed) - SteadyClock::now();
      if (wait > SteadyClock::duration::zero() && queue_.empty()) {
        mu_.AwaitWithTimeout(absl::Condition(this, &RedisLimitStore::HasWorkOrStop),
                             absl::FromChrono(wait));
      }
      if (stop_) break;
      PromoteDueRequests();
      const SteadyClock::time_point now = SteadyClock::now();
      while (!queue_.empty() && batch.size() < static_cast<size_t>(options_.max_pipeline)) {
        std::unique_ptr<Request> next = std::move(queue_.front());
        queue_.pop_front();
        if (next->Awaited() &&
            now - std::max(next->queued_at, connection.attempt_ended()) > stale_after) {
          stale.push_back(std::move(next));
        } else {
          batch.push_back(std::move(next));
        }
      }
    }
    const SteadyClock::time_point taken = SteadyClock::now();
    if (!stale.empty()) last_stale = taken;
    SetBacklogged(taken - last_stale < std::chrono::seconds(10));  // Before the callbacks run.
    if (!stale.empty()) {
      const absl::Status status = absl::UnavailableError(
          absl::StrCat("redis limit store: the decision waited over ",
                       absl::FormatDuration(options_.command_timeout),
                       " for its turn (redis answers slower than decisions are asked for)"));
      for (std::unique_ptr<Request>& request : stale) request->Fail(status);
    }
    connection.Serve(batch);
    const SteadyClock::time_point now = SteadyClock::now();
    for (std::unique_ptr<Request>& request : batch) {
      if (request->script == kCommand && request->failed && now < request->retry_until) {
        request->failed = false;
        Submit(std::move(request), options_.max_backoff);
      }
    }
  }
  std::deque<std::unique_ptr<Request>> pending;
  {
    absl::MutexLock lock(&mu_);
    pending.swap(queue_);
    for (auto& [due, request] : delayed_) pending.push_back(std::move(request));
    delayed_.clear();
  }
  const absl::Status shut_down = absl::UnavailableError("redis limit store: store shut down");
  for (std::unique_ptr<Request>& request : pending) request->Fail(shut_down);
  healthy_.store(false);
}

void RedisLimitStore::TakeRate(const std::string& key, const RateLimit& limit,
                               StoreCallback<StepResult> done) {
  if (limit.per_second <= 0) {
    std::move(done)(StepResult{true, absl::ZeroDuration()});
    return;
  }
  // The same durations as LocalLimitStore::GcraStep, in microseconds.
  const absl::Duration interval = absl::Seconds(1) / limit.per_second;
  const absl::Duration tolerance =
      interval * static_cast<double>(std::max<int64_t>(limit.burst, 1) - 1);
  auto request = std::make_unique<Request>();
  request->script = kGcra;
  request->args = {RedisKey(options_.key_prefix, key, "rate"),
                   FormatDouble(absl::ToDoubleMicroseconds(interval)),
                   FormatDouble(absl::ToDoubleMicroseconds(tolerance))};
  request->step_done = std::move(done);
  Submit(std::move(request));
}

void RedisLimitStore::TakeWindows(const std::string& key, const std::vector<WindowLimit>& windows,
                                  StoreCallback<StepResult> done) {
  if (std::none_of(windows.begin(), windows.end(),
                   [](const WindowLimit& window) { return window.max_requests > 0; })) {
    std::move(done)(StepResult{true, absl::ZeroDuration()});
    return;
  }
  auto request = std::make_unique<Request>();
  request->script = kWindows;
  request->args.push_back(RedisKey(options_.key_prefix, key, "win"));
  {
    absl::MutexLock lock(&mu_);
    request->args.push_back(RandomHex128());
  }
  for (const WindowLimit& window : windows) {
    request->args.push_back(absl::StrCat(window.max_requests));
    request->args.push_back(absl::StrCat(absl::ToInt64Microseconds(window.window)));
  }
  request->step_done = std::move(done);
  Submit(std::move(request));
}

void RedisLimitStore::AcquireSlot(const std::string& key, int64_t max, absl::Duration ttl,
                                  StoreCallback<SlotResult> done) {
  if (max <= 0) {
    std::move(done)(SlotResult{true, kUnlimitedLease});
    return;
  }
  auto request = std::make_unique<Request>();
  request->script = kAcquireSlot;
  {
    absl::MutexLock lock(&mu_);
    request->lease_id = RandomHex128();
  }
  request->args = {RedisKey(options_.key_prefix, key, "slots"), absl::StrCat(max),
                   absl::StrCat(absl::ToInt64Microseconds(ttl)), request->lease_id};
  request->slot_done = std::move(done);
  Submit(std::move(request));
}

void RedisLimitStore::ReleaseSlot(const std::string& key, const std::string& lease_id) {
  if (lease_id == kUnlimitedLease) return;
  auto request = std::make_unique<Request>();
  request->script = kCommand;
  request->args = {"ZREM", RedisKey(options_.key_prefix, key, "slots"), lease_id};
  // Sent again while Redis is away (a ZREM may be repeated), for as long as a lease may live.
  request->retry_until = SteadyClock::now() + ToSteady(kReleaseRetryWindow);
  Submit(std::move(request));
}

void RedisLimitStore::ClaimRequestId(std::string redis_key, std::vector<std::string> args,
                                     absl::Duration delay, SharedRequestIds::ClaimCallback done) {
  auto request = std::make_unique<Request>();
  request->script = kRequestIdClaim;
  request->args.push_back(std::move(redis_key));
  for (std::string& arg : args) request->args.push_back(std::move(arg));
  request->claim_done = std::move(done);
  Submit(std::move(request), delay);
}

void RedisLimitStore::FinishRequestId(std::string redis_key, std::vector<std::string> args) {
  auto request = std::make_unique<Request>();
  request->script = kRequestIdFinish;
  request->args.push_back(std::move(redis_key));
  for (std::string& arg : args) request->args.push_back(std::move(arg));
  Submit(std::move(request));
}

void RedisLimitStore::AddToCounters(const std::string& group, const std::vector<CounterStep>& steps,
                                    StoreCallback<CounterResult> done) {
  if (steps.empty()) {
    std::move(done)(CounterResult{true, -1, {}});
    return;
  }
  auto request = std::make_unique<Request>();
  request->script = kCounters;
  request->num_keys = steps.size();
  for (const CounterStep& step : steps) {
    request->args.push_back(RedisKey(options_.key_prefix, group, step.key));
  }
  for (const CounterStep& step : steps) {
    request->args.push_back(absl::StrCat(step.amount));
    request->args.push_back(absl::StrCat(step.max));
    // Milliseconds since the epoch; a counter with no end lives a year past its last write.
    const absl::Time expires =
        step.expires == absl::InfiniteFuture() ? absl::Now() + absl::Hours(24 * 366) : step.expires;
    request->args.push_back(absl::StrCat(absl::ToUnixMillis(expires)));
  }
  request->counters_done = std::move(done);
  Submit(std::move(request));
}

}  // namespace copilot::gateway
