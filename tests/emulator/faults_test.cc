#include "tests/emulator/faults.h"

#include <string>

#include "gtest/gtest.h"

namespace copilot::emulator {
namespace {

TEST(FaultRuleTest, ParsesEachType) {
  struct Case {
    const char* json;
    FaultType type;
  };
  const Case cases[] = {
      {R"({"endpoint":"run","type":"latency","delay_ms":50})", FaultType::kLatency},
      {R"({"endpoint":"run","type":"status","status":503})", FaultType::kStatus},
      {R"({"endpoint":"*","type":"rate_limit","retry_after":3,"shape":"new"})",
       FaultType::kRateLimit},
      {R"({"endpoint":"run","type":"reset_before_headers"})", FaultType::kResetBeforeHeaders},
      {R"({"endpoint":"run","type":"reset_mid_body","after_bytes":10})", FaultType::kResetMidBody},
      {R"({"endpoint":"run","type":"stall"})", FaultType::kStall},
      {R"({"endpoint":"run","type":"malformed_json"})", FaultType::kMalformedJson},
      {R"({"endpoint":"run_stream","type":"truncated_ndjson","lines":1})",
       FaultType::kTruncatedNdjson},
      {R"({"endpoint":"run_stream","type":"mid_stream_error","error_code":"x"})",
       FaultType::kMidStreamError},
      {R"({"endpoint":"run","type":"oversized_body","bytes":1000})", FaultType::kOversizedBody},
  };
  for (const Case& c : cases) {
    absl::StatusOr<FaultRule> rule = ParseFaultRule(c.json);
    ASSERT_TRUE(rule.ok()) << c.json << ": " << rule.status();
    EXPECT_EQ(rule->type, c.type) << c.json;
  }
  absl::StatusOr<FaultRule> status = ParseFaultRule(
      R"({"endpoint":"run","times":2,"type":"status","status":503,"error_code":"internal_service_error","detail":"down","shape":"message_only"})");
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->times, 2);
  EXPECT_EQ(status->status, 503);
  EXPECT_EQ(status->error_code, "internal_service_error");
  EXPECT_EQ(status->detail, "down");
  EXPECT_EQ(status->shape, "message_only");
  absl::StatusOr<FaultRule> truncated =
      ParseFaultRule(R"({"endpoint":"run_stream","type":"truncated_ndjson"})");
  ASSERT_TRUE(truncated.ok());
  EXPECT_EQ(truncated->lines, 2);
}

TEST(FaultRuleTest, RejectsBadRulesNamingTheField) {
  struct Case {
    const char* json;
    const char* field;
  };
  const Case cases[] = {
      {R"({"type":"stall"})", "endpoint"},
      {R"({"endpoint":"files","type":"stall"})", "endpoint"},
      {R"({"endpoint":"run","type":"explode"})", "type"},
      {R"({"endpoint":"run","type":"latency"})", "delay_ms"},
      {R"({"endpoint":"run","type":"latency","delay_ms":-1})", "delay_ms"},
      {R"({"endpoint":"run","type":"status"})", "status"},
      {R"({"endpoint":"run","type":"status","status":700})", "status"},
      {R"({"endpoint":"run","type":"status","status":500,"shape":"weird"})", "shape"},
      {R"({"endpoint":"run","type":"rate_limit","shape":"weird"})", "shape"},
      {R"({"endpoint":"run","type":"oversized_body"})", "bytes"},
      {R"({"endpoint":"run","type":"stall","times":"x"})", "times"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<FaultRule> rule = ParseFaultRule(c.json);
    ASSERT_FALSE(rule.ok()) << c.json;
    EXPECT_EQ(rule.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(rule.status().message().find(c.field), std::string::npos)
        << c.json << ": " << rule.status();
  }
  EXPECT_FALSE(ParseFaultRule("not json").ok());
  EXPECT_FALSE(ParseFaultRule("[1]").ok());
}

TEST(FaultTableTest, FirstMatchWinsAndTimesRunOut) {
  FaultTable table;
  FaultRule run_once = *ParseFaultRule(R"({"endpoint":"run","times":1,"type":"stall"})");
  FaultRule any = *ParseFaultRule(R"({"endpoint":"*","type":"latency","delay_ms":5})");
  EXPECT_EQ(table.Add(run_once), 1);
  EXPECT_EQ(table.Add(any), 2);
  std::optional<FaultRule> first = table.Take("run");
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->type, FaultType::kStall);
  std::optional<FaultRule> second = table.Take("run");
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->type, FaultType::kLatency);
  EXPECT_EQ(table.Take("list_threads")->id, 2);
  EXPECT_EQ(table.size(), 1u);
  EXPECT_EQ(table.ToJson()[0]["hits"], 2);
  table.Clear();
  EXPECT_FALSE(table.Take("run").has_value());
}

}  // namespace
}  // namespace copilot::emulator
