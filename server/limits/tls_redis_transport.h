// RedisTransport over TLS (OpenSSL), for "rediss://" URLs. hiredis 0.14 (Debian 12) has no TLS,
// so here hiredis only formats commands (redisFormatCommandArgv) and parses replies
// (redisReader); this transport owns the socket and the TLS session and does the I/O itself on
// the calling thread: non-blocking, every wait a poll() bounded by a deadline.
#ifndef COPILOT_GATEWAY_SERVER_LIMITS_TLS_REDIS_TRANSPORT_H_
#define COPILOT_GATEWAY_SERVER_LIMITS_TLS_REDIS_TRANSPORT_H_

#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/limits/redis_limit_store.h"
#include "server/limits/redis_transport.h"

namespace copilot::gateway {

// Connects to options.host:port over TCP and completes a TLS handshake (TLS 1.2 or later), both
// within options.connect_timeout: SNI and the certificate's host name (DNS SAN) for a host
// name, the IP SAN for an IP address; the chain verified against options.tls.ca_file (the
// system's trust store when empty); options.tls.cert_file/key_file presented when the server
// asks for a client certificate. The files are read on every call. UNAVAILABLE with the reason
// otherwise ("Connection refused", "TLS handshake failed: certificate verify failed: hostname
// mismatch", ...). Replies are then read within options.command_timeout each.
absl::StatusOr<std::unique_ptr<RedisTransport>> ConnectTlsRedis(
    const RedisLimitStoreOptions& options);

// Loads the files `tls` names into a throwaway TLS context: INVALID_ARGUMENT naming the field
// (redis.ca_file, redis.cert_file, redis.key_file) and the reason when one cannot be used.
absl::Status CheckRedisTlsFiles(const RedisTlsOptions& tls);

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_LIMITS_TLS_REDIS_TRANSPORT_H_
