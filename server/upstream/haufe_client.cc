#include "server/upstream/haufe_client.h"

#include <algorithm>
#include <deque>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "nlohmann/json.hpp"
#include "server/common/errors.h"
#include "server/common/prefault.h"
#include "server/common/secrets.h"
#include "server/upstream/decode_pool.h"
#include "server/upstream/http_status_table.h"
#include "server/upstream/json_mapping.h"
#include "server/upstream/ndjson_splitter.h"
#include "server/upstream/response_memory.h"

#ifndef COPILOT_GATEWAY_VERSION
#define COPILOT_GATEWAY_VERSION "0.0.0"
#endif

namespace copilot::gateway {
namespace {

bool IsSuccess(int http_status) { return http_status >= 200 && http_status < 300; }

// An UpstreamCall over one transfer.
// Thread-safe: HttpTransfer is.
class TransferCall final : public UpstreamCall {
 public:
  explicit TransferCall(std::shared_ptr<HttpTransfer> transfer) : transfer_(std::move(transfer)) {}
  void Cancel() override { transfer_->Cancel(); }
  void Resume() override { transfer_->Resume(); }

 private:
  const std::shared_ptr<HttpTransfer> transfer_;
};

// What a call sends upstream, and the tenant's other secrets, that its answers and error text
// must never give back.
std::vector<std::string> SecretsSent(const UpstreamCallOptions& options) {
  std::vector<std::string> secrets = {options.api_key, options.licence};
  secrets.insert(secrets.end(), options.also_redact.begin(), options.also_redact.end());
  return secrets;
}

// Cancels a transfer from its handler; a cancel before the transfer is known is kept until it
// is. Thread-safe.
class TransferSlot {
 public:
  void Set(std::shared_ptr<HttpTransfer> transfer) {
    {
      absl::MutexLock lock(&mu_);
      if (!cancel_on_set_) {
        transfer_ = std::move(transfer);
        return;
      }
    }
    transfer->Cancel();  // The handler already wanted it stopped, before Start had returned.
  }
  void Cancel() {
    std::shared_ptr<HttpTransfer> transfer;
    {
      absl::MutexLock lock(&mu_);
      transfer = std::move(transfer_);
      if (transfer == nullptr) cancel_on_set_ = true;
    }
    if (transfer != nullptr) transfer->Cancel();
  }

 private:
  absl::Mutex mu_;
  std::shared_ptr<HttpTransfer> transfer_ ABSL_GUARDED_BY(mu_);
  bool cancel_on_set_ ABSL_GUARDED_BY(mu_) = false;
};

// Collects a whole response; hands the 2xx body, or the mapped error, to `done`.
// Not thread-safe: the transport calls it from its event loop thread only (SetTransfer: any).
class BufferedHandler final : public HttpTransferHandler {
 public:
  // Answers over `inline_bytes` are decoded on `pool` (when given) in `tenant`'s turn.
  BufferedHandler(std::function<absl::Time()> now, std::vector<std::string> secrets,
                  ResponseMemory* memory, bool idempotent, DecodePool* pool, std::string tenant,
                  std::size_t inline_bytes, BufferedDone done)
      : now_(std::move(now)),
        secrets_(std::move(secrets)),
        memory_(memory),
        charge_(memory),
        idempotent_(idempotent),
        pool_(pool),
        tenant_(std::move(tenant)),
        inline_bytes_(inline_bytes),
        done_(std::move(done)) {}

  void SetTransfer(std::shared_ptr<HttpTransfer> transfer) { transfer_.Set(std::move(transfer)); }

