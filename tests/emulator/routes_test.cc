#include "tests/emulator/routes.h"

#include "gtest/gtest.h"

namespace copilot::emulator {
namespace {

TEST(RoutesTest, MatchesEveryRoute) {
  struct Case {
    const char* method;
    const char* path;
    const char* name;
  };
  const Case cases[] = {
      {"GET", "/agents/v1/assistants", "list_assistants"},
      {"GET", "/agents/v1/assistants/A", "get_assistant"},
      {"GET", "/agents/v1/threads", "list_threads"},
      {"POST", "/agents/v1/threads", "create_thread"},
      {"GET", "/agents/v1/threads/T", "get_thread"},
      {"DELETE", "/agents/v1/threads/T", "delete_thread"},
      {"GET", "/agents/v1/threads/T/messages", "list_messages"},
      {"POST", "/agents/v1/threads/T/messages", "create_message"},
      {"DELETE", "/agents/v1/threads/T/messages/M", "delete_message"},
      {"POST", "/agents/v1/threads/T/run", "run"},
      {"POST", "/agents/v1/threads/T/run/stream", "run_stream"},
      {"POST", "/agents/v1/chat/completions", "chat_completions"},
      {"POST", "/agents/v1/chat/completions/stream", "chat_completions_stream"},
  };
  for (const Case& c : cases) {
    RouteMatch m = MatchRoute(c.method, c.path);
    EXPECT_EQ(m.name, c.name) << c.method << " " << c.path;
    EXPECT_FALSE(m.method_not_allowed);
    EXPECT_TRUE(IsRouteName(c.name));
  }
  RouteMatch m = MatchRoute("DELETE", "/agents/v1/threads/T/messages/M");
  EXPECT_EQ(m.thread_id, "T");
  EXPECT_EQ(m.message_id, "M");
  EXPECT_EQ(MatchRoute("GET", "/agents/v1/assistants/A").assistant_id, "A");
}

TEST(RoutesTest, WrongMethodAndUnknownPaths) {
  EXPECT_TRUE(MatchRoute("PUT", "/agents/v1/assistants").method_not_allowed);
  EXPECT_TRUE(MatchRoute("GET", "/agents/v1/threads/T/run").method_not_allowed);
  for (const char* path :
       {"/", "/agents/v1", "/agents/v1/", "/agents/v1/assistants/", "/agents/v2/assistants",
        "/agents/v1/files", "/agents/v1//threads", "/agents/v1/threads/T/run/other"}) {
    RouteMatch m = MatchRoute("GET", path);
    EXPECT_EQ(m.name, "") << path;
    EXPECT_FALSE(m.method_not_allowed) << path;
  }
  EXPECT_FALSE(IsRouteName("files"));
  EXPECT_FALSE(IsRouteName("*"));
}

}  // namespace
}  // namespace copilot::emulator
