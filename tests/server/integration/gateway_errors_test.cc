// DESIGN.md's error table, row by row, through the real binaries: each upstream failure the
// emulator can produce, and the status code, ErrorInfo reason, http_status metadata and extra
// details the caller gets.
#include <string>

#include "gmock/gmock.h"
#include "tests/server/integration/integration_fixture.h"

namespace copilot::gateway::testing {
namespace {

namespace v1 = ::copilot::v1;

struct Row {
  std::string name;
  nlohmann::json fault;  // Installed on the `run` route.
  grpc::StatusCode code;
  std::string reason;
  std::string http_status;  // Expected ErrorInfo metadata; "" when there was no HTTP status.
};

void PrintTo(const Row& row, std::ostream* os) { *os << row.name; }

class GatewayErrorTableTest : public GatewayIntegrationTest,
                              public ::testing::WithParamInterface<Row> {};

nlohmann::json StatusFault(int status, const std::string& error_code,
                           const std::string& shape = "standard") {
  nlohmann::json fault = {{"endpoint", "run"},
                          {"type", "status"},
                          {"status", status},
                          {"detail", "emulated failure"},
                          {"shape", shape}};
  if (!error_code.empty()) fault["error_code"] = error_code;
  return fault;
}

TEST_P(GatewayErrorTableTest, RunFailsWithTheMappedStatus) {
  const Row& row = GetParam();
  const std::string thread = ThreadWithQuestion(kHrAssistant, "q?");
  Fault(row.fault);
  v1::RunResponse response;
  grpc::Status status = RunOn(thread, &response);
  EXPECT_EQ(status.error_code(), row.code) << status.error_message();
  EXPECT_EQ(Reason(status), row.reason);
  EXPECT_EQ(HttpStatusOf(status), row.http_status);
  auto info = FindDetail<google::rpc::ErrorInfo>(status);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->domain(), "copilot-gateway");
  EXPECT_EQ(RpcStatus(status).code(), static_cast<int>(row.code));
}

INSTANTIATE_TEST_SUITE_P(
    Rows, GatewayErrorTableTest,
    ::testing::Values(
        Row{"400_content_filter", StatusFault(400, "content_filter_error"),
            grpc::StatusCode::INVALID_ARGUMENT, "content_filter_error", "400"},
        Row{"422_unprocessable", StatusFault(422, "unprocessable_entity"),
            grpc::StatusCode::INVALID_ARGUMENT, "unprocessable_entity", "422"},
        Row{"401_key_rejected", StatusFault(401, "unauthorized"), grpc::StatusCode::INTERNAL,
            "unauthorized", "401"},
        Row{"403_permission", StatusFault(403, "assistant_not_available"),
            grpc::StatusCode::PERMISSION_DENIED, "assistant_not_available", "403"},
        Row{"404_not_found", StatusFault(404, "resource_not_found"), grpc::StatusCode::NOT_FOUND,
            "resource_not_found", "404"},
        Row{"409_conflict", StatusFault(409, "conflict_error"), grpc::StatusCode::ABORTED,
            "conflict_error", "409"},
        Row{"500_api_timeout", StatusFault(500, "api_timeout_error"), grpc::StatusCode::INTERNAL,
            "api_timeout_error", "500"},
        Row{"502_bad_gateway", StatusFault(502, "attachment_document_not_reachable"),
            grpc::StatusCode::UNAVAILABLE, "attachment_document_not_reachable", "502"},
        Row{"503_internal_service", StatusFault(503, "internal_service_error"),
            grpc::StatusCode::UNAVAILABLE, "internal_service_error", "503"},
        Row{"504_gateway_timeout", StatusFault(504, "api_timeout_error"),
            grpc::StatusCode::UNAVAILABLE, "api_timeout_error", "504"},
        Row{"500_message_only_body", StatusFault(500, "", "message_only"),
            grpc::StatusCode::INTERNAL, "UPSTREAM_HTTP_500", "500"},
        Row{"422_fastapi_body_without_error_code", StatusFault(422, "", "fastapi"),
            grpc::StatusCode::INVALID_ARGUMENT, "upstream_validation_error", "422"},
        Row{"500_non_json_body", StatusFault(500, "", "text"), grpc::StatusCode::INTERNAL,
            "upstream_unparseable_body", "500"},
        Row{"503_non_json_body", StatusFault(503, "", "text"), grpc::StatusCode::UNAVAILABLE,
            "upstream_unparseable_body", "503"},
        Row{"200_malformed_json",
            {{"endpoint", "run"}, {"type", "malformed_json"}},
            grpc::StatusCode::INTERNAL,
            "upstream_bad_response",
            "200"},
        Row{"reset_before_headers",
            {{"endpoint", "run"}, {"type", "reset_before_headers"}},
            grpc::StatusCode::UNAVAILABLE,
            "upstream_reset",
            ""},
        // After the first response byte a POST may have been carried out: not "retry".
        Row{"reset_mid_body",
            {{"endpoint", "run"}, {"type", "reset_mid_body"}},
            grpc::StatusCode::INTERNAL,
            "upstream_reset",
            ""},
        Row{"422_request_metadata_missing",
            StatusFault(422, "request_metadata_missing_or_incomplete"),
            grpc::StatusCode::FAILED_PRECONDITION, "request_metadata_missing_or_incomplete", "422"},
        Row{"oversized_body",
            {{"endpoint", "run"}, {"type", "oversized_body"}, {"bytes", 2 * 1024 * 1024}},
            grpc::StatusCode::INTERNAL,
            "upstream_response_too_large",
            ""}),
    [](const ::testing::TestParamInfo<Row>& info) { return info.param.name; });

using GatewayErrorDetailsTest = GatewayIntegrationTest;

TEST_F(GatewayErrorDetailsTest, RateLimitOldShapeCarriesRetryInfoAndQuotaFailure) {
  const std::string thread = ThreadWithQuestion(kHrAssistant, "q?");
  Fault({{"endpoint", "run"}, {"type", "rate_limit"}, {"retry_after", 7}, {"shape", "old"}});
  v1::RunResponse response;
  grpc::Status status = RunOn(thread, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(Reason(status), "rate_limit_gateway");
  EXPECT_EQ(HttpStatusOf(status), "429");
  auto retry = FindDetail<google::rpc::RetryInfo>(status);
  ASSERT_TRUE(retry.has_value());
  EXPECT_EQ(retry->retry_delay().seconds(), 7);
  auto quota = FindDetail<google::rpc::QuotaFailure>(status);
  ASSERT_TRUE(quota.has_value());
  EXPECT_GE(quota->violations_size(), 1);
}

TEST_F(GatewayErrorDetailsTest, RateLimitNewShapeWithoutErrorCode) {
  const std::string thread = ThreadWithQuestion(kHrAssistant, "q?");
  Fault({{"endpoint", "run"}, {"type", "rate_limit"}, {"retry_after", 2}, {"shape", "new"}});
  v1::RunResponse response;
  grpc::Status status = RunOn(thread, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(Reason(status), "UPSTREAM_HTTP_429");
  EXPECT_EQ(status.error_message(), "Rate limit exceeded!");
  auto retry = FindDetail<google::rpc::RetryInfo>(status);
  ASSERT_TRUE(retry.has_value());
  EXPECT_EQ(retry->retry_delay().seconds(), 2);
}

TEST_F(GatewayErrorDetailsTest, UpstreamValidationCustomShapeCarriesBadRequest) {
  const std::string thread = ThreadWithQuestion(kHrAssistant, "q?");
  Fault(StatusFault(422, "validation_error", "custom_validation"));
  v1::RunResponse response;
  grpc::Status status = RunOn(thread, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Reason(status), "validation_error");
  auto bad = FindDetail<google::rpc::BadRequest>(status);
  ASSERT_TRUE(bad.has_value());
  EXPECT_GE(bad->field_violations_size(), 1);
}

TEST_F(GatewayErrorDetailsTest, UpstreamRefusalWithoutFieldsStillCarriesBadRequest) {
  const std::string thread = ThreadWithQuestion(kHrAssistant, "q?");
  Fault(StatusFault(400, "content_filter_error"));
  v1::RunResponse response;
  grpc::Status status = RunOn(thread, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  auto bad = FindDetail<google::rpc::BadRequest>(status);
  ASSERT_TRUE(bad.has_value());
  ASSERT_EQ(bad->field_violations_size(), 1);
  EXPECT_EQ(bad->field_violations(0).field(), "request");
}

TEST_F(GatewayErrorDetailsTest, ResetAfterHeadersOnAReadIsStillRetryable) {
  // GET is idempotent: a cut answer can be asked for again, unlike a Run (see reset_mid_body).
  const std::string thread = ThreadWithQuestion(kHrAssistant, "q?");
  Fault({{"endpoint", "get_thread"}, {"type", "reset_mid_body"}});
  grpc::ClientContext context;
  v1::GetThreadRequest request;
  request.set_thread_id(thread);
  v1::GetThreadResponse response;
  grpc::Status status = stub_->GetThread(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  EXPECT_EQ(Reason(status), "upstream_reset");
}

TEST_F(GatewayErrorDetailsTest, RealNotFoundFromTheUpstreamLooksLikeAForeignHandle) {
  // A correctly signed handle for a thread the upstream does not know: the upstream answers 404.
  v1::RunResponse response;
  grpc::Status upstream = RunOn(SignedHandle("test", kUnknownThread, kHrAssistant), &response);
  ASSERT_EQ(RequestsTo("run").size(), 1u) << "the upstream was asked";
  EXPECT_EQ(upstream.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Reason(upstream), "thread_not_found");
  EXPECT_EQ(HttpStatusOf(upstream), "404");
  // A handle that is not this caller's is refused without asking: the caller cannot tell.
  grpc::Status foreign = RunOn(SignedHandle("other", kUnknownThread, kHrAssistant), &response);
  EXPECT_EQ(RequestsTo("run").size(), 1u);
  EXPECT_EQ(foreign.error_code(), upstream.error_code());
  EXPECT_EQ(foreign.error_message(), upstream.error_message());
  EXPECT_EQ(RpcStatus(foreign).SerializeAsString(), RpcStatus(upstream).SerializeAsString());
}

TEST_F(GatewayErrorDetailsTest, WrongApiKeyIsInternalNotTheCallersFault) {
  GatewayProcessOptions options = DefaultGatewayOptions(UpstreamUrl());
  options.api_key = "not-the-key";
  auto gateway = GatewayProcess::Start(options);
  ASSERT_TRUE(gateway.ok()) << gateway.status();
  auto stub = v1::CopilotService::NewStub((*gateway)->channel());
  grpc::ClientContext context;
  v1::ListAssistantsResponse response;
  grpc::Status status = stub->ListAssistants(&context, {}, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_EQ(Reason(status), "unauthorized");
  EXPECT_EQ(HttpStatusOf(status), "401");
  stub.reset();  // An idle client connection would hold shutdown for the whole grace period.
  EXPECT_EQ((*gateway)->Stop().value_or(-1), 0);
}

TEST_F(GatewayErrorDetailsTest, ConnectionRefusedIsUnavailable) {
  // A port that was just free: nothing listens there.
  auto closed = emulator::testing::EmulatorProcess::Start();
  ASSERT_TRUE(closed.ok());
  const std::string url = (*closed)->base_url() + "/agents";
  closed->reset();
  auto gateway = GatewayProcess::Start(DefaultGatewayOptions(url));
  ASSERT_TRUE(gateway.ok()) << gateway.status();
  auto stub = v1::CopilotService::NewStub((*gateway)->channel());
  grpc::ClientContext context;
  SetTimeout(context, absl::Seconds(10));
  v1::ListAssistantsResponse response;
  grpc::Status status = stub->ListAssistants(&context, {}, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  EXPECT_EQ(Reason(status), "upstream_unreachable");
  stub.reset();  // An idle client connection would hold shutdown for the whole grace period.
  EXPECT_EQ((*gateway)->Stop().value_or(-1), 0);
}

}  // namespace
}  // namespace copilot::gateway::testing
