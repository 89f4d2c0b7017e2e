// grpc_floor_server: copilot.v1.CopilotService/Complete answered by gRPC alone, with no upstream,
// no tenant and no JSON: what one unary call costs in gRPC 1.51 on this machine before the
// gateway does anything. tests/bench/side_by_side.sh drives it with h2load next to the gateway,
// so the gateway's CPU per call can be split into gRPC's share and ours (issue #17).
//
//   grpc_floor_server --mode callback|callback-hop|cq [--threads N] [--answer-bytes N]
//                     [--stream-chunks N] [--stream-delay-ms N]
//   grpc_floor_server --mode callback-curl --upstream URL --upstream-body FILE --api-key KEY
//
// Modes:
//   callback      the callback API (as the gateway), the handler finishing the call inline;
//   callback-hop  the callback API, the handler handing the call to a thread of its own (woken
//                 through an eventfd, as the gateway's upstream loop is) that finishes it: the
//                 gateway's shape without the upstream;
//   cq            the completion-queue (async) API, N threads (default 2) each polling a
//                 completion queue of its own and finishing inline;
//   callback-curl callback-hop whose thread is an upstream loop as the gateway's: a libcurl multi
//                 handle driven by epoll (curl_multi_socket_action), easy handles kept and reset,
//                 connections kept alive. Each call POSTs FILE's bytes to URL over HTTP/1.1 with
//                 the gateway's request headers but its x-request-id and traceparent (api-key,
//                 accept, content-type, user-agent) and, once a 200 is in, finishes with the
//                 fixed answer: gRPC and libcurl with the hop between them, and nothing of the
//                 gateway's own (no tenant, limits, JSON, usage, logs or metrics). What is left
//                 of the gateway's CPU per call over this is its own path.
// Every mode answers with the same CompleteResponse (an assistant message of --answer-bytes
// characters, default 280, with two sources and IDs: on the wire the size of the gateway's answer
// to the bench's question). In the two callback modes it also answers StreamComplete, in place:
// --stream-chunks chunks (default 10) of a 40-character delta each, the first written at once,
// the next --stream-delay-ms apart (default 1, as side_by_side.sh paces the emulator's), then OK;
// first_chunk_bench --floor times its first chunk next to the gateway's.
// Prints "grpc-floor-server listening on 127.0.0.1:PORT"; on SIGTERM or SIGINT it stops and
// prints "served N" (the unary calls it finished with OK; in the completion-queue mode those gRPC
// confirmed sent; in callback-curl mode those whose upstream answered 200), which the script checks
// against h2load's count, and "streams N" (the streams it finished with OK).
#include <curl/curl.h>
#include <grpcpp/grpcpp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "copilot/v1/copilot_service.grpc.pb.h"
#include "grpcpp/alarm.h"

namespace {

namespace v1 = ::copilot::v1;

std::atomic<int64_t> g_served{0};
std::atomic<int64_t> g_streams{0};

struct StreamShape {
  int chunks = 10;
  int delay_ms = 1;
};

v1::StreamCompleteResponse Chunk() {
  v1::StreamCompleteResponse response;
  v1::MessageChunk* chunk = response.mutable_chunk();
  chunk->set_message_id("3f0a8c5e-6b1d-4c55-9f1e-2a7d6c1b9e40");
  chunk->set_thread_id("b7e2d9a1-4c3f-4e8a-8d6b-5f1c2e3a4b5c");
  chunk->mutable_create_time()->set_seconds(1764979200);
  chunk->mutable_delta()->set_role(v1::ROLE_ASSISTANT);
  chunk->mutable_delta()->set_content(std::string(40, 'a'));
  return response;
}

// One StreamComplete: the first chunk written from the handler, the rest paced by an alarm.
class ChunkWriter final : public grpc::ServerWriteReactor<v1::StreamCompleteResponse> {
 public:
  ChunkWriter(const v1::StreamCompleteResponse& chunk, StreamShape shape)
      : chunk_(chunk), shape_(shape) {
    StartWrite(&chunk_);
  }

  void OnWriteDone(bool ok) override {
    if (!ok) return Finish(grpc::Status(grpc::StatusCode::CANCELLED, "write failed"));
    if (++written_ >= shape_.chunks) return Finish(grpc::Status::OK);
    if (shape_.delay_ms == 0) return StartWrite(&chunk_);
    alarm_.Set(std::chrono::system_clock::now() + std::chrono::milliseconds(shape_.delay_ms),
               [this](bool fired) {
                 if (fired) {
                   StartWrite(&chunk_);
                 } else {
                   Finish(grpc::Status(grpc::StatusCode::CANCELLED, "alarm cancelled"));
                 }
               });
  }