  void OnHeaders(const HttpResponseHead& head) override {
    http_status_ = head.status;
    retry_after_ = std::string(head.Header("retry-after"));
    // Room for a body of stated length at once (the transport refuses one over
    // max_response_bytes before it starts): a large answer is then copied once on the loop
    // thread, not through a doubling series of buffers whose fresh pages each fault in there.
    // Charged like the bytes themselves; past the bound, the body grows as it comes, as before.
    std::size_t length = 0;
    if (absl::SimpleAtoi(head.Header("content-length"), &length) && length > body_.capacity() &&
        charge_.Set(length)) {
      body_.reserve(length);
      reserved_ = length;
      PrefaultForWrite(body_.data(), body_.capacity());
    }
  }
  bool OnData(absl::string_view piece) override {
    if (over_memory_) return true;  // Being cancelled.
    // Each body is bounded by the transport's max_response_bytes, all of them by memory_.
    if (!charge_.Set(std::max(reserved_, body_.size() + piece.size()))) {
      over_memory_ = true;
      body_.clear();
      body_.shrink_to_fit();
      reserved_ = 0;
      charge_.Set(0);
      transfer_.Cancel();
      return true;
    }
    body_.append(piece.data(), piece.size());
    return true;
  }
  void OnComplete(absl::Status status) override {
    if (!done_) return;
    auto done = std::move(done_);
    if (over_memory_) {
      std::move(done)(ResponseMemoryExhausted(idempotent_, memory_->max_bytes()), http_status_);
    } else if (!status.ok()) {
      std::move(done)(std::move(status), http_status_);
    } else if (pool_ != nullptr && body_.size() > inline_bytes_) {
      // Decoded off the loop, an answer or an error body alike (a hostile upstream can send
      // megabytes of either); its bytes stay counted until then.
      pool_->Post(tenant_, [done = std::move(done), body = std::move(body_),
                            charge = std::move(charge_), status = http_status_,
                            retry_after = std::move(retry_after_), now = now_,
                            secrets = secrets_]() mutable {
        if (IsSuccess(status)) {
          std::move(done)(std::move(body), status);
        } else {
          std::move(done)(StatusFromHttpError(status, body, retry_after, now(), secrets), status);
        }
      });
      return;
    } else if (IsSuccess(http_status_)) {
      std::move(done)(std::move(body_), http_status_);
    } else {
      std::move(done)(StatusFromHttpError(http_status_, body_, retry_after_, now_(), secrets_),
                      http_status_);
    }
    body_.clear();
    charge_.Set(0);  // Decoded (or failed): the bytes are no longer held here.
  }

 private:
  const std::function<absl::Time()> now_;
  const std::vector<std::string> secrets_;  // Sent upstream by this call: never echoed back.
  ResponseMemory* const memory_;
  ResponseMemory::Charge charge_;
  const bool idempotent_;
  DecodePool* const pool_;
  const std::string tenant_;
  const std::size_t inline_bytes_;
  BufferedDone done_;
  TransferSlot transfer_;
  int http_status_ = 0;
  std::string retry_after_;
  std::string body_;
  std::size_t reserved_ = 0;  // Bytes of body_ reserved from the stated content-length.
  bool over_memory_ = false;
};

// Turns a 2xx NDJSON body into ChunkSink calls, line by line, with flow control; maps a non-2xx
// response like any other.
// Thread-safety: the transport calls the HttpTransferHandler methods from its event loop thread
// only; SetTransfer may be called from any thread (transfer_ is under mu_).
class StreamHandler final : public HttpTransferHandler {
 public:
  StreamHandler(std::shared_ptr<ChunkSink> sink, std::size_t max_line_bytes,
                std::vector<std::string> secrets, std::function<absl::Time()> now,
                ResponseMemory* memory)
      : sink_(std::move(sink)),
        splitter_(max_line_bytes),
        secrets_(std::move(secrets)),
        now_(std::move(now)),
        memory_(memory),
        charge_(memory) {}

  void SetTransfer(std::shared_ptr<HttpTransfer> transfer) { transfer_.Set(std::move(transfer)); }

  void OnHeaders(const HttpResponseHead& head) override {
    http_status_ = head.status;
    retry_after_ = std::string(head.Header("retry-after"));
  }

  bool OnData(absl::string_view piece) override {
    if (done_) return true;  // Ended early (an error line); the transfer is being cancelled.
    if (!IsSuccess(http_status_)) {
      if (!charge_.Set(error_body_.size() + piece.size())) {
        Finish(ResponseMemoryExhausted(/*idempotent=*/false, memory_->max_bytes()));
        return true;
      }
      error_body_.append(piece.data(), piece.size());
      return true;
    }
    absl::Status split = splitter_.Feed(piece, [this](absl::string_view line) {
      pending_.emplace_back(line);
      pending_bytes_ += line.size();
    });
    // Lines completed before a splitter error still go out first.
    const bool more = Drain(/*honour_pause=*/true);
    if (!split.ok() && !done_) {
      Finish(std::move(split));
      return true;
    }
    // What this stream holds now: its partial line and the lines a slow reader has not taken.
    if (!done_ && !charge_.Set(splitter_.buffered_bytes() + pending_bytes_)) {
      Finish(ResponseMemoryExhausted(/*idempotent=*/false, memory_->max_bytes()));
      return true;
    }
    return more;
  }

