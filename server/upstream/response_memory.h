// One bound on the bytes of upstream responses the gateway holds at once, over all calls:
// bodies being collected for buffered calls, and partial or held-back lines of streams. Each
// response is also bounded on its own (max_response_bytes, max_ndjson_line_bytes); this bounds
// their sum, which the number of calls in flight would otherwise multiply.
#ifndef COPILOT_GATEWAY_SERVER_UPSTREAM_RESPONSE_MEMORY_H_
#define COPILOT_GATEWAY_SERVER_UPSTREAM_RESPONSE_MEMORY_H_

#include <atomic>
#include <cstddef>

#include "absl/status/status.h"

namespace copilot::gateway {

// Thread-safe (atomic); never blocks.
class ResponseMemory {
 public:
  explicit ResponseMemory(std::size_t max_bytes) : max_bytes_(max_bytes) {}

  // One response's share. Not thread-safe (one transfer's handler, on the loop thread); releases
  // its bytes when destroyed. `memory` may be null: unbounded.
  class Charge {
   public:
    explicit Charge(ResponseMemory* memory) : memory_(memory) {}
    // Moving hands the bytes over (e.g. to the job that decodes the response).
    Charge(Charge&& other) noexcept : memory_(other.memory_), held_(other.held_) {
      other.held_ = 0;
    }
    ~Charge() { Set(0); }
    Charge(const Charge&) = delete;
    Charge& operator=(const Charge&) = delete;
    Charge& operator=(Charge&&) = delete;
    // Makes the response's held bytes `bytes`; false (nothing changed) when that would take the
    // total past the bound.
    bool Set(std::size_t bytes);

   private:
    ResponseMemory* const memory_;
    std::size_t held_ = 0;
  };

  std::size_t bytes() const { return used_.load(std::memory_order_relaxed); }
  std::size_t max_bytes() const { return max_bytes_; }

 private:
  const std::size_t max_bytes_;
  std::atomic<std::size_t> used_{0};
};

// The status of a response refused because the bound is reached: INTERNAL for a request that
// is not idempotent (the upstream may have carried it out), UNAVAILABLE otherwise; reason
// "upstream_response_memory_exhausted".
absl::Status ResponseMemoryExhausted(bool idempotent, std::size_t max_bytes);

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_UPSTREAM_RESPONSE_MEMORY_H_
