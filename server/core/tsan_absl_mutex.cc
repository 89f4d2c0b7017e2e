// ThreadSanitizer support for Debian's abseil (COPILOT_SANITIZE=thread builds only).
//
// Debian's libabsl_synchronization is not built with -fsanitize=thread, so TSan cannot see
// absl::Mutex lock and unlock and would report every access guarded by one as a race. The link
// wraps the out-of-line Mutex/CondVar entry points (ld --wrap, see CMakeLists.txt) with these
// functions, which tell TSan about the happens-before edges: release before a lock is given up,
// acquire after it is taken.
#include <sanitizer/tsan_interface.h>

namespace {
using Mutex = void;
using Condition = void;
}  // namespace

extern "C" {

void __real__ZN4absl7debian35Mutex4LockEv(Mutex* mu);
void __wrap__ZN4absl7debian35Mutex4LockEv(Mutex* mu) {
  __real__ZN4absl7debian35Mutex4LockEv(mu);
  __tsan_acquire(mu);
}

void __real__ZN4absl7debian35Mutex10ReaderLockEv(Mutex* mu);
void __wrap__ZN4absl7debian35Mutex10ReaderLockEv(Mutex* mu) {
  __real__ZN4absl7debian35Mutex10ReaderLockEv(mu);
  __tsan_acquire(mu);
}

bool __real__ZN4absl7debian35Mutex7TryLockEv(Mutex* mu);
bool __wrap__ZN4absl7debian35Mutex7TryLockEv(Mutex* mu) {
  const bool locked = __real__ZN4absl7debian35Mutex7TryLockEv(mu);
  if (locked) __tsan_acquire(mu);
  return locked;
}

bool __real__ZN4absl7debian35Mutex13ReaderTryLockEv(Mutex* mu);
bool __wrap__ZN4absl7debian35Mutex13ReaderTryLockEv(Mutex* mu) {
  const bool locked = __real__ZN4absl7debian35Mutex13ReaderTryLockEv(mu);
  if (locked) __tsan_acquire(mu);
  return locked;
}

void __real__ZN4absl7debian35Mutex6UnlockEv(Mutex* mu);
void __wrap__ZN4absl7debian35Mutex6UnlockEv(Mutex* mu) {
  __tsan_release(mu);
  __real__ZN4absl7debian35Mutex6UnlockEv(mu);
}

void __real__ZN4absl7debian35Mutex12ReaderUnlockEv(Mutex* mu);
void __wrap__ZN4absl7debian35Mutex12ReaderUnlockEv(Mutex* mu) {
  __tsan_release(mu);
  __real__ZN4absl7debian35Mutex12ReaderUnlockEv(mu);
}

void __real__ZN4absl7debian35Mutex8LockWhenERKNS0_9ConditionE(Mutex* mu, const Condition* c);
void __wrap__ZN4absl7debian35Mutex8LockWhenERKNS0_9ConditionE(Mutex* mu, const Condition* c) {
  __real__ZN4absl7debian35Mutex8LockWhenERKNS0_9ConditionE(mu, c);
  __tsan_acquire(mu);
}

// Await releases the lock while it waits and holds it again when it returns.
void __real__ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE(Mutex* mu, const Condition* c);
void __wrap__ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE(Mutex* mu, const Condition* c) {
  __tsan_release(mu);
  __real__ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE(mu, c);
  __tsan_acquire(mu);
}

// absl::Duration is passed as two words (int64 seconds-ish hi, uint32 lo) in registers.
struct AbslDuration {
  long hi;
  unsigned lo;
};
bool __real__ZN4absl7debian35Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE(
    Mutex* mu, const Condition* c, AbslDuration timeout);
bool __wrap__ZN4absl7debian35Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE(
    Mutex* mu, const Condition* c, AbslDuration timeout) {
  __tsan_release(mu);
  const bool met = __real__ZN4absl7debian35Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE(
      mu, c, timeout);
  __tsan_acquire(mu);
  return met;
}

void __real__ZN4absl7debian37CondVar4WaitEPNS0_5MutexE(void* cv, Mutex* mu);
void __wrap__ZN4absl7debian37CondVar4WaitEPNS0_5MutexE(void* cv, Mutex* mu) {
  __tsan_release(mu);
  __real__ZN4absl7debian37CondVar4WaitEPNS0_5MutexE(cv, mu);
  __tsan_acquire(mu);
}

}  // extern "C"
