// Usage records: what each tenant's calls used, as the gateway sees it (the upstream reports no
// token counts). A HaufeApi decorator placed next to the upstream (inside admission, so
// upstream time excludes waiting for the budget) reports every answer generation that went
// upstream, every AddMessage's characters and every thread created to UsageEvents: the
// metrics (GatewayMetrics) and the audit log (AuditLog).
#ifndef COPILOT_GATEWAY_SERVER_OPS_USAGE_HAUFE_API_H_
#define COPILOT_GATEWAY_SERVER_OPS_USAGE_HAUFE_API_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "server/common/clock.h"
#include "server/upstream/forwarding_haufe_api.h"

namespace copilot::gateway {

// One answer generation (Run, StreamRun, Complete, StreamComplete) that reached the upstream.
// Holds no message content. Plain data.
struct AnswerRecord {
  std::string method;
  std::string tenant;
  std::string assistant_id;     // Empty when unknown.
  std::string assistant_label;  // The assistant ID when configured for the tenant, else "other".
  std::string thread_id;        // As the caller sees it; empty when none.
  std::string request_id;       // The call's x-request-id.
  int64_t characters_in = 0;    // Sent by the caller with this call.
  int64_t characters_out = 0;   // Of the answer (streamed: the chunks received).
  absl::Duration upstream_time;
  absl::StatusCode code = absl::StatusCode::kOk;
  std::string reason;  // The error's ErrorInfo reason, when there is one.
};

// Receives usage records; implementations are thread-safe and must not block.
class UsageEvents {
 public:
  virtual ~UsageEvents() = default;
  virtual void Answered(const AnswerRecord& record) = 0;
  // An AddMessage stored `characters` of the caller's text.
  virtual void MessageAdded(const std::string& tenant, const std::string& assistant_label,
                            int64_t characters) = 0;
  virtual void ThreadCreated(const std::string& tenant, const std::string& assistant_label) = 0;
};

// Thread-safe like the API it wraps. `inner`, `clock` and every element of `events` must
// outlive it.
class UsageHaufeApi final : public ForwardingHaufeApi {
 public:
  UsageHaufeApi(HaufeApi& inner, const Clock& clock, std::vector<UsageEvents*> events)
      : ForwardingHaufeApi(inner), clock_(clock), events_(std::move(events)) {}

  std::shared_ptr<UpstreamCall> CreateThread(const UpstreamCallOptions& options,
                                             const CreateThreadParams& params,
                                             UpstreamCallback<copilot::v1::Thread> done) override;
  std::shared_ptr<UpstreamCall> AddMessage(const UpstreamCallOptions& options,
                                           const std::string& thread_id,
                                           const copilot::v1::MessageInput& message,
                                           UpstreamCallback<copilot::v1::Message> done) override;
  std::shared_ptr<UpstreamCall> Run(const UpstreamCallOptions& options, const RunParams& params,
                                    UpstreamCallback<copilot::v1::Message> done) override;
  std::shared_ptr<UpstreamCall> StreamRun(const UpstreamCallOptions& options,
                                          const RunParams& params,
                                          std::shared_ptr<ChunkSink> sink) override;
  std::shared_ptr<UpstreamCall> Complete(const UpstreamCallOptions& options,
                                         const CompletionParams& params,
                                         UpstreamCallback<copilot::v1::Message> done) override;
  std::shared_ptr<UpstreamCall> StreamComplete(const UpstreamCallOptions& options,
                                               const CompletionParams& params,
                                               std::shared_ptr<ChunkSink> sink) override;

 private:
  class RecordingSink;

  AnswerRecord Start(absl::string_view method, const UpstreamCallOptions& options,
                     int64_t characters_in) const;
  // The caller's thread ID for an upstream one (UpstreamCallOptions::caller_thread_id): all a
  // finished call needs of its options, kept instead of a copy of them (a dozen strings).
  using CallerThreadId = UpstreamCallOptions::CallerThreadId;
  // Completes `record` with the outcome and reports it.
  void Finish(AnswerRecord& record, absl::Time started, const absl::Status& status,
              const std::string& upstream_thread_id, int64_t characters_out,
              const CallerThreadId& caller_thread_id);
  UpstreamCallback<copilot::v1::Message> Recording(absl::string_view method,
                                                   const UpstreamCallOptions& options,
                                                   const std::string& upstream_thread_id,
                                                   int64_t characters_in,
                                                   UpstreamCallback<copilot::v1::Message> done);

  const Clock& clock_;
  const std::vector<UsageEvents*> events_;
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_OPS_USAGE_HAUFE_API_H_
