#include "server/limits/hiredis_transport.h"

#include <hiredis/hiredis.h>
#include <sys/socket.h>
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

  // As redisGetReply, but one deadline for the whole reply: hiredis bounds each read of the
  // socket by the command timeout, so a reply trickling in a byte at a time held the store's
  // thread (and every decision behind it) without bound. The reply's size is bounded too.
  absl::StatusOr<RedisReply> ReadReply() override {
    redisContext* context = context_.get();
    void* raw = nullptr;
    if (redisGetReplyFromReader(context, &raw) != REDIS_OK) return Failed(errno);
    if (raw != nullptr) return RedisReply(static_cast<redisReply*>(raw));
    const absl::Time deadline = absl::Now() + command_timeout_;
    int written = 0;
    do {
      if (redisBufferWrite(context, &written) != REDIS_OK) return Failed(errno);
    } while (written == 0);
    while (raw == nullptr) {
      const absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration()) {
        return absl::DeadlineExceededError(absl::StrCat(
            "no reply within the command timeout (", absl::FormatDuration(command_timeout_), ")"));
      }
      const timeval wait = TimevalOf(left);
      setsockopt(context->fd, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait);
      if (redisBufferRead(context) != REDIS_OK) return Failed(errno);
      if (RedisReaderOverBound(*context->reader)) {
        return absl::UnavailableError(
            absl::StrCat("a reply of over ", kMaxRedisReplyBytes, " bytes"));
      }
      if (redisGetReplyFromReader(context, &raw) != REDIS_OK) return Failed(errno);
    }
    return RedisReply(static_cast<redisReply*>(raw));
  }

 private:
  absl::Status Failed(int error_number) const {
    std::string text = IoErrorText(*context_, error_number, command_timeout_);
    // A receive (or send) timeout of the socket, or the reply's deadline.
    if (error_number == EAGAIN || error_number == EWOULDBLOCK) {
      return absl::DeadlineExceededError(text);
    }
    return absl::UnavailableError(text);
  }

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
