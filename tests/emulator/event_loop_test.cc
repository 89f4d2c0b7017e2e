#include "tests/emulator/event_loop.h"

#include <sys/epoll.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/emulator/clock.h"

namespace copilot::emulator {
namespace {

TEST(EventLoopTest, TimersFireInDeadlineOrderAndCancelledOnesDoNot) {
  FakeClock clock;
  EventLoop loop(clock);
  ASSERT_TRUE(loop.Init().ok());
  std::vector<std::string> fired;
  loop.AddTimer(absl::Milliseconds(30), [&] { fired.push_back("c"); });
  loop.AddTimer(absl::Milliseconds(10), [&] { fired.push_back("a"); });
  EventLoop::TimerId cancelled =
      loop.AddTimer(absl::Milliseconds(20), [&] { fired.push_back("b"); });
  loop.CancelTimer(cancelled);
  loop.CancelTimer(12345);  // unknown ids are ignored

  loop.RunOnce(absl::ZeroDuration());
  EXPECT_TRUE(fired.empty());
  clock.Advance(absl::Milliseconds(10));
  loop.RunOnce(absl::ZeroDuration());
  EXPECT_EQ(fired, std::vector<std::string>({"a"}));
  clock.Advance(absl::Milliseconds(25));
  loop.RunOnce(absl::ZeroDuration());
  EXPECT_EQ(fired, std::vector<std::string>({"a", "c"}));
  EXPECT_EQ(loop.pending_timers(), 0u);
}

TEST(EventLoopTest, ZeroDelayTimerAddedByATimerRunsOnTheNextIteration) {
  FakeClock clock;
  EventLoop loop(clock);
  ASSERT_TRUE(loop.Init().ok());
  int runs = 0;
  loop.AddTimer(absl::ZeroDuration(), [&] {
    ++runs;
    loop.AddTimer(absl::ZeroDuration(), [&] { ++runs; });
  });
  loop.RunOnce(absl::ZeroDuration());
  EXPECT_EQ(runs, 1);
  loop.RunOnce(absl::ZeroDuration());
  EXPECT_EQ(runs, 2);
}

TEST(EventLoopTest, DispatchesFdEventsAndDropsUnwatchedOnes) {
  FakeClock clock;
  EventLoop loop(clock);
  ASSERT_TRUE(loop.Init().ok());
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  int calls = 0;
  absl::StatusOr<EventLoop::WatchId> id = loop.Watch(fds[0], EPOLLIN, [&](uint32_t events) {
    EXPECT_TRUE(events & EPOLLIN);
    char c;
    EXPECT_EQ(read(fds[0], &c, 1), 1);
    ++calls;
  });
  ASSERT_TRUE(id.ok());
  ASSERT_EQ(write(fds[1], "x", 1), 1);
  loop.RunOnce(absl::Milliseconds(100));
  EXPECT_EQ(calls, 1);
  loop.Unwatch(*id);
  ASSERT_EQ(write(fds[1], "y", 1), 1);
  loop.RunOnce(absl::ZeroDuration());
  EXPECT_EQ(calls, 1);
  EXPECT_FALSE(loop.Rewatch(*id, EPOLLIN).ok());
  close(fds[0]);
  close(fds[1]);
}

TEST(EventLoopTest, StopEndsRun) {
  SystemClock clock;
  EventLoop loop(clock);
  ASSERT_TRUE(loop.Init().ok());
  loop.AddTimer(absl::Milliseconds(5), [&] { loop.Stop(); });
  loop.Run();  // returns once the timer stops it
  SUCCEED();
}

}  // namespace
}  // namespace copilot::emulator
