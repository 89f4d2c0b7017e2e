#include "server/ops/process_collector.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <condition_variable>
#include <ctime>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/server/ops/metric_values.h"
#include "tests/testing/eventually.h"

namespace copilot::gateway {
namespace {

using ::copilot::gateway::ops_testing::MetricValues;
using ::copilot::gateway::testing::Eventually;

// The value of the one series of family `name` (gauge or counter), or nullopt.
std::optional<double> Value(const ProcessCollector& collector, const std::string& name) {
  const MetricValues values(collector);
  const prometheus::MetricFamily* family = values.Family(name);
  if (family == nullptr || family->metric.size() != 1) return std::nullopt;
  return family->type == prometheus::MetricType::Counter ? family->metric[0].counter.value
                                                         : family->metric[0].gauge.value;
}

// The number in the line of /proc/self/status starting with `key` ("Threads:", "VmRSS:").
std::optional<double> StatusField(absl::string_view key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    absl::string_view rest = line;
    if (!absl::ConsumePrefix(&rest, key)) continue;
    std::vector<absl::string_view> parts = absl::StrSplit(rest, ' ', absl::SkipWhitespace());
    double value = 0;
    if (!parts.empty() && absl::SimpleAtod(absl::StripAsciiWhitespace(parts[0]), &value)) {
      return value;
    }
  }
  return std::nullopt;
}

double ProcessCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

TEST(ProcessCollectorTest, ExportsTheStandardFamiliesWithTheirTypes) {
  const ProcessCollector collector;
  const MetricValues values(collector);
  for (const char* name :
       {"process_threads", "process_start_time_seconds", "process_virtual_memory_bytes",
        "process_resident_memory_bytes", "process_open_fds", "process_max_fds"}) {
    const prometheus::MetricFamily* family = values.Family(name);
    ASSERT_NE(family, nullptr) << name;
    EXPECT_EQ(family->type, prometheus::MetricType::Gauge) << name;
    EXPECT_EQ(family->metric.size(), 1u) << name;
    EXPECT_FALSE(family->help.empty()) << name;
  }
  const prometheus::MetricFamily* cpu = values.Family("process_cpu_seconds_total");
  ASSERT_NE(cpu, nullptr);
  EXPECT_EQ(cpu->type, prometheus::MetricType::Counter);
  EXPECT_EQ(values.families().size(), 7u);
}

TEST(ProcessCollectorTest, ThreadsMatchProcStatusAndFollowAThread) {
  // ThreadSanitizer starts a thread of its own at a process's first pthread_create: one thread
  // made and joined first, so the count below follows only the worker.
  std::thread([] {}).join();
  const ProcessCollector collector;
  const std::optional<double> before = Value(collector, "process_threads");
  ASSERT_TRUE(before.has_value());
  EXPECT_GE(*before, 1.0);
  EXPECT_EQ(before, StatusField("Threads:"));

  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  std::thread worker([&] {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return release; });
  });
  EXPECT_EQ(Value(collector, "process_threads"), *before + 1);
  {
    std::lock_guard<std::mutex> lock(mu);
    release = true;
  }
  cv.notify_one();
  worker.join();
  // The kernel may count an exited thread for a moment after join() returns.
  EXPECT_TRUE(
      Eventually([&] { return Value(collector, "process_threads") == *before; }, absl::Seconds(10)))
      << "threads stayed at " << Value(collector, "process_threads").value_or(-1);
}

TEST(ProcessCollectorTest, ResidentMemoryIsSaneAndCloseToVmRss) {
  const ProcessCollector collector;
  const std::optional<double> rss = Value(collector, "process_resident_memory_bytes");
  const std::optional<double> vm_rss_kib = StatusField("VmRSS:");
  ASSERT_TRUE(rss.has_value());
  ASSERT_TRUE(vm_rss_kib.has_value());
  EXPECT_GT(*rss, 1024.0 * 1024);             // A gtest binary takes more than 1 MiB...
  EXPECT_LT(*rss, 4.0 * 1024 * 1024 * 1024);  // ...and less than 4 GiB.
  EXPECT_NEAR(*rss, *vm_rss_kib * 1024, 8.0 * 1024 * 1024);
  const std::optional<double> virtual_bytes = Value(collector, "process_virtual_memory_bytes");
  ASSERT_TRUE(virtual_bytes.has_value());
  EXPECT_GE(*virtual_bytes, *rss);
}

TEST(ProcessCollectorTest, OpenFdsFollowOpenAndClose) {
  const ProcessCollector collector;
  const std::optional<double> before = Value(collector, "process_open_fds");
  ASSERT_TRUE(before.has_value());
  EXPECT_GE(*before, 3.0);  // stdin, stdout, stderr.
  const int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(Value(collector, "process_open_fds"), *before + 1);
  close(fd);
  EXPECT_EQ(Value(collector, "process_open_fds"), *before);
}

