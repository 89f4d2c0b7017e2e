#include "tests/emulator/event_loop.h"

#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace copilot::emulator {

EventLoop::EventLoop(Clock& clock) : clock_(clock) {}

EventLoop::~EventLoop() {
  if (epoll_fd_ >= 0) close(epoll_fd_);
}

absl::Status EventLoop::Init() {
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) {
    return absl::InternalError(absl::StrCat("epoll_create1: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<EventLoop::WatchId> EventLoop::Watch(int fd, uint32_t events, FdCallback callback) {
  WatchId id = next_watch_id_++;
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = id;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    return absl::InternalError(absl::StrCat("epoll_ctl(ADD): ", std::strerror(errno)));
  }
  watched_.emplace(id, Watched{fd, std::move(callback)});
  return id;
}

absl::Status EventLoop::Rewatch(WatchId id, uint32_t events) {
  auto it = watched_.find(id);
  if (it == watched_.end()) return absl::NotFoundError("Rewatch: unknown watch id");
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = id;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, it->second.fd, &ev) != 0) {
    return absl::InternalError(absl::StrCat("epoll_ctl(MOD): ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

void EventLoop::Unwatch(WatchId id) {
  auto it = watched_.find(id);
  if (it == watched_.end()) return;
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, it->second.fd, nullptr);
  watched_.erase(it);
}

EventLoop::TimerId EventLoop::AddTimer(absl::Duration delay, std::function<void()> callback) {
  TimerId id = next_timer_id_++;
  heap_.push(HeapEntry{clock_.MonotonicNow() + delay, id});
  timers_.emplace(id, std::move(callback));
  return id;
}

void EventLoop::CancelTimer(TimerId id) { timers_.erase(id); }

int EventLoop::NextTimeoutMs(absl::Duration max_wait) {
  while (!heap_.empty() && !timers_.contains(heap_.top().id)) heap_.pop();  // cancelled
  absl::Duration wait = max_wait;
  if (!heap_.empty()) wait = std::min(wait, heap_.top().deadline - clock_.MonotonicNow());
  if (wait <= absl::ZeroDuration()) return 0;
  return static_cast<int>(absl::ToInt64Milliseconds(absl::Ceil(wait, absl::Milliseconds(1))));
}

void EventLoop::RunDueTimers() {
  absl::Duration now = clock_.MonotonicNow();
  // Only timers that existed when this pass began run in it, so a callback that adds a zero-delay
  // timer cannot starve the fds. (A new timer sorts after every older one with a deadline <= now.)
  const TimerId first_new = next_timer_id_;
  while (!heap_.empty() && heap_.top().deadline <= now && heap_.top().id < first_new) {
    TimerId id = heap_.top().id;
    heap_.pop();
    auto it = timers_.find(id);
    if (it == timers_.end()) continue;
    std::function<void()> callback = std::move(it->second);
    timers_.erase(it);
    callback();
  }
}

void EventLoop::Run() {
  while (!stopping_) RunOnce();
}

void EventLoop::RunOnce(absl::Duration max_wait) {
  if (events_.empty()) events_.resize(1024);
  int n = epoll_wait(epoll_fd_, events_.data(), static_cast<int>(events_.size()),
                     NextTimeoutMs(max_wait));
  for (int i = 0; i < n; ++i) {
    auto it = watched_.find(events_[i].data.u64);
    if (it == watched_.end()) continue;  // unwatched earlier in this batch
    // Copy: the callback may Unwatch itself, destroying the stored std::function.
    FdCallback callback = it->second.callback;
    callback(events_[i].events);
  }
  RunDueTimers();
}

}  // namespace copilot::emulator
