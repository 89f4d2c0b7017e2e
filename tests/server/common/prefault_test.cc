#include "server/common/prefault.h"

#include <sys/mman.h>
#include <sys/resource.h>

#include <cstring>
#include <string>

#include "gtest/gtest.h"

namespace copilot::gateway {
namespace {

constexpr std::size_t kBytes = 4 * 1024 * 1024;  // 1,024 pages of 4 KiB.

long ThreadMinorFaults() {
  rusage usage{};
  getrusage(RUSAGE_THREAD, &usage);
  return usage.ru_minflt;
}

// Page faults taken while writing a fresh kBytes mapping, prefaulted first or not.
long FaultsWritingFreshPages(bool prefault, bool* populated) {
  void* mapping = mmap(nullptr, kBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  EXPECT_NE(mapping, MAP_FAILED);
  if (mapping == MAP_FAILED) return -1;
  madvise(mapping, kBytes, MADV_NOHUGEPAGE);  // Page by page, as with transparent huge pages off.
  auto* bytes = static_cast<char*>(mapping);
  if (prefault) *populated = PrefaultForWrite(bytes, kBytes);
  const long before = ThreadMinorFaults();
  std::memset(bytes, 'x', kBytes);
  const long faults = ThreadMinorFaults() - before;
  EXPECT_EQ(bytes[kBytes - 1], 'x');
  munmap(mapping, kBytes);
  return faults;
}

TEST(PrefaultTest, WritingAPrefaultedBufferTakesNoFaultPerPage) {
  bool populated = false;
  const long plain = FaultsWritingFreshPages(false, &populated);
  const long prefaulted = FaultsWritingFreshPages(true, &populated);
  ASSERT_TRUE(populated) << "MADV_POPULATE_WRITE (Linux 5.14) refused";
  EXPECT_GE(plain, 200);  // Several pages a fault at most (fault-around), not none.
  EXPECT_LT(prefaulted, 16);
}

TEST(PrefaultTest, SmallOrNullBuffersAreLeftAlone) {
  char small[4096] = {};
  EXPECT_FALSE(PrefaultForWrite(small, sizeof(small)));
  EXPECT_FALSE(PrefaultForWrite(nullptr, kBytes));
}

TEST(PrefaultTest, TheContentsAreUnchanged) {
  std::string text(2 * 1024 * 1024, 'a');
  text[12345] = 'b';
  PrefaultForWrite(text.data(), text.size());
  EXPECT_EQ(text[12345], 'b');
  EXPECT_EQ(text.find_first_not_of('a'), 12345u);
}

}  // namespace
}  // namespace copilot::gateway
