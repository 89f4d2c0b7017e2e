#include "server/common/log.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/server/ops/capture_stderr.h"

namespace copilot::gateway {
namespace {

using ::copilot::gateway::ops_testing::CaptureStderr;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::Not;

// The keys of a parsed line, in order.
std::vector<std::string> Keys(const nlohmann::ordered_json& line) {
  std::vector<std::string> keys;
  for (const auto& [key, value] : line.items()) keys.push_back(key);
  return keys;
}

// Parses `text` as JSON without throwing; discarded (is_discarded()) when invalid.
nlohmann::ordered_json Parse(const std::string& text) {
  return nlohmann::ordered_json::parse(text, nullptr, false);
}

// Restores the process-wide log level when a test ends.
class LogLevelTest : public ::testing::Test {
 protected:
  void TearDown() override { SetLogLevel(saved_); }

 private:
  const LogLevel saved_ = GetLogLevel();
};

TEST(FormatLogLineTest, IsOneJsonObjectWithTimeLevelMsgThenFieldsInOrder) {
  const nlohmann::ordered_json fields = {{"method", "Run"}, {"tenant", "acme"}, {"code", 5}};
  const std::string text = FormatLogLine(LogLevel::kWarning, "call", fields);
  EXPECT_THAT(text, Not(HasSubstr("\n")));
  const nlohmann::ordered_json line = Parse(text);
  ASSERT_FALSE(line.is_discarded()) << text;
  ASSERT_TRUE(line.is_object());
  EXPECT_THAT(Keys(line), ElementsAre("time", "level", "msg", "method", "tenant", "code"));
  EXPECT_EQ(line["level"], "warning");
  EXPECT_EQ(line["msg"], "call");
  EXPECT_EQ(line["method"], "Run");
  EXPECT_EQ(line["tenant"], "acme");
  EXPECT_EQ(line["code"], 5);
}

TEST(FormatLogLineTest, TimeIsRfc3339UtcWithMillisecondsAndNow) {
  const absl::Time before = absl::Now();
  const nlohmann::ordered_json line =
      Parse(FormatLogLine(LogLevel::kInfo, "x", nlohmann::ordered_json()));
  const absl::Time after = absl::Now();
  ASSERT_TRUE(line.contains("time"));
  const std::string time = line["time"];
  EXPECT_THAT(time,
              MatchesRegex("[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z"));
  absl::Time parsed;
  std::string error;
  ASSERT_TRUE(absl::ParseTime(absl::RFC3339_full, time, &parsed, &error)) << error;
  // Truncated to milliseconds.
  EXPECT_GE(parsed, absl::FromUnixMillis(absl::ToUnixMillis(before)));
  EXPECT_LE(parsed, after);
}

TEST(FormatLogLineTest, NamesEveryLevel) {
  EXPECT_EQ(Parse(FormatLogLine(LogLevel::kDebug, "m", nullptr))["level"], "debug");
  EXPECT_EQ(Parse(FormatLogLine(LogLevel::kInfo, "m", nullptr))["level"], "info");
  EXPECT_EQ(Parse(FormatLogLine(LogLevel::kWarning, "m", nullptr))["level"], "warning");
  EXPECT_EQ(Parse(FormatLogLine(LogLevel::kError, "m", nullptr))["level"], "error");
}

TEST(FormatLogLineTest, NullFieldsGiveOnlyTimeLevelMsg) {
  const nlohmann::ordered_json line =
      Parse(FormatLogLine(LogLevel::kInfo, "started", nlohmann::ordered_json()));
  ASSERT_FALSE(line.is_discarded());
  EXPECT_THAT(Keys(line), ElementsAre("time", "level", "msg"));
}

TEST(FormatLogLineTest, EscapesQuotesBackslashesAndNewlines) {
  const std::string msg = "say \"hi\"\nthen \\ leave\r\t\x01";
  const nlohmann::ordered_json fields = {{"detail", "line1\nline2 \"quoted\""}};
  std::string text;
  ASSERT_NO_THROW(text = FormatLogLine(LogLevel::kInfo, msg, fields));
  EXPECT_THAT(text, Not(HasSubstr("\n")));
  EXPECT_THAT(text, Not(HasSubstr("\r")));
  const nlohmann::ordered_json line = Parse(text);
  ASSERT_FALSE(line.is_discarded()) << text;
  EXPECT_EQ(line["msg"], msg);  // Round-trips exactly.
  EXPECT_EQ(line["detail"], "line1\nline2 \"quoted\"");
}

TEST(FormatLogLineTest, ReplacesInvalidUtf8InsteadOfThrowing) {
  const std::string bad_msg = "bad \xff byte";
  const nlohmann::ordered_json fields = {{"peer", "ipv4:\xc3"}, {"key \xfe", "v"}};
  std::string text;
  ASSERT_NO_THROW(text = FormatLogLine(LogLevel::kError, bad_msg, fields));
  const nlohmann::ordered_json line = Parse(text);
  ASSERT_FALSE(line.is_discarded()) << text;
  EXPECT_EQ(line["msg"], "bad \xEF\xBF\xBD byte");  // U+FFFD REPLACEMENT CHARACTER.
  EXPECT_EQ(line["peer"], "ipv4:\xEF\xBF\xBD");
  EXPECT_TRUE(line.contains("key \xEF\xBF\xBD"));
}

// The line as the gateway wrote it before JsonLogLine: a JSON object of time, level, msg and the
// fields, dumped (invalid UTF-8 replaced). `time` is the JsonLogLine's own.
std::string DumpedObject(const std::string& time, LogLevel level, const std::string& msg,
                         const nlohmann::ordered_json& fields) {
  nlohmann::ordered_json line = nlohmann::ordered_json::object();
  line["time"] = time;
  line["level"] = std::string(LogLevelName(level));
  line["msg"] = msg;
  for (const auto& [key, value] : fields.items()) line[key] = value;
  return line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

// JsonLogLine writes, byte for byte, what dumping the same fields as one JSON object wrote: strings
// plain, escaped, multi-byte and invalid; integers at both ends; doubles short, long, tiny and
// not finite; nested JSON.
TEST(LogLineTest, WritesWhatDumpingTheSameObjectWrote) {
  const std::vector<std::string> strings = {"",
                                            "plain text 0-9 ~!@#$%^&*()",
                                            "say \"hi\" \\ leave",
                                            "only \"quotes\"",
                                            "only \\ a backslash",
                                            "line1\nline2\r\t\b\f\x01\x1f\x7f",
                                            "Gr\xc3\xbc\xc3\x9f"
                                            "e \xe2\x9c\x93 \xf0\x9f\x98\x80",
                                            "bad \xff\xfe bytes \xc3",
                                            std::string("nul \0 inside", 13)};
  const std::vector<int64_t> ints = {0, -5, 42, INT64_MAX, INT64_MIN};
  const std::vector<double> doubles = {0.0,
                                       -0.0,
                                       0.1,
                                       1e-7,
                                       123456.789,
                                       -2.5,
                                       1e300,
                                       0.00025,
                                       3.0,
                                       std::nan(""),
                                       std::numeric_limits<double>::infinity()};
  for (LogLevel level : {LogLevel::kDebug, LogLevel::kInfo, LogLevel::kWarning, LogLevel::kError}) {
    for (const std::string& text : strings) {
      JsonLogLine line(level, text);
      nlohmann::ordered_json fields = nlohmann::ordered_json::object();
      line.AddString("s", text);
      fields["s"] = text;
      line.AddString(text + " as a key", "v");
      fields[text + " as a key"] = "v";
      for (std::size_t i = 0; i < ints.size(); ++i) {
        line.AddInt("i" + std::to_string(i), ints[i]);
        fields["i" + std::to_string(i)] = ints[i];
      }
      for (std::size_t i = 0; i < doubles.size(); ++i) {
        line.AddDouble("d" + std::to_string(i), doubles[i]);
        fields["d" + std::to_string(i)] = doubles[i];
      }
      const nlohmann::ordered_json nested = {{"a", {1, "two", nullptr, true}},
                                             {"b", {{"c", text}}}};
      line.AddJson("j", nested);
      fields["j"] = nested;
      const std::string written = std::move(line).Text();
      const nlohmann::ordered_json parsed = Parse(written);
      ASSERT_FALSE(parsed.is_discarded()) << written;
      EXPECT_EQ(written, DumpedObject(parsed["time"], level, text, fields));
      // FormatLogLine, which writes through JsonLogLine, writes the same.
      const std::string formatted = FormatLogLine(level, text, fields);
      EXPECT_EQ(formatted, DumpedObject(Parse(formatted)["time"], level, text, fields));
    }
  }
}

// AddDouble writes what dumping the double writes, for doubles of every magnitude: random bit
// patterns (NaN and infinity among them) and random durations in seconds and milliseconds.
TEST(LogLineTest, DoublesAreWrittenAsDumpingThemWrites) {
  std::mt19937_64 random(20261206);
  for (int i = 0; i < 100000; ++i) {
    const uint64_t bits = random();
    double value = 0;
    if (i % 2 == 0) {
      std::memcpy(&value, &bits, sizeof value);
    } else {
      value =
          static_cast<double>(bits % 100000000) / std::pow(10.0, static_cast<double>(bits % 13));
    }
    JsonLogLine line(LogLevel::kInfo, "m");
    line.AddDouble("d", value);
    const std::string written = std::move(line).Text();
    const std::string expected = nlohmann::ordered_json(value).dump(
        -1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
    const std::size_t at = written.find(R"("d":)");
    ASSERT_NE(at, std::string::npos) << written;
    ASSERT_EQ(written.substr(at + 4, written.size() - at - 5), expected) << bits;
  }
}

// A field named like one of the line's own keys replaces its value where it stands, as before.
TEST(FormatLogLineTest, AFieldNamedLikeTheLinesOwnReplacesItInPlace) {
  const nlohmann::ordered_json fields = {{"a", 1}, {"msg", "theirs"}, {"level", "x"}};
  const std::string text = FormatLogLine(LogLevel::kInfo, "ours", fields);
  const nlohmann::ordered_json line = Parse(text);
  ASSERT_FALSE(line.is_discarded()) << text;
  EXPECT_THAT(Keys(line), ElementsAre("time", "level", "msg", "a"));
  EXPECT_EQ(line["msg"], "theirs");
  EXPECT_EQ(line["level"], "x");
}

// The time, formatted once a second per thread, is the instant of the line to the millisecond,
// also when lines of one thread cross second boundaries.
TEST(LogLineTest, TimeFollowsTheClockAcrossSeconds) {
  std::string previous;
  const absl::Time end = absl::Now() + absl::Milliseconds(2300);
  std::set<std::string> seconds;
  while (absl::Now() < end) {
    const absl::Time before = absl::Now();
    const std::string text = std::move(JsonLogLine(LogLevel::kInfo, "t")).Text();
    const absl::Time after = absl::Now();
    const std::string time = Parse(text)["time"];
    absl::Time parsed;
    std::string error;
    ASSERT_TRUE(absl::ParseTime(absl::RFC3339_full, time, &parsed, &error)) << error;
    ASSERT_GE(parsed, absl::FromUnixMillis(absl::ToUnixMillis(before))) << time;
    ASSERT_LE(parsed, after) << time;
    ASSERT_EQ(time, absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", parsed, absl::UTCTimeZone()));
    ASSERT_GE(time, previous);
    previous = time;
    seconds.insert(time.substr(0, 19));
    absl::SleepFor(absl::Milliseconds(7));
  }
  EXPECT_GE(seconds.size(), 2u);  // 2.3 s of lines span more than one second.
}

TEST(ParseLogLevelTest, AcceptsTheFourLevelsAndWarnCaseInsensitively) {
  EXPECT_EQ(ParseLogLevel("debug").value(), LogLevel::kDebug);
  EXPECT_EQ(ParseLogLevel("info").value(), LogLevel::kInfo);
  EXPECT_EQ(ParseLogLevel("warning").value(), LogLevel::kWarning);
  EXPECT_EQ(ParseLogLevel("warn").value(), LogLevel::kWarning);
  EXPECT_EQ(ParseLogLevel("error").value(), LogLevel::kError);
  EXPECT_EQ(ParseLogLevel("DEBUG").value(), LogLevel::kDebug);
  EXPECT_EQ(ParseLogLevel("Info").value(), LogLevel::kInfo);
  EXPECT_EQ(ParseLogLevel("WaRn").value(), LogLevel::kWarning);
  EXPECT_EQ(ParseLogLevel("ERROR").value(), LogLevel::kError);
}

TEST(ParseLogLevelTest, RejectsOthersWithInvalidArgumentNamingTheField) {
  for (const char* name : {"", "trace", "fatal", "information", " info", "info ", "err"}) {
    const absl::StatusOr<LogLevel> level = ParseLogLevel(name);
    ASSERT_FALSE(level.ok()) << "\"" << name << "\"";
    EXPECT_EQ(level.status().code(), absl::StatusCode::kInvalidArgument) << name;
    EXPECT_THAT(level.status().message(), HasSubstr("log_level")) << name;
  }
}

TEST(LogLevelNameTest, RoundTripsThroughParseLogLevel) {
  for (LogLevel level : {LogLevel::kDebug, LogLevel::kInfo, LogLevel::kWarning, LogLevel::kError}) {
    EXPECT_EQ(ParseLogLevel(LogLevelName(level)).value(), level);
  }
}

TEST_F(LogLevelTest, EnablesTheLevelSetAndAboveOnly) {
  SetLogLevel(LogLevel::kWarning);
  EXPECT_EQ(GetLogLevel(), LogLevel::kWarning);
  EXPECT_FALSE(LogEnabled(LogLevel::kDebug));
  EXPECT_FALSE(LogEnabled(LogLevel::kInfo));
  EXPECT_TRUE(LogEnabled(LogLevel::kWarning));
  EXPECT_TRUE(LogEnabled(LogLevel::kError));

  SetLogLevel(LogLevel::kDebug);
  EXPECT_TRUE(LogEnabled(LogLevel::kDebug));
  EXPECT_TRUE(LogEnabled(LogLevel::kInfo));
}

TEST_F(LogLevelTest, LogWritesOneJsonLineToStderr) {
  SetLogLevel(LogLevel::kInfo);
  const std::string out = CaptureStderr([] {
    Log(LogLevel::kWarning, "reload refused", {{"path", "/etc/gw.yaml"}});
  });
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out.back(), '\n');
  EXPECT_EQ(out.find('\n'), out.size() - 1) << out;  // Exactly one line.
  const nlohmann::ordered_json line = Parse(out.substr(0, out.size() - 1));
  ASSERT_FALSE(line.is_discarded()) << out;
  EXPECT_EQ(line["level"], "warning");
  EXPECT_EQ(line["msg"], "reload refused");
  EXPECT_EQ(line["path"], "/etc/gw.yaml");
}

TEST_F(LogLevelTest, LogBelowTheLevelWritesNothing) {
  SetLogLevel(LogLevel::kWarning);
  const std::string out = CaptureStderr([] {
    Log(LogLevel::kInfo, "call", {{"method", "Run"}});
    Log(LogLevel::kDebug, "upstream request");
  });
  EXPECT_EQ(out, "");
}

TEST_F(LogLevelTest, ConcurrentLogLinesDoNotInterleave) {
  SetLogLevel(LogLevel::kInfo);
  constexpr int kThreads = 4;
  constexpr int kLines = 300;
  const std::string padding(200, 'p');  // Long lines make a torn write likelier.
  const std::string out = CaptureStderr([&] {
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kLines; ++i) {
          Log(LogLevel::kInfo, "line", {{"thread", t}, {"i", i}, {"padding", padding}});
        }
      });
    }
    for (std::thread& thread : threads) thread.join();
  });
  std::vector<int> seen(kThreads, 0);
  int lines = 0;
  for (absl::string_view text : absl::StrSplit(out, '\n', absl::SkipEmpty())) {
    ++lines;
    const nlohmann::ordered_json line = Parse(std::string(text));
    ASSERT_FALSE(line.is_discarded()) << "torn line: " << text;
    ASSERT_TRUE(line.contains("thread")) << text;
    const int thread = line["thread"];
    ASSERT_GE(thread, 0);
    ASSERT_LT(thread, kThreads);
    EXPECT_EQ(line["i"], seen[thread]) << "lines of one thread out of order";
    ++seen[thread];
  }
  EXPECT_EQ(lines, kThreads * kLines);
}

}  // namespace
}  // namespace copilot::gateway
