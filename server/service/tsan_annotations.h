// Happens-before hints for ThreadSanitizer builds (COPILOT_SANITIZE=thread).
//
// Debian's gRPC core is not built with -fsanitize=thread, so TSan cannot see that gRPC orders a
// reaction (OnWriteDone, OnCancel, OnDone) after the calls that led to it (the method handler,
// StartWrite, Finish). The reactors mark those hand-overs explicitly, keyed by the reactor's
// address: CopilotTsanRelease(reactor) before handing work to gRPC, CopilotTsanAcquire(this) at
// the start of each reaction. In other builds both are no-ops.
#ifndef COPILOT_GATEWAY_SERVER_SERVICE_TSAN_ANNOTATIONS_H_
#define COPILOT_GATEWAY_SERVER_SERVICE_TSAN_ANNOTATIONS_H_

#if defined(COPILOT_TSAN_ANNOTATIONS)
#include <sanitizer/tsan_interface.h>
inline void CopilotTsanRelease(const void* address) { __tsan_release(const_cast<void*>(address)); }
inline void CopilotTsanAcquire(const void* address) { __tsan_acquire(const_cast<void*>(address)); }
#else
inline void CopilotTsanRelease(const void*) {}
inline void CopilotTsanAcquire(const void*) {}
#endif

#endif  // COPILOT_GATEWAY_SERVER_SERVICE_TSAN_ANNOTATIONS_H_
