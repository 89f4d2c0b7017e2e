// The Lua scripts of RedisLimitStore: one atomic script per decision, with the Redis server's
// clock (TIME) so the clocks of the gateway replicas do not matter. They mirror the pure steps
// of LocalLimitStore (GcraStep, WindowStep, AcquireSlot) in microseconds.
//
// Each limit script takes exactly one key, and the counter script only keys of one group, so a
// script never spans hash slots in Redis Cluster (the store hash-tags its keys
// "<prefix>:{<key>}:<kind>"). Numbers handed to redis.call are
// formatted by Redis with full precision ("%.17g"); numbers concatenated into strings are
// formatted with string.format('%d') because Lua 5.1's tostring keeps only 14 digits, less
// than a microsecond timestamp has. redis.replicate_commands() lets TIME precede writes on
// Redis before 5 (effects replication); on Redis 7 it is a no-op that returns true.
#ifndef COPILOT_GATEWAY_SERVER_LIMITS_REDIS_SCRIPTS_H_
#define COPILOT_GATEWAY_SERVER_LIMITS_REDIS_SCRIPTS_H_

namespace copilot::gateway::redis_scripts {

// GCRA, like LocalLimitStore::GcraStep.
//   KEYS[1]  the theoretical arrival time (TAT), microseconds since the epoch, as a string.
//   ARGV[1]  the emission interval (1 s / rate) in microseconds, possibly fractional.
//   ARGV[2]  the tolerance ((burst - 1) * interval) in microseconds, possibly fractional.
// Returns {1, 0} when the call conforms (TAT moved by one interval), else {0, retry_after}
// with retry_after in whole microseconds, rounded up so a retry after it conforms. The key
// expires when the TAT is in the past (an absent TAT means the same thing: a full burst).
inline constexpr char kGcra[] = R"lua(
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local stored = redis.call('GET', KEYS[1])
local tat = stored and tonumber(stored) or now
local start = math.max(tat, now)
if start - now > tolerance then
  return {0, math.ceil(start - tolerance - now)}
end
local next_tat = start + interval
redis.call('SET', KEYS[1], string.format('%.17g', next_tat), 'PX',
           math.max(1, math.ceil((next_tat - now) / 1000)))
return {1, 0}
)lua";

// Sliding windows over one log of calls, like LocalLimitStore::WindowStep.
//   KEYS[1]  a ZSET of calls: score = time in microseconds, member = "<time>:<unique suffix>".
//   ARGV[1]  the unique suffix of this call's member (random, chosen by the caller).
//   ARGV[2k], ARGV[2k+1]  (k >= 1) max_requests and window length in microseconds, per window.
// Drops entries older than the longest window, checks every window with max_requests > 0 and
// records the call only when all have room. Returns {1, 0}, or {0, retry_after} with
// retry_after in microseconds: when the entry max_requests from the newest leaves its window
// (the largest over the full windows). The key expires one longest window after the last call.
inline constexpr char kWindows[] = R"lua(
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local longest = 0
for i = 2, #ARGV - 1, 2 do
  longest = math.max(longest, tonumber(ARGV[i + 1]))
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now - longest))
local allowed = true
local retry = 0
for i = 2, #ARGV - 1, 2 do
  local max = tonumber(ARGV[i])
  local window = tonumber(ARGV[i + 1])
  if max > 0 then
    local count = redis.call('ZCOUNT', KEYS[1], string.format('(%d', now - window), '+inf')
    if count >= max then
      local leaving = redis.call('ZREVRANGE', KEYS[1], max - 1, max - 1, 'WITHSCORES')
      allowed = false
      retry = math.max(retry, tonumber(leaving[2]) + window - now)
    end
  end
end
if not allowed then
  return {0, math.ceil(retry)}
end
redis.call('ZADD', KEYS[1], now, string.format('%d:%s', now, ARGV[1]))
redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil(longest / 1000)))
return {1, 0}
)lua";

// Concurrency leases, like LocalLimitStore::AcquireSlot.
//   KEYS[1]  a ZSET of leases: member = lease id, score = expiry in microseconds.
//   ARGV[1]  the maximum number of live leases (> 0).
//   ARGV[2]  the lease's time to live in microseconds.
//   ARGV[3]  the new lease's id (random, chosen by the caller).
// Removes expired leases, then adds the lease when fewer than ARGV[1] are live. Returns 1
// (acquired) or 0. The key expires with its last lease.
inline constexpr char kAcquireSlot[] = R"lua(
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil((tonumber(last[2]) - now) / 1000)))
return 1
)lua";

