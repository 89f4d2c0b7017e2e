#include "server/upstream/response_memory.h"

#include "absl/strings/str_cat.h"
#include "server/common/errors.h"

namespace copilot::gateway {

bool ResponseMemory::Charge::Set(std::size_t bytes) {
  if (memory_ == nullptr || bytes == held_) return true;
  if (bytes < held_) {
    memory_->used_.fetch_sub(held_ - bytes, std::memory_order_relaxed);
    held_ = bytes;
    return true;
  }
  const std::size_t more = bytes - held_;
  std::size_t used = memory_->used_.load(std::memory_order_relaxed);
  do {
    if (used + more > memory_->max_bytes_) return false;
  } while (!memory_->used_.compare_exchange_weak(used, used + more, std::memory_order_relaxed));
  held_ = bytes;
  return true;
}

absl::Status ResponseMemoryExhausted(bool idempotent, std::size_t max_bytes) {
  const std::string message = absl::StrCat(
      "the gateway already holds ", max_bytes,
      " bytes of upstream responses (upstream.max_buffered_bytes)",
      idempotent ? "; retry later" : "; the upstream may have carried out the request");
  return MakeError(idempotent ? absl::StatusCode::kUnavailable : absl::StatusCode::kInternal,
                   message, "upstream_response_memory_exhausted",
                   {{"response_started", "true"}, {"max_buffered_bytes", absl::StrCat(max_bytes)}});
}

}  // namespace copilot::gateway
