#include "server/upstream/decode_pool.h"

#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace copilot::gateway {
namespace {

using ::testing::ElementsAre;

TEST(DecodePoolTest, TenantsTakeTurnsSoOnesBacklogDelaysAnotherByOneJob) {
  DecodePool pool(1);
  absl::Notification running;
  absl::Notification release;
  absl::Mutex mu;
  std::vector<std::string> order;
  // The one thread is busy with "big"'s first job while the queues fill: five more of "big",
  // then one of "small".
  pool.Post("big", [&] {
    running.Notify();
    release.WaitForNotification();
  });
  running.WaitForNotification();
  for (int i = 0; i < 5; ++i) {
    pool.Post("big", [&] {
      absl::MutexLock lock(&mu);
      order.push_back("big");
    });
  }
  pool.Post("small", [&] {
    absl::MutexLock lock(&mu);
    order.push_back("small");
  });
  EXPECT_EQ(pool.queued(), 6u);
  release.Notify();
  auto all_ran = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return order.size() == 6; };
  absl::MutexLock lock(&mu);
  ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&all_ran), absl::Seconds(10)));
  // "big"'s turn, then "small"'s: one job of the backlog, not all five.
  EXPECT_EQ(order[0], "big");
  EXPECT_EQ(order[1], "small");
  EXPECT_EQ(order[5], "big");
}

TEST(DecodePoolTest, DestructionRunsEveryQueuedJob) {
  int ran = 0;
  {
    DecodePool pool(2);
    for (int i = 0; i < 100; ++i) {
      pool.Post(i % 2 == 0 ? "a" : "b", [&ran] {
        static absl::Mutex mu;
        absl::MutexLock lock(&mu);
        ++ran;
      });
    }
  }
  EXPECT_EQ(ran, 100);
}

}  // namespace
}  // namespace copilot::gateway
