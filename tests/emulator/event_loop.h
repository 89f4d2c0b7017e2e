// A single-threaded epoll loop with a timer heap that drives epoll_wait's timeout.
#ifndef COPILOT_TESTS_EMULATOR_EVENT_LOOP_H_
#define COPILOT_TESTS_EMULATOR_EVENT_LOOP_H_

#include <sys/epoll.h>

#include <cstdint>
#include <functional>
#include <queue>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tests/emulator/clock.h"

namespace copilot::emulator {

// Dispatches readiness events of registered file descriptors and runs timers, all on the thread
// that calls Run(). Callbacks may register, remove and cancel anything, including themselves.
// Not thread-safe: every method must be called from the loop thread (or before Run()).
class EventLoop {
 public:
  using WatchId = uint64_t;
  using TimerId = uint64_t;
  using FdCallback = std::function<void(uint32_t epoll_events)>;

  explicit EventLoop(Clock& clock);
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  absl::Status Init();

  // Watches `fd` for `events` (EPOLLIN, EPOLLOUT, EPOLLRDHUP, EPOLLET, ...). The returned id stays
  // valid until Unwatch; events that arrive for an unwatched id are dropped, so a reused fd number
  // never reaches a stale callback.
  absl::StatusOr<WatchId> Watch(int fd, uint32_t events, FdCallback callback);
  absl::Status Rewatch(WatchId id, uint32_t events);
  // Stops watching (does not close the fd). Safe to call from inside the fd's own callback.
  void Unwatch(WatchId id);

  // Runs `callback` once after `delay` (0 means on the next loop iteration).
  TimerId AddTimer(absl::Duration delay, std::function<void()> callback);
  // Cancels a pending timer; unknown or fired ids are ignored.
  void CancelTimer(TimerId id);
  size_t pending_timers() const { return timers_.size(); }

  // Runs until Stop() is called.
  void Run();
  // One iteration: waits for fd events (at most until the next timer is due, or `max_wait` when
  // there is none), dispatches them, then runs the timers that are due.
  void RunOnce(absl::Duration max_wait = absl::Seconds(1));
  void Stop() { stopping_ = true; }

 private:
  struct Watched {
    int fd;
    FdCallback callback;
  };
  struct HeapEntry {
    absl::Duration deadline;
    TimerId id;
    bool operator>(const HeapEntry& other) const {
      return deadline != other.deadline ? deadline > other.deadline : id > other.id;
    }
  };

  int NextTimeoutMs(absl::Duration max_wait);
  void RunDueTimers();

  std::vector<struct epoll_event> events_;
  Clock& clock_;
  int epoll_fd_ = -1;
  bool stopping_ = false;
  WatchId next_watch_id_ = 1;
  TimerId next_timer_id_ = 1;
  absl::flat_hash_map<WatchId, Watched> watched_;
  absl::flat_hash_map<TimerId, std::function<void()>> timers_;
  std::priority_queue<HeapEntry, std::vector<HeapEntry>, std::greater<HeapEntry>> heap_;
};

}  // namespace copilot::emulator

#endif  // COPILOT_TESTS_EMULATOR_EVENT_LOOP_H_
