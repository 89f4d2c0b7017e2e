// CurlTransport over loopback against the real haufe-emulator.
#include "server/transport/curl_transport.h"

#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/common/errors.h"
#include "server/transport/h2_stream_refusals.h"
#include "tests/emulator/testing/emulator_process.h"

namespace copilot::gateway {
namespace {

using copilot::emulator::testing::EmulatorProcess;
using nlohmann::json;

constexpr char kHrAssistant[] = "7c0e5d3a-4c1b-4f57-9a51-1f1f3e0a0002";

std::string Reason(const absl::Status& status) {
  auto info = GetErrorInfo(status);
  return info.has_value() ? info->reason() : "<no ErrorInfo>";
}

std::string Meta(const absl::Status& status, const std::string& key) {
  auto info = GetErrorInfo(status);
  if (!info.has_value()) return "<no ErrorInfo>";
  auto it = info->metadata().find(key);
  return it == info->metadata().end() ? "<none>" : it->second;
}

int ThreadCount() {
  int count = 0;
  DIR* dir = opendir("/proc/self/task");
  if (dir == nullptr) return -1;
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] != '.') ++count;
  }
  closedir(dir);
  return count;
}

// A failure after the first response byte of a POST: INTERNAL (not UNAVAILABLE, which says "safe
// to retry"), with the reason and the ErrorInfo metadata that say why.
void ExpectNotSafeToRetry(const absl::Status& status, const std::string& reason) {
  EXPECT_EQ(status.code(), absl::StatusCode::kInternal) << status;
  EXPECT_EQ(Reason(status), reason);
  EXPECT_EQ(Meta(status, "headers_received"), "true");
  EXPECT_EQ(Meta(status, "response_started"), "true");
  EXPECT_NE(status.message().find("may have carried out the request"), absl::string_view::npos)
      << status;
}

// Records the events of one transfer. Thread-safe: the loop thread reports, the test waits.
class RecordingHandler final : public HttpTransferHandler {
 public:
  void OnHeaders(const HttpResponseHead& head) override {
    absl::MutexLock lock(&mu_);
    EXPECT_EQ(data_calls_, 0) << "OnHeaders after OnData";
    EXPECT_FALSE(status_.has_value()) << "OnHeaders after OnComplete";
    head_ = head;
    ++header_calls_;
  }
  bool OnData(absl::string_view piece) override {
    absl::MutexLock lock(&mu_);
    EXPECT_FALSE(status_.has_value()) << "OnData after OnComplete";
    EXPECT_FALSE(paused_) << "OnData while paused";
    ++data_calls_;
    if (piece.empty()) ++empty_pieces_;
    body_.append(piece.data(), piece.size());
    if (pause_on_data_ && !piece.empty()) {  // The drain call after Resume has nothing.
      paused_ = true;
      return false;
    }
    return true;
  }
  void OnComplete(absl::Status status) override {
    absl::MutexLock lock(&mu_);
    EXPECT_FALSE(status_.has_value()) << "OnComplete twice";
    status_ = std::move(status);
  }
  void OnUpstreamTime(absl::Duration elapsed) override {
    absl::MutexLock lock(&mu_);
    EXPECT_FALSE(status_.has_value()) << "OnUpstreamTime after OnComplete";
    upstream_times_.push_back(elapsed);
  }

  // Waits for OnComplete; returns its status (or a test failure status on timeout).
  absl::Status Wait(absl::Duration timeout = absl::Seconds(20)) {
    absl::MutexLock lock(&mu_);
    auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return status_.has_value(); };
    if (!mu_.AwaitWithTimeout(absl::Condition(&done), timeout)) {
      return absl::UnknownError("test: OnComplete did not come in time");
    }
    return *status_;
  }
  bool WaitForData(absl::Duration timeout = absl::Seconds(10)) {
    absl::MutexLock lock(&mu_);
    auto has_data = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !body_.empty(); };
    return mu_.AwaitWithTimeout(absl::Condition(&has_data), timeout);
  }
  void set_pause_on_data(bool pause) {
    absl::MutexLock lock(&mu_);
    pause_on_data_ = pause;
  }
  // Before calling HttpTransfer::Resume().
  void Unpause() {
    absl::MutexLock lock(&mu_);
    paused_ = false;
  }
  bool done() {
    absl::MutexLock lock(&mu_);
    return status_.has_value();
  }
  HttpResponseHead head() {
    absl::MutexLock lock(&mu_);
    return head_;
  }
  std::string body() {
    absl::MutexLock lock(&mu_);
    return body_;
  }
  std::size_t body_size() {
    absl::MutexLock lock(&mu_);
    return body_.size();
  }
  int data_calls() {
    absl::MutexLock lock(&mu_);
    return data_calls_;
  }
  int empty_pieces() {
    absl::MutexLock lock(&mu_);
    return empty_pieces_;
  }
  int header_calls() {
    absl::MutexLock lock(&mu_);
    return header_calls_;
  }
  std::vector<absl::Duration> upstream_times() {
    absl::MutexLock lock(&mu_);
    return upstream_times_;
  }

 private:
  absl::Mutex mu_;
  HttpResponseHead head_ ABSL_GUARDED_BY(mu_);
  std::string body_ ABSL_GUARDED_BY(mu_);
  std::optional<absl::Status> status_ ABSL_GUARDED_BY(mu_);
  std::vector<absl::Duration> upstream_times_ ABSL_GUARDED_BY(mu_);
  int header_calls_ ABSL_GUARDED_BY(mu_) = 0;
  int data_calls_ ABSL_GUARDED_BY(mu_) = 0;
  int empty_pieces_ ABSL_GUARDED_BY(mu_) = 0;
  bool pause_on_data_ ABSL_GUARDED_BY(mu_) = false;
  bool paused_ ABSL_GUARDED_BY(mu_) = false;
};

// Starts a follow-up transfer from OnComplete (on the loop thread).
class ChainingHandler final : public HttpTransferHandler {
 public:
  ChainingHandler(CurlTransport* transport, HttpRequest next,
                  std::shared_ptr<RecordingHandler> then)
      : transport_(transport), next_(std::move(next)), then_(std::move(then)) {}
  void OnHeaders(const HttpResponseHead&) override {}
  bool OnData(absl::string_view) override { return true; }
  void OnComplete(absl::Status) override { transport_->Start(next_, then_); }

 private:
  CurlTransport* transport_;
  HttpRequest next_;
  std::shared_ptr<RecordingHandler> then_;
};

class CurlTransportTest : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto emulator = EmulatorProcess::Start({.args = {"--stream-delay-ms", "20"}});
    ASSERT_TRUE(emulator.ok()) << emulator.status();
    emulator_ = emulator->release();
  }
  static void TearDownTestSuite() {
    delete emulator_;
    emulator_ = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(emulator_, nullptr);
    ASSERT_TRUE(emulator_->Reset().ok());
    ASSERT_TRUE(emulator_->SetConfig({{"stream_delay_ms", 20}, {"response_delay_ms", 0}}).ok());
    auto transport = CurlTransport::Create();
    ASSERT_TRUE(transport.ok()) << transport.status();
    transport_ = *std::move(transport);
  }

  EmulatorProcess& emu() { return *emulator_; }

  HttpRequest Get(const std::string& path) {
    HttpRequest request;
    request.method = "GET";
    request.url = emu().api_url() + path;
    request.headers = {{"api-key", emu().api_key()}, {"accept", "application/json"}};
    request.deadline = absl::Now() + absl::Seconds(20);
    return request;
  }

  HttpRequest Post(const std::string& path, const std::string& body) {
    HttpRequest request = Get(path);
    request.method = "POST";
    request.headers.emplace_back("content-type", "application/json");
    request.body = body;
    return request;
  }

  // A streamed chat completion of about a dozen NDJSON lines, 20 ms apart.
  HttpRequest StreamRequest() {
    return Post("/chat/completions/stream",
                json{{"assistant_id", kHrAssistant},
                     {"messages", {{{"role", "user"}, {"content", "Wie viel Urlaub?"}}}}}
                    .dump());
  }

  void AddFault(const json& rule) { ASSERT_TRUE(emu().AddFault(rule).ok()) << rule.dump(); }

  // Polls the emulator's record until `predicate` holds (or 10 s pass).
  json WaitForRecords(const std::function<bool(const json&)>& predicate) {
    json records;
    const absl::Time give_up = absl::Now() + absl::Seconds(10);
    while (absl::Now() < give_up) {
      absl::StatusOr<json> got = emu().Requests();
      if (got.ok()) {
        records = *got;
        if (predicate(records)) break;
      }
      absl::SleepFor(absl::Milliseconds(10));
    }
    return records;
  }

  static EmulatorProcess* emulator_;
  std::unique_ptr<CurlTransport> transport_;
};

EmulatorProcess* CurlTransportTest::emulator_ = nullptr;

TEST_F(CurlTransportTest, GetSucceedsWithHeadersAndBody) {
  auto handler = std::make_shared<RecordingHandler>();
  transport_->Start(Get("/assistants"), handler);
  ASSERT_TRUE(handler->Wait().ok());
  EXPECT_EQ(handler->header_calls(), 1);
  EXPECT_EQ(handler->head().status, 200);
  EXPECT_NE(handler->head().Header("content-type").find("application/json"),
            absl::string_view::npos);
  json body = json::parse(handler->body(), nullptr, false);
  ASSERT_TRUE(body.is_array()) << handler->body();
  EXPECT_EQ(body.size(), 3u);
}

TEST_F(CurlTransportTest, PostSendsMethodHeadersAndBody) {
  auto handler = std::make_shared<RecordingHandler>();
  HttpRequest request = Post("/threads", json{{"assistant_id", kHrAssistant}}.dump());
  request.headers.emplace_back("x-request-id", "req-77");
  transport_->Start(request, handler);
  ASSERT_TRUE(handler->Wait().ok());
  EXPECT_EQ(handler->head().status, 201);
  json records = *emu().Requests();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0]["method"], "POST");
  EXPECT_EQ(records[0]["path"], "/agents/v1/threads");
  EXPECT_EQ(records[0]["headers"]["x-request-id"], "req-77");
  EXPECT_EQ(records[0]["headers"]["content-type"], "application/json");
  EXPECT_FALSE(records[0]["headers"].contains("expect"));
  EXPECT_EQ(json::parse(records[0]["body"].get<std::string>()),
            json({{"assistant_id", kHrAssistant}}));
}

// The loop keeps the easy handles of ended transfers for its next ones (kMaxSpareHandles). One
// loop, one transfer at a time: each of these three runs on the handle of the one before, and
// carries nothing of it: not the POST's body, headers or method, not the DELETE's method. (And
// a DELETE's empty answer is a success with an empty body.)
TEST_F(CurlTransportTest, AKeptHandleCarriesNothingOfItsLastTransfer) {
  auto create = std::make_shared<RecordingHandler>();
  HttpRequest post = Post("/threads", json{{"assistant_id", kHrAssistant}}.dump());
  post.headers.emplace_back("x-request-id", "req-post");
  transport_->Start(post, create);
  ASSERT_TRUE(create->Wait().ok());
  const std::string id = json::parse(create->body())["id"];
  auto remove = std::make_shared<RecordingHandler>();
  HttpRequest request = Get("/threads/" + id);
  request.method = "DELETE";
  transport_->Start(request, remove);
  ASSERT_TRUE(remove->Wait().ok());
  EXPECT_EQ(remove->head().status, 204);
  EXPECT_EQ(remove->body(), "");
  auto list = std::make_shared<RecordingHandler>();
  transport_->Start(Get("/assistants"), list);
  ASSERT_TRUE(list->Wait().ok());
  EXPECT_EQ(list->head().status, 200);

  json records = *emu().Requests();
  ASSERT_EQ(records.size(), 3u) << records.dump();
  EXPECT_EQ(records[0]["method"], "POST");
  EXPECT_EQ(records[1]["method"], "DELETE");
  EXPECT_EQ(records[2]["method"], "GET");
  EXPECT_EQ(records[2]["path"], "/agents/v1/assistants");
  for (int i : {1, 2}) {
    EXPECT_EQ(records[i]["body"], "") << records[i].dump();
    EXPECT_FALSE(records[i]["headers"].contains("x-request-id")) << records[i].dump();
    EXPECT_FALSE(records[i]["headers"].contains("content-type")) << records[i].dump();
    EXPECT_FALSE(records[i]["headers"].contains("content-length") &&
                 records[i]["headers"]["content-length"] != "0")
        << records[i].dump();
  }
}

