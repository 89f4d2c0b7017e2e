// Faulting in a fresh buffer's pages in one step, before it is written.
#ifndef COPILOT_GATEWAY_SERVER_COMMON_PREFAULT_H_
#define COPILOT_GATEWAY_SERVER_COMMON_PREFAULT_H_

#include <cstddef>

namespace copilot::gateway {

// Buffers smaller than this are left to fault in as they are written.
inline constexpr std::size_t kPrefaultMinBytes = 1024 * 1024;

// Maps writable pages for the whole pages inside [data, data + size) with one
// madvise(MADV_POPULATE_WRITE), so that filling the buffer later takes no page fault per 4 KiB.
// The contents are unchanged. Writing a fresh 8 MiB buffer page by page cost about 2,000
// faults, each a trap into the kernel (expensive under virtualisation), on the thread that
// copies the bytes; populating costs one system call. Does nothing for buffers under
// kPrefaultMinBytes or where the kernel lacks MADV_POPULATE_WRITE (before Linux 5.14): the
// pages then fault in as before. Returns whether the pages were populated.
bool PrefaultForWrite(void* data, std::size_t size);

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_COMMON_PREFAULT_H_
