// A HaufeApi decorator that keeps each tenant's usage counters and quotas (QuotaLedger): an
// answer generation (Run, StreamRun, Complete, StreamComplete) reserves one answer and the
// caller's characters before it goes on (so a tenant over quota never reaches the admission
// step or the upstream), AddMessage reserves its characters; the outcome settles the
// reservation (the answer's characters added, or everything given back on failure). Other
// calls pass through.
#ifndef COPILOT_GATEWAY_SERVER_LIMITS_QUOTA_HAUFE_API_H_
#define COPILOT_GATEWAY_SERVER_LIMITS_QUOTA_HAUFE_API_H_

#include <memory>
#include <string>
#include <vector>

#include "server/limits/quota_ledger.h"
#include "server/upstream/forwarding_haufe_api.h"

namespace copilot::gateway {

// Thread-safe like the API it wraps. `inner` and `ledger` must outlive it.
class QuotaHaufeApi final : public ForwardingHaufeApi {
 public:
  QuotaHaufeApi(HaufeApi& inner, QuotaLedger& ledger)
      : ForwardingHaufeApi(inner), ledger_(ledger) {}

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
  class ReservedCall;
  class SettlingSink;

  // Reserves `answers` and `characters`; then `start(done')` starts the call, `done'` settling
  // the reservation before handing the result to `done`.
  template <typename Start>
  std::shared_ptr<UpstreamCall> Reserve(const UpstreamCallOptions& options, int64_t answers,
                                        int64_t characters,
                                        UpstreamCallback<copilot::v1::Message> done, Start start);
  template <typename Start>
  std::shared_ptr<UpstreamCall> ReserveStream(const UpstreamCallOptions& options,
                                              int64_t characters, std::shared_ptr<ChunkSink> sink,
                                              Start start);

  QuotaLedger& ledger_;
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_LIMITS_QUOTA_HAUFE_API_H_
