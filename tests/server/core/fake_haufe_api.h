// A HaufeApi for tests: records every call and lets the test finish it by hand, playing the
// upstream's event loop thread. Thread-safe.
#ifndef COPILOT_GATEWAY_TESTS_SERVER_CORE_FAKE_HAUFE_API_H_
#define COPILOT_GATEWAY_TESTS_SERVER_CORE_FAKE_HAUFE_API_H_

#include <atomic>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "server/upstream/haufe_api.h"
#include "tests/testing/fake_clock.h"  // FakeClock, for the tests using this fake.

namespace copilot::gateway::testing {

// One recorded upstream call. The callback matching `method` is set; Finish* runs it once.
struct FakeUpstreamCall final : public UpstreamCall,
                                public std::enable_shared_from_this<FakeUpstreamCall> {
  std::string method;
  UpstreamCallOptions options;
  std::string id;  // Thread or assistant id.
  CreateThreadParams create;
  RunParams run;
  CompletionParams completion;
  copilot::v1::MessageInput message;
  int page_size = 0;
  std::string cursor;

  UpstreamCallback<std::vector<copilot::v1::Assistant>> assistants_done;
  UpstreamCallback<copilot::v1::Assistant> assistant_done;
  UpstreamCallback<copilot::v1::Thread> thread_done;
  UpstreamDoneCallback empty_done;
  UpstreamCallback<copilot::v1::Message> message_done;
  UpstreamCallback<MessagePage> page_done;
  std::shared_ptr<ChunkSink> sink;

  std::atomic<int> cancels{0};
  std::atomic<int> resumes{0};

  void Cancel() override {
    ++cancels;
    Fail(absl::CancelledError("cancelled"));
  }
  void Resume() override { ++resumes; }

  bool finished() const {
    absl::MutexLock lock(&mu);
    return finished_;
  }

  // Ends the call with an error, whatever its kind; no-op when already finished.
  void Fail(absl::Status status) {
    if (!Claim()) return;
    if (assistants_done) std::move(assistants_done)(status);
    if (assistant_done) std::move(assistant_done)(status);
    if (thread_done) std::move(thread_done)(status);
    if (empty_done) std::move(empty_done)(status);
    if (message_done) std::move(message_done)(status);
    if (page_done) std::move(page_done)(status);
    if (sink) sink->OnDone(status);
  }
  void FinishThread(copilot::v1::Thread thread) {
    if (Claim()) std::move(thread_done)(std::move(thread));
  }
  void FinishMessage(copilot::v1::Message message) {
    if (Claim()) std::move(message_done)(std::move(message));
  }
  void FinishAssistants(std::vector<copilot::v1::Assistant> assistants) {
    if (Claim()) std::move(assistants_done)(std::move(assistants));
  }
  void FinishPage(MessagePage page) {
    if (Claim()) std::move(page_done)(std::move(page));
  }
  void FinishEmpty() {
    if (Claim()) std::move(empty_done)(absl::OkStatus());
  }
  // Streams: one chunk (returns what the sink returned), then EndStream.
  bool Chunk(copilot::v1::MessageChunk chunk) { return sink->OnChunk(std::move(chunk)); }
  void EndStream(absl::Status status) {
    if (Claim()) sink->OnDone(std::move(status));
  }

 private:
  bool Claim() {
    absl::MutexLock lock(&mu);
    if (finished_) return false;
    finished_ = true;
    return true;
  }
  mutable absl::Mutex mu;
  bool finished_ ABSL_GUARDED_BY(mu) = false;
};

class FakeHaufeApi final : public HaufeApi {
 public:
  // Number of calls made so far.
  int call_count() const {
    absl::MutexLock lock(&mu_);
    return static_cast<int>(calls_.size());
  }
  // The `index`th call, waiting up to `timeout` for it; nullptr if it never came.
  std::shared_ptr<FakeUpstreamCall> WaitForCall(int index,
                                                absl::Duration timeout = absl::Seconds(10)) {
    // Polls rather than Mutex::Await, whose condition runs inside (uninstrumented) abseil where
    // ThreadSanitizer cannot see the lock.
    const absl::Time deadline = absl::Now() + timeout;
    while (true) {
      {
        absl::MutexLock lock(&mu_);
        if (static_cast<int>(calls_.size()) > index) return calls_[index];
      }
      if (absl::Now() >= deadline) return nullptr;
      absl::SleepFor(absl::Milliseconds(1));
    }
  }

