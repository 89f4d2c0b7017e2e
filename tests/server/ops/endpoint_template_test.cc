#include <string>

#include "gtest/gtest.h"
#include "server/upstream/haufe_client.h"

namespace copilot::gateway {
namespace {

TEST(EndpointTemplateTest, ReplacesTheThreadIdAndDropsTheQuery) {
  EXPECT_EQ(EndpointTemplate("GET", "/v1/threads/abc/messages?limit=5"),
            "GET /v1/threads/{thread_id}/messages");
}

TEST(EndpointTemplateTest, ReplacesTheAssistantId) {
  EXPECT_EQ(EndpointTemplate("GET", "/v1/assistants/x"), "GET /v1/assistants/{assistant_id}");
}

TEST(EndpointTemplateTest, KeepsCollectionsWithoutAnId) {
  EXPECT_EQ(EndpointTemplate("POST", "/v1/threads"), "POST /v1/threads");
  EXPECT_EQ(EndpointTemplate("GET", "/v1/assistants"), "GET /v1/assistants");
  EXPECT_EQ(EndpointTemplate("POST", "/v1/chat/completions"), "POST /v1/chat/completions");
  EXPECT_EQ(EndpointTemplate("POST", "/v1/chat/completions/stream?thread_id=x"),
            "POST /v1/chat/completions/stream");
}

TEST(EndpointTemplateTest, KeepsTheSegmentsAfterTheId) {
  EXPECT_EQ(EndpointTemplate("POST", "/v1/threads/x/run/stream"),
            "POST /v1/threads/{thread_id}/run/stream");
  EXPECT_EQ(EndpointTemplate("POST", "/v1/threads/x/run"), "POST /v1/threads/{thread_id}/run");
  EXPECT_EQ(EndpointTemplate("DELETE", "/v1/threads/x"), "DELETE /v1/threads/{thread_id}");
}

TEST(EndpointTemplateTest, AnIdNamedLikeACollectionIsStillAnId) {
  EXPECT_EQ(EndpointTemplate("GET", "/v1/threads/threads/messages"),
            "GET /v1/threads/{thread_id}/messages");
  EXPECT_EQ(EndpointTemplate("GET", "/v1/threads/assistants/messages"),
            "GET /v1/threads/{thread_id}/messages");
}

TEST(EndpointTemplateTest, DifferentIdsGiveTheSameLabel) {
  EXPECT_EQ(EndpointTemplate("GET", "/v1/threads/t-1/messages?after=m1"),
            EndpointTemplate("GET", "/v1/threads/t-2%2F3/messages"));
}

}  // namespace
}  // namespace copilot::gateway
