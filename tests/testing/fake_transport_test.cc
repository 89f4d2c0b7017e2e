#include "tests/testing/fake_transport.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "tests/testing/recorders.h"

namespace copilot::gateway::testing {
namespace {

HttpRequest Get(std::string url) {
  HttpRequest request;
  request.method = "GET";
  request.url = std::move(url);
  return request;
}

TEST(FakeTransportTest, RecordsEachTransferInOrder) {
  FakeTransport transport;
  EXPECT_TRUE(transport.empty());
  auto first = std::make_shared<RecordingHandler>();
  auto second = std::make_shared<RecordingHandler>();
  std::shared_ptr<HttpTransfer> a = transport.Start(Get("http://a/1"), first);
  FakeTransport::Started& started = transport.call(0);
  std::shared_ptr<HttpTransfer> b = transport.Start(Get("http://a/2"), second);
  ASSERT_EQ(transport.size(), 2u);
  EXPECT_EQ(started.request.url, "http://a/1");  // Still valid after another Start.
  EXPECT_EQ(started.handler, first);
  EXPECT_EQ(started.transfer, a);
  EXPECT_EQ(transport.last().request.url, "http://a/2");
  EXPECT_EQ(transport.last().transfer, b);
  EXPECT_NE(a, b);
  std::vector<HttpRequest> requests = transport.requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[1].url, "http://a/2");
}

TEST(FakeTransportTest, TheTestPlaysTheEvents) {
  FakeTransport transport;
  auto handler = std::make_shared<RecordingHandler>();
  transport.Start(Get("http://a/"), handler);
  FakeTransport::Started& call = transport.last();
  call.Headers(201, {{"retry-after", "3"}});
  EXPECT_TRUE(call.Data("one"));
  handler->data_result = false;
  EXPECT_FALSE(call.Data("two"));
  call.Complete(absl::UnavailableError("reset"));
  ASSERT_EQ(handler->heads.size(), 1u);
  EXPECT_EQ(handler->heads[0].status, 201);
  EXPECT_EQ(handler->heads[0].Header("retry-after"), "3");
  EXPECT_EQ(handler->pieces, (std::vector<std::string>{"one", "two"}));
  ASSERT_EQ(handler->completions.size(), 1u);
  EXPECT_EQ(handler->completions[0], absl::UnavailableError("reset"));
}

TEST(FakeTransportTest, RespondSendsAWholeResponse) {
  FakeTransport transport;
  auto handler = std::make_shared<RecordingHandler>();
  transport.Start(Get("http://a/"), handler);
  transport.last().Respond(200, "{}", {{"content-type", "application/json"}});
  ASSERT_EQ(handler->heads.size(), 1u);
  EXPECT_EQ(handler->heads[0].Header("content-type"), "application/json");
  EXPECT_EQ(handler->pieces, (std::vector<std::string>{"{}"}));
  ASSERT_EQ(handler->completions.size(), 1u);
  EXPECT_TRUE(handler->completions[0].ok());

  // An empty body sends no piece.
  auto empty = std::make_shared<RecordingHandler>();
  transport.Start(Get("http://a/"), empty);
  transport.last().Respond(204, "");
  EXPECT_TRUE(empty->pieces.empty());
  EXPECT_EQ(empty->completions.size(), 1u);
}

TEST(FakeTransportTest, CountsCancelAndResume) {
  FakeTransport transport;
  std::shared_ptr<HttpTransfer> transfer =
      transport.Start(Get("http://a/"), std::make_shared<RecordingHandler>());
  transfer->Resume();
  transfer->Cancel();
  transfer->Cancel();
  EXPECT_EQ(transport.last().transfer->resumes, 1);
  EXPECT_EQ(transport.last().transfer->cancels, 2);
}

TEST(FakeTransportTest, OnStartRunsBeforeStartReturns) {
  // A transport that cannot queue the transfer completes it inline.
  FakeTransport transport([](FakeTransport::Started& call) {
    call.Complete(absl::ResourceExhaustedError("too many transfers"));
  });
  auto handler = std::make_shared<RecordingHandler>();
  transport.Start(Get("http://a/"), handler);
  ASSERT_EQ(handler->completions.size(), 1u);
  EXPECT_EQ(handler->completions[0].code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(transport.size(), 1u);
}

}  // namespace
}  // namespace copilot::gateway::testing