  void OnComplete(absl::Status status) override {
    if (done_) return;
    if (!status.ok()) return Finish(std::move(status));
    if (!IsSuccess(http_status_)) {
      return Finish(StatusFromHttpError(http_status_, error_body_, retry_after_, now_(), secrets_));
    }
    absl::Status end =
        splitter_.Finish([this](absl::string_view line) { pending_.emplace_back(line); });
    // The transport does not complete a transfer its handler holds paused, so the sink is not
    // paused here; if a transport did, the sink still gets every line before OnDone.
    Drain(/*honour_pause=*/false);
    if (done_) return;
    if (end.ok()) DeliverHeldContent();
    Finish(std::move(end));
  }

 private:
  // Delivers pending lines until the sink asks for a pause (then false) or none are left.
  bool Drain(bool honour_pause) {
    while (!pending_.empty() && !done_) {
      std::string line = std::move(pending_.front());
      pending_.pop_front();
      pending_bytes_ -= line.size();
      if (!Deliver(line) && honour_pause) return false;
    }
    return true;
  }

  // One line to the sink; returns what OnChunk returned (true after an error line).
  bool Deliver(absl::string_view line) {
    absl::StatusOr<JsonDocument> parsed = ParseJson(line, "stream line");
    if (!parsed.ok()) {
      Finish(parsed.status());
      return true;
    }
    const JsonValue& json = *parsed;
    if (IsStreamErrorLine(json)) {
      Finish(StatusFromStreamErrorLine(line, secrets_));
      return true;
    }
    absl::StatusOr<copilot::v1::MessageChunk> chunk = MessageChunkFromJson(json);
    if (!chunk.ok()) {
      Finish(chunk.status());
      return true;
    }
    HoldBackSecretPrefix(*chunk);
    RedactSecretsInMessage(*chunk, secrets_);
    return sink_->OnChunk(*std::move(chunk));
  }

  // A secret split across two chunks' content is joined before it is redacted: the end of a
  // chunk's content that begins a secret waits for the next chunk (or the stream's end), so
  // only an answer that happens to end a chunk that way is delayed, by one chunk.
  void HoldBackSecretPrefix(copilot::v1::MessageChunk& chunk) {
    if (secrets_.empty()) return;
    std::string content = RedactSecrets(absl::StrCat(held_, chunk.delta().content()), secrets_);
    const size_t hold = SecretPrefixAtEnd(content, secrets_);
    held_ = content.substr(content.size() - hold);
    content.resize(content.size() - hold);
    chunk.mutable_delta()->set_content(std::move(content));
    if (hold > 0) {
      held_chunk_ = chunk;
      held_chunk_.mutable_delta()->clear_content();
      held_chunk_.mutable_delta()->clear_sources();
    }
  }

  // What HoldBackSecretPrefix still holds when the stream ends: no secret, so it is delivered,
  // as one more chunk of the same message.
  void DeliverHeldContent() {
    if (held_.empty() || done_) return;
    copilot::v1::MessageChunk rest = std::move(held_chunk_);
    rest.mutable_delta()->set_content(std::exchange(held_, std::string()));
    sink_->OnChunk(std::move(rest));
  }

  // Ends the stream: OnDone exactly once; an early end also cancels the transfer.
  void Finish(absl::Status status) {
    if (done_) return;
    done_ = true;
    pending_.clear();
    pending_bytes_ = 0;
    error_body_.clear();
    charge_.Set(0);
    // Failures after the status line (bad lines, cuts) still name the HTTP status they came with.
    if (http_status_ != 0)
      SetErrorMetadataIfAbsent(status, "http_status", absl::StrCat(http_status_));
    // After OnComplete this is a no-op; before it, it stops an upstream that sent an error line
    // but kept the connection open.
    transfer_.Cancel();
    sink_->OnDone(std::move(status));
  }

