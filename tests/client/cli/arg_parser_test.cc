#include "client/cli/arg_parser.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace copilot::client::cli {
namespace {

const std::vector<FlagSpec> kSpecs = {{"thread"}, {"json", false}, {"help", false}};

TEST(ParseArgsTest, SeparateAndInlineValuesSwitchesAndPositionals) {
  std::vector<std::string> args = {"--thread", "t1", "hello", "--json", "world", "--thread=t2"};
  absl::StatusOr<ParsedArgs> parsed = ParseArgs(args, kSpecs);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->Get("thread"), "t2");  // The last one wins.
  EXPECT_TRUE(parsed->Has("json"));
  EXPECT_EQ(parsed->Get("json"), "");
  EXPECT_FALSE(parsed->Has("help"));
  EXPECT_EQ(parsed->positionals, (std::vector<std::string>{"hello", "world"}));
}

TEST(ParseArgsTest, DoubleDashEndsFlagsAndDashIsPositional) {
  std::vector<std::string> args = {"-", "--", "--json", "-x"};
  absl::StatusOr<ParsedArgs> parsed = ParseArgs(args, kSpecs);
  ASSERT_TRUE(parsed.ok());
  EXPECT_FALSE(parsed->Has("json"));
  EXPECT_EQ(parsed->positionals, (std::vector<std::string>{"-", "--json", "-x"}));
}

TEST(ParseArgsTest, ShortHelpAlias) {
  std::vector<std::string> args = {"-h"};
  absl::StatusOr<ParsedArgs> parsed = ParseArgs(args, kSpecs);
  ASSERT_TRUE(parsed.ok());
  EXPECT_TRUE(parsed->Has("help"));
}

TEST(ParseArgsTest, StopAtPositionalLeavesTheRestUnparsed) {
  std::vector<std::string> args = {"--json", "thread", "create", "--unknown"};
  absl::StatusOr<ParsedArgs> parsed = ParseArgs(args, kSpecs, /*stop_at_positional=*/true);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(parsed->Has("json"));
  EXPECT_EQ(parsed->positionals, (std::vector<std::string>{"thread", "create", "--unknown"}));
}

struct ErrorRow {
  std::string name;
  std::vector<std::string> args;
  std::string message;
};

class ParseArgsErrorTest : public ::testing::TestWithParam<ErrorRow> {};

TEST_P(ParseArgsErrorTest, FailsNamingTheFlag) {
  absl::StatusOr<ParsedArgs> parsed = ParseArgs(GetParam().args, kSpecs);
  EXPECT_EQ(parsed.status(), absl::InvalidArgumentError(GetParam().message));
}

INSTANTIATE_TEST_SUITE_P(
    Rows, ParseArgsErrorTest,
    ::testing::Values(ErrorRow{"UnknownFlag", {"--bogus"}, "unknown flag --bogus"},
                      ErrorRow{"UnknownFlagWithValue", {"--bogus=1"}, "unknown flag --bogus"},
                      ErrorRow{"SingleDash", {"-x"}, "unknown flag -x"},
                      ErrorRow{"MissingValue", {"--thread"}, "flag --thread needs a value"},
                      ErrorRow{"SwitchWithValue", {"--json=yes"}, "flag --json takes no value"}),
    [](const ::testing::TestParamInfo<ErrorRow>& info) { return info.param.name; });

}  // namespace
}  // namespace copilot::client::cli