TEST_F(CurlTransportTest, HttpErrorsAreNotTransportErrors) {
  auto handler = std::make_shared<RecordingHandler>();
  transport_->Start(Get("/threads/5e0a4d8e-7f87-4d40-9a9f-000000000000"), handler);
  ASSERT_TRUE(handler->Wait().ok());
  EXPECT_EQ(handler->head().status, 404);
  EXPECT_EQ(json::parse(handler->body())["error_code"], "thread_not_found");
}

// A listening socket on a free loopback port, closed with the object.
class LoopbackListener {
 public:
  explicit LoopbackListener(int backlog) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    address_.sin_family = AF_INET;
    address_.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<const sockaddr*>(&address_), sizeof(address_));
    listen(fd_, backlog);
    socklen_t length = sizeof(address_);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&address_), &length);
  }
  LoopbackListener(const LoopbackListener&) = delete;
  LoopbackListener& operator=(const LoopbackListener&) = delete;
  ~LoopbackListener() { close(fd_); }
  std::string url() const {
    return "http://127.0.0.1:" + std::to_string(ntohs(address_.sin_port)) + "/agents/v1";
  }

 protected:
  int fd_ = -1;
  sockaddr_in address_{};
};

TEST_F(CurlTransportTest, ConnectionRefusedIsUnreachable) {
  // A port that was free a moment ago and has no listener.
  const std::string url = LoopbackListener(1).url();
  auto handler = std::make_shared<RecordingHandler>();
  HttpRequest request = Get("/assistants");
  request.url = url;
  transport_->Start(request, handler);
  absl::Status status = handler->Wait();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_EQ(Reason(status), "upstream_unreachable");
  EXPECT_EQ(Meta(status, "headers_received"), "false");
  EXPECT_EQ(Meta(status, "request_sent"), "false");  // Provably not acted on: retry is safe.
  EXPECT_EQ(handler->header_calls(), 0);
}

// A loopback listener that never accepts, its accept queue filled: further connects hang in
// SYN_SENT, which is what an unreachable upstream looks like.
class BlackholeListener : public LoopbackListener {
 public:
  BlackholeListener() : LoopbackListener(0) {
    for (int i = 0; i < 4; ++i) {  // Fill the accept queue (non-blocking connects).
      int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
      connect(fd, reinterpret_cast<const sockaddr*>(&address_), sizeof(address_));
      fillers_.push_back(fd);
    }
    absl::SleepFor(absl::Milliseconds(50));  // Let the handshakes land in the queue.
  }
  ~BlackholeListener() {
    for (int fd : fillers_) close(fd);
  }

 private:
  std::vector<int> fillers_;
};

// A loopback listener that answers each connection's request with bytes that are not HTTP (an
// SSH banner: another service on the upstream's port), then closes it.
class NotHttpListener : public LoopbackListener {
 public:
  NotHttpListener() : LoopbackListener(8) {
    thread_ = std::thread([this] {
      while (true) {
        const int fd = accept(fd_, nullptr, nullptr);
        if (fd < 0) return;  // shutdown() below.
        std::string request;
        char buffer[4096];
        while (request.find("\r\n\r\n") == std::string::npos) {
          const ssize_t got = read(fd, buffer, sizeof(buffer));
          if (got <= 0) break;
          request.append(buffer, static_cast<std::size_t>(got));
        }
        accepted_.fetch_add(1);
        const std::string banner = "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n";
        EXPECT_EQ(write(fd, banner.data(), banner.size()), static_cast<ssize_t>(banner.size()));
        absl::SleepFor(absl::Milliseconds(20));
        close(fd);
      }
    });
  }
  ~NotHttpListener() {
    shutdown(fd_, SHUT_RDWR);
    thread_.join();
  }
  int accepted() const { return accepted_.load(); }

 private:
  std::atomic<int> accepted_{0};
  std::thread thread_;
};

// Not the gateway's configuration (transport_misconfigured, as libcurl's code alone would say)
// but the upstream answering wrongly, after the request went out; a POST may have been carried
// out, so it is not UNAVAILABLE.
TEST_F(CurlTransportTest, AnAnswerThatIsNotHttpIsABadResponseOfARequestThatWasSent) {
  NotHttpListener listener;
  for (const bool post : {false, true}) {
    SCOPED_TRACE(post ? "POST" : "GET");
    HttpRequest request = post ? Post("/threads", "{}") : Get("/assistants");
    request.url = listener.url() + (post ? "/threads" : "/assistants");
    auto handler = std::make_shared<RecordingHandler>();
    transport_->Start(request, handler);
    absl::Status status = handler->Wait();
    EXPECT_EQ(status.code(), post ? absl::StatusCode::kInternal : absl::StatusCode::kUnavailable)
        << status;
    EXPECT_EQ(Reason(status), "upstream_bad_response");
    EXPECT_EQ(Meta(status, "request_sent"), "true");
    EXPECT_EQ(Meta(status, "headers_received"), "false");
    EXPECT_EQ(handler->header_calls(), 0);
  }
  EXPECT_EQ(listener.accepted(), 2);
}

TEST_F(CurlTransportTest, ConnectTimeoutIsUnreachableNotDeadline) {
  BlackholeListener blackhole;
  auto handler = std::make_shared<RecordingHandler>();
  HttpRequest request = Get("/assistants");
  request.url = blackhole.url() + "/assistants";
  request.connect_timeout = absl::Milliseconds(200);
  request.deadline = absl::Now() + absl::Seconds(10);
  const absl::Time start = absl::Now();
  transport_->Start(request, handler);
  absl::Status status = handler->Wait();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_EQ(Reason(status), "upstream_unreachable");
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
}

TEST_F(CurlTransportTest, DeadlineDuringConnectIsDeadlineExceeded) {
  BlackholeListener blackhole;
  auto handler = std::make_shared<RecordingHandler>();
  HttpRequest request = Get("/assistants");
  request.url = blackhole.url() + "/assistants";
  request.connect_timeout = absl::Seconds(5);
  request.deadline = absl::Now() + absl::Milliseconds(200);
  transport_->Start(request, handler);
  absl::Status status = handler->Wait();
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded) << status;
  EXPECT_EQ(Reason(status), "upstream_timeout");
}

TEST_F(CurlTransportTest, ResetBeforeHeaders) {
  AddFault({{"endpoint", "list_assistants"}, {"type", "reset_before_headers"}});
  auto handler = std::make_shared<RecordingHandler>();
  transport_->Start(Get("/assistants"), handler);
  absl::Status status = handler->Wait();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_EQ(Reason(status), "upstream_reset");
  EXPECT_EQ(Meta(status, "headers_received"), "false");
  EXPECT_EQ(Meta(status, "response_started"), "false");
  EXPECT_EQ(handler->header_calls(), 0);
}

// Before any response byte a failure is safe to retry, whatever the method.
TEST_F(CurlTransportTest, ResetBeforeAnyResponseByteOfAPostIsUnavailable) {
  AddFault({{"endpoint", "create_thread"}, {"type", "reset_before_headers"}});
  auto handler = std::make_shared<RecordingHandler>();
  transport_->Start(Post("/threads", json{{"assistant_id", kHrAssistant}}.dump()), handler);
  absl::Status status = handler->Wait();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_EQ(Reason(status), "upstream_reset");
  EXPECT_EQ(Meta(status, "response_started"), "false");
  // But it was sent: the upstream may have carried it out before the connection broke.
  EXPECT_EQ(Meta(status, "request_sent"), "true");
}

// After the first response byte of a POST the upstream may have carried it out (here it did:
// the thread exists), so the failure is not UNAVAILABLE (which says "safe to retry").
TEST_F(CurlTransportTest, ResetMidBodyOfAPostIsInternal) {
  AddFault({{"endpoint", "create_thread"}, {"type", "reset_mid_body"}, {"after_bytes", 20}});
  auto handler = std::make_shared<RecordingHandler>();
  transport_->Start(Post("/threads", json{{"assistant_id", kHrAssistant}}.dump()), handler);
  absl::Status status = handler->Wait();
  ExpectNotSafeToRetry(status, "upstream_reset");
  EXPECT_EQ(handler->head().status, 201);
  auto threads = std::make_shared<RecordingHandler>();
  transport_->Start(Get("/threads"), threads);
  ASSERT_TRUE(threads->Wait().ok());
  EXPECT_EQ(json::parse(threads->body())["items"].size(), 1u) << threads->body();
}

// DELETE is idempotent in HTTP: after the first response byte it stays UNAVAILABLE.
TEST_F(CurlTransportTest, ResetMidBodyOfADeleteIsUnavailable) {
  // A thread that does not exist: a 404 with a JSON body to cut (a 204 has none).
  AddFault({{"endpoint", "delete_thread"}, {"type", "reset_mid_body"}, {"after_bytes", 10}});
  auto handler = std::make_shared<RecordingHandler>();
  HttpRequest request = Get("/threads/5e0a4d8e-7f87-4d40-9a9f-000000000000");
  request.method = "DELETE";
  transport_->Start(request, handler);
  absl::Status status = handler->Wait();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_EQ(Reason(status), "upstream_reset");
  EXPECT_EQ(Meta(status, "response_started"), "true");
  EXPECT_EQ(handler->head().status, 404);
}

TEST_F(CurlTransportTest, ResetMidBody) {
  AddFault({{"endpoint", "list_assistants"}, {"type", "reset_mid_body"}, {"after_bytes", 50}});
  auto handler = std::make_shared<RecordingHandler>();
  transport_->Start(Get("/assistants"), handler);
  absl::Status status = handler->Wait();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;  // GET: idempotent.
  EXPECT_EQ(Reason(status), "upstream_reset");
  EXPECT_EQ(Meta(status, "headers_received"), "true");
  EXPECT_EQ(Meta(status, "response_started"), "true");
  EXPECT_EQ(handler->head().status, 200);
  EXPECT_LE(handler->body().size(), 50u);
}

TEST_F(CurlTransportTest, StallIsDetected) {
  AddFault({{"endpoint", "list_assistants"}, {"type", "stall"}, {"after_bytes", 10}});
  auto handler = std::make_shared<RecordingHandler>();
  HttpRequest request = Get("/assistants");
  request.stall_timeout = absl::Milliseconds(300);
  const absl::Time start = absl::Now();
  transport_->Start(request, handler);
  absl::Status status = handler->Wait();
  const absl::Duration elapsed = absl::Now() - start;
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;  // GET: idempotent.
  EXPECT_EQ(Reason(status), "upstream_stalled");
  EXPECT_EQ(Meta(status, "headers_received"), "true");
  EXPECT_EQ(Meta(status, "response_started"), "true");
  EXPECT_EQ(handler->body().size(), 10u);
  EXPECT_GE(elapsed, absl::Milliseconds(300));
  EXPECT_LT(elapsed, absl::Seconds(3));
}

TEST_F(CurlTransportTest, StallAfterTheFirstBytesOfAPostIsInternal) {
  AddFault({{"endpoint", "chat_completions_stream"}, {"type", "stall"}, {"after_bytes", 10}});
  auto handler = std::make_shared<RecordingHandler>();
  HttpRequest request = StreamRequest();
  request.stall_timeout = absl::Milliseconds(300);
  transport_->Start(request, handler);
  absl::Status status = handler->Wait();
  ExpectNotSafeToRetry(status, "upstream_stalled");
  EXPECT_EQ(handler->body().size(), 10u);
}

