#include "server/limits/tls_redis_transport.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/common/errors.h"
#include "server/limits/redis_replies.h"
namespace copilot::gateway {
namespace {

using SteadyClock = std::chrono::steady_clock;

struct SslCtxDeleter {
  void operator()(SSL_CTX* context) const { SSL_CTX_free(context); }
};
using SslCtx = std::unique_ptr<SSL_CTX, SslCtxDeleter>;

struct SslDeleter {
  void operator()(SSL* ssl) const { SSL_free(ssl); }
};
using Ssl = std::unique_ptr<SSL, SslDeleter>;

struct ReaderDeleter {
  void operator()(redisReader* reader) const { redisReaderFree(reader); }
};
using Reader = std::unique_ptr<redisReader, ReaderDeleter>;

// A socket, closed on destruction.
class Socket {
 public:
  explicit Socket(int fd = -1) : fd_(fd) {}
  Socket(Socket&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Socket& operator=(Socket&& other) noexcept {
    if (this != &other) {
      Close();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  ~Socket() { Close(); }

  int get() const { return fd_; }

 private:
  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

  int fd_;
};

// The keepalive hiredis sets on its own connections (redisEnableKeepAlive).
constexpr int kKeepAliveIdleSeconds = 15;

SteadyClock::duration ToSteady(absl::Duration duration) {
  return std::chrono::duration_cast<SteadyClock::duration>(absl::ToChronoNanoseconds(duration));
}

// The reason of the earliest error in this thread's OpenSSL error queue, or `fallback` when the
// queue is empty; clears the queue.
std::string TakeOpenSslError(absl::string_view fallback) {
  const auto code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return std::string(fallback);
  if (ERR_SYSTEM_ERROR(code)) return ErrnoText(ERR_GET_REASON(code));  // E.g. no such file.
  if (ERR_GET_LIB(code) == ERR_LIB_PEM && ERR_GET_REASON(code) == PEM_R_NO_START_LINE) {
    return "no PEM block of the expected type (no start line)";
  }
  if (const char* reason = ERR_reason_error_string(code); reason != nullptr) return reason;
  char text[256];
  ERR_error_string_n(code, text, sizeof(text));
  return text;
}

// Waits until `fd` is ready for `events`; false when `deadline` passed first. An error or a
// hang-up counts as ready: the next I/O call reports it.
bool WaitFor(int fd, int events, SteadyClock::time_point deadline) {
  for (;;) {
    const SteadyClock::duration left = deadline - SteadyClock::now();
    if (left <= SteadyClock::duration::zero()) return false;
    // Rounded up, so that a wait shorter than a millisecond does not spin.
    const auto millis = std::chrono::ceil<std::chrono::milliseconds>(left).count();
    pollfd entry{fd, static_cast<short>(events), 0};
    const int ready = poll(&entry, 1, static_cast<int>(std::min<int64_t>(millis, INT_MAX)));
    if (ready > 0) return true;
    if (ready < 0 && errno != EINTR) return true;
  }
}

// Called when the server asks for a client certificate and none is configured: notes it in the
// bool the SSL's app data points to (see ConnectTlsRedis), and goes on without one.
int NoteCertificateRequest(SSL* ssl, X509** /*certificate*/, EVP_PKEY** /*key*/) {
  if (auto* requested = static_cast<bool*>(SSL_get_app_data(ssl)); requested != nullptr) {
    *requested = true;
  }
  return 0;
}

bool IsIpAddress(const std::string& host) {
  in6_addr address;
  return inet_pton(AF_INET, host.c_str(), &address) == 1 ||
         inet_pton(AF_INET6, host.c_str(), &address) == 1;
}

// A TLS client context for `tls`: TLS 1.2 or later, the peer verified against tls.ca_file (or
// the system's trust store), the client certificate loaded when configured.
absl::StatusOr<SslCtx> NewContext(const RedisTlsOptions& tls) {
  auto invalid = [](absl::string_view field, const std::string& file) {
    return absl::InvalidArgumentError(absl::StrCat("redis.", field, ": cannot use ", file, ": ",
                                                   TakeOpenSslError("unknown error")));
  };
  ERR_clear_error();
  SslCtx context(SSL_CTX_new(TLS_client_method()));
  if (context == nullptr) {
    return absl::InternalError(
        absl::StrCat("redis: cannot create a TLS context: ", TakeOpenSslError("out of memory")));
  }
  SSL_CTX_set_min_proto_version(context.get(), TLS1_2_VERSION);
  SSL_CTX_set_verify(context.get(), SSL_VERIFY_PEER, nullptr);
  SSL_CTX_set_mode(context.get(),
                   SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (tls.ca_file.empty()) {
    if (SSL_CTX_set_default_verify_paths(context.get()) != 1) {
      return absl::InternalError(absl::StrCat("redis: cannot load the system's trust store: ",
                                              TakeOpenSslError("unknown error")));
    }
  } else if (SSL_CTX_load_verify_locations(context.get(), tls.ca_file.c_str(), nullptr) != 1) {
    return invalid("ca_file", tls.ca_file);
  }
  if (tls.cert_file.empty()) {
    SSL_CTX_set_client_cert_cb(context.get(), NoteCertificateRequest);
  } else {
    if (SSL_CTX_use_certificate_chain_file(context.get(), tls.cert_file.c_str()) != 1) {
      return invalid("cert_file", tls.cert_file);
    }
    // Also checks that the key is the certificate's ("key values mismatch").
    if (SSL_CTX_use_PrivateKey_file(context.get(), tls.key_file.c_str(), SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(context.get()) != 1) {
      return invalid("key_file", tls.key_file);
    }
  }
  return context;
}

// A TCP connection to host:port (each of its addresses in turn) before `deadline`.
absl::StatusOr<Socket> ConnectTcp(const std::string& host, int port,
                                  SteadyClock::time_point deadline) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (const int error = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found);
      error != 0) {
    return absl::UnavailableError(gai_strerror(error));
  }
  std::unique_ptr<addrinfo, void (*)(addrinfo*)> addresses(found, freeaddrinfo);
  std::string last_error = "no address";
  for (const addrinfo* address = found; address != nullptr; address = address->ai_next) {
    Socket socket_fd(socket(address->ai_family, address->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                            address->ai_protocol));
    if (socket_fd.get() < 0) {
      last_error = ErrnoText(errno);
      continue;
    }
    if (connect(socket_fd.get(), address->ai_addr, address->ai_addrlen) != 0) {
      if (errno != EINPROGRESS) {
        last_error = ErrnoText(errno);
        continue;
      }
      if (!WaitFor(socket_fd.get(), POLLOUT, deadline)) {
        return absl::UnavailableError(ErrnoText(ETIMEDOUT));  // As hiredis says it.
      }
      int error = 0;
      socklen_t length = sizeof(error);
      if (getsockopt(socket_fd.get(), SOL_SOCKET, SO_ERROR, &error, &length) != 0) error = errno;
      if (error != 0) {
        last_error = ErrnoText(error);
        continue;
      }
    }
    const int on = 1;
    const int idle = kKeepAliveIdleSeconds;
    const int interval = std::max(1, kKeepAliveIdleSeconds / 3);
    const int count = 3;
    setsockopt(socket_fd.get(), IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    setsockopt(socket_fd.get(), SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
    setsockopt(socket_fd.get(), IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    setsockopt(socket_fd.get(), IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof(interval));
    setsockopt(socket_fd.get(), IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof(count));
    return socket_fd;
  }
  return absl::UnavailableError(last_error);
}

// Why an SSL_connect/SSL_read/SSL_write returning `result` failed with `ssl_error`;
// `error_number` is errno right after it. Clears the error queue.
std::string IoFailureText(int ssl_error, int result, int error_number) {
  const auto code = ERR_peek_error();
  switch (ssl_error) {
    case SSL_ERROR_ZERO_RETURN:
      return "connection closed by the server";
    case SSL_ERROR_SYSCALL:
      if (code == 0) {
        ERR_clear_error();
        return result == 0 || error_number == 0 ? "connection closed by the server"
                                                : ErrnoText(error_number);
      }
      break;
    case SSL_ERROR_SSL:
      if (ERR_GET_LIB(code) == ERR_LIB_SSL &&
          ERR_GET_REASON(code) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        ERR_clear_error();
        return "connection closed by the server";
      }
      break;
    default:
      break;
  }
  return absl::StrCat("TLS error: ", TakeOpenSslError("unknown error"));
}

// Why the handshake on `ssl` failed (see IoFailureText).
std::string HandshakeFailureText(SSL* ssl, int ssl_error, int result, int error_number) {
  if (const auto verify = SSL_get_verify_result(ssl); verify != X509_V_OK) {
    ERR_clear_error();
    return absl::StrCat("certificate verify failed: ", X509_verify_cert_error_string(verify));
  }
  const auto code = ERR_peek_error();
  const bool not_tls =
      ERR_GET_LIB(code) == ERR_LIB_SSL && (ERR_GET_REASON(code) == SSL_R_WRONG_VERSION_NUMBER ||
                                           ERR_GET_REASON(code) == SSL_R_PACKET_LENGTH_TOO_LONG);
  std::string text = IoFailureText(ssl_error, result, error_number);
  if (not_tls) absl::StrAppend(&text, " (is the server speaking TLS on this port?)");
  return text;
}

class TlsRedisTransport final : public RedisTransport {
 public:
  // `certificate_requested`: the server asked for a client certificate and none is configured.
  TlsRedisTransport(Socket socket_fd, Ssl ssl, Reader reader, absl::Duration command_timeout,
                    bool certificate_requested)
      : socket_(std::move(socket_fd)),
        ssl_(std::move(ssl)),
        reader_(std::move(reader)),
        command_timeout_(command_timeout),
        certificate_requested_(certificate_requested) {}

  ~TlsRedisTransport() override {
    // close_notify, once and without waiting (the socket is non-blocking); not after a fatal
    // error, where OpenSSL forbids it.
    if (!fatal_) SSL_shutdown(ssl_.get());
    ERR_clear_error();
  }

  bool Append(const std::vector<std::string>& command) override {
    return AppendRedisCommand(command, out_);
  }

  absl::StatusOr<RedisReply> ReadReply() override {
    if (!failure_.ok()) return failure_;
    const SteadyClock::time_point deadline = SteadyClock::now() + ToSteady(command_timeout_);
    // As hiredis's redisGetReply: a reply already received first, then send, then receive.
    absl::StatusOr<RedisReply> reply = Parse();
    if (!reply.ok() || *reply != nullptr) return reply;
    if (absl::Status sent = Flush(deadline); !sent.ok()) return sent;
    char buffer[16 * 1024];
    for (;;) {
      ERR_clear_error();
      errno = 0;
      const int received = SSL_read(ssl_.get(), buffer, sizeof(buffer));
      const int error_number = errno;
      if (received > 0) {
        if (redisReaderFeed(reader_.get(), buffer, static_cast<size_t>(received)) != REDIS_OK) {
          return Fail(absl::UnavailableError("out of memory reading a reply"));
        }
        if (RedisReaderOverBound(*reader_)) {
          return Fail(absl::UnavailableError(
              absl::StrCat("a reply of over ", kMaxRedisReplyBytes, " bytes")));
        }
        reply = Parse();
        if (!reply.ok() || *reply != nullptr) return reply;
        continue;
      }
      if (absl::Status waited =
              Wait(SSL_get_error(ssl_.get(), received), received, error_number, deadline);
          !waited.ok()) {
        return waited;
      }
    }
  }

 private:
  // The next complete reply in the reader; null when it needs more bytes.
  absl::StatusOr<RedisReply> Parse() {
    void* raw = nullptr;
    if (redisReaderGetReply(reader_.get(), &raw) != REDIS_OK) {
      return Fail(absl::UnavailableError(absl::StrCat("protocol error: ", reader_->errstr)));
    }
    if (raw != nullptr) replied_ = true;
    return RedisReply(static_cast<redisReply*>(raw));
  }

  absl::Status Flush(SteadyClock::time_point deadline) {
    while (!out_.empty()) {
      ERR_clear_error();
      errno = 0;
      const int sent = SSL_write(ssl_.get(), out_.data(),
                                 static_cast<int>(std::min<size_t>(out_.size(), INT_MAX)));
      const int error_number = errno;
      if (sent > 0) {
        out_.erase(0, static_cast<size_t>(sent));
        continue;
      }
      if (absl::Status waited = Wait(SSL_get_error(ssl_.get(), sent), sent, error_number, deadline);
          !waited.ok()) {
        return waited;
      }
    }
    return absl::OkStatus();
  }

  // After an SSL_read/SSL_write that returned `result` (<= 0): waits for the socket when TLS
  // asks to, else fails the transport.
  absl::Status Wait(int ssl_error, int result, int error_number, SteadyClock::time_point deadline) {
    if (ssl_error == SSL_ERROR_WANT_READ || ssl_error == SSL_ERROR_WANT_WRITE) {
      if (WaitFor(socket_.get(), ssl_error == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline)) {
        return absl::OkStatus();
      }
      return Fail(absl::DeadlineExceededError(absl::StrCat(
          "no reply within the command timeout (", absl::FormatDuration(command_timeout_), ")")));
    }
    fatal_ = ssl_error == SSL_ERROR_SYSCALL || ssl_error == SSL_ERROR_SSL;
    std::string text = IoFailureText(ssl_error, result, error_number);
    // With TLS 1.3 the client's handshake ends before the server has checked the client's
    // certificate: a server requiring one ends the session at the first command (with an alert
    // that a reset can overtake).
    if (certificate_requested_ && !replied_) {
      absl::StrAppend(&text,
                      " (the server asked for a client certificate and none is configured: "
                      "redis.cert_file, redis.key_file)");
    }
    return Fail(absl::UnavailableError(text));
  }

  absl::Status Fail(absl::Status status) {
    failure_ = status;
    return status;
  }

  Socket socket_;
  Ssl ssl_;
  Reader reader_;
  const absl::Duration command_timeout_;
  const bool certificate_requested_;
  bool replied_ = false;  // A reply came: the session was accepted.
  std::string out_;       // Formatted commands not sent yet.
  absl::Status failure_;
  bool fatal_ = false;  // A fatal TLS error happened: no close_notify.
};

}  // namespace

absl::Status CheckRedisTlsFiles(const RedisTlsOptions& tls) { return NewContext(tls).status(); }

absl::StatusOr<std::unique_ptr<RedisTransport>> ConnectTlsRedis(
    const RedisLimitStoreOptions& options) {
  const SteadyClock::time_point deadline = SteadyClock::now() + ToSteady(options.connect_timeout);
  absl::StatusOr<SslCtx> context = NewContext(options.tls);
  if (!context.ok()) return absl::UnavailableError(context.status().message());
  absl::StatusOr<Socket> socket_fd = ConnectTcp(options.host, options.port, deadline);
  if (!socket_fd.ok()) return socket_fd.status();

  Ssl ssl(SSL_new(context->get()));
  Reader reader(redisReaderCreate());
  if (ssl == nullptr || reader == nullptr) {
    ERR_clear_error();
    return absl::UnavailableError("out of memory");
  }
  SSL_set_fd(ssl.get(), socket_fd->get());
  X509_VERIFY_PARAM* verify = SSL_get0_param(ssl.get());
  X509_VERIFY_PARAM_set_hostflags(verify, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  const bool host_set =
      IsIpAddress(options.host)
          // An IP address is not a server name for SNI (RFC 6066); it must be an IP SAN.
          ? X509_VERIFY_PARAM_set1_ip_asc(verify, options.host.c_str()) == 1
          : SSL_set_tlsext_host_name(ssl.get(), options.host.c_str()) == 1 &&
                SSL_set1_host(ssl.get(), options.host.c_str()) == 1;
  if (!host_set) {
    return absl::UnavailableError(absl::StrCat("TLS: cannot verify the host name ", options.host,
                                               ": ", TakeOpenSslError("unknown error")));
  }
  bool certificate_requested = false;  // By NoteCertificateRequest, during SSL_connect.
  SSL_set_app_data(ssl.get(), &certificate_requested);
  for (;;) {
    ERR_clear_error();
    errno = 0;
    const int result = SSL_connect(ssl.get());
    const int error_number = errno;
    if (result == 1) break;
    const int ssl_error = SSL_get_error(ssl.get(), result);
    if (ssl_error == SSL_ERROR_WANT_READ || ssl_error == SSL_ERROR_WANT_WRITE) {
      if (!WaitFor(socket_fd->get(), ssl_error == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT,
                   deadline)) {
        return absl::UnavailableError(
            absl::StrCat("TLS handshake: no answer within the connect timeout (",
                         absl::FormatDuration(options.connect_timeout),
                         "; is the server speaking TLS on this port?)"));
      }
      continue;
    }
    return absl::UnavailableError(
        absl::StrCat("TLS handshake failed: ",
                     HandshakeFailureText(ssl.get(), ssl_error, result, error_number)));
  }
  SSL_set_app_data(ssl.get(), nullptr);
  return std::make_unique<TlsRedisTransport>(*std::move(socket_fd), std::move(ssl),
                                             std::move(reader), options.command_timeout,
                                             certificate_requested);
}

}  // namespace copilot::gateway
