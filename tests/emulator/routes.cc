#include "tests/emulator/routes.h"

#include <array>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"

namespace copilot::emulator {
namespace {

constexpr std::array<absl::string_view, 13> kRouteNames = {
    "list_assistants", "get_assistant",    "list_threads",           "create_thread",  "get_thread",
    "delete_thread",   "list_messages",    "create_message",         "delete_message", "run",
    "run_stream",      "chat_completions", "chat_completions_stream"};

RouteMatch Named(absl::string_view method, absl::string_view wanted, std::string name) {
  RouteMatch match;
  if (method == wanted) {
    match.name = std::move(name);
  } else {
    match.method_not_allowed = true;
  }
  return match;
}

}  // namespace

bool IsRouteName(absl::string_view name) {
  for (absl::string_view known : kRouteNames) {
    if (known == name) return true;
  }
  return false;
}

RouteMatch MatchRoute(absl::string_view method, absl::string_view path) {
  if (!absl::StartsWith(path, kApiBasePath)) return {};
  path.remove_prefix(kApiBasePath.size());
  if (path.empty() || path[0] != '/') return {};
  path.remove_prefix(1);
  std::vector<absl::string_view> s = absl::StrSplit(path, '/');
  for (absl::string_view segment : s) {
    if (segment.empty()) return {};
  }
  const size_t n = s.size();
  if (s[0] == "assistants") {
    if (n == 1) return Named(method, "GET", "list_assistants");
    if (n == 2) {
      RouteMatch m = Named(method, "GET", "get_assistant");
      m.assistant_id = std::string(s[1]);
      return m;
    }
    return {};
  }
  if (s[0] == "threads") {
    if (n == 1) {
      if (method == "GET") return Named(method, "GET", "list_threads");
      return Named(method, "POST", "create_thread");
    }
    RouteMatch m;
    if (n == 2) {
      if (method == "DELETE") {
        m = Named(method, "DELETE", "delete_thread");
      } else {
        m = Named(method, "GET", "get_thread");
      }
    } else if (n == 3 && s[2] == "messages") {
      m = method == "POST" ? Named(method, "POST", "create_message")
                           : Named(method, "GET", "list_messages");
    } else if (n == 4 && s[2] == "messages") {
      m = Named(method, "DELETE", "delete_message");
      m.message_id = std::string(s[3]);
    } else if (n == 3 && s[2] == "run") {
      m = Named(method, "POST", "run");
    } else if (n == 4 && s[2] == "run" && s[3] == "stream") {
      m = Named(method, "POST", "run_stream");
    } else {
      return {};
    }
    m.thread_id = std::string(s[1]);
    return m;
  }
  if (s[0] == "chat" && n >= 2 && s[1] == "completions") {
    if (n == 2) return Named(method, "POST", "chat_completions");
    if (n == 3 && s[2] == "stream") return Named(method, "POST", "chat_completions_stream");
  }
  return {};
}

}  // namespace copilot::emulator
