// The upstream routes the emulator serves (haufe-api.md sections 3-6) and their names, which
// fault rules and request records use.
#ifndef COPILOT_TESTS_EMULATOR_ROUTES_H_
#define COPILOT_TESTS_EMULATOR_ROUTES_H_

#include <string>

#include "absl/strings/string_view.h"

namespace copilot::emulator {

inline constexpr absl::string_view kApiBasePath = "/agents/v1";

struct RouteMatch {
  // Route name ("list_assistants", "run_stream", ...); "" when the path matches no route.
  std::string name;
  // True when the path matches a route but not with this method (answer 405).
  bool method_not_allowed = false;
  // Path parameters, not validated ("" when the route has none).
  std::string assistant_id;
  std::string thread_id;
  std::string message_id;
};

// Matches `method` and `path` (no query) against the routes under /agents/v1.
RouteMatch MatchRoute(absl::string_view method, absl::string_view path);

// True for every name MatchRoute can return, the names fault rules may use (besides "*").
bool IsRouteName(absl::string_view name);

}  // namespace copilot::emulator

#endif  // COPILOT_TESTS_EMULATOR_ROUTES_H_