// Counters of one group (usage and quotas), like LocalLimitStore::AddToCounters.
//   KEYS[i]  a counter (a string holding an integer; absent is 0). Every key of one call has
//            the same hash tag.
//   ARGV[3i-2], ARGV[3i-1], ARGV[3i]  its amount, its max (0: none) and when it expires
//            (milliseconds since the epoch).
// Adds every amount (never below 0) unless a counter with a max is at it or would pass it.
// Returns {1, -1, values...} or {0, refused index (0-based), values...}. Needs no clock: the
// caller names the period in the key.
inline constexpr char kCounters[] = R"lua(
local values = {}
local refused = -1
for i = 1, #KEYS do
  local value = tonumber(redis.call('GET', KEYS[i]) or '0')
  values[i] = value
  local amount = tonumber(ARGV[3 * i - 2])
  local max = tonumber(ARGV[3 * i - 1])
  if refused < 0 and max > 0 and (value >= max or value + amount > max) then
    refused = i - 1
  end
end
if refused >= 0 then
  return {0, refused, unpack(values)}
end
for i = 1, #KEYS do
  local amount = tonumber(ARGV[3 * i - 2])
  if amount ~= 0 then
    values[i] = math.max(0, values[i] + amount)
    redis.call('SET', KEYS[i], string.format('%d', values[i]))
    redis.call('PEXPIREAT', KEYS[i], ARGV[3 * i])
  end
end
return {1, -1, unpack(values)}
)lua";

// request_id de-duplication shared by the replicas (RedisRequestIds): one hash per request_id.
//   fields: fp (the request's fingerprint), state ('i' in flight, 'd' done), owner (the
//   token of the attempt that claimed it), until (milliseconds since the epoch, Redis's clock:
//   when the attempt is over at the latest, its upstream deadline), result (state 'd'). State
//   'u': the attempt failed after its request may have reached the upstream.
//
// Claim. KEYS[1] the hash. ARGV[1] fingerprint, ARGV[2] the new owner's token, ARGV[3] the
// attempt's lease (ms: its upstream deadline and a margin), ARGV[4] how long a result is kept
// (ms). An absent key is claimed: {'start'}. Else {'reused'} (another fingerprint),
// {'done', result}, {'inflight', ms left of the lease}, or {'unknown'} (state 'u', or the
// lease ran out without a result: the replica running it stopped), when whether the upstream
// acted is not known. The key lives the lease and the result's time to live.
inline constexpr char kRequestIdClaim[] = R"lua(
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local h = redis.call('HMGET', KEYS[1], 'fp', 'state', 'until', 'result')
if not h[1] then
  local lease = tonumber(ARGV[3])
  redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'state', 'i', 'owner', ARGV[2], 'until',
             string.format('%d', now + lease))
  redis.call('PEXPIRE', KEYS[1], lease + tonumber(ARGV[4]))
  return {'start'}
end
if h[1] ~= ARGV[1] then
  return {'reused'}
end
if h[2] == 'd' then
  return {'done', h[4]}
end
if h[2] == 'u' then
  return {'unknown'}
end
local left = tonumber(h[3]) - now
if left < 0 then
  return {'unknown'}
end
return {'inflight', string.format('%d', left)}
)lua";

// Finish. KEYS[1] the hash. ARGV[1] the owner's token, ARGV[2] '1' with a result to keep, 'u'
// when the outcome is unknown, '0' to forget the request_id (a failure the upstream did not
// act on, or a result too large), ARGV[3] the result, ARGV[4] how long the state is kept
// (ms). Only the owner finishes: returns 1, else 0 (the key expired and was claimed again).
inline constexpr char kRequestIdFinish[] = R"lua(
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then
  return 0
end
if ARGV[2] == '1' then
  redis.call('HSET', KEYS[1], 'state', 'd', 'result', ARGV[3])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]))
elseif ARGV[2] == 'u' then
  redis.call('HSET', KEYS[1], 'state', 'u')
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]))
else
  redis.call('DEL', KEYS[1])
end
return 1
)lua";

}  // namespace copilot::gateway::redis_scripts

#endif  // COPILOT_GATEWAY_SERVER_LIMITS_REDIS_SCRIPTS_H_