  const std::shared_ptr<ChunkSink> sink_;
  NdjsonSplitter splitter_;
  const std::vector<std::string> secrets_;  // Sent upstream by this call: never echoed back.
  const std::function<absl::Time()> now_;
  ResponseMemory* const memory_;
  ResponseMemory::Charge charge_;
  int http_status_ = 0;
  std::string retry_after_;
  std::string error_body_;
  std::deque<std::string> pending_;  // Complete lines the sink has not taken yet (paused).
  std::size_t pending_bytes_ = 0;
  // The end of the content delivered so far that begins a secret (HoldBackSecretPrefix), and
  // the chunk it came from (its IDs, for delivering it at the end).
  std::string held_;
  copilot::v1::MessageChunk held_chunk_;
  bool done_ = false;
  TransferSlot transfer_;
};

// Calls `done` inline with a status for a request that cannot be sent.
template <typename Callback>
std::shared_ptr<UpstreamCall> Reject(Callback& done, absl::string_view what) {
  std::move(done)(MakeError(absl::StatusCode::kInvalidArgument,
                            absl::StrCat("no ", what, " given for the upstream call"),
                            "upstream_missing_id"));
  return std::make_shared<FinishedCall>();
}

std::shared_ptr<UpstreamCall> RejectStream(ChunkSink& sink, absl::string_view what) {
  sink.OnDone(MakeError(absl::StatusCode::kInvalidArgument,
                        absl::StrCat("no ", what, " given for the upstream call"),
                        "upstream_missing_id"));
  return std::make_shared<FinishedCall>();
}

// Secrets sent on a call are redacted from its decoded answer (the upstream may echo them,
// e.g. meta_data.user_data.licence in a message).
void Redact(google::protobuf::Message& message, absl::Span<const std::string> secrets) {
  RedactSecretsInMessage(message, secrets);
}
void Redact(std::vector<copilot::v1::Assistant>& assistants,
            absl::Span<const std::string> secrets) {
  for (copilot::v1::Assistant& assistant : assistants) RedactSecretsInMessage(assistant, secrets);
}
void Redact(MessagePage& page, absl::Span<const std::string> secrets) {
  for (copilot::v1::Message& message : page.messages) RedactSecretsInMessage(message, secrets);
  page.next_cursor = RedactSecrets(page.next_cursor, secrets);
}

// A buffered-call completion that parses the body with `parse`, redacts `secrets` from the
// result and hands it on. A body that cannot be parsed still names the HTTP status it came
// with.
template <typename T, typename Parse>
BufferedDone ParseThen(Parse parse, std::vector<std::string> secrets, UpstreamCallback<T> done) {
  return [parse, secrets = std::move(secrets), done = std::move(done)](
             absl::StatusOr<std::string> body, int http_status) mutable {
    if (!body.ok()) return std::move(done)(body.status());
    absl::StatusOr<T> parsed = parse(*body);
    if (!parsed.ok()) {
      absl::Status status = parsed.status();
      SetErrorMetadataIfAbsent(status, "http_status", absl::StrCat(http_status));
      return std::move(done)(std::move(status));
    }
    Redact(*parsed, secrets);
    std::move(done)(std::move(parsed));
  };
}

std::string CompletionPath(const CompletionParams& params, bool stream) {
  std::string path = stream ? "/v1/chat/completions/stream" : "/v1/chat/completions";
  if (!params.thread_id.empty()) absl::StrAppend(&path, "?thread_id=", UrlEncode(params.thread_id));
  return path;
}

}  // namespace

std::string EndpointTemplate(absl::string_view method, absl::string_view path_and_query) {
  absl::string_view path = path_and_query.substr(0, path_and_query.find('?'));
  std::vector<std::string> parts = absl::StrSplit(path, '/');
  // ["", "v1", "threads", ID, ...]: the segment after a collection is that collection's ID.
  for (std::size_t i = 3; i < parts.size(); ++i) {
    if (parts[i - 1] == "threads") parts[i] = "{thread_id}";
    if (parts[i - 1] == "assistants") parts[i] = "{assistant_id}";
  }
  return absl::StrCat(method, " ", absl::StrJoin(parts, "/"));
}

std::string UrlEncode(absl::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (unsigned char c : text) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '.' || c == '_' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xF]);
    }
  }
  return out;
}

HaufeClient::HaufeClient(HaufeClientConfig config, std::shared_ptr<HttpTransport> transport,
                         std::function<absl::Time()> now, ResponseMemory* memory,
                         DecodePool* decode_pool)
    : config_(std::move(config)),
      base_url_(absl::StripSuffix(config_.base_url, "/")),
      transport_(std::move(transport)),
      now_(std::move(now)),
      memory_(memory),
      decode_pool_(decode_pool) {}