// A blocking run answers only when the answer is ready: waiting for the first byte is not a
// stall (the deadline bounds it), so a slow answer is not failed as retryable UNAVAILABLE.
TEST_F(CurlTransportTest, SlowFirstByteIsNotAStall) {
  AddFault({{"endpoint", "list_assistants"}, {"type", "latency"}, {"delay_ms", 800}});
  auto handler = std::make_shared<RecordingHandler>();
  HttpRequest request = Get("/assistants");
  request.stall_timeout = absl::Milliseconds(200);
  transport_->Start(request, handler);
  absl::Status status = handler->Wait();
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_EQ(handler->head().status, 200);
}

TEST_F(CurlTransportTest, DeadlineGivesDeadlineExceeded) {
  AddFault({{"endpoint", "list_assistants"}, {"type", "latency"}, {"delay_ms", 3000}});
  auto handler = std::make_shared<RecordingHandler>();
  HttpRequest request = Get("/assistants");
  request.deadline = absl::Now() + absl::Milliseconds(300);
  const absl::Time start = absl::Now();
  transport_->Start(request, handler);
  absl::Status status = handler->Wait();
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded) << status;
  EXPECT_EQ(Reason(status), "upstream_timeout");
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
}

TEST_F(CurlTransportTest, DeadlineAlreadyPastSendsNothing) {
  auto handler = std::make_shared<RecordingHandler>();
  HttpRequest request = Get("/assistants");
  request.deadline = absl::Now() - absl::Milliseconds(1);
  transport_->Start(request, handler);
  absl::Status status = handler->Wait();
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded) << status;
  EXPECT_EQ(Reason(status), "upstream_timeout");
  EXPECT_EQ(Meta(status, "request_sent"), "false");
  EXPECT_EQ(emu().Requests()->size(), 0u);
}

TEST_F(CurlTransportTest, CancelClosesTheConnectionAtOnce) {
  AddFault({{"endpoint", "list_assistants"}, {"type", "latency"}, {"delay_ms", 5000}});
  auto handler = std::make_shared<RecordingHandler>();
  std::shared_ptr<HttpTransfer> transfer = transport_->Start(Get("/assistants"), handler);
  json arrived = WaitForRecords([](const json& records) { return records.size() == 1; });
  ASSERT_EQ(arrived.size(), 1u);
  const absl::Time cancelled_at = absl::Now();
  transfer->Cancel();
  absl::Status status = handler->Wait();
  EXPECT_EQ(status.code(), absl::StatusCode::kCancelled) << status;
  EXPECT_EQ(Reason(status), "upstream_call_cancelled");
  EXPECT_EQ(Meta(status, "request_sent"), "true");  // The upstream had it: it may have acted.
  json records = WaitForRecords(
      [](const json& records) { return records.size() == 1 && records[0]["finished"] == true; });
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0]["client_closed_early"], true);
  EXPECT_LT(absl::Now() - cancelled_at, absl::Seconds(2));  // Not after the 5 s latency.
  transfer->Cancel();                                       // After the end: a no-op.
  transfer->Resume();
}

TEST_F(CurlTransportTest, CancelMidStream) {
  // Chunks 300 ms apart: the stream cannot end between the first chunk and the cancel, even on
  // a slow (sanitizer) build. SetUp puts the pace back for the next test.
  ASSERT_TRUE(emu().SetConfig({{"stream_delay_ms", 300}}).ok());
  auto handler = std::make_shared<RecordingHandler>();
  std::shared_ptr<HttpTransfer> transfer = transport_->Start(StreamRequest(), handler);
  ASSERT_TRUE(handler->WaitForData());
  transfer->Cancel();
  EXPECT_EQ(handler->Wait().code(), absl::StatusCode::kCancelled);
  json records = WaitForRecords(
      [](const json& records) { return records.size() == 1 && records[0]["finished"] == true; });
  EXPECT_EQ(records[0]["client_closed_early"], true);
}

TEST_F(CurlTransportTest, OversizedBodyWithContentLength) {
  AddFault({{"endpoint", "list_assistants"}, {"type", "oversized_body"}, {"bytes", 200000}});
  auto handler = std::make_shared<RecordingHandler>();
  HttpRequest request = Get("/assistants");
  request.max_response_bytes = 10000;
  transport_->Start(request, handler);
  absl::Status status = handler->Wait();
  EXPECT_EQ(status.code(), absl::StatusCode::kInternal) << status;
  EXPECT_EQ(Reason(status), "upstream_response_too_large");
  EXPECT_LE(handler->body().size(), 10000u);
}

TEST_F(CurlTransportTest, OversizedStreamWithoutContentLength) {
  auto handler = std::make_shared<RecordingHandler>();
  HttpRequest request = StreamRequest();
  request.max_response_bytes = 300;
  transport_->Start(request, handler);
  absl::Status status = handler->Wait();
  EXPECT_EQ(status.code(), absl::StatusCode::kInternal) << status;
  EXPECT_EQ(Reason(status), "upstream_response_too_large");
  EXPECT_LE(handler->body().size(), 300u);
}

// The concatenated content of an NDJSON body; fails on a line that is not JSON.
std::string StreamText(const std::string& body) {
  std::string text;
  for (absl::string_view line : absl::StrSplit(body, '\n', absl::SkipEmpty())) {
    json chunk = json::parse(line, nullptr, false);
    EXPECT_FALSE(chunk.is_discarded()) << line;
    if (!chunk.is_discarded()) text += chunk["delta"]["content"].get<std::string>();
  }
  return text;
}

constexpr char kExpectedAnswer[] =
    "Regarding \"Wie viel Urlaub?\": this is the emulated answer of Haufe Copilot HR.";

TEST_F(CurlTransportTest, StreamArrivesInPieces) {
  auto handler = std::make_shared<RecordingHandler>();
  transport_->Start(StreamRequest(), handler);
  ASSERT_TRUE(handler->Wait().ok());
  EXPECT_EQ(handler->head().status, 200);
  EXPECT_GT(handler->data_calls(), 3);  // Line by line, 20 ms apart, not one buffer at the end.
  EXPECT_EQ(StreamText(handler->body()), kExpectedAnswer);
}

TEST_F(CurlTransportTest, PauseHoldsDataAndResumeDeliversTheRestExactlyOnce) {
  auto handler = std::make_shared<RecordingHandler>();
  handler->set_pause_on_data(true);
  HttpRequest request = StreamRequest();
  request.stall_timeout = absl::Milliseconds(150);  // A pause is not a stall.
  std::shared_ptr<HttpTransfer> transfer = transport_->Start(request, handler);
  ASSERT_TRUE(handler->WaitForData());
  // The whole stream takes ~250 ms; while paused nothing more arrives and nothing completes.
  absl::SleepFor(absl::Milliseconds(600));
  EXPECT_EQ(handler->data_calls(), 1);
  EXPECT_FALSE(handler->done());
  handler->set_pause_on_data(false);
  handler->Unpause();
  transfer->Resume();
  ASSERT_TRUE(handler->Wait().ok());
  EXPECT_EQ(handler->empty_pieces(), 1);  // The drain call that follows Resume.
  EXPECT_EQ(StreamText(handler->body()), kExpectedAnswer);
}

TEST_F(CurlTransportTest, PausingEveryPieceStillDeliversEverything) {
  auto handler = std::make_shared<RecordingHandler>();
  handler->set_pause_on_data(true);
  std::shared_ptr<HttpTransfer> transfer = transport_->Start(StreamRequest(), handler);
  // Resume whenever paused, from this thread, until the stream ends.
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  int last_calls = 0;
  while (!handler->done() && absl::Now() < give_up) {
    const int calls = handler->data_calls();
    if (calls != last_calls) {
      last_calls = calls;
      handler->Unpause();
      transfer->Resume();
    }
    absl::SleepFor(absl::Milliseconds(2));
  }
  ASSERT_TRUE(handler->Wait().ok());
  EXPECT_EQ(StreamText(handler->body()), kExpectedAnswer);
}

// Flow control reaches the upstream: while the handler holds the transfer paused libcurl stops
// reading the socket, so once the socket buffers are full the emulator cannot write any more
// of a 64 MiB answer (its record counts the bytes the kernel accepted from it).
TEST_F(CurlTransportTest, PausedTransferHoldsTheUpstreamBack) {
  constexpr int64_t kPadding = 64 << 20;
  // One 64 MiB NDJSON line first, then the paced answer.
  AddFault(
      {{"endpoint", "chat_completions_stream"}, {"type", "oversized_body"}, {"bytes", kPadding}});
  auto handler = std::make_shared<RecordingHandler>();
  handler->set_pause_on_data(true);
  HttpRequest request = StreamRequest();
  request.max_response_bytes = 2 * kPadding;
  // A pause is not a stall: the pause below lasts at least 1.5 s. Not shorter: after the
  // resume, a loaded machine (CI) once left a 300 ms gap in the emulator's 64 MiB write.
  request.stall_timeout = absl::Seconds(1);
  request.deadline = absl::Now() + absl::Seconds(90);
  std::shared_ptr<HttpTransfer> transfer = transport_->Start(request, handler);
  // The emulator builds the 64 MiB line before its first byte: slow under ThreadSanitizer.
  ASSERT_TRUE(handler->WaitForData(absl::Seconds(60)));
  auto upstream_sent = [this](bool* finished = nullptr) -> int64_t {
    absl::StatusOr<json> records = emu().Requests();
    if (!records.ok() || records->size() != 1) return -1;
    if (finished != nullptr) *finished = (*records)[0]["finished"].get<bool>();
    return (*records)[0]["response_bytes_sent"].get<int64_t>();
  };
  // Let the socket buffers fill: two equal readings 250 ms apart (at most 15 s).
  int64_t settled = upstream_sent();
  int64_t previous = -2;
  for (int i = 0; i < 60 && settled != previous; ++i) {
    previous = settled;
    absl::SleepFor(absl::Milliseconds(250));
    settled = upstream_sent();
  }
  absl::SleepFor(absl::Seconds(1));
  bool finished = true;
  const int64_t after_a_second = upstream_sent(&finished);
  const std::size_t delivered = handler->body_size();
  std::printf(
      "paused: upstream wrote %lld bytes of a %lld-byte answer (%lld more in the last second); "
      "the handler got %zu bytes in %d OnData call(s)\n",
      static_cast<long long>(after_a_second), static_cast<long long>(kPadding),
      static_cast<long long>(after_a_second - settled), delivered, handler->data_calls());
  EXPECT_GT(settled, 0);
  EXPECT_FALSE(finished);
  // Bounded by the kernel's socket buffers (tcp_rmem/tcp_wmem maxima: tens of MiB at most),
  // far short of the answer; and no growth while paused once they are full.
  EXPECT_LT(after_a_second, kPadding / 2);
  EXPECT_LE(after_a_second - settled, 64 * 1024);
  EXPECT_EQ(handler->data_calls(), 1);
  EXPECT_LE(delivered, 16u * 1024);  // One receive buffer at most.

  handler->set_pause_on_data(false);
  handler->Unpause();
  transfer->Resume();
  absl::Status status = handler->Wait(absl::Seconds(60));
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_GT(static_cast<int64_t>(handler->body_size()), kPadding);
  EXPECT_GT(upstream_sent(&finished), static_cast<int64_t>(handler->body_size()));
  EXPECT_TRUE(finished);
}

TEST_F(CurlTransportTest, DeadlineEndsAPausedTransfer) {
  auto handler = std::make_shared<RecordingHandler>();
  handler->set_pause_on_data(true);
  HttpRequest request = StreamRequest();
  request.deadline = absl::Now() + absl::Milliseconds(500);
  transport_->Start(request, handler);
  absl::Status status = handler->Wait(absl::Seconds(5));
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded) << status;
  EXPECT_EQ(Reason(status), "upstream_timeout");
}