  void OnDone() override {
    if (written_ >= shape_.chunks) ++g_streams;
    delete this;
  }

 private:
  const v1::StreamCompleteResponse& chunk_;
  const StreamShape shape_;
  int written_ = 0;
  grpc::Alarm alarm_;
};

v1::CompleteResponse Answer(int answer_bytes) {
  v1::CompleteResponse response;
  v1::Message* message = response.mutable_message();
  message->set_id("3f0a8c5e-6b1d-4c55-9f1e-2a7d6c1b9e40");
  message->set_thread_id("b7e2d9a1-4c3f-4e8a-8d6b-5f1c2e3a4b5c");
  message->set_role(v1::ROLE_ASSISTANT);
  message->set_content(std::string(static_cast<size_t>(answer_bytes), 'a'));
  message->mutable_create_time()->set_seconds(1764979200);
  for (int i = 0; i < 2; ++i) {
    v1::Source* source = message->add_sources();
    source->set_content("Bundesurlaubsgesetz, section " + std::to_string(i + 3));
    (*source->mutable_meta_data()->mutable_fields())["title"].set_string_value("Document " +
                                                                               std::to_string(i));
  }
  return response;
}

// What callback-curl mode sends upstream.
struct UpstreamRequest {
  std::string url;
  std::string body;
  std::string api_key;
};

// The upstream loop of callback-curl mode: one thread, one libcurl multi handle driven by epoll,
// as the gateway's CurlTransport loop (without its bounds, timers and bookkeeping).
class CurlLoop {
 public:
  CurlLoop(UpstreamRequest request, const v1::CompleteResponse& answer)
      : request_(std::move(request)), answer_(answer) {
    const std::string api_key = "api-key: " + request_.api_key;
    for (const char* line :
         {api_key.c_str(), "accept: application/json", "content-type: application/json",
          "user-agent: grpc-floor-server", "Expect:"}) {
      headers_ = curl_slist_append(headers_, line);
    }
    multi_ = curl_multi_init();
    curl_multi_setopt(multi_, CURLMOPT_SOCKETFUNCTION, &CurlLoop::OnSocket);
    curl_multi_setopt(multi_, CURLMOPT_SOCKETDATA, this);
    curl_multi_setopt(multi_, CURLMOPT_TIMERFUNCTION, &CurlLoop::OnTimer);
    curl_multi_setopt(multi_, CURLMOPT_TIMERDATA, this);
    curl_multi_setopt(multi_, CURLMOPT_MAXCONNECTS, 256L);  // As the gateway's cache, by load.
    epoll_ = epoll_create1(EPOLL_CLOEXEC);
    wake_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.fd = wake_;
    epoll_ctl(epoll_, EPOLL_CTL_ADD, wake_, &event);
    thread_ = std::thread([this] { Run(); });
  }

  ~CurlLoop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    Wake();
    thread_.join();
    for (CURL* easy : idle_) curl_easy_cleanup(easy);
    curl_multi_cleanup(multi_);
    curl_slist_free_all(headers_);
    close(wake_);
    close(epoll_);
  }