HttpRequest HaufeClient::MakeRequest(const UpstreamCallOptions& options, absl::string_view method,
                                     absl::string_view path_and_query, std::string body,
                                     bool stream) const {
  HttpRequest request;
  request.method = std::string(method);
  request.url = absl::StrCat(base_url_, path_and_query);
  request.headers.emplace_back("api-key", options.api_key);
  request.headers.emplace_back(
      "accept", stream ? "application/x-ndjson, application/json" : "application/json");
  if (method == "POST") request.headers.emplace_back("content-type", "application/json");
  if (!options.request_id.empty()) request.headers.emplace_back("x-request-id", options.request_id);
  if (!options.traceparent.empty())
    request.headers.emplace_back("traceparent", options.traceparent);
  request.headers.emplace_back(
      "user-agent",
      absl::StrCat("copilot-gateway/",
                   config_.version.empty() ? COPILOT_GATEWAY_VERSION : config_.version));
  request.body = std::move(body);
  request.deadline = options.deadline;
  request.connect_timeout = config_.connect_timeout;
  request.stall_timeout = config_.stall_timeout;
  request.max_response_bytes = config_.max_response_bytes;
  request.endpoint = EndpointTemplate(method, path_and_query);
  request.trace = options.trace;
  if (config_.connections_per_tenant) request.connection_pool = options.tenant_id;
  return request;
}

std::shared_ptr<UpstreamCall> HaufeClient::StartBuffered(const UpstreamCallOptions& options,
                                                         HttpRequest request, BufferedDone done) {
  const bool idempotent = request.method == "GET" || request.method == "DELETE";
  auto handler = std::make_shared<BufferedHandler>(now_, SecretsSent(options), memory_, idempotent,
                                                   decode_pool_, options.tenant_id,
                                                   config_.inline_decode_bytes, std::move(done));
  std::shared_ptr<HttpTransfer> transfer = transport_->Start(std::move(request), handler);
  handler->SetTransfer(transfer);
  return std::make_shared<TransferCall>(std::move(transfer));
}

std::shared_ptr<UpstreamCall> HaufeClient::StartStream(const UpstreamCallOptions& options,
                                                       HttpRequest request,
                                                       std::shared_ptr<ChunkSink> sink) {
  auto handler = std::make_shared<StreamHandler>(std::move(sink), config_.max_ndjson_line_bytes,
                                                 SecretsSent(options), now_, memory_);
  std::shared_ptr<HttpTransfer> transfer = transport_->Start(std::move(request), handler);
  handler->SetTransfer(transfer);
  return std::make_shared<TransferCall>(std::move(transfer));
}

std::shared_ptr<UpstreamCall> HaufeClient::ListAssistants(
    const UpstreamCallOptions& options,
    UpstreamCallback<std::vector<copilot::v1::Assistant>> done) {
  return StartBuffered(options, MakeRequest(options, "GET", "/v1/assistants", "", false),
                       ParseThen<std::vector<copilot::v1::Assistant>>(
                           [](absl::string_view body) { return ParseAssistantList(body); },
                           SecretsSent(options), std::move(done)));
}

std::shared_ptr<UpstreamCall> HaufeClient::GetAssistant(
    const UpstreamCallOptions& options, const std::string& assistant_id,
    UpstreamCallback<copilot::v1::Assistant> done) {
  if (assistant_id.empty()) return Reject(done, "assistant_id");
  return StartBuffered(
      options,
      MakeRequest(options, "GET", absl::StrCat("/v1/assistants/", UrlEncode(assistant_id)), "",
                  false),
      ParseThen<copilot::v1::Assistant>([](absl::string_view body) { return ParseAssistant(body); },
                                        SecretsSent(options), std::move(done)));
}

std::shared_ptr<UpstreamCall> HaufeClient::CreateThread(
    const UpstreamCallOptions& options, const CreateThreadParams& params,
    UpstreamCallback<copilot::v1::Thread> done) {
  return StartBuffered(
      options, MakeRequest(options, "POST", "/v1/threads", CreateThreadBody(params), false),
      ParseThen<copilot::v1::Thread>([](absl::string_view body) { return ParseThread(body); },
                                     SecretsSent(options), std::move(done)));
}

std::shared_ptr<UpstreamCall> HaufeClient::GetThread(const UpstreamCallOptions& options,
                                                     const std::string& thread_id,
                                                     UpstreamCallback<copilot::v1::Thread> done) {
  if (thread_id.empty()) return Reject(done, "thread_id");
  return StartBuffered(
      options,
      MakeRequest(options, "GET", absl::StrCat("/v1/threads/", UrlEncode(thread_id)), "", false),
      ParseThen<copilot::v1::Thread>([](absl::string_view body) { return ParseThread(body); },
                                     SecretsSent(options), std::move(done)));
}

