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
  EXPECT_FALSE(o->rate_limits.enforced);  // rate limits are off unless asked for
}

TEST(EmulatorOptionsTest, RateLimitFlags) {
  const std::vector<std::string> base = {"--listen", "127.0.0.1:0", "--api-key", "k"};
  auto parse = [&base](std::vector<std::string> extra) {
    std::vector<std::string> args = base;
    args.insert(args.end(), extra.begin(), extra.end());
    return ParseCommandLine(args);
  };
  absl::StatusOr<EmulatorOptions> tier0 = parse({"--rate-limits", "tier0"});
  ASSERT_TRUE(tier0.ok()) << tier0.status();
  EXPECT_TRUE(tier0->rate_limits.enforced);
  EXPECT_EQ(tier0->rate_limits.answer, (WindowLimits{15, 60}));
  EXPECT_EQ(tier0->rate_limits.other, (WindowLimits{60, 180}));

  // Any limit turns enforcement on; the others keep their tier-0 values.
  absl::StatusOr<EmulatorOptions> custom = parse({"--answer-rps", "5", "--answer-rpm=8"});
  ASSERT_TRUE(custom.ok()) << custom.status();
  EXPECT_TRUE(custom->rate_limits.enforced);
  EXPECT_EQ(custom->rate_limits.answer, (WindowLimits{5, 8}));
  EXPECT_EQ(custom->rate_limits.other, (WindowLimits{60, 180}));
  absl::StatusOr<EmulatorOptions> other = parse({"--other-rps", "2", "--other-rpm", "3"});
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_EQ(other->rate_limits.answer, (WindowLimits{15, 60}));
  EXPECT_EQ(other->rate_limits.other, (WindowLimits{2, 3}));
  // Limits given before --rate-limits tier0 still win.
  absl::StatusOr<EmulatorOptions> ordered = parse({"--answer-rps", "4", "--rate-limits", "tier0"});
  ASSERT_TRUE(ordered.ok());
  EXPECT_EQ(ordered->rate_limits.answer, (WindowLimits{4, 60}));

  EXPECT_FALSE(parse({"--rate-limits", "off"})->rate_limits.enforced);
  struct Bad {
    std::vector<std::string> extra;
    const char* flag;
  };
  for (const Bad& bad :
       std::vector<Bad>{{{"--rate-limits", "tier1"}, "--rate-limits"},
                        {{"--answer-rps", "0"}, "--answer-rps"},
                        {{"--answer-rpm", "x"}, "--answer-rpm"},
                        {{"--other-rps", "-3"}, "--other-rps"},
                        {{"--other-rpm", "1000001"}, "--other-rpm"},
                        {{"--rate-limits", "off", "--answer-rps", "5"}, "--rate-limits"}}) {
    absl::StatusOr<EmulatorOptions> o = parse(bad.extra);
    ASSERT_FALSE(o.ok()) << bad.flag;
    EXPECT_NE(o.status().message().find(bad.flag), absl::string_view::npos) << o.status();
  }
}

TEST(EmulatorOptionsTest, TlsListenerAndKeepAliveTimeout) {
  absl::StatusOr<EmulatorOptions> o = ParseCommandLine(
      {"--listen", "127.0.0.1:0", "--api-key", "k", "--tls-listen", "127.0.0.1:8443", "--tls-cert",
       "/c.pem", "--tls-key=/c.key", "--keep-alive-timeout-ms", "1500"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->tls_listen_host, "127.0.0.1");
  EXPECT_EQ(o->tls_listen_port, 8443);
  EXPECT_EQ(o->tls_cert_file, "/c.pem");
  EXPECT_EQ(o->tls_key_file, "/c.key");
  EXPECT_EQ(o->keep_alive_timeout_ms, 1500);
  o = ParseCommandLine({"--listen", "127.0.0.1:0", "--api-key", "k"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->tls_listen_port, -1);
  EXPECT_EQ(o->keep_alive_timeout_ms, 0);
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
      {{"--listen", "127.0.0.1:0", "--api-key", "k", "--tls-listen", "127.0.0.1:0"},
       "--tls-listen"},
      {{"--listen", "127.0.0.1:0", "--api-key", "k", "--tls-cert", "c", "--tls-key", "k"},
       "--tls-cert"},
      {{"--listen", "127.0.0.1:0", "--api-key", "k", "--keep-alive-timeout-ms", "-5"},
       "--keep-alive-timeout-ms"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<EmulatorOptions> o = ParseCommandLine(c.args);
    ASSERT_FALSE(o.ok()) << c.flag;
    EXPECT_NE(o.status().message().find(c.flag), absl::string_view::npos) << o.status();
  }
}

}  // namespace
}  // namespace copilot::emulator