  // From a gRPC thread: the call is sent upstream by the loop, which finishes it.
  void Post(grpc::ServerUnaryReactor* reactor, v1::CompleteResponse* response) {
    bool was_empty = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      was_empty = pending_.empty();
      pending_.push_back(Call{reactor, response, nullptr, {}});
    }
    if (was_empty) Wake();
  }

 private:
  struct Call {
    grpc::ServerUnaryReactor* reactor;
    v1::CompleteResponse* response;
    CURL* easy;
    std::string received;
  };

  void Wake() {
    const uint64_t one = 1;
    if (write(wake_, &one, sizeof(one)) < 0) std::perror("grpc_floor_server: eventfd write");
  }

  static int OnSocket(CURL* /*easy*/, curl_socket_t fd, int what, void* loop_ptr,
                      void* registered) {
    auto* loop = static_cast<CurlLoop*>(loop_ptr);
    if (what == CURL_POLL_REMOVE) {
      epoll_ctl(loop->epoll_, EPOLL_CTL_DEL, fd, nullptr);
      return 0;
    }
    epoll_event event{};
    event.events = (what & CURL_POLL_IN ? EPOLLIN : 0U) | (what & CURL_POLL_OUT ? EPOLLOUT : 0U);
    event.data.fd = fd;
    if (registered == nullptr) {
      epoll_ctl(loop->epoll_, EPOLL_CTL_ADD, fd, &event);
      curl_multi_assign(loop->multi_, fd, loop);
    } else {
      epoll_ctl(loop->epoll_, EPOLL_CTL_MOD, fd, &event);
    }
    return 0;
  }

  static int OnTimer(CURLM* /*multi*/, long timeout_ms, void* loop_ptr) {
    auto* loop = static_cast<CurlLoop*>(loop_ptr);
    if (timeout_ms < 0) {
      loop->deadline_.reset();
    } else {
      loop->deadline_ = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    }
    return 0;
  }

  static size_t OnWrite(char* data, size_t size, size_t count, void* call_ptr) {
    static_cast<Call*>(call_ptr)->received.append(data, size * count);
    return size * count;
  }

  void Start(Call call) {
    auto owned = std::make_unique<Call>(std::move(call));
    CURL* easy = nullptr;
    if (idle_.empty()) {
      easy = curl_easy_init();
    } else {
      easy = idle_.back();
      idle_.pop_back();
    }
    owned->easy = easy;
    curl_easy_setopt(easy, CURLOPT_URL, request_.url.c_str());
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, request_.body.data());
    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE,
                     static_cast<curl_off_t>(request_.body.size()));
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers_);
    curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_1_1));
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &CurlLoop::OnWrite);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, owned.get());
    curl_easy_setopt(easy, CURLOPT_PRIVATE, owned.get());
    curl_multi_add_handle(multi_, easy);
    ++in_flight_;
    owned.release();  // Owned by its easy handle until it is done (Drain).
  }

  // Finishes the calls libcurl completed, keeping their easy handles for the next ones.
  void Drain() {
    int left = 0;
    while (CURLMsg* message = curl_multi_info_read(multi_, &left)) {
      if (message->msg != CURLMSG_DONE) continue;
      CURL* easy = message->easy_handle;
      char* private_ptr = nullptr;
      curl_easy_getinfo(easy, CURLINFO_PRIVATE, &private_ptr);
      std::unique_ptr<Call> call(reinterpret_cast<Call*>(private_ptr));
      long status = 0;
      curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
      if (message->data.result == CURLE_OK && status == 200 && !call->received.empty()) {
        *call->response = answer_;
        call->reactor->Finish(grpc::Status::OK);
        ++g_served;
      } else {
        call->reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "upstream failed"));
      }
      curl_multi_remove_handle(multi_, easy);
      curl_easy_reset(easy);
      idle_.push_back(easy);
      --in_flight_;
    }
  }

  void Run() {
    int running = 0;
    bool stopping = false;  // Ends once the calls in flight have ended.
    std::vector<epoll_event> events(64);
    for (;;) {
      int wait_ms = -1;
      if (deadline_.has_value()) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            *deadline_ - std::chrono::steady_clock::now());
        wait_ms = static_cast<int>(std::max<int64_t>(0, left.count()));
      }
      const int ready = epoll_wait(epoll_, events.data(), static_cast<int>(events.size()), wait_ms);
      for (int i = 0; i < ready; ++i) {
        const int fd = events[static_cast<size_t>(i)].data.fd;
        if (fd == wake_) {
          uint64_t count = 0;
          if (read(wake_, &count, sizeof(count)) < 0 && errno != EAGAIN) continue;
          std::deque<Call> batch;
          {
            std::lock_guard<std::mutex> lock(mu_);
            batch.swap(pending_);
            stopping = stop_;
          }
          for (Call& call : batch) Start(std::move(call));
          continue;
        }
        const uint32_t got = events[static_cast<size_t>(i)].events;
        const int mask = (got & EPOLLIN ? CURL_CSELECT_IN : 0) |
                         (got & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
                         (got & (EPOLLERR | EPOLLHUP) ? CURL_CSELECT_ERR : 0);
        curl_multi_socket_action(multi_, fd, mask, &running);
      }
      if (deadline_.has_value() && std::chrono::steady_clock::now() >= *deadline_) {
        deadline_.reset();
        curl_multi_socket_action(multi_, CURL_SOCKET_TIMEOUT, 0, &running);
      }
      Drain();
      if (stopping && in_flight_ == 0) return;
    }
  }

  const UpstreamRequest request_;
  const v1::CompleteResponse& answer_;
  curl_slist* headers_ = nullptr;
  CURLM* multi_ = nullptr;
  int epoll_ = -1;
  int wake_ = -1;
  std::optional<std::chrono::steady_clock::time_point> deadline_;  // libcurl's timer.
  std::vector<CURL*> idle_;  // Easy handles of ended calls, reset.
  int in_flight_ = 0;
  std::mutex mu_;
  std::deque<Call> pending_;
  bool stop_ = false;
  std::thread thread_;
};

