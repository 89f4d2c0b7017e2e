// Whether gRPC runs the service's reactors' OnDone and OnCancel inline.
#ifndef COPILOT_GATEWAY_SERVER_SERVICE_INLINE_REACTIONS_H_
#define COPILOT_GATEWAY_SERVER_SERVICE_INLINE_REACTIONS_H_

namespace copilot::gateway {

// The service's reactors (UnaryCallReactor, StreamCallReactor, the finished-at-once calls)
// answer gRPC's ServerReactor::InternalInlineable() with this. gRPC 1.51 otherwise hands every
// OnDone (and OnCancel) of a reactor of the application's to its executor thread: a thread
// wake-up and a context switch per call (the "default-executor" thread, about 1 switch and
// 15-27 us of CPU a call at c=1; its own DefaultReactor, whose reactions are trivial, runs them
// in place). Inline, gRPC runs them on the thread that completed the call, when the application
// callbacks of that thread run: outside gRPC's locks, like the method handler itself, but on
// the upstream loop when its Finish completed the call.
//
// What makes it safe, for each reactor: no reaction blocks (OnCancel cancels the upstream call,
// which only posts to its loop, and finishes; OnDone records metrics, leaves the call gate and
// deletes the reactor); nothing is touched after Finish, so OnDone may come before Finish
// returns; Finish is never called with a lock held that OnDone takes; and gRPC holds the call
// until the method handler has returned and OnCancel has returned, so neither can see OnDone.
inline constexpr bool kInlineReactions = true;

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_SERVICE_INLINE_REACTIONS_H_
