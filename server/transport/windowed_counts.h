// Two event counts over a sliding window of whole seconds, for ratios such as "retries per
// request" (RetryBudget) or "failures per request" (CircuitBreaker). Not thread-safe: the owner
// guards it.
#ifndef COPILOT_GATEWAY_SERVER_TRANSPORT_WINDOWED_COUNTS_H_
#define COPILOT_GATEWAY_SERVER_TRANSPORT_WINDOWED_COUNTS_H_

#include <algorithm>
#include <cstdint>
#include <vector>

#include "absl/time/time.h"

namespace copilot::gateway {

class WindowedCounts {
 public:
  // Counts over the last `window` (rounded up to whole seconds, at least 1 s), in one bucket
  // per second of the monotonic clock: an event leaves the window between window - 1 s and
  // window after it happened.
  explicit WindowedCounts(absl::Duration window)
      : buckets_(static_cast<std::size_t>(
            std::max<int64_t>(1, absl::ToInt64Seconds(absl::Ceil(window, absl::Seconds(1)))))) {}

  // Adds to the first (`a`) and second (`b`) count at monotonic time `now`.
  void Add(absl::Time now, int64_t a, int64_t b) {
    Bucket& bucket = At(now);
    bucket.a += a;
    bucket.b += b;
  }
  // The sums over the window ending at `now`.
  int64_t SumA(absl::Time now) { return Sum(now, &Bucket::a); }
  int64_t SumB(absl::Time now) { return Sum(now, &Bucket::b); }
  void Clear() { std::fill(buckets_.begin(), buckets_.end(), Bucket{}); }
  absl::Duration window() const { return absl::Seconds(static_cast<int64_t>(buckets_.size())); }

 private:
  struct Bucket {
    int64_t second = -1;  // The monotonic second it counts; -1: none.
    int64_t a = 0;
    int64_t b = 0;
  };

  static int64_t SecondOf(absl::Time now) { return absl::ToUnixSeconds(now); }

  Bucket& At(absl::Time now) {
    const int64_t second = SecondOf(now);
    const auto size = static_cast<int64_t>(buckets_.size());
    Bucket& bucket = buckets_[static_cast<std::size_t>(((second % size) + size) % size)];
    if (bucket.second != second) bucket = Bucket{second, 0, 0};
    return bucket;
  }

  int64_t Sum(absl::Time now, int64_t Bucket::*field) {
    const int64_t newest = SecondOf(now);
    const int64_t oldest = newest - static_cast<int64_t>(buckets_.size()) + 1;
    int64_t sum = 0;
    for (const Bucket& bucket : buckets_) {
      if (bucket.second >= oldest && bucket.second <= newest) sum += bucket.*field;
    }
    return sum;
  }

  std::vector<Bucket> buckets_;
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_TRANSPORT_WINDOWED_COUNTS_H_