// The callback service; in callback-hop mode its calls are finished by a thread of its own, in
// callback-curl mode by the upstream loop.
class CallbackService final : public v1::CopilotService::CallbackService {
 public:
  CallbackService(v1::CompleteResponse answer, bool hop, StreamShape stream,
                  std::optional<UpstreamRequest> upstream)
      : answer_(std::move(answer)), hop_(hop && !upstream.has_value()), stream_(stream) {
    if (upstream.has_value()) upstream_ = std::make_unique<CurlLoop>(std::move(*upstream), answer_);
    if (hop_) {
      wake_ = eventfd(0, EFD_CLOEXEC);
      worker_ = std::thread([this] { Work(); });
    }
  }
  ~CallbackService() override {
    if (!hop_) return;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    Wake();
    worker_.join();
    close(wake_);
  }

  grpc::ServerUnaryReactor* Complete(grpc::CallbackServerContext* context,
                                     const v1::CompleteRequest* /*request*/,
                                     v1::CompleteResponse* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    if (upstream_ != nullptr) {
      upstream_->Post(reactor, response);
      return reactor;
    }
    if (!hop_) {
      *response = answer_;
      reactor->Finish(grpc::Status::OK);
      ++g_served;
      return reactor;
    }
    bool was_empty = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      was_empty = pending_.empty();
      pending_.emplace_back(reactor, response);
    }
    if (was_empty) Wake();
    return reactor;
  }

  grpc::ServerWriteReactor<v1::StreamCompleteResponse>* StreamComplete(
      grpc::CallbackServerContext* /*context*/,
      const v1::StreamCompleteRequest* /*request*/) override {
    return new ChunkWriter(chunk_, stream_);
  }

 private:
  void Wake() {
    const uint64_t one = 1;
    if (write(wake_, &one, sizeof(one)) < 0) std::perror("grpc_floor_server: eventfd write");
  }

  void Work() {
    for (;;) {
      uint64_t count = 0;
      if (read(wake_, &count, sizeof(count)) < 0) continue;
      std::deque<std::pair<grpc::ServerUnaryReactor*, v1::CompleteResponse*>> batch;
      {
        std::lock_guard<std::mutex> lock(mu_);
        batch.swap(pending_);
        if (stop_ && batch.empty()) return;
      }
      for (auto& [reactor, response] : batch) {
        *response = answer_;
        reactor->Finish(grpc::Status::OK);
        ++g_served;
      }
    }
  }

  const v1::CompleteResponse answer_;
  const bool hop_;
  const StreamShape stream_;
  const v1::StreamCompleteResponse chunk_ = Chunk();
  std::unique_ptr<CurlLoop> upstream_;
  int wake_ = -1;
  std::thread worker_;
  std::mutex mu_;
  std::deque<std::pair<grpc::ServerUnaryReactor*, v1::CompleteResponse*>> pending_;
  bool stop_ = false;
};

// One Complete call in the completion-queue API: requested, then answered, then freed.
class CqCall {
 public:
  CqCall(v1::CopilotService::AsyncService& service, grpc::ServerCompletionQueue& cq,
         const v1::CompleteResponse& answer)
      : service_(service), cq_(cq), answer_(answer), writer_(&context_) {
    service_.RequestComplete(&context_, &request_, &writer_, &cq_, &cq_, this);
  }

  // The completion of this call's last operation; false once the queue is shutting down.
  void Proceed(bool ok) {
    if (!answered_ && ok) {
      new CqCall(service_, cq_, answer_);  // The next call of this queue.
      answered_ = true;
      writer_.Finish(answer_, grpc::Status::OK, this);
      return;
    }
    if (answered_ && ok) ++g_served;
    delete this;
  }

