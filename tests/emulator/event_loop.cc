#include "tests/emulator/event_loop.h"

#include <sys/epoll.h>
#include <unistd.h>

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

int EventLoop::NextTimeoutMs() {
  while (!heap_.empty() && !timers_.contains(heap_.top().id)) heap_.pop();  // cancelled
  if (heap_.empty()) return 1000;
  absl::Duration wait = heap_.top().deadline - clock_.MonotonicNow();
  if (wait <= absl::ZeroDuration()) return 0;
  int64_t ms = absl::ToInt64Milliseconds(absl::Ceil(wait, absl::Milliseconds(1)));
  return static_cast<int>(std::min<int64_t>(ms, 1000));
}

void EventLoop::RunDueTimers() {
  absl::Duration now = clock_.MonotonicNow();
  // Only timers due at `now` run in this pass, so a callback that adds a zero-delay timer cannot
  // starve the fds.
  while (!heap_.empty() && heap_.top().deadline <= now) {
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
  std::vector<epoll_event> events(1024);
  while (!stopping_) {
    int n = epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), NextTimeoutMs());
    if (n < 0 && errno != EINTR) break;
    for (int i = 0; i < n; ++i) {
      auto it = watched_.find(events[i].data.u64);
      if (it == watched_.end()) continue;  // unwatched earlier in this batch
      // Copy: the callback may Unwatch itself, destroying the stored std::function.
      FdCallback callback = it->second.callback;
      callback(events[i].events);
    }
    RunDueTimers();
  }
}

}  // namespace copilot::emulator
