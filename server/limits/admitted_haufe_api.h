// A HaufeApi decorator that admits every upstream call through the AdmissionController before
// it starts (the tenant's limits and the upstream budget), holds the call's Permit until it
// ends, and holds the budget when the upstream answers 429. Adds one behaviour; requests and
// answers pass through unchanged.
#ifndef COPILOT_GATEWAY_SERVER_LIMITS_ADMITTED_HAUFE_API_H_
#define COPILOT_GATEWAY_SERVER_LIMITS_ADMITTED_HAUFE_API_H_

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "server/limits/admission_controller.h"
#include "server/upstream/haufe_api.h"

namespace copilot::gateway {

// Names an upstream API key without holding it: the first 8 bytes of its SHA-256, in hex.
std::string UpstreamKeyId(absl::string_view api_key);

// Thread-safe like the API it wraps. `inner` and `admission` must outlive it.
class AdmittedHaufeApi final : public HaufeApi {
 public:
  // An upstream 429 holds (and tells callers to wait) at most `max_retry_after`.
  // `upstream_refusing` (may be empty): whether the path to the upstream refuses calls now
  // without sending them (the circuit breaker is open). Such a call is admitted against its
  // tenant's own limits only, never the upstream budget, and goes on to be refused below:
  // calls refused by an open circuit must not spend the budget the upstream's recovery needs
  // (otherwise a long outage left the budget spent, and the first calls after the upstream came
  // back were refused by it for up to a window).
  AdmittedHaufeApi(HaufeApi& inner, AdmissionController& admission,
                   absl::Duration max_retry_after = absl::Seconds(60),
                   std::function<bool()> upstream_refusing = {})
      : inner_(inner),
        admission_(admission),
        max_retry_after_(max_retry_after),
        upstream_refusing_(std::move(upstream_refusing)) {}

  std::shared_ptr<UpstreamCall> ListAssistants(
      const UpstreamCallOptions& options,
      UpstreamCallback<std::vector<copilot::v1::Assistant>> done) override;
  std::shared_ptr<UpstreamCall> GetAssistant(
      const UpstreamCallOptions& options, const std::string& assistant_id,
      UpstreamCallback<copilot::v1::Assistant> done) override;
  std::shared_ptr<UpstreamCall> CreateThread(const UpstreamCallOptions& options,
                                             const CreateThreadParams& params,
                                             UpstreamCallback<copilot::v1::Thread> done) override;
  std::shared_ptr<UpstreamCall> GetThread(const UpstreamCallOptions& options,
                                          const std::string& thread_id,
                                          UpstreamCallback<copilot::v1::Thread> done) override;
  std::shared_ptr<UpstreamCall> DeleteThread(const UpstreamCallOptions& options,
                                             const std::string& thread_id,
                                             UpstreamDoneCallback done) override;
  std::shared_ptr<UpstreamCall> AddMessage(const UpstreamCallOptions& options,
                                           const std::string& thread_id,
                                           const copilot::v1::MessageInput& message,
                                           UpstreamCallback<copilot::v1::Message> done) override;
  std::shared_ptr<UpstreamCall> ListMessages(const UpstreamCallOptions& options,
                                             const std::string& thread_id, int page_size,
                                             const std::string& cursor,
                                             UpstreamCallback<MessagePage> done) override;
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
  class AdmittedCall;
  class HoldingSink;

  // Admits a call of `klass`; then `start(done')` starts it, `done'` ending the permit (and
  // holding the budget on a 429) before handing the result to `done`.
  template <typename Callback, typename Start>
  std::shared_ptr<UpstreamCall> Admit(const UpstreamCallOptions& options, CallClass klass,
                                      Callback done, Start start);
  template <typename Start>
  std::shared_ptr<UpstreamCall> AdmitStream(const UpstreamCallOptions& options,
                                            std::shared_ptr<ChunkSink> sink, Start start);
  // The admission of a call of `klass`: against the tenant's limits and the upstream budget, or
  // the tenant's limits alone while the upstream path refuses calls (upstream_refusing_).
  std::shared_ptr<AdmissionTicket> AdmitOrPass(const UpstreamCallOptions& options, CallClass klass,
                                               const std::string& upstream_key, AdmitCallback done);
  // On a 429 (RESOURCE_EXHAUSTED from the upstream with its RetryInfo): hold the budget of the
  // key the call used, and cap the RetryInfo the caller gets at max_retry_after_.
  void ObserveStatus(CallClass klass, const std::string& upstream_key, absl::Status& status);

  // UpstreamKeyId(api_key), remembered: its SHA-256 was ~1% of a call's instructions
  // (tests/bench/instructions_per_call.sh). At most kMaxKeyIds keys (the tenants' and the
  // default one); past that the map starts over.
  std::string KeyIdOf(const std::string& api_key);

  static constexpr std::size_t kMaxKeyIds = 256;
  HaufeApi& inner_;
  AdmissionController& admission_;
  const absl::Duration max_retry_after_;
  const std::function<bool()> upstream_refusing_;
  absl::Mutex key_ids_mu_;
  absl::flat_hash_map<std::string, std::string> key_ids_ ABSL_GUARDED_BY(key_ids_mu_);
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_LIMITS_ADMITTED_HAUFE_API_H_
