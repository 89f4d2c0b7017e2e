// Decoding of large upstream answers (JSON -> proto) off the transport's event loop thread.
//
// The loop thread moves every call's bytes; if it also parsed a tenant's multi-megabyte answers,
// every other call's stream would stall meanwhile (measured: 12 answers of 8 MB cost 3.9 s of
// loop CPU, and another tenant's gaps between chunks grew from 0.06 to 0.74 s). HaufeClient
// hands answers larger than a threshold to this pool. Its threads serve the tenants in turn (one
// queue per tenant, round robin), so one tenant's queue of large answers delays another
// tenant's answer by at most the decodes already running.
#ifndef COPILOT_GATEWAY_SERVER_UPSTREAM_DECODE_POOL_H_
#define COPILOT_GATEWAY_SERVER_UPSTREAM_DECODE_POOL_H_

#include <cstddef>
#include <deque>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"

namespace copilot::gateway {

// Thread-safe. Post never blocks.
class DecodePool {
 public:
  using Job = absl::AnyInvocable<void() &&>;

  // `threads` worker threads (at least 1), each running `niceness` steps below the rest of the
  // process (Linux thread nice value; 0 keeps the process's priority). Decoding a large answer
  // is slow by nature; with a lower priority it takes the CPU the event loop and gRPC's threads
  // leave, so a tenant's multi-megabyte answers cannot slow other tenants' calls even when the
  // machine's cores are all busy.
  explicit DecodePool(int threads, int niceness = 10);
  // Runs the jobs still queued (each completes a call), then joins the threads.
  ~DecodePool();
  DecodePool(const DecodePool&) = delete;
  DecodePool& operator=(const DecodePool&) = delete;

  // Queues `job` behind `tenant`'s earlier jobs.
  void Post(const std::string& tenant, Job job);

  // Jobs waiting (not yet running), for metrics and tests.
  std::size_t queued() const;

 private:
  void Work(int niceness);

  mutable absl::Mutex mu_;
  std::map<std::string, std::deque<Job>> queues_ ABSL_GUARDED_BY(mu_);
  std::deque<std::string> turns_ ABSL_GUARDED_BY(mu_);  // Tenants with queued jobs, in turn.
  std::size_t queued_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_UPSTREAM_DECODE_POOL_H_
