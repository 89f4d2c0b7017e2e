#include "tests/emulator/http_request.h"

#include <string>

#include "gtest/gtest.h"

namespace copilot::emulator {
namespace {

using Result = HttpRequestParser::Result;

TEST(HttpRequestParserTest, ParsesGetWithQueryAndHeaders) {
  HttpRequestParser parser;
  std::string data =
      "GET /agents/v1/threads?limit=2&cursor=abc HTTP/1.1\r\nHost: x\r\nAPI-Key:  k1 \r\n\r\n";
  ASSERT_EQ(parser.Parse(data), Result::kComplete);
  const HttpRequest& r = parser.request();
  EXPECT_EQ(r.method, "GET");
  EXPECT_EQ(r.path, "/agents/v1/threads");
  EXPECT_EQ(r.query, "limit=2&cursor=abc");
  EXPECT_EQ(r.Header("api-key"), "k1");
  EXPECT_EQ(r.Header("host"), "x");
  EXPECT_FALSE(r.Header("missing").has_value());
  EXPECT_EQ(parser.consumed(), data.size());
  EXPECT_TRUE(r.KeepAlive());
}

TEST(HttpRequestParserTest, WaitsForHeadersThenBodyInPieces) {
  HttpRequestParser parser;
  std::string data = "POST /x HTTP/1.1\r\nContent-Length: 5\r\n";
  EXPECT_EQ(parser.Parse(data), Result::kNeedMore);
  data += "\r\nab";
  EXPECT_EQ(parser.Parse(data), Result::kHeadersDone);
  data += "cdeGET";  // the start of a pipelined request follows
  ASSERT_EQ(parser.Parse(data), Result::kComplete);
  EXPECT_EQ(parser.request().body, "abcde");
  EXPECT_EQ(parser.consumed(), data.size() - 3);
}

TEST(HttpRequestParserTest, ParsesPipelinedRequestsAfterReset) {
  HttpRequestParser parser;
  std::string data = "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\nConnection: close\r\n\r\n";
  ASSERT_EQ(parser.Parse(data), Result::kComplete);
  EXPECT_EQ(parser.request().path, "/a");
  data.erase(0, parser.consumed());
  parser.Reset();
  ASSERT_EQ(parser.Parse(data), Result::kComplete);
  EXPECT_EQ(parser.request().path, "/b");
  EXPECT_FALSE(parser.request().KeepAlive());
}

TEST(HttpRequestParserTest, Http10KeepsAliveOnlyWhenAsked) {
  HttpRequestParser parser;
  ASSERT_EQ(parser.Parse("GET / HTTP/1.0\r\n\r\n"), Result::kComplete);
  EXPECT_FALSE(parser.request().KeepAlive());
  parser.Reset();
  ASSERT_EQ(parser.Parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"), Result::kComplete);
  EXPECT_TRUE(parser.request().KeepAlive());
}

TEST(HttpRequestParserTest, RejectsMalformedRequests) {
  for (std::string bad : {"GARBAGE\r\n\r\n", "GET /x HTTP/2.0\r\n\r\n", "get /x HTTP/1.1\r\n\r\n",
                          "GET x HTTP/1.1\r\n\r\n", "GET /x HTTP/1.1\r\nNoColon\r\n\r\n",
                          "POST /x HTTP/1.1\r\nContent-Length: ten\r\n\r\n",
                          "POST /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"}) {
    HttpRequestParser parser;
    EXPECT_EQ(parser.Parse(bad), Result::kBadRequest) << bad;
  }
}

TEST(HttpRequestParserTest, ChunkedRequestBodyNeedsLength) {
  HttpRequestParser parser;
  EXPECT_EQ(parser.Parse("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Result::kLengthRequired);
}

TEST(HttpRequestParserTest, EnforcesSizeLimits) {
  HttpRequestParser small_headers(/*max_header_bytes=*/32, /*max_body_bytes=*/10);
  EXPECT_EQ(small_headers.Parse(std::string(40, 'a')), Result::kHeadersTooLarge);
  HttpRequestParser small_body(/*max_header_bytes=*/1024, /*max_body_bytes=*/10);
  EXPECT_EQ(small_body.Parse("POST /x HTTP/1.1\r\nContent-Length: 11\r\n\r\n"),
            Result::kBodyTooLarge);
}

TEST(HttpRequestParserTest, DetectsExpectContinue) {
  HttpRequestParser parser;
  ASSERT_EQ(parser.Parse("POST /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"),
            Result::kHeadersDone);
  EXPECT_TRUE(parser.ExpectsContinue());
}

TEST(QueryTest, DecodesPairs) {
  auto pairs = ParseQuery("a=1&b=x%20y+z&flag&c=%2F&&d=%zz");
  ASSERT_EQ(pairs.size(), 5u);
  EXPECT_EQ(pairs[0], (std::pair<std::string, std::string>("a", "1")));
  EXPECT_EQ(pairs[1].second, "x y z");
  EXPECT_EQ(pairs[2], (std::pair<std::string, std::string>("flag", "")));
  EXPECT_EQ(pairs[3].second, "/");
  EXPECT_EQ(pairs[4].second, "%zz");
}

}  // namespace
}  // namespace copilot::emulator
