#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/emulator/emulator_options.h"

namespace copilot::emulator {
namespace {

TEST(EmulatorOptionsTest, ParsesEveryFlag) {
  absl::StatusOr<EmulatorOptions> o = ParseCommandLine(
      {"--listen", "127.0.0.1:0", "--api-key", "k", "--error-shape", "new", "--stream-delay-ms",
       "5", "--response-delay-ms=7", "--fault", R"({"endpoint":"run","type":"stall"})",
       "--max-record", "3", "--seed", "42"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->listen_host, "127.0.0.1");
  EXPECT_EQ(o->listen_port, 0);
  EXPECT_EQ(o->api_keys, std::vector<std::string>{"k"});
  EXPECT_EQ(o->error_shape, ErrorShape::kNew);
  EXPECT_EQ(o->stream_delay_ms, 5);
  EXPECT_EQ(o->response_delay_ms, 7);
  ASSERT_EQ(o->faults.size(), 1u);
  EXPECT_EQ(o->faults[0].type, FaultType::kStall);
  EXPECT_EQ(o->max_record, 3u);
  EXPECT_EQ(o->seed, 42u);
}

TEST(EmulatorOptionsTest, ApiKeyRepeatsAndKeepsEveryValue) {
  absl::StatusOr<EmulatorOptions> o = ParseCommandLine(
      {"--api-key", "tenant-a-key", "--listen", "127.0.0.1:0", "--api-key=tenant-b-key"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->api_keys, (std::vector<std::string>{"tenant-a-key", "tenant-b-key"}));
  absl::StatusOr<EmulatorOptions> empty =
      ParseCommandLine({"--listen", "127.0.0.1:0", "--api-key", "k", "--api-key="});
  EXPECT_EQ(empty.status(), absl::InvalidArgumentError("--api-key: must not be empty"));
}

TEST(EmulatorOptionsTest, DefaultsFollowTheSpec) {
  absl::StatusOr<EmulatorOptions> o =
      ParseCommandLine({"--listen", "0.0.0.0:8080", "--api-key", "k"});
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->error_shape, ErrorShape::kOld);
  EXPECT_EQ(o->stream_delay_ms, 20);
  EXPECT_EQ(o->response_delay_ms, 0);
  EXPECT_EQ(o->max_record, 10000u);
  EXPECT_FALSE(o->seed.has_value());
  EXPECT_EQ(o->listen_port, 8080);
}

TEST(EmulatorOptionsTest, ErrorsNameTheFlag) {
  struct Case {
    std::vector<std::string> args;
    const char* flag;
  };
  const std::vector<Case> cases = {
      {{"--api-key", "k"}, "--listen"},
      {{"--listen", "127.0.0.1:0"}, "--api-key"},
      {{"--listen", "nocolon", "--api-key", "k"}, "--listen"},
      {{"--listen", "127.0.0.1:70000", "--api-key", "k"}, "--listen"},
      {{"--listen", "127.0.0.1:0", "--api-key", "k", "--error-shape", "x"}, "--error-shape"},
      {{"--listen", "127.0.0.1:0", "--api-key", "k", "--stream-delay-ms", "-1"},
       "--stream-delay-ms"},
      {{"--listen", "127.0.0.1:0", "--api-key", "k", "--fault", "{}"}, "--fault"},
      {{"--listen", "127.0.0.1:0", "--api-key", "k", "--bogus", "1"}, "--bogus"},
      {{"--listen", "127.0.0.1:0", "--api-key"}, "--api-key"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<EmulatorOptions> o = ParseCommandLine(c.args);
    ASSERT_FALSE(o.ok()) << c.flag;
    EXPECT_NE(o.status().message().find(c.flag), absl::string_view::npos) << o.status();
  }
}

}  // namespace
}  // namespace copilot::emulator
