#include "client/cli/output.h"

#include <sstream>
#include <string>
#include <vector>

#include "client/error_details.h"
#include "google/rpc/error_details.pb.h"
#include "grpcpp/support/status.h"
#include "gtest/gtest.h"
#include "tests/client/fake_copilot_service.h"

namespace copilot::client::cli {
namespace {

using ::copilot::client::testing::MakeStatus;

v1::Source WithMeta(const std::string& content,
                    const std::vector<std::pair<std::string, std::string>>& meta) {
  v1::Source source;
  source.set_content(content);
  for (const auto& [key, value] : meta) {
    (*source.mutable_meta_data()->mutable_fields())[key].set_string_value(value);
  }
  return source;
}

TEST(PrintSourcesTest, TitleSectionAndExcerptFallbacks) {
  std::ostringstream out;
  PrintSources(out, {WithMeta("x", {{"document_title", "EStG § 9"}, {"section", "Abs. 1"}}),
                     WithMeta("x", {{"title", "Lohnsteuer-Richtlinien"}}),
                     WithMeta("Erste Zeile\nzweite Zeile", {}),
                     // 81 bytes on one line: cut to 77 and "...".
                     WithMeta(std::string(80, 'a') + "b", {})});
  EXPECT_EQ(out.str(),
            "Sources:\n"
            "  [1] EStG § 9 (Abs. 1)\n"
            "  [2] Lohnsteuer-Richtlinien\n"
            "  [3] Erste Zeile\n"
            "  [4] " +
                std::string(77, 'a') + "...\n");
}

TEST(PrintSourcesTest, ExcerptDoesNotSplitAUtf8Character) {
  std::string umlauts;
  for (int i = 0; i < 50; ++i) umlauts += "\xC3\xA4";  // "ä", 100 bytes.
  std::ostringstream out;
  PrintSources(out, {WithMeta(umlauts, {})});
  // 77 bytes would end inside a character; the cut backs off to 76.
  EXPECT_EQ(out.str(), "Sources:\n  [1] " + umlauts.substr(0, 76) + "...\n");
}

TEST(PrintSourcesTest, NothingWhenEmpty) {
  std::ostringstream out;
  PrintSources(out, {});
  EXPECT_EQ(out.str(), "");
}

TEST(PrintErrorTest, HumanAndJsonForALocalError) {
  std::ostringstream human;
  PrintError(human, absl::InvalidArgumentError("bad"), /*json=*/false);
  EXPECT_EQ(human.str(), "error: INVALID_ARGUMENT: bad\n");
  std::ostringstream json;
  PrintError(json, absl::InvalidArgumentError("say \"hi\""), /*json=*/true);
  EXPECT_EQ(
      json.str(),
      R"({"error":{"code":3,"status":"INVALID_ARGUMENT","message":"say \"hi\"","details":[]}})"
      "\n");
}

TEST(PrintErrorTest, JsonLeavesOutDetailsOfUnknownTypes) {
  google::rpc::RetryInfo retry;
  retry.mutable_retry_delay()->set_seconds(2);
  grpc::Status status = MakeStatus(grpc::StatusCode::UNAVAILABLE, "down", retry);
  google::rpc::Status rpc;
  ASSERT_TRUE(rpc.ParseFromString(status.error_details()));
  google::protobuf::Any* unknown = rpc.add_details();
  unknown->set_type_url("type.googleapis.com/example.NotLinkedIn");
  unknown->set_value("\x08\x01");
  std::ostringstream json;
  PrintError(json,
             FromGrpcStatus(grpc::Status(status.error_code(), status.error_message(),
                                         rpc.SerializeAsString())),
             /*json=*/true);
  EXPECT_EQ(json.str(),
            R"({"error":{"code":14,"status":"UNAVAILABLE","message":"down","details":[)"
            R"({"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"2s"}]}})"
            "\n");
}

TEST(StreamPrinterTest, SourcesOnlyAnswerHasNoBlankLine) {
  std::ostringstream out;
  StreamPrinter printer(out, /*json=*/false);
  v1::MessageChunk chunk;
  chunk.set_thread_id("t1");
  *chunk.mutable_delta()->add_sources() = WithMeta("x", {{"document_title", "EStG"}});
  printer.OnChunk(chunk);
  printer.Finish();
  EXPECT_EQ(out.str(), "Sources:\n  [1] EStG\n");
  EXPECT_EQ(printer.thread_id(), "t1");
}

TEST(PrintMessagesTest, ToolCallsAndNoPageToken) {
  v1::ListMessagesResponse response;
  v1::Message* m = response.add_messages();
  m->set_id("m3");
  m->set_role(v1::ROLE_ASSISTANT);
  v1::ToolCall* call = m->add_tool_calls();
  call->set_id("call-1");
  call->mutable_function()->set_name("lookup");
  call->mutable_function()->set_arguments("{}");
  std::ostringstream out;
  PrintMessages(out, response);
  EXPECT_EQ(out.str(),
            "assistant m3\n"
            "  tool call call-1: lookup {}\n");
}

}  // namespace
}  // namespace copilot::client::cli