TEST(ProcessCollectorTest, OpenFdsDoNotCountTheDirectoryBeingRead) {
  // Counting /proc/self/fd by hand, with the same one-descriptor correction.
  const ProcessCollector collector;
  int expected = 0;
  for (int fd = 0; fd < 4096; ++fd) {
    if (fcntl(fd, F_GETFD) != -1) ++expected;
  }
  EXPECT_EQ(Value(collector, "process_open_fds"), expected);
}

TEST(ProcessCollectorTest, MaxFdsIsTheSoftLimit) {
  const ProcessCollector collector;
  rlimit limit{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &limit), 0);
  ASSERT_NE(limit.rlim_cur, RLIM_INFINITY);
  EXPECT_EQ(Value(collector, "process_max_fds"), static_cast<double>(limit.rlim_cur));
}

TEST(ProcessCollectorTest, MaxFdsFollowsSetrlimit) {
  rlimit saved{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
  ASSERT_GT(saved.rlim_cur, 200u);
  rlimit lower = saved;
  lower.rlim_cur = 200;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &lower), 0);
  const std::optional<double> max_fds = Value(ProcessCollector(), "process_max_fds");
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &saved), 0);
  EXPECT_EQ(max_fds, 200.0);
}

TEST(ProcessCollectorTest, StartTimeIsBeforeNowAndRecent) {
  const ProcessCollector collector;
  const std::optional<double> start = Value(collector, "process_start_time_seconds");
  ASSERT_TRUE(start.has_value());
  const double now = absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch());
  EXPECT_LE(*start, now + 1);  // btime is whole seconds.
  EXPECT_GT(*start, now - 24 * 3600);
  // This test process started at most a few minutes ago (slow machines, parallel ctest).
  EXPECT_GT(*start, now - 600);
}

TEST(ProcessCollectorTest, CpuSecondsGrowWhenBurningCpu) {
  const ProcessCollector collector;
  const std::optional<double> before = Value(collector, "process_cpu_seconds_total");
  ASSERT_TRUE(before.has_value());
  EXPECT_GE(*before, 0.0);
  // Burn 250 ms of CPU (measured in CPU time, so a loaded machine only makes it take longer).
  const double cpu_start = ProcessCpuSeconds();
  volatile double sink = 0;
  while (ProcessCpuSeconds() - cpu_start < 0.25) {
    for (int i = 0; i < 10000; ++i) sink = sink + i * 0.5;
  }
  const std::optional<double> after = Value(collector, "process_cpu_seconds_total");
  ASSERT_TRUE(after.has_value());
  // /proc accounts in clock ticks (10 ms): allow a few ticks either way.
  EXPECT_GE(*after - *before, 0.2);
  EXPECT_LE(*after - *before, 0.5);
  EXPECT_NEAR(*after, ProcessCpuSeconds(), 0.1);
}

TEST(ProcessCollectorTest, AMissingProcDirYieldsNoFamilies) {
  const ProcessCollector collector("/nonexistent/proc/dir");
  EXPECT_TRUE(collector.Collect().empty());
}

TEST(ProcessCollectorTest, ReadsOnlyTheFilesThatExist) {
  // A proc dir with just a "limits" file: only process_max_fds can be read.
  char dir_template[] = "/tmp/process_collector_testXXXXXX";
  const char* dir = mkdtemp(dir_template);
  ASSERT_NE(dir, nullptr);
  const std::string limits = std::string(dir) + "/limits";
  {
    std::ofstream out(limits);
    out << "Limit                     Soft Limit           Hard Limit           Units     \n"
           "Max cpu time              unlimited            unlimited            seconds   \n"
           "Max open files            1234                 4096                 files     \n";
  }
  const MetricValues values{ProcessCollector(dir)};
  unlink(limits.c_str());
  rmdir(dir);
  ASSERT_EQ(values.families().size(), 1u);
  EXPECT_EQ(values.families()[0].name, "process_max_fds");
  EXPECT_EQ(values.Gauge("process_max_fds"), 1234.0);
}

TEST(ProcessCollectorTest, ParsesAStatFileWhoseCommandHoldsSpacesAndParens) {
  char dir_template[] = "/tmp/process_collector_testXXXXXX";
  const char* dir = mkdtemp(dir_template);
  ASSERT_NE(dir, nullptr);
  const std::string stat = std::string(dir) + "/stat";
  {
    // proc(5) fields 1..24: utime (14) 250 ticks, stime (15) 50, num_threads (20) 7,
    // vsize (23) 123456789, rss (24) 100 pages.
    std::ofstream out(stat);
    out << "4242 (my (odd) cmd) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 7 0 "
           "1000 123456789 100 18446744073709551615\n";
  }
  const MetricValues values{ProcessCollector(dir)};
  unlink(stat.c_str());
  rmdir(dir);
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  EXPECT_EQ(values.Counter("process_cpu_seconds_total"), 300 / ticks);
  EXPECT_EQ(values.Gauge("process_threads"), 7.0);
  EXPECT_EQ(values.Gauge("process_virtual_memory_bytes"), 123456789.0);
  EXPECT_EQ(values.Gauge("process_resident_memory_bytes"), 100 * page);
  EXPECT_EQ(values.Family("process_open_fds"), nullptr);
}

}  // namespace
}  // namespace copilot::gateway