TEST_F(CurlTransportTest, ConnectionsAreReused) {
  // Each Stats() call is a connection of its own, counted while it runs.
  absl::StatusOr<json> before = emu().Stats();
  ASSERT_TRUE(before.ok());
  for (int i = 0; i < 5; ++i) {
    auto handler = std::make_shared<RecordingHandler>();
    transport_->Start(Get("/assistants"), handler);
    ASSERT_TRUE(handler->Wait().ok());
  }
  absl::StatusOr<json> stats = emu().Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ((*stats)["open_connections"].get<int>(), (*before)["open_connections"].get<int>() + 1)
      << stats->dump();
}

TEST_F(CurlTransportTest, ManyConcurrentTransfersOnOneThread) {
  constexpr int kTransfers = 1000;
  // Long enough for all of them to be held at once even in a sanitizer build.
  AddFault({{"endpoint", "list_assistants"}, {"type", "latency"}, {"delay_ms", 4000}});
  const int threads_before = ThreadCount();
  std::vector<std::shared_ptr<RecordingHandler>> handlers;
  const absl::Time start = absl::Now();
  for (int i = 0; i < kTransfers; ++i) {
    handlers.push_back(std::make_shared<RecordingHandler>());
    transport_->Start(Get("/assistants"), handlers.back());
  }
  int max_in_flight = 0;
  int max_threads = 0;
  const absl::Time give_up = absl::Now() + absl::Seconds(15);
  while (absl::Now() < give_up && max_in_flight < kTransfers) {
    absl::StatusOr<json> stats = emu().Stats();
    if (stats.ok()) max_in_flight = std::max(max_in_flight, (*stats)["in_flight"].get<int>());
    max_threads = std::max(max_threads, ThreadCount());
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(max_in_flight, kTransfers);  // All held open by the upstream at the same time.
  int ok = 0;
  for (auto& handler : handlers) {
    absl::Status status = handler->Wait();
    if (status.ok() && handler->head().status == 200) ++ok;
  }
  EXPECT_EQ(ok, kTransfers);
  EXPECT_EQ(max_threads, threads_before);
  EXPECT_EQ(ThreadCount(), threads_before);
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));
}

TEST_F(CurlTransportTest, ShutdownCancelsOutstandingTransfers) {
  AddFault({{"endpoint", "list_assistants"}, {"type", "latency"}, {"delay_ms", 5000}});
  std::vector<std::shared_ptr<RecordingHandler>> handlers;
  for (int i = 0; i < 10; ++i) {
    handlers.push_back(std::make_shared<RecordingHandler>());
    transport_->Start(Get("/assistants"), handlers.back());
  }
  absl::SleepFor(absl::Milliseconds(300));  // Sent; the upstream holds each for 5 s.
  const absl::Time start = absl::Now();
  transport_->Shutdown();
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  for (auto& handler : handlers) {
    ASSERT_TRUE(handler->done());
    absl::Status status = handler->Wait();
    EXPECT_EQ(status.code(), absl::StatusCode::kCancelled);
    EXPECT_EQ(Reason(status), "transport_shutdown");
    // The upstream may carry it out (what the quota counts: MayHaveReachedUpstream).
    EXPECT_EQ(Meta(status, "request_sent"), "true");
  }
  // Afterwards Start completes inline, sending nothing.
  auto late = std::make_shared<RecordingHandler>();
  std::shared_ptr<HttpTransfer> transfer = transport_->Start(Get("/assistants"), late);
  ASSERT_TRUE(late->done());
  EXPECT_EQ(Reason(late->Wait()), "transport_shutdown");
  EXPECT_EQ(Meta(late->Wait(), "request_sent"), "false");
  transfer->Cancel();  // A no-op.
  transport_.reset();  // The destructor after Shutdown is fine too.
}

TEST_F(CurlTransportTest, RunAfterRunsTasksOnTheLoopInTheirOrderAfterTheirDelay) {
  absl::Mutex mu;
  std::vector<std::string> ran;
  std::vector<std::thread::id> threads;
  const absl::Time start = absl::Now();
  absl::Duration later_ran_after;
  auto record = [&](std::string name) {
    return [&, name] {
      absl::MutexLock lock(&mu);
      ran.push_back(name);
      threads.push_back(std::this_thread::get_id());
      if (name == "later") later_ran_after = absl::Now() - start;
    };
  };
  ASSERT_TRUE(transport_->RunAfter(absl::Milliseconds(200), record("later")));
  ASSERT_TRUE(transport_->RunAfter(absl::Milliseconds(20), record("sooner")));
  ASSERT_TRUE(transport_->RunAfter(absl::ZeroDuration(), record("now")));
  {
    absl::MutexLock lock(&mu);
    ASSERT_TRUE(
        mu.AwaitWithTimeout(absl::Condition(
                                +[](std::vector<std::string>* v) { return v->size() == 3; }, &ran),
                            absl::Seconds(5)));
  }
  EXPECT_EQ(ran, (std::vector<std::string>{"now", "sooner", "later"}));
  EXPECT_GE(later_ran_after, absl::Milliseconds(200));
  EXPECT_NE(threads[0], std::this_thread::get_id());
  EXPECT_EQ(threads[0], threads[2]);
}

TEST_F(CurlTransportTest, ShutdownRunsWaitingTasksEarlyAndLaterOnesAreRefused) {
  std::atomic<bool> ran{false};
  ASSERT_TRUE(transport_->RunAfter(absl::Hours(1), [&ran] { ran = true; }));
  const absl::Time start = absl::Now();
  transport_->Shutdown();
  EXPECT_TRUE(ran);
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  EXPECT_FALSE(transport_->RunAfter(absl::ZeroDuration(), [] {}));
}

TEST_F(CurlTransportTest, HandlersMayStartTransfersFromTheLoop) {
  auto second = std::make_shared<RecordingHandler>();
  transport_->Start(Get("/assistants"), std::make_shared<ChainingHandler>(
                                            transport_.get(), Get("/assistants"), second));
  EXPECT_TRUE(second->Wait().ok());
}

