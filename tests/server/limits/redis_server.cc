#include "tests/server/limits/redis_server.h"

#include <hiredis/hiredis.h>
#include <signal.h>
#include <unistd.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace copilot::gateway::testing {
namespace {

constexpr char kRedisServerPath[] = "/usr/bin/redis-server";

void Flatten(const redisReply& reply, std::vector<std::string>& out) {
  switch (reply.type) {
    case REDIS_REPLY_ARRAY:
      for (size_t i = 0; i < reply.elements; ++i) Flatten(*reply.element[i], out);
      break;
    case REDIS_REPLY_INTEGER:
      out.push_back(absl::StrCat(reply.integer));
      break;
    case REDIS_REPLY_NIL:
      out.push_back("(nil)");
      break;
    default:
      out.emplace_back(reply.str, reply.len);
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<RedisServer>> RedisServer::Start(
    int port, std::vector<std::string> extra_args) {
  absl::Status last = absl::OkStatus();
  // A free port can be taken between FreeLoopbackPort and redis's bind: try a few.
  for (int attempt = 0; attempt < (port == 0 ? 5 : 1); ++attempt) {
    int chosen = port;
    if (chosen == 0) {
      absl::StatusOr<int> free_port = FreeLoopbackPort();
      if (!free_port.ok()) return free_port.status();
      chosen = *free_port;
    }
    std::unique_ptr<RedisServer> server(new RedisServer(chosen, extra_args));
    last = server->Spawn();
    if (last.ok()) return server;
  }
  return last;
}

absl::StatusOr<std::unique_ptr<RedisServer>> RedisServer::StartTls(
    const RedisTlsFiles& tls, int tls_port, std::vector<std::string> extra_args) {
  std::vector<std::string> args = {"--tls-port",
                                   "",  // Set below.
                                   "--tls-cert-file",
                                   tls.cert_file,
                                   "--tls-key-file",
                                   tls.key_file,
                                   "--tls-ca-cert-file",
                                   tls.ca_file,
                                   "--tls-auth-clients",
                                   tls.require_client_certificate ? "yes" : "no"};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  absl::Status last = absl::OkStatus();
  // Free ports can be taken before redis binds them: try a few.
  for (int attempt = 0; attempt < 5; ++attempt) {
    absl::StatusOr<int> port = FreeLoopbackPort();
    if (!port.ok()) return port.status();
    int chosen_tls = tls_port;
    if (chosen_tls == 0) {
      absl::StatusOr<int> free_tls = FreeLoopbackPort();
      if (!free_tls.ok()) return free_tls.status();
      chosen_tls = *free_tls;
    }
    if (chosen_tls == *port) continue;
    args[1] = absl::StrCat(chosen_tls);
    std::unique_ptr<RedisServer> server(new RedisServer(*port, args, chosen_tls));
    last = server->Spawn();
    if (last.ok()) return server;
  }
  return last;
}

RedisServer::RedisServer(int port, std::vector<std::string> extra_args, int tls_port)
    : port_(port), tls_port_(tls_port), extra_args_(std::move(extra_args)) {
  for (size_t i = 0; i + 1 < extra_args_.size(); ++i) {
    if (extra_args_[i] == "--requirepass") password_ = extra_args_[i + 1];
  }
}

RedisServer::~RedisServer() { Kill(); }

std::string RedisServer::url() const { return absl::StrCat("redis://127.0.0.1:", port_); }

std::string RedisServer::tls_url() const {
  return tls_port_ == 0 ? "" : absl::StrCat("rediss://127.0.0.1:", tls_port_);
}

absl::Status RedisServer::Spawn() {
  std::vector<std::string> args = {kRedisServerPath,
                                   "--port",
                                   absl::StrCat(port_),
                                   "--bind",
                                   "127.0.0.1",
                                   "--save",
                                   "",
                                   "--appendonly",
                                   "no",
                                   "--dir",
                                   "/tmp",
                                   "--loglevel",
                                   "warning"};
  args.insert(args.end(), extra_args_.begin(), extra_args_.end());
  absl::StatusOr<std::unique_ptr<ChildProcess>> process =
      ChildProcess::Start({.argv = std::move(args), .stdout_path = "/dev/null"});
  if (!process.ok()) return process.status();
  process_ = *std::move(process);
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (absl::Now() < deadline) {
    if (!process_->Running()) {
      const absl::StatusOr<int> code = process_->Wait();
      process_.reset();
      return absl::UnavailableError(absl::StrCat(
          "redis-server on port ", port_, " exited at start (",
          code.ok() ? absl::StrCat("exit code ", *code) : code.status().ToString(), ")"));
    }
    std::vector<std::string> ping = {"PING"};
    if (!password_.empty()) ping = {"AUTH", password_};
    if (Command(ping).ok()) return absl::OkStatus();
    absl::SleepFor(absl::Milliseconds(10));
  }
  Kill();
  return absl::DeadlineExceededError(absl::StrCat("redis-server on port ", port_, " not ready"));
}

void RedisServer::Kill() {
  if (process_ == nullptr) return;
  (void)process_->Kill();
  process_.reset();
}

absl::Status RedisServer::Restart() {
  Kill();
  return Spawn();
}

void RedisServer::Stall() {
  if (process_ != nullptr) process_->Signal(SIGSTOP);
}

void RedisServer::Resume() {
  if (process_ != nullptr) process_->Signal(SIGCONT);
}

absl::StatusOr<std::vector<std::string>> RedisServer::Command(const std::vector<std::string>& args,
                                                              int database) const {
  timeval timeout{1, 0};
  std::unique_ptr<redisContext, void (*)(redisContext*)> context(
      redisConnectWithTimeout("127.0.0.1", port_, timeout), redisFree);
  if (context == nullptr || context->err != 0) {
    return absl::UnavailableError(
        absl::StrCat("connect: ", context == nullptr ? "out of memory" : context->errstr));
  }
  redisSetTimeout(context.get(), timeout);
  auto run = [&](const std::vector<std::string>& command)
      -> absl::StatusOr<std::unique_ptr<redisReply, void (*)(void*)>> {
    std::vector<const char*> argv;
    std::vector<size_t> lengths;
    for (const std::string& arg : command) {
      argv.push_back(arg.data());
      lengths.push_back(arg.size());
    }
    std::unique_ptr<redisReply, void (*)(void*)> reply(
        static_cast<redisReply*>(redisCommandArgv(context.get(), static_cast<int>(argv.size()),
                                                  argv.data(), lengths.data())),
        freeReplyObject);
    if (reply == nullptr) return absl::UnavailableError(context->errstr);
    if (reply->type == REDIS_REPLY_ERROR) {
      return absl::FailedPreconditionError(std::string(reply->str, reply->len));
    }
    return reply;
  };
  if (!password_.empty() && args.front() != "AUTH") {
    if (auto auth = run({"AUTH", password_}); !auth.ok()) return auth.status();
  }
  if (database != 0) {
    if (auto select = run({"SELECT", absl::StrCat(database)}); !select.ok()) {
      return select.status();
    }
  }
  auto reply = run(args);
  if (!reply.ok()) return reply.status();
  std::vector<std::string> out;
  Flatten(**reply, out);
  return out;
}

}  // namespace copilot::gateway::testing