std::shared_ptr<UpstreamCall> HaufeClient::DeleteThread(const UpstreamCallOptions& options,
                                                        const std::string& thread_id,
                                                        UpstreamDoneCallback done) {
  if (thread_id.empty()) return Reject(done, "thread_id");
  return StartBuffered(
      options,
      MakeRequest(options, "DELETE", absl::StrCat("/v1/threads/", UrlEncode(thread_id)), "", false),
      [done = std::move(done)](const absl::StatusOr<std::string>& body,
                               int /*http_status*/) mutable {
        // 204, or 200 with any body: the body says nothing we need.
        std::move(done)(body.status());
      });
}

std::shared_ptr<UpstreamCall> HaufeClient::AddMessage(const UpstreamCallOptions& options,
                                                      const std::string& thread_id,
                                                      const copilot::v1::MessageInput& message,
                                                      UpstreamCallback<copilot::v1::Message> done) {
  if (thread_id.empty()) return Reject(done, "thread_id");
  return StartBuffered(
      options,
      MakeRequest(options, "POST", absl::StrCat("/v1/threads/", UrlEncode(thread_id), "/messages"),
                  CreateMessageBody(message), false),
      ParseThen<copilot::v1::Message>([](absl::string_view body) { return ParseMessage(body); },
                                      SecretsSent(options), std::move(done)));
}

std::shared_ptr<UpstreamCall> HaufeClient::ListMessages(const UpstreamCallOptions& options,
                                                        const std::string& thread_id, int page_size,
                                                        const std::string& cursor,
                                                        UpstreamCallback<MessagePage> done) {
  if (thread_id.empty()) return Reject(done, "thread_id");
  std::string path = absl::StrCat("/v1/threads/", UrlEncode(thread_id), "/messages");
  absl::string_view separator = "?";
  if (page_size > 0) {
    absl::StrAppend(&path, separator, "limit=", page_size);
    separator = "&";
  }
  if (!cursor.empty()) absl::StrAppend(&path, separator, "cursor=", UrlEncode(cursor));
  return StartBuffered(
      options, MakeRequest(options, "GET", path, "", false),
      ParseThen<MessagePage>([](absl::string_view body) { return ParseMessagePage(body); },
                             SecretsSent(options), std::move(done)));
}

std::shared_ptr<UpstreamCall> HaufeClient::Run(const UpstreamCallOptions& options,
                                               const RunParams& params,
                                               UpstreamCallback<copilot::v1::Message> done) {
  if (params.thread_id.empty()) return Reject(done, "thread_id");
  return StartBuffered(
      options,
      MakeRequest(options, "POST",
                  absl::StrCat("/v1/threads/", UrlEncode(params.thread_id), "/run"),
                  RunBody(params, options.licence), false),
      ParseThen<copilot::v1::Message>([](absl::string_view body) { return ParseMessage(body); },
                                      SecretsSent(options), std::move(done)));
}

std::shared_ptr<UpstreamCall> HaufeClient::StreamRun(const UpstreamCallOptions& options,
                                                     const RunParams& params,
                                                     std::shared_ptr<ChunkSink> sink) {
  if (params.thread_id.empty()) return RejectStream(*sink, "thread_id");
  return StartStream(
      options,
      MakeRequest(options, "POST",
                  absl::StrCat("/v1/threads/", UrlEncode(params.thread_id), "/run/stream"),
                  RunBody(params, options.licence), true),
      std::move(sink));
}

std::shared_ptr<UpstreamCall> HaufeClient::Complete(const UpstreamCallOptions& options,
                                                    const CompletionParams& params,
                                                    UpstreamCallback<copilot::v1::Message> done) {
  return StartBuffered(
      options,
      MakeRequest(options, "POST", CompletionPath(params, false),
                  CompletionBody(params, options.licence), false),
      ParseThen<copilot::v1::Message>([](absl::string_view body) { return ParseMessage(body); },
                                      SecretsSent(options), std::move(done)));
}

std::shared_ptr<UpstreamCall> HaufeClient::StreamComplete(const UpstreamCallOptions& options,
                                                          const CompletionParams& params,
                                                          std::shared_ptr<ChunkSink> sink) {
  return StartStream(options,
                     MakeRequest(options, "POST", CompletionPath(params, true),
                                 CompletionBody(params, options.licence), true),
                     std::move(sink));
}

}  // namespace copilot::gateway