 private:
  v1::CopilotService::AsyncService& service_;
  grpc::ServerCompletionQueue& cq_;
  const v1::CompleteResponse& answer_;
  grpc::ServerContext context_;
  v1::CompleteRequest request_;
  grpc::ServerAsyncResponseWriter<v1::CompleteResponse> writer_;
  bool answered_ = false;
};

int Usage() {
  std::fprintf(stderr,
               "usage: grpc_floor_server --mode callback|callback-hop|cq|callback-curl "
               "[--threads N] [--answer-bytes N] [--stream-chunks N] [--stream-delay-ms N] "
               "[--upstream URL --upstream-body FILE --api-key KEY]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string mode;
  int threads = 2;
  int answer_bytes = 280;
  StreamShape stream;
  UpstreamRequest upstream;
  std::string upstream_body_file;
  if (argc % 2 == 0) return Usage();  // A flag without its value.
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string arg = argv[i];
    if (arg == "--mode") {
      mode = argv[i + 1];
    } else if (arg == "--threads") {
      threads = std::atoi(argv[i + 1]);
    } else if (arg == "--answer-bytes") {
      answer_bytes = std::atoi(argv[i + 1]);
    } else if (arg == "--stream-chunks") {
      stream.chunks = std::atoi(argv[i + 1]);
    } else if (arg == "--stream-delay-ms") {
      stream.delay_ms = std::atoi(argv[i + 1]);
    } else if (arg == "--upstream") {
      upstream.url = argv[i + 1];
    } else if (arg == "--upstream-body") {
      upstream_body_file = argv[i + 1];
    } else if (arg == "--api-key") {
      upstream.api_key = argv[i + 1];
    } else {
      return Usage();
    }
  }
  const bool curl_mode = mode == "callback-curl";
  if ((mode != "callback" && mode != "callback-hop" && mode != "cq" && !curl_mode) || threads < 1 ||
      answer_bytes < 0 || stream.chunks < 1 || stream.delay_ms < 0 ||
      curl_mode != !upstream.url.empty() || curl_mode != !upstream_body_file.empty()) {
    return Usage();
  }
  if (curl_mode) {
    std::ifstream body(upstream_body_file, std::ios::binary);
    if (!body) {
      std::fprintf(stderr, "grpc_floor_server: cannot read %s\n", upstream_body_file.c_str());
      return 2;
    }
    upstream.body.assign(std::istreambuf_iterator<char>(body), std::istreambuf_iterator<char>());
    curl_global_init(CURL_GLOBAL_DEFAULT);
  }

  // As the gateway's release build: no abseil lock-order detection on gRPC's mutexes.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  // SIGTERM and SIGINT are taken by sigwait below, on no other thread.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  const v1::CompleteResponse answer = Answer(answer_bytes);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  std::unique_ptr<CallbackService> callback_service;
  v1::CopilotService::AsyncService async_service;
  std::vector<std::unique_ptr<grpc::ServerCompletionQueue>> queues;
  if (mode == "cq") {
    builder.RegisterService(&async_service);
    for (int i = 0; i < threads; ++i) queues.push_back(builder.AddCompletionQueue());
  } else {
    std::optional<UpstreamRequest> upstream_request;
    if (curl_mode) upstream_request = std::move(upstream);
    callback_service = std::make_unique<CallbackService>(answer, mode == "callback-hop", stream,
                                                         std::move(upstream_request));
    builder.RegisterService(callback_service.get());
  }
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    std::fprintf(stderr, "grpc_floor_server: could not listen\n");
    return 1;
  }
  std::vector<std::thread> pollers;
  for (auto& queue : queues) {
    grpc::ServerCompletionQueue* cq = queue.get();
    // A few calls requested ahead on each queue, so a new call never waits for one.
    for (int i = 0; i < 64; ++i) new CqCall(async_service, *cq, answer);
    pollers.emplace_back([cq] {
      void* tag = nullptr;
      bool ok = false;
      while (cq->Next(&tag, &ok)) static_cast<CqCall*>(tag)->Proceed(ok);
    });
  }
  std::printf("grpc-floor-server listening on 127.0.0.1:%d\n", port);
  std::fflush(stdout);

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  server->Shutdown();
  for (auto& queue : queues) queue->Shutdown();
  for (std::thread& poller : pollers) poller.join();
  server->Wait();
  callback_service.reset();
  std::printf("served %lld\nstreams %lld\n", static_cast<long long>(g_served.load()),
              static_cast<long long>(g_streams.load()));
  return 0;
}
