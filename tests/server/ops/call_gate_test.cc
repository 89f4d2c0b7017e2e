#include "server/ops/call_gate.h"

#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace copilot::gateway {
namespace {

TEST(CallGateTest, CountsEachCallFromEnterToLeave) {
  CallGate gate;
  EXPECT_FALSE(gate.closed());
  EXPECT_EQ(gate.in_flight(), 0);
  EXPECT_TRUE(gate.Enter());
  EXPECT_TRUE(gate.Enter());
  EXPECT_EQ(gate.in_flight(), 2);
  gate.Leave();
  EXPECT_EQ(gate.in_flight(), 1);
  gate.Leave();
  EXPECT_EQ(gate.in_flight(), 0);
}

TEST(CallGateTest, ClosedRefusesNewCallsAndKeepsThoseInFlight) {
  CallGate gate;
  ASSERT_TRUE(gate.Enter());
  gate.Close();
  EXPECT_TRUE(gate.closed());
  EXPECT_FALSE(gate.Enter());
  EXPECT_FALSE(gate.Enter());
  EXPECT_EQ(gate.in_flight(), 1);  // A refused call is not counted (and does not Leave).
  gate.Leave();
  EXPECT_EQ(gate.in_flight(), 0);
  gate.Close();  // Closing twice is harmless.
  EXPECT_TRUE(gate.closed());
  EXPECT_FALSE(gate.Enter());
}

TEST(CallGateTest, WaitIdleAnswersAtOnceWhenNothingIsInFlight) {
  CallGate gate;
  EXPECT_TRUE(gate.WaitIdle(absl::InfinitePast()));  // Even with its deadline passed.
  ASSERT_TRUE(gate.Enter());
  gate.Leave();
  gate.Close();
  const absl::Time start = absl::Now();
  EXPECT_TRUE(gate.WaitIdle(absl::Now() + absl::Seconds(30)));
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

TEST(CallGateTest, WaitIdleGivesUpAtTheDeadlineWithACallInFlight) {
  CallGate gate;
  ASSERT_TRUE(gate.Enter());
  EXPECT_FALSE(gate.WaitIdle(absl::InfinitePast()));
  const absl::Time start = absl::Now();
  EXPECT_FALSE(gate.WaitIdle(start + absl::Milliseconds(100)));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(100));
  EXPECT_EQ(gate.in_flight(), 1);
}

TEST(CallGateTest, WaitIdleWakesWhenTheLastCallLeaves) {
  CallGate gate;
  ASSERT_TRUE(gate.Enter());
  ASSERT_TRUE(gate.Enter());
  gate.Close();
  std::thread calls([&gate] {
    absl::SleepFor(absl::Milliseconds(50));
    gate.Leave();
    absl::SleepFor(absl::Milliseconds(50));
    gate.Leave();
  });
  const absl::Time start = absl::Now();
  EXPECT_TRUE(gate.WaitIdle(start + absl::Seconds(30)));
  const absl::Duration took = absl::Now() - start;
  EXPECT_GE(took, absl::Milliseconds(100));  // Not after the first Leave: one was still in.
  EXPECT_LT(took, absl::Seconds(20));
  EXPECT_EQ(gate.in_flight(), 0);
  calls.join();
}

TEST(CallGateTest, ConcurrentCallsAreAllCounted) {
  CallGate gate;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&gate] {
      for (int i = 0; i < 1000; ++i) {
        ASSERT_TRUE(gate.Enter());
        gate.Leave();
      }
    });
  }
  ASSERT_TRUE(gate.Enter());  // Held throughout: the gate is never idle meanwhile.
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(gate.in_flight(), 1);
  gate.Leave();
  EXPECT_TRUE(gate.WaitIdle(absl::InfinitePast()));
}

TEST(CallGateTest, AConnectionPastItsBoundIsReportedOncePerThousandCallsOverIt) {
  CallGate gate;
  std::vector<std::string> over;
  gate.LimitPerConnection(2, [&over](const std::string& peer) { over.push_back(peer); });
  EXPECT_TRUE(gate.Enter("ipv4:10.0.0.1:1"));
  EXPECT_TRUE(gate.Enter("ipv4:10.0.0.1:1"));
  EXPECT_TRUE(gate.Enter("ipv4:10.0.0.2:1"));  // Another connection has its own count.
  EXPECT_TRUE(over.empty());
  EXPECT_TRUE(gate.Enter("ipv4:10.0.0.1:1"));  // The third: over, and still admitted.
  EXPECT_THAT(over, ::testing::ElementsAre("ipv4:10.0.0.1:1"));
  for (int i = 0; i < 999; ++i) gate.Enter("ipv4:10.0.0.1:1");
  EXPECT_EQ(over.size(), 1u);
  gate.Enter("ipv4:10.0.0.1:1");  // 1,000 past the first report.
  EXPECT_EQ(over.size(), 2u);
  EXPECT_EQ(gate.in_flight(), 1004);
  for (int i = 0; i < 1003; ++i) gate.Leave("ipv4:10.0.0.1:1");
  gate.Leave("ipv4:10.0.0.2:1");
  EXPECT_EQ(gate.in_flight(), 0);
  // Every call left: the connection starts again from nothing.
  gate.Enter("ipv4:10.0.0.1:1");
  gate.Enter("ipv4:10.0.0.1:1");
  EXPECT_EQ(over.size(), 2u);
}

TEST(CallGateTest, WithoutABoundOrAPeerNothingIsReported) {
  CallGate gate;
  for (int i = 0; i < 5000; ++i) EXPECT_TRUE(gate.Enter("ipv4:10.0.0.1:1"));
  int reported = 0;
  CallGate bounded;
  bounded.LimitPerConnection(1, [&reported](const std::string&) { ++reported; });
  for (int i = 0; i < 5000; ++i) EXPECT_TRUE(bounded.Enter());
  EXPECT_EQ(reported, 0);
}

}  // namespace
}  // namespace copilot::gateway
