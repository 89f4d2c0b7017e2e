// RedisTransport over plain TCP: hiredis's own connection and socket I/O (the socket's send and
// receive timeouts are the command timeout).
#ifndef COPILOT_GATEWAY_SERVER_LIMITS_HIREDIS_TRANSPORT_H_
#define COPILOT_GATEWAY_SERVER_LIMITS_HIREDIS_TRANSPORT_H_

#include <memory>

#include "absl/status/statusor.h"
#include "server/limits/redis_limit_store.h"
#include "server/limits/redis_transport.h"

namespace copilot::gateway {

// Connects to options.host:port within options.connect_timeout (TCP keepalive on). UNAVAILABLE
// with hiredis's reason ("Connection refused", ...) otherwise. options.tls is ignored.
absl::StatusOr<std::unique_ptr<RedisTransport>> ConnectHiredis(
    const RedisLimitStoreOptions& options);

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_LIMITS_HIREDIS_TRANSPORT_H_
