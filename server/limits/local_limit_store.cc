#include "server/limits/local_limit_store.h"

#include <algorithm>
#include <cstddef>
#include <utility>

#include "absl/strings/str_cat.h"

namespace copilot::gateway {

StepResult LocalLimitStore::GcraStep(absl::Time now, const RateLimit& limit, absl::Time& tat) {
  if (limit.per_second <= 0) return StepResult{true, absl::ZeroDuration()};
  const absl::Duration interval = absl::Seconds(1) / limit.per_second;
  const absl::Duration tolerance =
      interval * static_cast<double>(std::max<int64_t>(limit.burst, 1) - 1);
  const absl::Time start = std::max(tat, now);
  if (start - now > tolerance) return StepResult{false, start - tolerance - now};
  tat = start + interval;
  return StepResult{true, absl::ZeroDuration()};
}

StepResult LocalLimitStore::WindowStep(absl::Time now, const std::vector<WindowLimit>& windows,
                                       std::deque<absl::Time>& log) {
  absl::Duration longest = absl::ZeroDuration();
  for (const WindowLimit& window : windows) longest = std::max(longest, window.window);
  while (!log.empty() && log.front() <= now - longest) log.pop_front();
  StepResult result{true, absl::ZeroDuration()};
  for (const WindowLimit& window : windows) {
    if (window.max_requests <= 0) continue;
    // Entries inside (now - window, now], oldest first.
    const auto first = std::upper_bound(log.begin(), log.end(), now - window.window);
    const int64_t count = log.end() - first;
    if (count >= window.max_requests) {
      // Room comes when the entry that is max_requests from the newest leaves the window.
      const absl::Time leaving = *(log.end() - window.max_requests);
      result.allowed = false;
      result.retry_after = std::max(result.retry_after, leaving + window.window - now);
    }
  }
  if (result.allowed) log.push_back(now);
  return result;
}

void LocalLimitStore::TakeRate(const std::string& key, const RateLimit& limit,
                               StoreCallback<StepResult> done) {
  StepResult result;
  {
    absl::MutexLock lock(&mu_);
    auto [it, inserted] = tats_.try_emplace(key, absl::InfinitePast());
    result = GcraStep(clock_.Monotonic(), limit, it->second);
  }
  std::move(done)(result);
}

void LocalLimitStore::TakeWindows(const std::string& key, const std::vector<WindowLimit>& windows,
                                  StoreCallback<StepResult> done) {
  StepResult result;
  {
    absl::MutexLock lock(&mu_);
    result = WindowStep(clock_.Monotonic(), windows, logs_[key]);
  }
  std::move(done)(result);
}

void LocalLimitStore::AcquireSlot(const std::string& key, int64_t max, absl::Duration ttl,
                                  StoreCallback<SlotResult> done) {
  SlotResult result;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = clock_.Monotonic();
    std::map<std::string, absl::Time>& leases = slots_[key];
    for (auto it = leases.begin(); it != leases.end();) {
      it = it->second <= now ? leases.erase(it) : std::next(it);
    }
    if (max <= 0 || static_cast<int64_t>(leases.size()) < max) {
      result.acquired = true;
      result.lease_id = absl::StrCat("local-", next_lease_++);
      leases.emplace(result.lease_id, now + ttl);
    }
  }
  std::move(done)(result);
}

void LocalLimitStore::ReleaseSlot(const std::string& key, const std::string& lease_id) {
  absl::MutexLock lock(&mu_);
  auto it = slots_.find(key);
  if (it != slots_.end()) it->second.erase(lease_id);
}

void LocalLimitStore::AddToCounters(const std::string& group, const std::vector<CounterStep>& steps,
                                    StoreCallback<CounterResult> done) {
  CounterResult result;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = clock_.Now();
    if (now >= next_sweep_) {
      for (auto it = counters_.begin(); it != counters_.end();) {
        if (it->second.expires <= now) {
          counters_.erase(it++);
        } else {
          ++it;
        }
      }
      next_sweep_ = now + absl::Minutes(1);
    }
    // Every counter inserted first: a later insertion may move the earlier ones. The keys are
    // built in one buffer, twice, rather than kept: no allocation for a counter that exists.
    std::string key;
    auto key_of = [&group, &key](const CounterStep& step) -> const std::string& {
      key.assign(group).append("\x1f").append(step.key);
      return key;
    };
    for (const CounterStep& step : steps) counters_.try_emplace(key_of(step));
    std::vector<Counter*> counters;
    counters.reserve(steps.size());
    result.values.reserve(steps.size());
    result.added = true;
    for (std::size_t i = 0; i < steps.size(); ++i) {
      const CounterStep& step = steps[i];
      Counter& counter = counters_.find(key_of(step))->second;
      if (counter.expires <= now) counter = Counter{0, step.expires};
      counters.push_back(&counter);
      result.values.push_back(counter.value);
      if (result.added && step.max > 0 &&
          (counter.value >= step.max || counter.value + step.amount > step.max)) {
        result.added = false;
        result.refused = static_cast<int>(i);
      }
    }
    if (result.added) {
      for (std::size_t i = 0; i < steps.size(); ++i) {
        Counter& counter = *counters[i];
        counter.value = std::max<int64_t>(0, counter.value + steps[i].amount);
        counter.expires = std::max(counter.expires, steps[i].expires);
        result.values[i] = counter.value;
      }
    }
  }
  std::move(done)(std::move(result));
}

}  // namespace copilot::gateway
