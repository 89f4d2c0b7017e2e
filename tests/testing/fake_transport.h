// An HttpTransport (server/transport/http_transport.h) for tests: records every transfer it is
// asked to start and lets the test play the transport's events (headers, body pieces, the
// completion) on the recorded handler, on whichever thread the test likes.
//
//   auto transport = std::make_shared<FakeTransport>();
//   client.GetThread(options, "t1", callback);          // Starts one transfer.
//   EXPECT_EQ(transport->last().request.method, "GET");
//   transport->last().Respond(200, R"({"id":"t1"})");   // Headers, one body piece, OK.
#ifndef COPILOT_GATEWAY_TESTS_TESTING_FAKE_TRANSPORT_H_
#define COPILOT_GATEWAY_TESTS_TESTING_FAKE_TRANSPORT_H_

#include <atomic>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "server/transport/http_transport.h"

namespace copilot::gateway::testing {

// The HttpTransfer a FakeTransport returns: counts Cancel and Resume, does nothing else (the
// test plays OnComplete(CANCELLED) itself when it wants one). Thread-safe.
class FakeTransfer final : public HttpTransfer {
 public:
  void Cancel() override { ++cancels; }
  void Resume() override { ++resumes; }
  std::atomic<int> cancels{0};
  std::atomic<int> resumes{0};
};

// A response head with `status` and `headers` (names lower-case, as the transport gives them).
inline HttpResponseHead Head(int status, HttpHeaders headers = {}) {
  HttpResponseHead head;
  head.status = status;
  head.headers = std::move(headers);
  return head;
}

// Thread-safe. References returned by call() and last() stay valid while the transport lives.
class FakeTransport final : public HttpTransport {
 public:
  // One transfer the code under test started. The event helpers call the handler directly:
  // the caller plays the transport's event loop thread and must keep the events in order.
  struct Started {
    HttpRequest request;
    std::shared_ptr<HttpTransferHandler> handler;
    std::shared_ptr<FakeTransfer> transfer;

    void Headers(int status, HttpHeaders headers = {}) {
      handler->OnHeaders(Head(status, std::move(headers)));
    }
    // One piece of the body; what the handler answered (false: it paused the transfer).
    bool Data(absl::string_view piece) { return handler->OnData(piece); }
    void Complete(absl::Status status = absl::OkStatus()) {
      handler->OnComplete(std::move(status));
    }
    // A whole response: the head, `body` as one piece (none when empty), then OK. A handler
    // pausing on the body fails the test (use Headers/Data/Complete for flow control).
    void Respond(int status, absl::string_view body, HttpHeaders headers = {}) {
      Headers(status, std::move(headers));
      if (!body.empty()) {
        EXPECT_TRUE(Data(body)) << "the handler paused on the response body";
      }
      Complete();
    }
  };

  // Runs inside Start, on the thread calling it, before Start returns: a transport that
  // answers (or refuses) a transfer inline, or an event loop faster than the caller.
  using OnStart = std::function<void(Started&)>;

  FakeTransport() = default;
  explicit FakeTransport(OnStart on_start) : on_start_(std::move(on_start)) {}

  std::shared_ptr<HttpTransfer> Start(HttpRequest request,
                                      std::shared_ptr<HttpTransferHandler> handler) override {
    auto transfer = std::make_shared<FakeTransfer>();
    Started* started;
    {
      absl::MutexLock lock(&mu_);
      started = &started_.emplace_back(Started{std::move(request), std::move(handler), transfer});
    }
    if (on_start_) on_start_(*started);
    return transfer;
  }

  // Timers (HttpTransport::RunAfter): off by default (RunAfter returns false, as for a
  // transport without timers); when on, tasks wait until the test runs them with RunTimers.
  void EnableTimers() {
    absl::MutexLock lock(&mu_);
    timers_enabled_ = true;
  }
  bool RunAfter(absl::Duration delay, absl::AnyInvocable<void() &&> task) override {
    absl::MutexLock lock(&mu_);
    if (!timers_enabled_) return false;
    timers_.push_back({delay, std::move(task)});
    delays_.push_back(delay);
    return true;
  }
  // Runs the tasks waiting now (not the ones they add), in order; how many ran.
  int RunTimers() {
    std::vector<std::pair<absl::Duration, absl::AnyInvocable<void() &&>>> due;
    {
      absl::MutexLock lock(&mu_);
      due.swap(timers_);
    }
    for (auto& [delay, task] : due) std::move(task)();
    return static_cast<int>(due.size());
  }
  // Tasks waiting, and the delay of every RunAfter so far.
  std::size_t timers_waiting() const {
    absl::MutexLock lock(&mu_);
    return timers_.size();
  }
  std::vector<absl::Duration> timer_delays() const {
    absl::MutexLock lock(&mu_);
    return delays_;
  }

  // Transfers started so far.
  std::size_t size() const {
    absl::MutexLock lock(&mu_);
    return started_.size();
  }
  bool empty() const { return size() == 0; }
  // The `index`th transfer started (0 is the first); it must exist.
  Started& call(std::size_t index) {
    absl::MutexLock lock(&mu_);
    EXPECT_LT(index, started_.size()) << "no such transfer";
    return started_.at(index);
  }
  // The latest transfer started; one must exist.
  Started& last() {
    absl::MutexLock lock(&mu_);
    EXPECT_FALSE(started_.empty()) << "no transfer started";
    return started_.back();
  }
  // Copies of the requests, in the order they were started.
  std::vector<HttpRequest> requests() const {
    absl::MutexLock lock(&mu_);
    std::vector<HttpRequest> out;
    for (const Started& started : started_) out.push_back(started.request);
    return out;
  }

 private:
  const OnStart on_start_;
  mutable absl::Mutex mu_;
  std::deque<Started> started_ ABSL_GUARDED_BY(mu_);  // A deque: references stay valid.
  bool timers_enabled_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::pair<absl::Duration, absl::AnyInvocable<void() &&>>> timers_
      ABSL_GUARDED_BY(mu_);
  std::vector<absl::Duration> delays_ ABSL_GUARDED_BY(mu_);
};

}  // namespace copilot::gateway::testing

#endif  // COPILOT_GATEWAY_TESTS_TESTING_FAKE_TRANSPORT_H_
