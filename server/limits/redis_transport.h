// The byte stream under RedisLimitStore: one connection to a Redis server speaking RESP, either
// plain TCP through hiredis's own sockets (hiredis_transport.h) or TLS through OpenSSL
// (tls_redis_transport.h). Internal to gateway_limits_redis (it exposes hiredis's reply type).
#ifndef COPILOT_GATEWAY_SERVER_LIMITS_REDIS_TRANSPORT_H_
#define COPILOT_GATEWAY_SERVER_LIMITS_REDIS_TRANSPORT_H_

#include <hiredis/hiredis.h>

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace copilot::gateway {

struct RedisReplyDeleter {
  void operator()(redisReply* reply) const { freeReplyObject(reply); }
};
using RedisReply = std::unique_ptr<redisReply, RedisReplyDeleter>;

// A reply that has grown past this while it is read fails the connection (UNAVAILABLE): the
// largest the store asks for is a stored request_id result (at most request_ids.max_bytes x
// max_tenant_share), and an untrusted or broken server must not take the process's memory (a
// 1 GB bulk reply took RSS to 1.96 GiB).
inline constexpr size_t kMaxRedisReplyBytes = 64 * 1024 * 1024;

// True when `reader` holds more unparsed bytes than kMaxRedisReplyBytes.
inline bool RedisReaderOverBound(const redisReader& reader) {
  return reader.len - reader.pos > kMaxRedisReplyBytes;
}

// Not thread-safe: one thread (the store's) uses a transport. Blocking, every wait bounded by
// the command timeout the transport was connected with. Writes to a socket the server closed
// raise SIGPIPE: the caller's thread blocks it (RedisLimitStore::Run).
class RedisTransport {
 public:
  virtual ~RedisTransport() = default;

  // Queues `command` (its arguments, binary-safe); the next ReadReply sends it. False when out
  // of memory.
  virtual bool Append(const std::vector<std::string>& command) = 0;

  // Sends what Append queued, then returns the next reply (an error reply is a reply).
  // DEADLINE_EXCEEDED when the server did not answer within the command timeout (the whole reply,
  // however it trickles in), UNAVAILABLE
  // when the connection broke; the message says why ("connection closed by the server", ...).
  // After an error the transport is unusable: drop it.
  virtual absl::StatusOr<RedisReply> ReadReply() = 0;
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_LIMITS_REDIS_TRANSPORT_H_
