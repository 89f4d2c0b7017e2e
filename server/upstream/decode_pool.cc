#include "server/upstream/decode_pool.h"

#include <pthread.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace copilot::gateway {

DecodePool::DecodePool(int threads, int niceness) {
  for (int i = 0; i < std::max(threads, 1); ++i) {
    threads_.emplace_back([this, niceness, i] {
      // Named for `top -H`, perf and /proc/PID/task/*/comm (15 characters at most).
      pthread_setname_np(pthread_self(), absl::StrCat("json-decode-", i).c_str());
      Work(niceness);
    });
  }
}

DecodePool::~DecodePool() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (std::thread& thread : threads_) thread.join();
}

void DecodePool::Post(const std::string& tenant, Job job) {
  absl::MutexLock lock(&mu_);
  std::deque<Job>& queue = queues_[tenant];
  if (queue.empty()) turns_.push_back(tenant);
  queue.push_back(std::move(job));
  ++queued_;
}

std::size_t DecodePool::queued() const {
  absl::MutexLock lock(&mu_);
  return queued_;
}

void DecodePool::Work(int niceness) {
  if (niceness > 0) {
    // Per thread on Linux: the nice value belongs to the thread (task) ID. Raising it (lowering
    // the priority) is always allowed; a failure leaves the priority as it was.
    const auto tid = static_cast<pid_t>(syscall(SYS_gettid));
    const int current = getpriority(PRIO_PROCESS, static_cast<id_t>(tid));
    setpriority(PRIO_PROCESS, static_cast<id_t>(tid), std::min(current + niceness, 19));
  }
  while (true) {
    Job job;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]()
                       ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || !turns_.empty(); };
      mu_.Await(absl::Condition(&ready));
      if (turns_.empty()) return;  // Stopping, and nothing left to run.
      const std::string tenant = std::move(turns_.front());
      turns_.pop_front();
      auto it = queues_.find(tenant);
      job = std::move(it->second.front());
      it->second.pop_front();
      --queued_;
      if (it->second.empty()) {
        queues_.erase(it);
      } else {
        turns_.push_back(tenant);  // Its next job waits for every other tenant's turn.
      }
    }
    std::move(job)();
  }
}

}  // namespace copilot::gateway