TEST_F(CurlTransportTest, LastReferenceDroppedOnTheLoopThread) {
  // A handler that owns the only reference to its transport and drops it in OnComplete.
  class Owning final : public HttpTransferHandler {
   public:
    void OnHeaders(const HttpResponseHead&) override {}
    bool OnData(absl::string_view) override { return true; }
    void OnComplete(absl::Status) override {
      transport.reset();
      done.Notify();
    }
    std::shared_ptr<CurlTransport> transport;
    absl::Notification done;
  };
  AddFault({{"endpoint", "get_thread"}, {"type", "latency"}, {"delay_ms", 5000}});
  auto created = CurlTransport::Create();
  ASSERT_TRUE(created.ok());
  std::shared_ptr<CurlTransport> transport(*std::move(created));
  auto slow = std::make_shared<RecordingHandler>();
  transport->Start(Get("/threads/5e0a4d8e-7f87-4d40-9a9f-000000000000"), slow);
  auto owning = std::make_shared<Owning>();
  owning->transport = transport;
  transport->Start(Get("/assistants"), owning);
  transport.reset();
  ASSERT_TRUE(owning->done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  absl::Status status = slow->Wait(absl::Seconds(3));
  EXPECT_EQ(status.code(), absl::StatusCode::kCancelled) << status;
  EXPECT_EQ(Reason(status), "transport_shutdown");
}

// The benchmark shape: in the suite a small version (300 transfers held 500 ms); at full size
// (10,000 transfers held 10 s) by hand with COPILOT_TRANSPORT_SCALE=10000 (and optionally
// COPILOT_TRANSPORT_HOLD_MS).
TEST_F(CurlTransportTest, ScaleSlowTransfersFromEnvironment) {
  const char* scale = std::getenv("COPILOT_TRANSPORT_SCALE");
  const int transfers = scale != nullptr ? std::atoi(scale) : 300;
  const char* hold = std::getenv("COPILOT_TRANSPORT_HOLD_MS");
  const int hold_ms = hold != nullptr ? std::atoi(hold) : (scale != nullptr ? 10000 : 500);
  AddFault({{"endpoint", "list_assistants"}, {"type", "latency"}, {"delay_ms", hold_ms}});
  const int threads_before = ThreadCount();
  std::vector<std::shared_ptr<RecordingHandler>> handlers;
  const absl::Time start = absl::Now();
  for (int i = 0; i < transfers; ++i) {
    handlers.push_back(std::make_shared<RecordingHandler>());
    HttpRequest request = Get("/assistants");
    request.deadline = absl::Now() + absl::Milliseconds(hold_ms) + absl::Seconds(60);
    transport_->Start(request, handlers.back());
  }
  json stats;
  int peak_threads = 0;
  long peak_rss_kb = 0;
  absl::Time all_in_flight = absl::InfinitePast();
  while (absl::Now() - start < absl::Milliseconds(hold_ms) + absl::Seconds(30)) {
    stats = *emu().Stats();
    peak_threads = std::max(peak_threads, ThreadCount());
    FILE* status_file = std::fopen("/proc/self/status", "r");
    char line[256];
    while (status_file != nullptr && std::fgets(line, sizeof(line), status_file) != nullptr) {
      long kb = 0;
      if (std::sscanf(line, "VmRSS: %ld kB", &kb) == 1) peak_rss_kb = std::max(peak_rss_kb, kb);
    }
    if (status_file != nullptr) std::fclose(status_file);
    if (all_in_flight == absl::InfinitePast() && stats["in_flight"] == transfers) {
      all_in_flight = absl::Now();
    }
    if (stats["in_flight"] == 0 && stats["requests_total"].get<int>() >= transfers) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  int ok = 0;
  for (auto& handler : handlers) {
    if (handler->Wait(absl::Seconds(30)).ok() && handler->head().status == 200) ++ok;
  }
  std::printf(
      "transfers=%d ok=%d elapsed=%s all_in_flight_after=%s threads_before=%d "
      "peak_threads=%d peak_rss_mb=%ld emulator_peak_connections=%s\n",
      transfers, ok, absl::FormatDuration(absl::Now() - start).c_str(),
      absl::FormatDuration(all_in_flight - start).c_str(), threads_before, peak_threads,
      peak_rss_kb / 1024, stats["peak_connections"].dump().c_str());
  EXPECT_EQ(ok, transfers);
  EXPECT_EQ(peak_threads, threads_before);
}

// A bound on transfers in flight: Start beyond it fails at once and queues nothing.
TEST_F(CurlTransportTest, StartBeyondMaxTransfersIsRejectedAtOnce) {
  auto created = CurlTransport::Create(CurlTransportOptions{.max_transfers = 3});
  ASSERT_TRUE(created.ok()) << created.status();
  std::unique_ptr<CurlTransport> transport = *std::move(created);
  AddFault({{"endpoint", "list_assistants"}, {"type", "latency"}, {"delay_ms", 1000}});
  std::vector<std::shared_ptr<RecordingHandler>> held;
  for (int i = 0; i < 3; ++i) {
    held.push_back(std::make_shared<RecordingHandler>());
    transport->Start(Get("/assistants"), held.back());
  }
  auto rejected = std::make_shared<RecordingHandler>();
  std::shared_ptr<HttpTransfer> transfer = transport->Start(Get("/assistants"), rejected);
  ASSERT_TRUE(rejected->done());  // Inline, before Start returned.
  absl::Status status = rejected->Wait();
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  EXPECT_EQ(Reason(status), "upstream_transfers_exhausted");
  EXPECT_EQ(Meta(status, "max_transfers"), "3");
  std::optional<google::rpc::RetryInfo> retry = GetRetryInfo(status);
  ASSERT_TRUE(retry.has_value());
  EXPECT_GT(retry->retry_delay().seconds() * 1000 + retry->retry_delay().nanos() / 1000000, 0);
  std::optional<google::rpc::QuotaFailure> quota = GetQuotaFailure(status);
  ASSERT_TRUE(quota.has_value());
  ASSERT_EQ(quota->violations_size(), 1);
  EXPECT_EQ(quota->violations(0).subject(), "upstream_transfers");
  transfer->Cancel();  // A no-op.
  transfer->Resume();
  for (auto& handler : held) EXPECT_TRUE(handler->Wait().ok());
  // The slots are free again.
  auto later = std::make_shared<RecordingHandler>();
  transport->Start(Get("/assistants"), later);
  EXPECT_TRUE(later->Wait().ok());
  EXPECT_EQ(emu().Requests()->size(), 4u);  // The rejected Start never reached the upstream.
}

// Every way a transfer ends gives its slot back, before OnComplete (so a handler may start the
// next transfer from there).
TEST_F(CurlTransportTest, EveryEndingGivesTheTransferSlotBack) {
  auto created = CurlTransport::Create(CurlTransportOptions{.max_transfers = 1});
  ASSERT_TRUE(created.ok()) << created.status();
  std::shared_ptr<CurlTransport> transport = *std::move(created);
  auto expect_code = [&](HttpRequest request, absl::StatusCode code, bool cancel = false) {
    auto handler = std::make_shared<RecordingHandler>();
    std::shared_ptr<HttpTransfer> transfer = transport->Start(std::move(request), handler);
    if (cancel) transfer->Cancel();
    EXPECT_EQ(handler->Wait().code(), code);
  };
  HttpRequest past = Get("/assistants");
  past.deadline = absl::Now() - absl::Seconds(1);
  expect_code(past, absl::StatusCode::kDeadlineExceeded);
  HttpRequest overlong = Get("/assistants");
  overlong.url.append(9 * 1000 * 1000, 'a');
  expect_code(overlong, absl::StatusCode::kInternal);
  // Held by the upstream, so the Cancel always comes first.
  AddFault({{"endpoint", "list_assistants"}, {"type", "latency"}, {"delay_ms", 5000}});
  expect_code(Get("/assistants"), absl::StatusCode::kCancelled, /*cancel=*/true);
  // Every attempt (libcurl retries a reused connection that dies before a response byte).
  ASSERT_TRUE(emu().ClearFaults().ok());
  AddFault({{"endpoint", "list_assistants"}, {"type", "reset_before_headers"}});
  expect_code(Get("/assistants"), absl::StatusCode::kUnavailable);
  ASSERT_TRUE(emu().ClearFaults().ok());
  expect_code(Get("/assistants"), absl::StatusCode::kOk);
  // From OnComplete, the one slot is free for the next transfer.
  auto second = std::make_shared<RecordingHandler>();
  transport->Start(Get("/assistants"),
                   std::make_shared<ChainingHandler>(transport.get(), Get("/assistants"), second));
  absl::Status status = second->Wait();
  EXPECT_TRUE(status.ok()) << status;
}

// The thread each transfer's events ran on, then the events themselves.
class ThreadNotingHandler final : public HttpTransferHandler {
 public:
  void OnHeaders(const HttpResponseHead& head) override {
    {
      absl::MutexLock lock(&mu_);
      thread_ = std::this_thread::get_id();
    }
    inner_->OnHeaders(head);
  }
  bool OnData(absl::string_view piece) override { return inner_->OnData(piece); }
  void OnComplete(absl::Status status) override { inner_->OnComplete(std::move(status)); }
  std::thread::id thread() {
    absl::MutexLock lock(&mu_);
    return thread_;
  }
  RecordingHandler& inner() { return *inner_; }

 private:
  const std::shared_ptr<RecordingHandler> inner_ = std::make_shared<RecordingHandler>();
  absl::Mutex mu_;
  std::thread::id thread_;
};

// event_loops: the transfers go to the loop with the fewest in flight, each loop a thread of its
// own; max_transfers holds for all loops together; Shutdown ends the transfers of every loop.
TEST_F(CurlTransportTest, SeveralLoopsShareTheTransfersAndOneBound) {
  auto created = CurlTransport::Create(CurlTransportOptions{.max_transfers = 6, .event_loops = 3});
  ASSERT_TRUE(created.ok()) << created.status();
  std::unique_ptr<CurlTransport> transport = *std::move(created);
  AddFault({{"endpoint", "list_assistants"}, {"type", "latency"}, {"delay_ms", 1000}});
  std::vector<std::shared_ptr<ThreadNotingHandler>> held;
  for (int i = 0; i < 6; ++i) {
    held.push_back(std::make_shared<ThreadNotingHandler>());
    transport->Start(Get("/assistants"), held.back());
  }
  EXPECT_EQ(transport->TransfersInFlight(), 6);
  auto rejected = std::make_shared<RecordingHandler>();
  transport->Start(Get("/assistants"), rejected);
  ASSERT_TRUE(rejected->done());
  EXPECT_EQ(Reason(rejected->Wait()), "upstream_transfers_exhausted");
  EXPECT_EQ(Meta(rejected->Wait(), "max_transfers"), "6");
  std::map<std::thread::id, int> per_thread;
  for (auto& handler : held) {
    EXPECT_TRUE(handler->inner().Wait().ok());
    ++per_thread[handler->thread()];
  }
  EXPECT_EQ(per_thread.size(), 3u);
  for (const auto& [thread, transfers] : per_thread) EXPECT_EQ(transfers, 2);
  EXPECT_EQ(transport->TransfersInFlight(), 0);
  EXPECT_EQ(emu().Requests()->size(), 6u);
  // A transfer on each loop, then Shutdown: each ends CANCELLED, none is left behind.
  std::vector<std::shared_ptr<ThreadNotingHandler>> pending;
  for (int i = 0; i < 3; ++i) {
    pending.push_back(std::make_shared<ThreadNotingHandler>());
    transport->Start(Get("/assistants"), pending.back());
  }
  transport->Shutdown();
  for (auto& handler : pending) {
    absl::Status status = handler->inner().Wait();
    EXPECT_EQ(status.code(), absl::StatusCode::kCancelled) << status;
    EXPECT_EQ(Reason(status), "transport_shutdown");
  }
  EXPECT_EQ(transport->TransfersInFlight(), 0);
}

// Starts `count` copies of `request` in connection pool `pool`, each with its own handler.
std::vector<std::shared_ptr<ThreadNotingHandler>> StartHeld(CurlTransport& transport,
                                                            HttpRequest request,
                                                            const std::string& pool, int count) {
  request.connection_pool = pool;
  std::vector<std::shared_ptr<ThreadNotingHandler>> handlers;
  for (int i = 0; i < count; ++i) {
    handlers.push_back(std::make_shared<ThreadNotingHandler>());
    transport.Start(request, handlers.back());
  }
  return handlers;
}

// Waits for each of `handlers` (each must succeed) and counts them by the thread that ran them.
std::map<std::thread::id, int> TransfersPerThread(
    const std::vector<std::shared_ptr<ThreadNotingHandler>>& handlers) {
  std::map<std::thread::id, int> per_thread;
  for (const auto& handler : handlers) {
    EXPECT_TRUE(handler->inner().Wait().ok());
    ++per_thread[handler->thread()];
  }
  return per_thread;
}

// Two loops, transfers of two connection pools started in turn (a, b, a, b, ...) and held by
// the upstream: each pool keeps to a loop of its own (a loop reading one tenant's multi-megabyte
// answer delays only that loop's transfers). Six transfers of a third pool spread over both loops.
TEST_F(CurlTransportTest, ConnectionPoolsKeepToLoopsOfTheirOwn) {
  auto created = CurlTransport::Create(CurlTransportOptions{.event_loops = 2});
  ASSERT_TRUE(created.ok()) << created.status();
  std::unique_ptr<CurlTransport> transport = *std::move(created);
  AddFault({{"endpoint", "list_assistants"}, {"type", "latency"}, {"delay_ms", 500}});
  std::map<std::string, std::vector<std::shared_ptr<ThreadNotingHandler>>> held;
  for (int i = 0; i < 6; ++i) {
    const std::string pool = i % 2 == 0 ? "a" : "b";
    HttpRequest request = Get("/assistants");
    request.connection_pool = pool;
    held[pool].push_back(std::make_shared<ThreadNotingHandler>());
    transport->Start(request, held[pool].back());
  }
  std::map<std::string, std::set<std::thread::id>> threads;
  for (const auto& [pool, handlers] : held) {
    for (const auto& handler : handlers) {
      EXPECT_TRUE(handler->inner().Wait().ok());
      threads[pool].insert(handler->thread());
    }
  }
  ASSERT_EQ(threads["a"].size(), 1u);
  ASSERT_EQ(threads["b"].size(), 1u);
  EXPECT_NE(*threads["a"].begin(), *threads["b"].begin());

  // A third pool, alone now, spreads evenly: both loops were used by another pool lately.
  const std::map<std::thread::id, int> per_thread =
      TransfersPerThread(StartHeld(*transport, Get("/assistants"), "c", 6));
  EXPECT_EQ(per_thread.size(), 2u);
  for (const auto& [thread, transfers] : per_thread) EXPECT_EQ(transfers, 3);
}

// A pool does not spread onto a loop another pool used a moment ago (that pool's next transfer
// would share it), and does once a second has passed.
TEST_F(CurlTransportTest, APoolKeepsOffALoopAnotherPoolJustUsed) {
  auto created = CurlTransport::Create(CurlTransportOptions{.event_loops = 2});
  ASSERT_TRUE(created.ok()) << created.status();
  std::unique_ptr<CurlTransport> transport = *std::move(created);
  AddFault({{"endpoint", "list_assistants"}, {"type", "latency"}, {"delay_ms", 300}});
  const std::vector<std::shared_ptr<ThreadNotingHandler>> a =
      StartHeld(*transport, Get("/assistants"), "a", 1);
  ASSERT_TRUE(a[0]->inner().Wait().ok());

  const std::map<std::thread::id, int> b_threads =
      TransfersPerThread(StartHeld(*transport, Get("/assistants"), "b", 4));
  ASSERT_EQ(b_threads.size(), 1u);
  EXPECT_NE(b_threads.begin()->first, a[0]->thread());

  absl::SleepFor(absl::Milliseconds(1100));  // Past the recency of both pools.
  const std::map<std::thread::id, int> per_thread =
      TransfersPerThread(StartHeld(*transport, Get("/assistants"), "b", 4));
  EXPECT_EQ(per_thread.size(), 2u);
  for (const auto& [thread, transfers] : per_thread) EXPECT_EQ(transfers, 2);
}

// Holds its loop thread in OnComplete for `hold` after saying it got there.
class LoopHoldingHandler final : public HttpTransferHandler {
 public:
  explicit LoopHoldingHandler(absl::Duration hold) : hold_(hold) {}
  void OnHeaders(const HttpResponseHead&) override {}
  bool OnData(absl::string_view) override { return true; }
  void OnComplete(absl::Status) override {
    entered_.Notify();
    absl::SleepFor(hold_);
  }
  absl::Notification& entered() { return entered_; }

 private:
  const absl::Duration hold_;
  absl::Notification entered_;
};

// Before OnComplete, the transport says how long libcurl had the transfer: the upstream's
// time, without the wait before the loop took the transfer up (that is the gateway's cost). A
// transfer started while its one loop is held 400 ms by another's handler waits those in the
// mailbox; its reported time leaves them out.
TEST_F(CurlTransportTest, ReportsHowLongTheUpstreamHadTheTransfer) {
  auto created = CurlTransport::Create(CurlTransportOptions{.event_loops = 1});
  ASSERT_TRUE(created.ok()) << created.status();
  std::unique_ptr<CurlTransport> transport = *std::move(created);
  auto holder = std::make_shared<LoopHoldingHandler>(absl::Milliseconds(400));
  transport->Start(Get("/assistants"), holder);
  ASSERT_TRUE(holder->entered().WaitForNotificationWithTimeout(absl::Seconds(20)));

  AddFault({{"endpoint", "list_assistants"}, {"type", "latency"}, {"delay_ms", 200}});
  auto handler = std::make_shared<RecordingHandler>();
  const absl::Time start = absl::Now();
  transport->Start(Get("/assistants"), handler);
  ASSERT_TRUE(handler->Wait().ok());
  const absl::Duration wall = absl::Now() - start;
  const std::vector<absl::Duration> times = handler->upstream_times();
  ASSERT_EQ(times.size(), 1u);
  EXPECT_GE(times[0], absl::Milliseconds(200));
  EXPECT_GE(wall, absl::Milliseconds(500));  // The hold (most of it) and the latency.
  EXPECT_LE(times[0], wall - absl::Milliseconds(250)) << "wall " << wall;
}

TEST_F(CurlTransportTest, CreateRejectsEventLoopsOutside1To64) {
  for (int loops : {0, -1, 65}) {
    auto created = CurlTransport::Create(CurlTransportOptions{.event_loops = loops});
    EXPECT_EQ(created.status().code(), absl::StatusCode::kInvalidArgument) << loops;
  }
}

TEST_F(CurlTransportTest, CreateRejectsABoundBelowOne) {
  auto created = CurlTransport::Create(CurlTransportOptions{.max_transfers = 0});
  EXPECT_EQ(created.status().code(), absl::StatusCode::kInvalidArgument) << created.status();
}

// Every curl_easy_setopt result is checked: libcurl refuses strings over 8,000,000 bytes, and the
// failure names the option instead of surfacing later as an unrelated error.
TEST_F(CurlTransportTest, AnOptionLibcurlRefusesFailsNamingIt) {
  auto handler = std::make_shared<RecordingHandler>();
  HttpRequest request = Get("/assistants?q=");
  request.url.append(9 * 1000 * 1000, 'a');
  transport_->Start(request, handler);
  absl::Status status = handler->Wait();
  EXPECT_EQ(status.code(), absl::StatusCode::kInternal) << status;
  EXPECT_EQ(Reason(status), "transport_misconfigured");
  EXPECT_EQ(Meta(status, "curl_option"), "CURLOPT_URL");
  EXPECT_NE(status.message().find("CURLOPT_URL"), absl::string_view::npos) << status;
  EXPECT_EQ(emu().Requests()->size(), 0u);
}

// Runs one call on a transport and returns how it ended.
absl::Status RunOne(HttpTransport& transport, HttpRequest request) {
  auto handler = std::make_shared<RecordingHandler>();
  transport.Start(std::move(request), handler);
  return handler->Wait();
}

int CountRoute(const json& records, const std::string& route) {
  int count = 0;
  for (const json& record : records) count += record.value("route", "") == route ? 1 : 0;
  return count;
}

// libcurl on its own sends a request again on a fresh connection when a reused connection died
// before any response byte, POSTs included ("Connection died, retrying a fresh connect"). Here
// the upstream received the POST (it is in the record) and then reset the connection: had the
// transport let libcurl send it again, the record would hold two create_thread requests and
// the call would have succeeded with a second thread.
TEST_F(CurlTransportTest, APostIsNeverSentTwiceWhenItsReusedConnectionDies) {
  ASSERT_TRUE(RunOne(*transport_, Get("/assistants")).ok());  // Opens the connection to reuse.
  AddFault({{"endpoint", "create_thread"}, {"times", 1}, {"type", "reset_before_headers"}});
  absl::Status status =
      RunOne(*transport_, Post("/threads", json{{"assistant_id", kHrAssistant}}.dump()));
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_EQ(Reason(status), "upstream_reset");
  EXPECT_EQ(Meta(status, "resend_refused"), "true");
  EXPECT_EQ(Meta(status, "response_started"), "false");
  absl::StatusOr<json> records = emu().Requests();
  ASSERT_TRUE(records.ok());
  EXPECT_EQ(CountRoute(*records, "create_thread"), 1) << records->dump();
}

// The same death of a reused connection under a GET: sending it again is safe (RFC 9110
// idempotent methods), so libcurl's retry on a fresh connection is kept.
TEST_F(CurlTransportTest, AGetIsSentAgainWhenItsReusedConnectionDies) {
  ASSERT_TRUE(RunOne(*transport_, Get("/assistants")).ok());
  AddFault({{"endpoint", "list_assistants"}, {"times", 1}, {"type", "reset_before_headers"}});
  absl::Status status = RunOne(*transport_, Get("/assistants"));
  EXPECT_TRUE(status.ok()) << status;
  absl::StatusOr<json> records = emu().Requests();
  ASSERT_TRUE(records.ok());
  EXPECT_EQ(CountRoute(*records, "list_assistants"), 3) << records->dump();
}

// An upstream whose keep-alive timer closes connections idle 2 s, and a request that crosses
// that close (the emulator's --keep-alive-timeout-ms makes the race certain). With the policy
// below the upstream's timeout the transport never sends on such a connection; with a policy
// above it, the crossing happens, and the POST fails instead of being sent a second time.
class KeepAliveRaceTest : public testing::Test {
 protected:
  static constexpr absl::Duration kUpstreamIdleTimeout = absl::Seconds(2);

  void SetUp() override {
    auto emulator = EmulatorProcess::Start(
        {.args = {"--keep-alive-timeout-ms",
                  absl::StrCat(absl::ToInt64Milliseconds(kUpstreamIdleTimeout))}});
    ASSERT_TRUE(emulator.ok()) << emulator.status();
    emulator_ = *std::move(emulator);
  }

  // A POST /threads on a connection left idle for a little longer than the upstream keeps it.
  absl::Status PostAfterIdle(CurlTransport& transport) {
    HttpRequest get;
    get.method = "GET";
    get.url = emulator_->api_url() + "/assistants";
    get.headers = {{"api-key", emulator_->api_key()}};
    get.deadline = absl::Now() + absl::Seconds(20);
    EXPECT_TRUE(RunOne(transport, get).ok());
    absl::SleepFor(kUpstreamIdleTimeout + absl::Milliseconds(300));
    HttpRequest post = get;
    post.method = "POST";
    post.url = emulator_->api_url() + "/threads";
    post.headers.emplace_back("content-type", "application/json");
    post.body = json{{"assistant_id", kHrAssistant}}.dump();
    return RunOne(transport, post);
  }

  json Stats() {
    absl::StatusOr<json> stats = emulator_->Stats();
    EXPECT_TRUE(stats.ok()) << stats.status();
    return stats.value_or(json::object());
  }

  std::unique_ptr<EmulatorProcess> emulator_;
};

TEST_F(KeepAliveRaceTest, AnIdleAgeBelowTheUpstreamTimeoutNeverMeetsTheRace) {
  auto transport = CurlTransport::Create({.max_idle_connection_age = absl::Seconds(1)});
  ASSERT_TRUE(transport.ok()) << transport.status();
  const json before = Stats();
  absl::Status status = PostAfterIdle(**transport);
  EXPECT_TRUE(status.ok()) << status;
  const json after = Stats();
  EXPECT_EQ(after["idle_closed_total"], 0) << after.dump();
  // The idle connection was not reused: the GET and the POST had a connection each (the third
  // is the one that asked for `after`).
  EXPECT_EQ(after["accepted_total"].get<int>() - before["accepted_total"].get<int>(), 3)
      << after.dump();
  absl::StatusOr<json> records = emulator_->Requests();
  ASSERT_TRUE(records.ok());
  EXPECT_EQ(CountRoute(*records, "create_thread"), 1) << records->dump();
}

TEST_F(KeepAliveRaceTest, AnIdleAgeAboveTheUpstreamTimeoutFailsThePostInsteadOfResendingIt) {
  auto transport = CurlTransport::Create({.max_idle_connection_age = absl::Seconds(10)});
  ASSERT_TRUE(transport.ok()) << transport.status();
  absl::Status status = PostAfterIdle(**transport);
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_EQ(Reason(status), "upstream_reset");
  EXPECT_EQ(Meta(status, "resend_refused"), "true");
  EXPECT_EQ(Stats()["idle_closed_total"], 1);
  absl::StatusOr<json> records = emulator_->Requests();
  ASSERT_TRUE(records.ok());
  EXPECT_EQ(CountRoute(*records, "create_thread"), 0) << records->dump();
}

// `n` GETs of `url` started at once on `transport`, request i in connection pool
// pools[i % pools.size()]; waits for them all to succeed.
void GetAllAtOnce(HttpTransport& transport, const EmulatorProcess& emulator, const std::string& url,
                  int n, const std::vector<std::string>& pools = {""}) {
  std::vector<std::shared_ptr<RecordingHandler>> handlers;
  for (int i = 0; i < n; ++i) {
    HttpRequest request;
    request.method = "GET";
    request.url = url;
    request.connection_pool = pools[i % pools.size()];
    request.headers = {{"api-key", emulator.api_key()}};
    request.deadline = absl::Now() + absl::Seconds(30);
    handlers.push_back(std::make_shared<RecordingHandler>());
    transport.Start(request, handlers.back());
  }
  for (auto& handler : handlers) {
    absl::Status status = handler->Wait(absl::Seconds(30));
    EXPECT_TRUE(status.ok()) << status;
    EXPECT_EQ(handler->head().status, 200);
  }
}

// The connection cache sized to the load (max_cached_connections 0: max_transfers): 64 calls at a
// time, 3,008 calls, reuse the same 64 connections. libcurl's own default cache (a handful of
// connections, as before issue #15) opened a new connection for most calls.
int ConnectionsFor3000CallsAt64(long max_cached_connections) {
  auto emulator = EmulatorProcess::Start();
  EXPECT_TRUE(emulator.ok()) << emulator.status();
  if (!emulator.ok()) return -1;
  auto transport = CurlTransport::Create({.max_cached_connections = max_cached_connections});
  EXPECT_TRUE(transport.ok()) << transport.status();
  if (!transport.ok()) return -1;
  for (int round = 0; round < 47; ++round) {
    GetAllAtOnce(**transport, **emulator, (*emulator)->api_url() + "/assistants", 64);
  }
  absl::StatusOr<json> stats = (*emulator)->Stats();
  EXPECT_TRUE(stats.ok());
  // Less the control connection that asked for the stats.
  return stats.ok() ? (*stats)["accepted_total"].get<int>() - 1 : -1;
}

// How many bytes of each transfer reach their handlers in each turn of the loop. Thread-safe.
class Interleaving {
 public:
  // Handler `tag`'s piece of `bytes`.
  void Add(int tag, std::size_t bytes) {
    absl::MutexLock lock(&mu_);
    std::size_t& in_turn = turn_bytes_[tag];
    in_turn += bytes;
    most_ = std::max(most_, in_turn);
  }
  // A turn of the loop ended.
  void EndTurn() {
    absl::MutexLock lock(&mu_);
    turn_bytes_.clear();
    ++turns_;
  }
  // Forgets the figures so far.
  void Clear() {
    absl::MutexLock lock(&mu_);
    turn_bytes_.clear();
    most_ = 0;
    turns_ = 0;
  }
  // The most bytes one transfer received in one turn.
  std::size_t MostInATurn() {
    absl::MutexLock lock(&mu_);
    return most_;
  }
  int turns() {
    absl::MutexLock lock(&mu_);
    return turns_;
  }

 private:
  absl::Mutex mu_;
  std::map<int, std::size_t> turn_bytes_ ABSL_GUARDED_BY(mu_);
  std::size_t most_ ABSL_GUARDED_BY(mu_) = 0;
  int turns_ ABSL_GUARDED_BY(mu_) = 0;
};

// Marks the end of every turn of the (one) loop of `transport` in `order` until `stop`: a timer
// task due at once runs at the end of its turn and posts itself again for the next one.
void MarkTurns(CurlTransport* transport, std::shared_ptr<Interleaving> order,
               std::shared_ptr<std::atomic<bool>> stop) {
  transport->RunAfter(absl::ZeroDuration(), [transport, order, stop]() mutable {
    order->EndTurn();
    if (!stop->load()) MarkTurns(transport, std::move(order), std::move(stop));
  });
}

class InterleavingHandler final : public HttpTransferHandler {
 public:
  InterleavingHandler(Interleaving* order, int tag, std::shared_ptr<RecordingHandler> inner)
      : order_(order), tag_(tag), inner_(std::move(inner)) {}
  void OnHeaders(const HttpResponseHead& head) override { inner_->OnHeaders(head); }
  bool OnData(absl::string_view piece) override {
    order_->Add(tag_, piece.size());
    return inner_->OnData(piece);
  }
  void OnComplete(absl::Status status) override { inner_->OnComplete(std::move(status)); }

 private:
  Interleaving* const order_;
  const int tag_;
  const std::shared_ptr<RecordingHandler> inner_;
};

// Makes the emulator (reset first) answer every list_assistants call with the returned body:
// a JSON array of 8 MiB.
std::string ListAssistantsAnswersEightMiB(EmulatorProcess& emu) {
  std::string answer = "[";
  while (answer.size() < (8u << 20)) absl::StrAppend(&answer, "\"", std::string(1000, 'x'), "\",");
  answer.back() = ']';
  EXPECT_TRUE(emu.Reset().ok());
  EXPECT_TRUE(emu.AddFault({{"endpoint", "list_assistants"},
                            {"type", "raw_body"},
                            {"status", 200},
                            {"body", answer}})
                  .ok());
  return answer;
}

// Issue #13: `transfers` GETs of an 8 MiB answer on one loop; the most bytes one of them took
// in one turn of the loop, once all had bytes waiting (each held paused at its first piece
// until all had one, then all resumed at once). Every body arrives whole.
std::size_t MostReadInATurn(CurlTransportOptions options, EmulatorProcess& emu,
                            const std::string& url, int transfers, int* yields = nullptr) {
  const std::string answer = ListAssistantsAnswersEightMiB(emu);
  auto yielded = std::make_shared<std::atomic<int>>(0);
  options.on_read_yield = [yielded] { ++*yielded; };
  auto transport = CurlTransport::Create(options);
  EXPECT_TRUE(transport.ok()) << transport.status();
  if (!transport.ok()) return 0;
  auto order = std::make_shared<Interleaving>();
  std::vector<std::shared_ptr<RecordingHandler>> handlers;
  std::vector<std::shared_ptr<HttpTransfer>> started;
  for (int i = 0; i < transfers; ++i) {
    HttpRequest request;
    request.method = "GET";
    request.url = url;
    request.headers = {{"api-key", emu.api_key()}};
    request.deadline = absl::Now() + absl::Seconds(60);
    request.max_response_bytes = 16 << 20;
    handlers.push_back(std::make_shared<RecordingHandler>());
    handlers.back()->set_pause_on_data(true);
    started.push_back((*transport)
                          ->Start(request, std::make_shared<InterleavingHandler>(order.get(), i,
                                                                                 handlers.back())));
  }
  for (auto& handler : handlers) EXPECT_TRUE(handler->WaitForData());
  absl::SleepFor(absl::Milliseconds(200));  // The upstream fills the sockets' buffers.
  auto stop = std::make_shared<std::atomic<bool>>(false);
  MarkTurns(transport->get(), order, stop);
  absl::SleepFor(absl::Milliseconds(20));  // The marks have begun.
  order->Clear();
  for (int i = 0; i < transfers; ++i) {
    handlers[i]->set_pause_on_data(false);
    handlers[i]->Unpause();
    started[i]->Resume();
  }
  for (auto& handler : handlers) {
    EXPECT_TRUE(handler->Wait(absl::Seconds(60)).ok());
    EXPECT_EQ(handler->body_size(), answer.size());
    EXPECT_TRUE(handler->body() == answer) << "the body arrived changed";
  }
  stop->store(true);
  EXPECT_GT(order->turns(), 0);
  if (yields != nullptr) *yields = yielded->load();
  return order->MostInATurn();
}

// libcurl reads a socket for as long as it stays readable, so one large answer held the loop,
// and every other transfer on it, for as long as that took. With max_read_per_turn a transfer
// yields after that many bytes in a turn (over HTTP/1.x; an HTTP/2 stream never yields, see
// DeliverHeaders).
TEST(CurlTransportFairnessTest, ALargeAnswerYieldsTheLoopAfterMaxReadPerTurn) {
  auto emulator = EmulatorProcess::Start({});
  ASSERT_TRUE(emulator.ok()) << emulator.status();
  const std::string url = (*emulator)->api_url() + "/assistants";
  int yields = 0;
  int unbounded_yields = 0;
  const std::size_t bounded =
      MostReadInATurn({.max_read_per_turn = 64 * 1024}, **emulator, url, 4, &yields);
  const std::size_t unbounded =
      MostReadInATurn({.max_read_per_turn = 0}, **emulator, url, 4, &unbounded_yields);
  std::printf(
      "[ figures  ] 4 answers of 8 MiB on one loop: at most %zu KiB of one in a turn of the "
      "loop with max_read_per_turn 64 KiB, %zu KiB without a bound\n",
      bounded / 1024, unbounded / 1024);
  // The bound, plus at most the receive buffer (16 KiB) that crossed it.
  EXPECT_LE(bounded, (64 + 16) * 1024u);
  EXPECT_GT(unbounded, 4 * 64 * 1024u);
  // Reported (copilot_gateway_upstream_read_yields_total): at least once per 80 KiB of the 32 MiB.
  EXPECT_GE(yields, 4 * 8 * 1024 / 80);
  EXPECT_EQ(unbounded_yields, 0);
}

TEST(CurlTransportCacheTest, TheDefaultCacheKeepsTheConnectionsOfTheLoad) {
  const int sized = ConnectionsFor3000CallsAt64(0);
  const int small = ConnectionsFor3000CallsAt64(5);
  std::printf(
      "[ figures  ] 3,008 calls, 64 at a time: %d connections (cache sized to the load), "
      "%d (a cache of 5)\n",
      sized, small);
  EXPECT_LE(sized, 64 + 8);
  EXPECT_GT(small, 1000);
}

// max_connections over HTTP/2: 300 transfers at once to an upstream that allows 100 streams
// per connection. With a bound of 3 they use at most 3 connections; with 0 (sized to the load)
// at most 300 / 100 + 8. libcurl alone opened 201: a connection for each transfer that found
// the open ones full while new ones were still connecting.
int Http2ConnectionsFor300AtOnce(long max_connections) {
  const std::string certs = COPILOT_TEST_CERTS_DIR;
  auto emulator =
      EmulatorProcess::Start({.args = {"--tls-http2", "on", "--response-delay-ms", "200"},
                              .tls_cert_file = certs + "/server.pem",
                              .tls_key_file = certs + "/server.key"});
  EXPECT_TRUE(emulator.ok()) << emulator.status();
  if (!emulator.ok()) return -1;
  auto transport =
      CurlTransport::Create({.max_connections = max_connections, .ca_file = certs + "/ca.pem"});
  EXPECT_TRUE(transport.ok()) << transport.status();
  if (!transport.ok()) return -1;
  GetAllAtOnce(**transport, **emulator, (*emulator)->tls_api_url() + "/assistants", 300);
  absl::StatusOr<json> stats = (*emulator)->Stats();
  EXPECT_TRUE(stats.ok());
  return stats.ok() ? (*stats)["h2_connections"].get<int>() : -1;
}

TEST(CurlTransportHttp2Test, MaxConnectionsBoundsTheConnectionsOfABurst) {
  const int bounded = Http2ConnectionsFor300AtOnce(3);
  const int sized = Http2ConnectionsFor300AtOnce(0);
  std::printf(
      "[ figures  ] 300 transfers at once over HTTP/2: %d connections with "
      "max_connections 3, %d with 0 (sized to the load)\n",
      bounded, sized);
  EXPECT_GE(bounded, 1);
  EXPECT_LE(bounded, 3);
  EXPECT_GE(sized, 3);
  EXPECT_LE(sized, 3 + 8);
}

// Over HTTP/1.1 a pool's idle connection serves only that pool: a GET in pool "b" after one in
// pool "a" opens a second connection, and the next GET in "a" reuses the first. The connection
// callback counts both, open in the caches, and is not called while the transport is destroyed.
TEST(CurlTransportCacheTest, AnIdleConnectionServesOnlyItsOwnPool) {
  auto emulator = EmulatorProcess::Start();
  ASSERT_TRUE(emulator.ok()) << emulator.status();
  auto open = std::make_shared<std::atomic<int>>(0);
  auto transport = CurlTransport::Create(
      {.on_connections_changed = [open](int delta) { open->fetch_add(delta); }});
  ASSERT_TRUE(transport.ok()) << transport.status();
  const std::string url = (*emulator)->api_url() + "/assistants";
  for (const char* pool : {"a", "b", "a", "b", "a"}) {
    GetAllAtOnce(**transport, **emulator, url, 1, {pool});
  }
  absl::StatusOr<json> stats = (*emulator)->Stats();
  ASSERT_TRUE(stats.ok());
  // Less the control connection that asked for the stats.
  EXPECT_EQ((*stats)["accepted_total"].get<int>() - 1, 2) << stats->dump();
  EXPECT_EQ(open->load(), 2);
  transport->reset();
  EXPECT_EQ(open->load(), 2);
}

// A kept handle leaves its transfer's connection pool behind (curl_easy_reset keeps a share): on
// one loop, pool "a", then the shared pool, then "a" again, one at a time. The shared pool's
// transfer opens a connection of its own instead of taking "a"'s, and "a" reuses its own.
TEST(CurlTransportCacheTest, AKeptHandleLeavesItsPoolBehind) {
  auto emulator = EmulatorProcess::Start();
  ASSERT_TRUE(emulator.ok()) << emulator.status();
  auto transport = CurlTransport::Create({.event_loops = 1});
  ASSERT_TRUE(transport.ok()) << transport.status();
  const std::string url = (*emulator)->api_url() + "/assistants";
  for (const char* pool : {"a", "", "a", ""}) {
    GetAllAtOnce(**transport, **emulator, url, 1, {pool});
  }
  absl::StatusOr<json> stats = (*emulator)->Stats();
  ASSERT_TRUE(stats.ok());
  // Less the control connection that asked for the stats.
  EXPECT_EQ((*stats)["accepted_total"].get<int>() - 1, 2) << stats->dump();
}

// Over HTTP/1.1 a pool spreads its connections over caches of at most kConnectionsPerCache
// (128), so that libcurl's walks over a cache stay short: 300 transfers at once on one loop
// open 300 connections, in three caches. The next 300 at once find the idle ones in every cache
// and open none (without taking the caches with idle connections first: 556). What the
// spreading saves is measured by gateway_bench --calls 10000 (README), not here: one cache
// would pass this test too.
TEST(CurlTransportCacheTest, ABurstReusesTheIdleConnectionsOfEveryCache) {
  auto emulator = EmulatorProcess::Start({.args = {"--response-delay-ms", "300"}});
  ASSERT_TRUE(emulator.ok()) << emulator.status();
  auto open = std::make_shared<std::atomic<int>>(0);
  auto transport = CurlTransport::Create(
      {.on_connections_changed = [open](int delta) { open->fetch_add(delta); }, .event_loops = 1});
  ASSERT_TRUE(transport.ok()) << transport.status();
  const std::string url = (*emulator)->api_url() + "/assistants";
  for (int burst = 1; burst <= 2; ++burst) {
    GetAllAtOnce(**transport, **emulator, url, 300, {"tenant"});
    absl::StatusOr<json> stats = (*emulator)->Stats();
    ASSERT_TRUE(stats.ok());
    // Less the control connections that asked for the stats.
    EXPECT_EQ((*stats)["accepted_total"].get<int>() - burst, 300) << "burst " << burst;
    EXPECT_EQ(open->load(), 300) << "burst " << burst;
  }
}

// The bound sized to the load applies to HTTP/2 only: an HTTPS upstream answering HTTP/1.1
// gets a connection per transfer in flight, as many as the burst needs, and all at once.
TEST(CurlTransportHttp2Test, AnHttp11UpstreamOverTlsIsNotBoundedByTheStreamCount) {
  const std::string certs = COPILOT_TEST_CERTS_DIR;
  auto emulator = EmulatorProcess::Start({.args = {"--response-delay-ms", "300"},
                                          .tls_cert_file = certs + "/server.pem",
                                          .tls_key_file = certs + "/server.key"});
  ASSERT_TRUE(emulator.ok()) << emulator.status();
  auto transport = CurlTransport::Create({.ca_file = certs + "/ca.pem"});
  ASSERT_TRUE(transport.ok()) << transport.status();
  const absl::Time start = absl::Now();
  GetAllAtOnce(**transport, **emulator, (*emulator)->tls_api_url() + "/assistants", 40);
  const absl::Duration took = absl::Now() - start;
  absl::StatusOr<json> stats = (*emulator)->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ((*stats)["h2_connections"], 0) << stats->dump();
  EXPECT_GE((*stats)["accepted_total"].get<int>(), 40) << stats->dump();
  // In one round of the upstream's 300 ms, not in 40 / 9 rounds.
  EXPECT_LT(took, absl::Milliseconds(1500));
}

// An HTTPS/2 emulator started with `args`, and a transport trusting it that opens at most
// `max_connections` to it (0: no bound).
struct Http2Upstream {
  std::unique_ptr<EmulatorProcess> emulator;
  std::unique_ptr<CurlTransport> transport;
};
Http2Upstream StartHttp2Upstream(std::vector<std::string> args, long max_connections = 0) {
  const std::string certs = COPILOT_TEST_CERTS_DIR;
  args.insert(args.end(), {"--tls-http2", "on"});
  auto emulator = EmulatorProcess::Start({.args = std::move(args),
                                          .tls_cert_file = certs + "/server.pem",
                                          .tls_key_file = certs + "/server.key"});
  EXPECT_TRUE(emulator.ok()) << emulator.status();
  if (!emulator.ok()) return {};
  auto transport =
      CurlTransport::Create({.max_connections = max_connections, .ca_file = certs + "/ca.pem"});
  EXPECT_TRUE(transport.ok()) << transport.status();
  if (!transport.ok()) return {};
  return {*std::move(emulator), *std::move(transport)};
}

// Connection pools over HTTP/2: 30 transfers at once, ten in each of pools "a", "b" and the
// shared one, multiplex onto one connection per pool (3), never onto another pool's; then 30 at
// once in pool "a" reuse its connection (still 3). Without pools all 30 shared one connection,
// where one tenant's large answer delays the frames of every other tenant's.
TEST(CurlTransportHttp2Test, EachConnectionPoolMultiplexesOnConnectionsOfItsOwn) {
  Http2Upstream upstream = StartHttp2Upstream({"--response-delay-ms", "300"});
  ASSERT_NE(upstream.transport, nullptr);
  const std::string url = upstream.emulator->tls_api_url() + "/assistants";
  GetAllAtOnce(*upstream.transport, *upstream.emulator, url, 30, {"a", "b", ""});
  absl::StatusOr<json> stats = upstream.emulator->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ((*stats)["h2_connections"].get<int>(), 3) << stats->dump();
  GetAllAtOnce(*upstream.transport, *upstream.emulator, url, 30, {"a"});
  stats = upstream.emulator->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ((*stats)["h2_connections"].get<int>(), 3) << stats->dump();
}

// `n` POST /threads started at once, titled "post <i>"; their outcomes in order.
std::vector<absl::Status> PostThreadsAtOnce(HttpTransport& transport,
                                            const EmulatorProcess& emulator, int n) {
  std::vector<std::shared_ptr<RecordingHandler>> handlers;
  for (int i = 0; i < n; ++i) {
    HttpRequest request;
    request.method = "POST";
    request.url = emulator.tls_api_url() + "/threads";
    request.headers = {{"api-key", emulator.api_key()}, {"content-type", "application/json"}};
    request.body = json{{"assistant_id", kHrAssistant}, {"title", absl::StrCat("post ", i)}}.dump();
    request.deadline = absl::Now() + absl::Seconds(30);
    handlers.push_back(std::make_shared<RecordingHandler>());
    transport.Start(request, handlers.back());
  }
  std::vector<absl::Status> statuses;
  for (auto& handler : handlers) statuses.push_back(handler->Wait(absl::Seconds(40)));
  return statuses;
}

// How often the emulator recorded each create_thread title.
std::map<std::string, int> RecordedTitles(const EmulatorProcess& emulator) {
  std::map<std::string, int> titles;
  absl::StatusOr<json> records = emulator.Requests();
  EXPECT_TRUE(records.ok()) << records.status();
  if (!records.ok()) return titles;
  for (const json& record : *records) {
    if (record.value("route", "") != "create_thread") continue;
    ++titles[json::parse(record["body"].get<std::string>()).value("title", "?")];
  }
  return titles;
}

// The upstream refuses every 4th stream (RST_STREAM REFUSED_STREAM: not processed). libcurl
// sends a refused stream again on a new connection (and uses the refusing one no more); the
// transport lets it, POSTs included, because nghttp2 said the upstream did not process it
// (h2_stream_refusals.h). Every POST succeeds and reaches the upstream exactly once.
TEST(CurlTransportHttp2Test, APostWhoseStreamWasRefusedIsSentAgainAndProcessedOnce) {
  Http2Upstream upstream = StartHttp2Upstream({"--h2-refuse-every", "4"});
  ASSERT_NE(upstream.transport, nullptr);
  constexpr int kPosts = 40;
  const std::vector<absl::Status> statuses =
      PostThreadsAtOnce(*upstream.transport, *upstream.emulator, kPosts);
  const std::map<std::string, int> titles = RecordedTitles(*upstream.emulator);
  for (int i = 0; i < kPosts; ++i) {
    EXPECT_TRUE(statuses[i].ok()) << i << ": " << statuses[i];
    const auto it = titles.find(absl::StrCat("post ", i));
    EXPECT_EQ(it == titles.end() ? 0 : it->second, 1) << "post " << i;
  }
  absl::StatusOr<json> stats = upstream.emulator->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_GE((*stats)["h2_refused_streams"].get<int>(), 1) << stats->dump();
  EXPECT_EQ((*stats)["requests_total"].get<int>(), kPosts) << stats->dump();
  EXPECT_TRUE(H2StreamRefusalsObserved());
}

// GOAWAY after every 10 requests of a connection while 200 POSTs are in flight on at most two
// connections, each answered 200 ms later: the streams above each GOAWAY's last stream ID (up
// to 90 of a connection's 100) were not processed. Each POST
// either succeeded (recorded once) or, when libcurl gave up on it (a lone stream above a
// GOAWAY is an HTTP/2 error in libcurl 7.88), failed UNAVAILABLE "upstream_refused_stream"
// with "request_sent": "false" (not recorded: a retry is safe, and RetryingTransport makes it).
TEST(CurlTransportHttp2Test, PostsAboveAGoawayAreSentAgainOrFailAsNotProcessed) {
  Http2Upstream upstream =
      StartHttp2Upstream({"--h2-goaway-after", "10", "--response-delay-ms", "200"}, 2);
  ASSERT_NE(upstream.transport, nullptr);
  constexpr int kPosts = 200;
  const std::vector<absl::Status> statuses =
      PostThreadsAtOnce(*upstream.transport, *upstream.emulator, kPosts);
  const std::map<std::string, int> titles = RecordedTitles(*upstream.emulator);
  int ok = 0;
  int refused = 0;
  for (int i = 0; i < kPosts; ++i) {
    const auto it = titles.find(absl::StrCat("post ", i));
    const int recorded = it == titles.end() ? 0 : it->second;
    if (statuses[i].ok()) {
      ++ok;
      EXPECT_EQ(recorded, 1) << "post " << i;
      continue;
    }
    ++refused;
    EXPECT_EQ(statuses[i].code(), absl::StatusCode::kUnavailable) << statuses[i];
    EXPECT_EQ(Reason(statuses[i]), "upstream_refused_stream") << statuses[i];
    EXPECT_EQ(Meta(statuses[i], "request_sent"), "false") << statuses[i];
    EXPECT_EQ(recorded, 0) << "post " << i;
  }
  absl::StatusOr<json> stats = upstream.emulator->Stats();
  ASSERT_TRUE(stats.ok());
  std::printf(
      "[ figures  ] %d POSTs across GOAWAYs: %d succeeded, %d failed as not processed; "
      "%s GOAWAYs, %s connections\n",
      kPosts, ok, refused, (*stats)["h2_goaways_sent"].dump().c_str(),
      (*stats)["h2_connections"].dump().c_str());
  EXPECT_GE((*stats)["h2_goaways_sent"].get<int>(), 2) << stats->dump();
  EXPECT_EQ((*stats)["requests_total"].get<int>(), ok) << stats->dump();
  // Most streams above a GOAWAY are sent again by libcurl, not failed. (Refusing every re-send
  // of a POST, as before, left about the first 10 of each connection: some 20 to 40.)
  EXPECT_GT(ok, kPosts / 2);
}

// Four 8 MiB answers at once over one HTTP/2 connection, `rounds` times (a new connection
// each); with the handler pausing each at its first piece until all have one when `pause`.
// Returns the rounds in which an answer did not arrive whole.
int RoundsWithAnAnswerMissing(EmulatorProcess& emu, const std::string& ca_file, int rounds,
                              bool pause) {
  const std::string answer = ListAssistantsAnswersEightMiB(emu);
  int failed = 0;
  for (int round = 0; round < rounds; ++round) {
    auto transport = CurlTransport::Create({.ca_file = ca_file});
    EXPECT_TRUE(transport.ok()) << transport.status();
    if (!transport.ok()) return rounds;
    std::vector<std::shared_ptr<RecordingHandler>> handlers;
    std::vector<std::shared_ptr<HttpTransfer>> started;
    for (int i = 0; i < 4; ++i) {
      HttpRequest request;
      request.method = "GET";
      request.url = emu.tls_api_url() + "/assistants";
      request.headers = {{"api-key", emu.api_key()}};
      request.deadline = absl::Now() + absl::Seconds(10);
      request.max_response_bytes = 16 << 20;
      handlers.push_back(std::make_shared<RecordingHandler>());
      handlers.back()->set_pause_on_data(pause);
      started.push_back((*transport)->Start(request, handlers.back()));
    }
    if (pause) {
      for (auto& handler : handlers) EXPECT_TRUE(handler->WaitForData());
      for (int i = 0; i < 4; ++i) {
        handlers[i]->set_pause_on_data(false);
        handlers[i]->Unpause();
        started[i]->Resume();
      }
    }
    std::string sizes;
    bool whole = true;
    for (auto& handler : handlers) {
      const absl::Status status = handler->Wait(absl::Seconds(20));
      absl::StrAppend(&sizes, " ", handler->body_size(), status.ok() ? "" : " (failed)");
      whole = whole && status.ok() && handler->body() == answer;
    }
    if (!whole) {
      ++failed;
      ADD_FAILURE() << "round " << round << ", bytes of each answer of " << answer.size() << ":"
                    << sizes;
    }
  }
  return failed;
}

// libcurl 7.88 can leave an HTTP/2 connection's frames in its own buffers, already taken from
// the socket, with no socket event to follow. Before the loop read its sockets again at the end
// of a turn, one to three of the four answers stopped exactly 8 MiB in (of 8,389,093 bytes)
// until the deadline, in 5 of 6 rounds (and 1 of 3 with the pauses); with the fix, none in 81.
TEST(CurlTransportHttp2Test, LargeAnswersAtOnceOverOneConnectionAllArriveWhole) {
  const std::string certs = COPILOT_TEST_CERTS_DIR;
  auto emulator = EmulatorProcess::Start({.args = {"--tls-http2", "on"},
                                          .tls_cert_file = certs + "/server.pem",
                                          .tls_key_file = certs + "/server.key"});
  ASSERT_TRUE(emulator.ok()) << emulator.status();
  EXPECT_EQ(RoundsWithAnAnswerMissing(**emulator, certs + "/ca.pem", 6, /*pause=*/false), 0);
  absl::StatusOr<json> stats = (*emulator)->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ((*stats)["h2_connections"].get<int>(), 6)
      << "one connection per round: " << stats->dump();
  EXPECT_EQ(RoundsWithAnAnswerMissing(**emulator, certs + "/ca.pem", 3, /*pause=*/true), 0);
}

}  // namespace
}  // namespace copilot::gateway
