#include "server/common/prefault.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23  // Linux 5.14; older C libraries lack the name.
#endif

namespace copilot::gateway {

bool PrefaultForWrite(void* data, std::size_t size) {
  if (data == nullptr || size < kPrefaultMinBytes) return false;
  static const auto page = static_cast<std::uintptr_t>(sysconf(_SC_PAGESIZE));
  const std::uintptr_t begin = (reinterpret_cast<std::uintptr_t>(data) + page - 1) & ~(page - 1);
  const std::uintptr_t end = (reinterpret_cast<std::uintptr_t>(data) + size) & ~(page - 1);
  if (end <= begin) return false;
  // NOLINTNEXTLINE(performance-no-int-to-ptr): the page-aligned start of the caller's buffer.
  return madvise(reinterpret_cast<void*>(begin), end - begin, MADV_POPULATE_WRITE) == 0;
}

}  // namespace copilot::gateway
