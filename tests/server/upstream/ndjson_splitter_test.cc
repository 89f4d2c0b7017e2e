#include "server/upstream/ndjson_splitter.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "server/common/errors.h"

namespace copilot::gateway {
namespace {

std::string Reason(const absl::Status& status) {
  auto info = GetErrorInfo(status);
  return info.has_value() ? info->reason() : "<no ErrorInfo>";
}

struct Collector {
  std::vector<std::string> lines;
  absl::Status Feed(NdjsonSplitter& splitter, absl::string_view piece) {
    return splitter.Feed(piece, [this](absl::string_view line) { lines.emplace_back(line); });
  }
  absl::Status Finish(NdjsonSplitter& splitter) {
    return splitter.Finish([this](absl::string_view line) { lines.emplace_back(line); });
  }
};

TEST(NdjsonSplitterTest, WholeLinesInOnePiece) {
  NdjsonSplitter splitter(100);
  Collector collector;
  ASSERT_TRUE(collector.Feed(splitter, "{\"a\":1}\n{\"b\":2}\n").ok());
  EXPECT_EQ(collector.lines, (std::vector<std::string>{"{\"a\":1}", "{\"b\":2}"}));
  EXPECT_TRUE(collector.Finish(splitter).ok());
}

TEST(NdjsonSplitterTest, EverySplitPointGivesTheSameLines) {
  const std::string stream = "{\"a\":1}\r\n\n  \r\n{\"bb\":22}\n{\"c\":3}\r\n";
  for (size_t cut1 = 0; cut1 <= stream.size(); ++cut1) {
    for (size_t cut2 = cut1; cut2 <= stream.size(); ++cut2) {
      NdjsonSplitter splitter(16);
      Collector collector;
      ASSERT_TRUE(collector.Feed(splitter, stream.substr(0, cut1)).ok());
      ASSERT_TRUE(collector.Feed(splitter, stream.substr(cut1, cut2 - cut1)).ok());
      ASSERT_TRUE(collector.Feed(splitter, stream.substr(cut2)).ok());
      ASSERT_TRUE(collector.Finish(splitter).ok());
      EXPECT_EQ(collector.lines,
                (std::vector<std::string>{"{\"a\":1}", "{\"bb\":22}", "{\"c\":3}"}))
          << cut1 << " " << cut2;
    }
  }
}

TEST(NdjsonSplitterTest, ByteByByte) {
  NdjsonSplitter splitter(100);
  Collector collector;
  for (char c : std::string("x1\r\ny2\n")) {
    ASSERT_TRUE(collector.Feed(splitter, absl::string_view(&c, 1)).ok());
  }
  EXPECT_EQ(collector.lines, (std::vector<std::string>{"x1", "y2"}));
  EXPECT_EQ(splitter.buffered_bytes(), 0u);
}

TEST(NdjsonSplitterTest, BlankLinesAreIgnored) {
  NdjsonSplitter splitter(100);
  Collector collector;
  ASSERT_TRUE(collector.Feed(splitter, "\n\r\n \t \nx\n\n").ok());
  EXPECT_EQ(collector.lines, (std::vector<std::string>{"x"}));
}

TEST(NdjsonSplitterTest, TruncatedStreamIsAnError) {
  NdjsonSplitter splitter(100);
  Collector collector;
  ASSERT_TRUE(collector.Feed(splitter, "{\"a\":1}\n{\"b\":").ok());
  absl::Status status = collector.Finish(splitter);
  EXPECT_EQ(status.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(Reason(status), "upstream_stream_truncated");
  EXPECT_EQ(collector.lines, (std::vector<std::string>{"{\"a\":1}"}));
}

TEST(NdjsonSplitterTest, WholeLastObjectWithoutNewlineIsALine) {
  NdjsonSplitter splitter(100);
  Collector collector;
  ASSERT_TRUE(collector.Feed(splitter, "{\"a\":1}\n{\"b\":2}").ok());
  EXPECT_TRUE(collector.Finish(splitter).ok());
  EXPECT_EQ(collector.lines, (std::vector<std::string>{"{\"a\":1}", "{\"b\":2}"}));
}

TEST(NdjsonSplitterTest, TrailingWhitespaceWithoutNewlineIsFine) {
  NdjsonSplitter splitter(100);
  Collector collector;
  ASSERT_TRUE(collector.Feed(splitter, "x\n  \r").ok());
  EXPECT_TRUE(collector.Finish(splitter).ok());
}

TEST(NdjsonSplitterTest, LineAtTheLimitPassesOneByteMoreFails) {
  {
    NdjsonSplitter splitter(4);
    Collector collector;
    ASSERT_TRUE(collector.Feed(splitter, "ab").ok());
    ASSERT_TRUE(collector.Feed(splitter, "cd\r").ok());
    ASSERT_TRUE(collector.Feed(splitter, "\n").ok());
    EXPECT_EQ(collector.lines, (std::vector<std::string>{"abcd"}));
  }
  {
    NdjsonSplitter splitter(4);
    Collector collector;
    absl::Status status = collector.Feed(splitter, "abcde\n");
    EXPECT_EQ(status.code(), absl::StatusCode::kInternal);
    EXPECT_EQ(Reason(status), "upstream_stream_line_too_long");
  }
  {
    // Without a line end in sight the partial line is bounded too.
    NdjsonSplitter splitter(4);
    Collector collector;
    ASSERT_TRUE(collector.Feed(splitter, "abc").ok());
    absl::Status status = collector.Feed(splitter, "def");
    EXPECT_EQ(Reason(status), "upstream_stream_line_too_long");
    // The splitter stays failed.
    EXPECT_EQ(Reason(collector.Feed(splitter, "\nok\n")), "upstream_stream_line_too_long");
    EXPECT_EQ(Reason(collector.Finish(splitter)), "upstream_stream_line_too_long");
    EXPECT_TRUE(collector.lines.empty());
  }
}

}  // namespace
}  // namespace copilot::gateway
