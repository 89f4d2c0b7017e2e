// A HaufeApi that passes every call to another: the base of decorators that change a few
// methods (quotas, usage records) and leave the others as they are.
#ifndef COPILOT_GATEWAY_SERVER_UPSTREAM_FORWARDING_HAUFE_API_H_
#define COPILOT_GATEWAY_SERVER_UPSTREAM_FORWARDING_HAUFE_API_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "server/upstream/haufe_api.h"

namespace copilot::gateway {

// Thread-safe like the API it wraps, which must outlive it.
class ForwardingHaufeApi : public HaufeApi {
 public:
  explicit ForwardingHaufeApi(HaufeApi& inner) : inner_(inner) {}

  std::shared_ptr<UpstreamCall> ListAssistants(
      const UpstreamCallOptions& options,
      UpstreamCallback<std::vector<copilot::v1::Assistant>> done) override {
    return inner_.ListAssistants(options, std::move(done));
  }
  std::shared_ptr<UpstreamCall> GetAssistant(
      const UpstreamCallOptions& options, const std::string& assistant_id,
      UpstreamCallback<copilot::v1::Assistant> done) override {
    return inner_.GetAssistant(options, assistant_id, std::move(done));
  }
  std::shared_ptr<UpstreamCall> CreateThread(const UpstreamCallOptions& options,
                                             const CreateThreadParams& params,
                                             UpstreamCallback<copilot::v1::Thread> done) override {
    return inner_.CreateThread(options, params, std::move(done));
  }
  std::shared_ptr<UpstreamCall> GetThread(const UpstreamCallOptions& options,
                                          const std::string& thread_id,
                                          UpstreamCallback<copilot::v1::Thread> done) override {
    return inner_.GetThread(options, thread_id, std::move(done));
  }
  std::shared_ptr<UpstreamCall> DeleteThread(const UpstreamCallOptions& options,
                                             const std::string& thread_id,
                                             UpstreamDoneCallback done) override {
    return inner_.DeleteThread(options, thread_id, std::move(done));
  }
  std::shared_ptr<UpstreamCall> AddMessage(const UpstreamCallOptions& options,
                                           const std::string& thread_id,
                                           const copilot::v1::MessageInput& message,
                                           UpstreamCallback<copilot::v1::Message> done) override {
    return inner_.AddMessage(options, thread_id, message, std::move(done));
  }
  std::shared_ptr<UpstreamCall> ListMessages(const UpstreamCallOptions& options,
                                             const std::string& thread_id, int page_size,
                                             const std::string& cursor,
                                             UpstreamCallback<MessagePage> done) override {
    return inner_.ListMessages(options, thread_id, page_size, cursor, std::move(done));
  }
  std::shared_ptr<UpstreamCall> Run(const UpstreamCallOptions& options, const RunParams& params,
                                    UpstreamCallback<copilot::v1::Message> done) override {
    return inner_.Run(options, params, std::move(done));
  }
  std::shared_ptr<UpstreamCall> StreamRun(const UpstreamCallOptions& options,
                                          const RunParams& params,
                                          std::shared_ptr<ChunkSink> sink) override {
    return inner_.StreamRun(options, params, std::move(sink));
  }
  std::shared_ptr<UpstreamCall> Complete(const UpstreamCallOptions& options,
                                         const CompletionParams& params,
                                         UpstreamCallback<copilot::v1::Message> done) override {
    return inner_.Complete(options, params, std::move(done));
  }
  std::shared_ptr<UpstreamCall> StreamComplete(const UpstreamCallOptions& options,
                                               const CompletionParams& params,
                                               std::shared_ptr<ChunkSink> sink) override {
    return inner_.StreamComplete(options, params, std::move(sink));
  }

 protected:
  HaufeApi& inner() const { return inner_; }

 private:
  HaufeApi& inner_;
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_UPSTREAM_FORWARDING_HAUFE_API_H_
