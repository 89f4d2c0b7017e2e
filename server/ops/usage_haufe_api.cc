#include "server/ops/usage_haufe_api.h"

#include <optional>
#include <utility>

#include "server/common/errors.h"
#include "server/upstream/characters.h"

namespace copilot::gateway {

// Counts a streamed answer's characters and its thread; reports when it ends. Called on the
// upstream's event loop thread only.
class UsageHaufeApi::RecordingSink final : public ChunkSink {
 public:
  RecordingSink(UsageHaufeApi& api, AnswerRecord record, CallerThreadId caller_thread_id,
                std::string upstream_thread_id, std::shared_ptr<ChunkSink> sink)
      : api_(api),
        record_(std::move(record)),
        caller_thread_id_(std::move(caller_thread_id)),
        upstream_thread_id_(std::move(upstream_thread_id)),
        started_(api.clock_.Monotonic()),
        sink_(std::move(sink)) {}
  bool OnChunk(copilot::v1::MessageChunk chunk) override {
    characters_ += AnswerCharacters(chunk);
    if (upstream_thread_id_.empty()) upstream_thread_id_ = chunk.thread_id();
    return sink_->OnChunk(std::move(chunk));
  }
  void OnDone(absl::Status status) override {
    api_.Finish(record_, started_, status, upstream_thread_id_, characters_, caller_thread_id_);
    sink_->OnDone(std::move(status));
  }

 private:
  UsageHaufeApi& api_;
  AnswerRecord record_;
  const CallerThreadId caller_thread_id_;
  std::string upstream_thread_id_;
  const absl::Time started_;
  const std::shared_ptr<ChunkSink> sink_;
  int64_t characters_ = 0;
};

AnswerRecord UsageHaufeApi::Start(absl::string_view method, const UpstreamCallOptions& options,
                                  int64_t characters_in) const {
  AnswerRecord record;
  record.method = std::string(method);
  record.tenant = options.tenant_id;
  record.assistant_id = options.assistant_id;
  record.assistant_label = options.assistant_label.empty() ? "other" : options.assistant_label;
  record.request_id = options.request_id;
  record.characters_in = characters_in;
  return record;
}

void UsageHaufeApi::Finish(AnswerRecord& record, absl::Time started, const absl::Status& status,
                           const std::string& upstream_thread_id, int64_t characters_out,
                           const CallerThreadId& caller_thread_id) {
  record.upstream_time = clock_.Monotonic() - started;
  record.code = status.code();
  if (!status.ok()) {
    std::optional<google::rpc::ErrorInfo> info = GetErrorInfo(status);
    if (info.has_value()) record.reason = info->reason();
  }
  // What the caller received, however the call ended (a stream cut or cancelled part way).
  record.characters_out = characters_out;
  if (caller_thread_id && !upstream_thread_id.empty()) {
    record.thread_id = caller_thread_id(upstream_thread_id);
  }
  for (UsageEvents* events : events_) events->Answered(record);
}

UpstreamCallback<copilot::v1::Message> UsageHaufeApi::Recording(
    absl::string_view method, const UpstreamCallOptions& options,
    const std::string& upstream_thread_id, int64_t characters_in,
    UpstreamCallback<copilot::v1::Message> done) {
  return [this, record = Start(method, options, characters_in), started = clock_.Monotonic(),
          caller_thread_id = options.caller_thread_id, upstream_thread_id = upstream_thread_id,
          done = std::move(done)](absl::StatusOr<copilot::v1::Message> result) mutable {
    const std::string thread =
        result.ok() && !result->thread_id().empty() ? result->thread_id() : upstream_thread_id;
    Finish(record, started, result.status(), thread, result.ok() ? AnswerCharacters(*result) : 0,
           caller_thread_id);
    std::move(done)(std::move(result));
  };
}

std::shared_ptr<UpstreamCall> UsageHaufeApi::CreateThread(
    const UpstreamCallOptions& options, const CreateThreadParams& params,
    UpstreamCallback<copilot::v1::Thread> done) {
  return inner().CreateThread(
      options, params,
      [this, tenant = options.tenant_id,
       label = options.assistant_label.empty() ? std::string("other") : options.assistant_label,
       done = std::move(done)](absl::StatusOr<copilot::v1::Thread> result) mutable {
        if (result.ok()) {
          for (UsageEvents* events : events_) events->ThreadCreated(tenant, label);
        }
        std::move(done)(std::move(result));
      });
}

std::shared_ptr<UpstreamCall> UsageHaufeApi::AddMessage(
    const UpstreamCallOptions& options, const std::string& thread_id,
    const copilot::v1::MessageInput& message, UpstreamCallback<copilot::v1::Message> done) {
  return inner().AddMessage(
      options, thread_id, message,
      [this, tenant = options.tenant_id,
       label = options.assistant_label.empty() ? std::string("other") : options.assistant_label,
       characters = CallerCharacters(message),
       done = std::move(done)](absl::StatusOr<copilot::v1::Message> result) mutable {
        if (result.ok()) {
          for (UsageEvents* events : events_) events->MessageAdded(tenant, label, characters);
        }
        std::move(done)(std::move(result));
      });
}

std::shared_ptr<UpstreamCall> UsageHaufeApi::Run(const UpstreamCallOptions& options,
                                                 const RunParams& params,
                                                 UpstreamCallback<copilot::v1::Message> done) {
  return inner().Run(options, params,
                     Recording("Run", options, params.thread_id, 0, std::move(done)));
}

std::shared_ptr<UpstreamCall> UsageHaufeApi::StreamRun(const UpstreamCallOptions& options,
                                                       const RunParams& params,
                                                       std::shared_ptr<ChunkSink> sink) {
  return inner().StreamRun(
      options, params,
      std::make_shared<RecordingSink>(*this, Start("StreamRun", options, 0),
                                      options.caller_thread_id, params.thread_id, std::move(sink)));
}

std::shared_ptr<UpstreamCall> UsageHaufeApi::Complete(const UpstreamCallOptions& options,
                                                      const CompletionParams& params,
                                                      UpstreamCallback<copilot::v1::Message> done) {
  return inner().Complete(
      options, params,
      Recording("Complete", options, params.thread_id, CallerCharacters(params), std::move(done)));
}

std::shared_ptr<UpstreamCall> UsageHaufeApi::StreamComplete(const UpstreamCallOptions& options,
                                                            const CompletionParams& params,
                                                            std::shared_ptr<ChunkSink> sink) {
  const int64_t characters = CallerCharacters(params);
  return inner().StreamComplete(
      options, params,
      std::make_shared<RecordingSink>(*this, Start("StreamComplete", options, characters),
                                      options.caller_thread_id, params.thread_id, std::move(sink)));
}

}  // namespace copilot::gateway
