#include "server/common/cpus.h"

#include <sched.h>

#include "gtest/gtest.h"

namespace copilot::gateway {
namespace {

TEST(CpusFromCgroupCpuMaxTest, QuotaOverPeriodRoundedUp) {
  EXPECT_EQ(CpusFromCgroupCpuMax("200000 100000\n"), 2);
  EXPECT_EQ(CpusFromCgroupCpuMax("150000 100000"), 2);
  EXPECT_EQ(CpusFromCgroupCpuMax("50000 100000"), 1);
  EXPECT_EQ(CpusFromCgroupCpuMax("100000 100000"), 1);
}

TEST(CpusFromCgroupCpuMaxTest, NoQuotaOrMalformedIsNone) {
  EXPECT_EQ(CpusFromCgroupCpuMax("max 100000"), std::nullopt);
  EXPECT_EQ(CpusFromCgroupCpuMax(""), std::nullopt);
  EXPECT_EQ(CpusFromCgroupCpuMax("100000"), std::nullopt);
  EXPECT_EQ(CpusFromCgroupCpuMax("abc 100000"), std::nullopt);
  EXPECT_EQ(CpusFromCgroupCpuMax("100000 0"), std::nullopt);
  EXPECT_EQ(CpusFromCgroupCpuMax("0 100000"), std::nullopt);
  EXPECT_EQ(CpusFromCgroupCpuMax("1 2 3"), std::nullopt);
}

TEST(CpusFromCgroupCpuMaxTest, HugeQuotaIsCapped) {
  EXPECT_EQ(CpusFromCgroupCpuMax("18446744073709551615 1"), 4096);
}

TEST(UsableCpusTest, FollowsTheAffinityMask) {
  cpu_set_t saved;
  ASSERT_EQ(sched_getaffinity(0, sizeof(saved), &saved), 0);
  const int before = UsableCpus();
  EXPECT_GE(before, 1);
  EXPECT_LE(before, CPU_COUNT(&saved));
  int first = 0;
  while (!CPU_ISSET(first, &saved)) ++first;
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(first, &one);
  ASSERT_EQ(sched_setaffinity(0, sizeof(one), &one), 0);
  EXPECT_EQ(UsableCpus(), 1);
  ASSERT_EQ(sched_setaffinity(0, sizeof(saved), &saved), 0);
  EXPECT_EQ(UsableCpus(), before);
}

}  // namespace
}  // namespace copilot::gateway