  std::shared_ptr<UpstreamCall> ListAssistants(
      const UpstreamCallOptions& options,
      UpstreamCallback<std::vector<copilot::v1::Assistant>> done) override {
    auto call = New("ListAssistants", options);
    call->assistants_done = std::move(done);
    return Add(call);
  }
  std::shared_ptr<UpstreamCall> GetAssistant(
      const UpstreamCallOptions& options, const std::string& assistant_id,
      UpstreamCallback<copilot::v1::Assistant> done) override {
    auto call = New("GetAssistant", options);
    call->id = assistant_id;
    call->assistant_done = std::move(done);
    return Add(call);
  }
  std::shared_ptr<UpstreamCall> CreateThread(const UpstreamCallOptions& options,
                                             const CreateThreadParams& params,
                                             UpstreamCallback<copilot::v1::Thread> done) override {
    auto call = New("CreateThread", options);
    call->create = params;
    call->thread_done = std::move(done);
    return Add(call);
  }
  std::shared_ptr<UpstreamCall> GetThread(const UpstreamCallOptions& options,
                                          const std::string& thread_id,
                                          UpstreamCallback<copilot::v1::Thread> done) override {
    auto call = New("GetThread", options);
    call->id = thread_id;
    call->thread_done = std::move(done);
    return Add(call);
  }
  std::shared_ptr<UpstreamCall> DeleteThread(const UpstreamCallOptions& options,
                                             const std::string& thread_id,
                                             UpstreamDoneCallback done) override {
    auto call = New("DeleteThread", options);
    call->id = thread_id;
    call->empty_done = std::move(done);
    return Add(call);
  }
  std::shared_ptr<UpstreamCall> AddMessage(const UpstreamCallOptions& options,
                                           const std::string& thread_id,
                                           const copilot::v1::MessageInput& message,
                                           UpstreamCallback<copilot::v1::Message> done) override {
    auto call = New("AddMessage", options);
    call->id = thread_id;
    call->message = message;
    call->message_done = std::move(done);
    return Add(call);
  }
  std::shared_ptr<UpstreamCall> ListMessages(const UpstreamCallOptions& options,
                                             const std::string& thread_id, int page_size,
                                             const std::string& cursor,
                                             UpstreamCallback<MessagePage> done) override {
    auto call = New("ListMessages", options);
    call->id = thread_id;
    call->page_size = page_size;
    call->cursor = cursor;
    call->page_done = std::move(done);
    return Add(call);
  }
  std::shared_ptr<UpstreamCall> Run(const UpstreamCallOptions& options, const RunParams& params,
                                    UpstreamCallback<copilot::v1::Message> done) override {
    auto call = New("Run", options);
    call->run = params;
    call->message_done = std::move(done);
    return Add(call);
  }
  std::shared_ptr<UpstreamCall> StreamRun(const UpstreamCallOptions& options,
                                          const RunParams& params,
                                          std::shared_ptr<ChunkSink> sink) override {
    auto call = New("StreamRun", options);
    call->run = params;
    call->sink = std::move(sink);
    return Add(call);
  }
  std::shared_ptr<UpstreamCall> Complete(const UpstreamCallOptions& options,
                                         const CompletionParams& params,
                                         UpstreamCallback<copilot::v1::Message> done) override {
    auto call = New("Complete", options);
    call->completion = params;
    call->message_done = std::move(done);
    return Add(call);
  }
  std::shared_ptr<UpstreamCall> StreamComplete(const UpstreamCallOptions& options,
                                               const CompletionParams& params,
                                               std::shared_ptr<ChunkSink> sink) override {
    auto call = New("StreamComplete", options);
    call->completion = params;
    call->sink = std::move(sink);
    return Add(call);
  }

 private:
  static std::shared_ptr<FakeUpstreamCall> New(const char* method,
                                               const UpstreamCallOptions& options) {
    auto call = std::make_shared<FakeUpstreamCall>();
    call->method = method;
    call->options = options;
    return call;
  }
  std::shared_ptr<UpstreamCall> Add(std::shared_ptr<FakeUpstreamCall> call) {
    absl::MutexLock lock(&mu_);
    calls_.push_back(call);
    return call;
  }

  mutable absl::Mutex mu_;
  std::vector<std::shared_ptr<FakeUpstreamCall>> calls_ ABSL_GUARDED_BY(mu_);
};

}  // namespace copilot::gateway::testing

#endif  // COPILOT_GATEWAY_TESTS_SERVER_CORE_FAKE_HAUFE_API_H_
