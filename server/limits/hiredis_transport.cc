#include "server/limits/hiredis_transport.h"

#include <hiredis/hiredis.h>
#include <sys/time.h>

#include <algorithm>
#include <cerrno>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "server/limits/redis_replies.h"
namespace copilot::gateway {
namespace {

struct ContextDeleter {
  void operator()(redisContext* context) const { redisFree(context); }
};
using Context = std::unique_ptr<redisContext, ContextDeleter>;

timeval TimevalOf(absl::Duration duration) {
  return absl::ToTimeval(std::max(duration, absl::Milliseconds(1)));
}

// Why a round trip on `context` failed; `error_number` is errno right after the failure.
std::string IoErrorText(const redisContext& context, int error_number, absl::Duration timeout) {
  if (context.err == REDIS_ERR_IO && (error_number == EAGAIN || error_number == EWOULDBLOCK)) {
    return absl::StrCat("no reply within the command timeout (", absl::FormatDuration(timeout),
                        ")");
  }
  if (context.err == REDIS_ERR_EOF) return "connection closed by the server";
  return context.errstr[0] != '\0' ? std::string(context.errstr) : "connection error";
}

class HiredisTransport final : public RedisTransport {
 public:
  HiredisTransport(Context context, absl::Duration command_timeout)
      : context_(std::move(context)), command_timeout_(command_timeout) {}

  bool Append(const std::vector<std::string>& command) override {
    std::string formatted;
    return AppendRedisCommand(command, formatted) &&
           redisAppendFormattedCommand(context_.get(), formatted.data(), formatted.size()) ==
               REDIS_OK;
  }

  absl::StatusOr<RedisReply> ReadReply() override {
    redisReply* raw = nullptr;
    if (redisGetReply(context_.get(), reinterpret_cast<void**>(&raw)) != REDIS_OK) {
      const int error_number = errno;
      std::string text = IoErrorText(*context_, error_number, command_timeout_);
      // A receive (or send) timeout of the socket.
      if (error_number == EAGAIN || error_number == EWOULDBLOCK) {
        return absl::DeadlineExceededError(text);
      }
      return absl::UnavailableError(text);
    }
    return RedisReply(raw);
  }

 private:
  Context context_;
  const absl::Duration command_timeout_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<RedisTransport>> ConnectHiredis(
    const RedisLimitStoreOptions& options) {
  Context context(redisConnectWithTimeout(options.host.c_str(), options.port,
                                          TimevalOf(options.connect_timeout)));
  if (context == nullptr || context->err != 0) {
    return absl::UnavailableError(context == nullptr ? "out of memory" : context->errstr);
  }
  redisSetTimeout(context.get(), TimevalOf(options.command_timeout));
  redisEnableKeepAlive(context.get());
  return std::make_unique<HiredisTransport>(std::move(context), options.command_timeout);
}

}  // namespace copilot::gateway
