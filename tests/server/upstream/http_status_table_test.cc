#include "server/upstream/http_status_table.h"

#include <string>

#include "absl/strings/match.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "server/common/errors.h"

namespace copilot::gateway {
namespace {

const absl::Time kNow = absl::FromUnixSeconds(1700000000);

absl::Status Map(int http_status, absl::string_view body, absl::string_view retry_after = "") {
  return StatusFromHttpError(http_status, body, retry_after, kNow);
}

std::string Reason(const absl::Status& status) {
  auto info = GetErrorInfo(status);
  return info.has_value() ? info->reason() : "<no ErrorInfo>";
}

std::string HttpStatus(const absl::Status& status) {
  auto info = GetErrorInfo(status);
  if (!info.has_value()) return "<no ErrorInfo>";
  auto it = info->metadata().find("http_status");
  return it == info->metadata().end() ? "<none>" : it->second;
}

std::string Standard(absl::string_view code, absl::string_view detail) {
  return "{\"error_code\":\"" + std::string(code) + "\",\"detail\":\"" + std::string(detail) +
         "\"}";
}

// One row of haufe-api.md section 8: an error_code at its documented (or inferred) status.
struct Row {
  int http_status;
  const char* error_code;
  absl::StatusCode code;
};

class DocumentedErrorCodeTest : public testing::TestWithParam<Row> {};

TEST_P(DocumentedErrorCodeTest, MapsToCodeWithReasonAndStatus) {
  const Row& row = GetParam();
  absl::Status status = Map(row.http_status, Standard(row.error_code, "Something happened"));
  EXPECT_EQ(status.code(), row.code) << row.error_code << " " << row.http_status;
  EXPECT_EQ(Reason(status), row.error_code);
  EXPECT_EQ(HttpStatus(status), std::to_string(row.http_status));
  EXPECT_EQ(GetErrorInfo(status)->domain(), "copilot-gateway");
  if (row.http_status != 401) {
    // The message is the upstream's detail (after the gateway's explanation, for the one code
    // that is the gateway's own configuration).
    EXPECT_TRUE(absl::EndsWith(status.message(), "Something happened")) << status.message();
  }
}

using C = absl::StatusCode;
INSTANTIATE_TEST_SUITE_P(
    Section8, DocumentedErrorCodeTest,
    testing::Values(
        Row{400, "content_filter_error", C::kInvalidArgument},
        Row{400, "bad_request", C::kInvalidArgument},
        Row{400, "length_finish_reason_error", C::kInvalidArgument},
        Row{400, "incorrect_stack_ending", C::kInvalidArgument},
        Row{422, "incorrect_stack_ending", C::kInvalidArgument},
        Row{400, "tool_message_has_no_matching_tool_call", C::kInvalidArgument},
        Row{422, "tool_message_has_no_matching_tool_call", C::kInvalidArgument},
        Row{400, "thread_is_deactivated", C::kFailedPrecondition},
        Row{400, "attachment_document_raised_an_error", C::kInvalidArgument},
        Row{401, "unauthorized", C::kInternal}, Row{403, "permission_denied", C::kPermissionDenied},
        Row{403, "assistant_not_available", C::kPermissionDenied},
        Row{403, "attachment_access_forbidden", C::kPermissionDenied},
        Row{404, "assistant_not_found", C::kNotFound}, Row{404, "thread_not_found", C::kNotFound},
        Row{404, "message_not_found", C::kNotFound}, Row{404, "resource_not_found", C::kNotFound},
        Row{404, "tenant_not_found", C::kNotFound},
        Row{404, "attachment_document_does_not_exist", C::kNotFound},
        Row{409, "conflict_error", C::kAborted}, Row{409, "conflict", C::kAborted},
        Row{422, "unprocessable_entity", C::kInvalidArgument},
        Row{422, "request_metadata_missing_or_incomplete", C::kFailedPrecondition},
        Row{422, "message_content_empty", C::kInvalidArgument},
        Row{422, "attachment_not_unique", C::kInvalidArgument},
        Row{422, "attachment_url_invalid", C::kInvalidArgument},
        Row{405, "engine_does_not_support_streaming", C::kFailedPrecondition},
        Row{422, "engine_does_not_support_streaming", C::kFailedPrecondition},
        Row{428, "engine_does_not_support_streaming", C::kFailedPrecondition},
        Row{429, "rate_limit_gateway", C::kResourceExhausted},
        Row{429, "rate_limit_error", C::kResourceExhausted},
        Row{500, "api_timeout_error", C::kInternal}, Row{500, "api_connection_error", C::kInternal},
        Row{500, "api_error", C::kInternal}, Row{500, "internal_server_error", C::kInternal},
        Row{503, "internal_service_error", C::kUnavailable},
        Row{502, "attachment_document_not_reachable", C::kUnavailable},
        Row{503, "attachment_document_not_reachable", C::kUnavailable},
        Row{504, "attachment_document_not_reachable", C::kUnavailable}));

// Statuses without a body: the code comes from the status line alone.
struct StatusRow {
  int http_status;
  absl::StatusCode code;
};

class HttpStatusRowTest : public testing::TestWithParam<StatusRow> {};

TEST_P(HttpStatusRowTest, EmptyBodyMapsByStatusWithOurReason) {
  const StatusRow& row = GetParam();
  absl::Status status = Map(row.http_status, "");
  EXPECT_EQ(status.code(), row.code) << row.http_status;
  EXPECT_EQ(Reason(status), "UPSTREAM_HTTP_" + std::to_string(row.http_status));
  EXPECT_EQ(HttpStatus(status), std::to_string(row.http_status));
  EXPECT_FALSE(status.message().empty());
}

INSTANTIATE_TEST_SUITE_P(
    Table, HttpStatusRowTest,
    testing::Values(StatusRow{400, C::kInvalidArgument}, StatusRow{401, C::kInternal},
                    StatusRow{402, C::kFailedPrecondition}, StatusRow{403, C::kPermissionDenied},
                    StatusRow{404, C::kNotFound}, StatusRow{405, C::kFailedPrecondition},
                    StatusRow{408, C::kFailedPrecondition}, StatusRow{409, C::kAborted},
                    StatusRow{410, C::kFailedPrecondition}, StatusRow{413, C::kFailedPrecondition},
                    StatusRow{422, C::kInvalidArgument}, StatusRow{429, C::kResourceExhausted},
                    StatusRow{500, C::kInternal}, StatusRow{501, C::kInternal},
                    StatusRow{502, C::kUnavailable}, StatusRow{503, C::kUnavailable},
                    StatusRow{504, C::kUnavailable}, StatusRow{505, C::kInternal},
                    StatusRow{599, C::kInternal}, StatusRow{302, C::kInternal},
                    StatusRow{200, C::kInternal}));

TEST(HttpStatusTableTest, WhitespaceOnlyBodyCountsAsEmpty) {
  absl::Status status = Map(404, " \r\n");
  EXPECT_EQ(status.code(), C::kNotFound);
  EXPECT_EQ(Reason(status), "UPSTREAM_HTTP_404");
  EXPECT_EQ(status.message(), "the upstream answered HTTP 404");
}

TEST(HttpStatusTableTest, CustomValidationShapeGivesFieldViolations) {
  absl::Status status = Map(
      422, R"({"error_code":"validation_error","detail":[)"
           R"({"loc":["body","assistant_id"],"message":"Field required","type":"missing"},)"
           R"({"loc":["body","messages",0,"content"],"message":"String too long","type":"x"}]})");
  EXPECT_EQ(status.code(), C::kInvalidArgument);
  EXPECT_EQ(Reason(status), "validation_error");
  EXPECT_EQ(HttpStatus(status), "422");
  EXPECT_EQ(status.message(),
            "the upstream rejected the request as invalid: assistant_id: Field required (and 1 "
            "more)");
  auto bad = GetBadRequest(status);
  ASSERT_TRUE(bad.has_value());
  ASSERT_EQ(bad->field_violations_size(), 2);
  EXPECT_EQ(bad->field_violations(0).field(), "assistant_id");
  EXPECT_EQ(bad->field_violations(0).description(), "Field required");
  EXPECT_EQ(bad->field_violations(1).field(), "messages.0.content");
  EXPECT_EQ(bad->field_violations(1).description(), "String too long");
}

TEST(HttpStatusTableTest, FastApiValidationShapeWithoutErrorCode) {
  absl::Status status =
      Map(422, R"({"detail":[{"loc":["path","assistant_id"],"msg":"value is not a valid uuid",)"
               R"("type":"type_error.uuid"},{"loc":["query","limit"],"msg":"bad limit"}]})");
  EXPECT_EQ(status.code(), C::kInvalidArgument);
  EXPECT_EQ(Reason(status), "upstream_validation_error");
  EXPECT_EQ(HttpStatus(status), "422");
  auto bad = GetBadRequest(status);
  ASSERT_TRUE(bad.has_value());
  ASSERT_EQ(bad->field_violations_size(), 2);
  EXPECT_EQ(bad->field_violations(0).field(), "assistant_id");
  EXPECT_EQ(bad->field_violations(0).description(), "value is not a valid uuid");
  EXPECT_EQ(bad->field_violations(1).field(), "limit");
  EXPECT_EQ(bad->field_violations(1).description(), "bad limit");
}

TEST(HttpStatusTableTest, ValidationItemsOfOddShapesAreTolerated) {
  absl::Status status =
      Map(400, R"({"detail":[{"loc":"title"},{"loc":["body"],"msg":"Body missing"},7,null]})");
  EXPECT_EQ(status.code(), C::kInvalidArgument);
  auto bad = GetBadRequest(status);
  ASSERT_TRUE(bad.has_value());
  ASSERT_EQ(bad->field_violations_size(), 2);
  EXPECT_EQ(bad->field_violations(0).field(), "title");
  EXPECT_EQ(bad->field_violations(0).description(), "invalid value");
  EXPECT_EQ(bad->field_violations(1).field(), "");
  EXPECT_EQ(bad->field_violations(1).description(), "Body missing");
}

TEST(HttpStatusTableTest, Unauthorized401NeverEchoesUpstreamText) {
  absl::Status status = Map(401, Standard("unauthorized", "Missing or invalid API key sk-123"));
  EXPECT_EQ(status.code(), C::kInternal);
  EXPECT_EQ(Reason(status), "unauthorized");
  EXPECT_EQ(status.message().find("sk-123"), absl::string_view::npos);
  EXPECT_NE(status.message().find("API key"), absl::string_view::npos);
  EXPECT_NE(status.message().find("not the caller"), absl::string_view::npos);
}

TEST(HttpStatusTableTest, RateLimitOldShapeWithDeltaSeconds) {
  absl::Status status = Map(429, Standard("rate_limit_gateway", "Rate limit exceeded"), "7");
  EXPECT_EQ(status.code(), C::kResourceExhausted);
  EXPECT_EQ(Reason(status), "rate_limit_gateway");
  EXPECT_EQ(status.message(), "Rate limit exceeded");
  auto retry = GetRetryInfo(status);
  ASSERT_TRUE(retry.has_value());
  EXPECT_EQ(retry->retry_delay().seconds(), 7);
  auto quota = GetQuotaFailure(status);
  ASSERT_TRUE(quota.has_value());
  ASSERT_EQ(quota->violations_size(), 1);
  EXPECT_EQ(quota->violations(0).subject(), "upstream");
  EXPECT_EQ(quota->violations(0).description(), "upstream API gateway rate limit exceeded");
}

TEST(HttpStatusTableTest, RateLimitNewShapeMessageOnlyDefaultsRetryToOneSecond) {
  absl::Status status = Map(429, R"({"message":"Rate limit exceeded!"})");
  EXPECT_EQ(status.code(), C::kResourceExhausted);
  EXPECT_EQ(Reason(status), "UPSTREAM_HTTP_429");
  EXPECT_EQ(status.message(), "Rate limit exceeded!");
  auto retry = GetRetryInfo(status);
  ASSERT_TRUE(retry.has_value());
  EXPECT_EQ(retry->retry_delay().seconds(), 1);
  EXPECT_EQ(retry->retry_delay().nanos(), 0);
  ASSERT_TRUE(GetQuotaFailure(status).has_value());
  EXPECT_EQ(GetQuotaFailure(status)->violations(0).description(), "upstream rate limit exceeded");
}

TEST(HttpStatusTableTest, RateLimitErrorCodeFromModelProvider) {
  absl::Status status = Map(429, Standard("rate_limit_error", "LLM busy"));
  EXPECT_EQ(GetQuotaFailure(status)->violations(0).description(),
            "upstream model provider rate limit exceeded");
}

TEST(HttpStatusTableTest, RateLimitWithHttpDateRetryAfter) {
  // kNow is 2023-11-14T22:13:20Z.
  absl::Status status = Map(429, "", "Tue, 14 Nov 2023 22:13:50 GMT");
  EXPECT_EQ(GetRetryInfo(status)->retry_delay().seconds(), 30);
}

TEST(HttpStatusTableTest, RateLimitTextBodyStaysResourceExhausted) {
  absl::Status status = Map(429, "Too Many Requests", "2");
  EXPECT_EQ(status.code(), C::kResourceExhausted);
  EXPECT_EQ(Reason(status), "upstream_unparseable_body");
  EXPECT_EQ(GetRetryInfo(status)->retry_delay().seconds(), 2);
}

TEST(HttpStatusTableTest, RetryAfterForms) {
  EXPECT_EQ(ParseRetryAfter("", kNow), absl::Seconds(1));
  EXPECT_EQ(ParseRetryAfter("0", kNow), absl::ZeroDuration());
  EXPECT_EQ(ParseRetryAfter(" 120 ", kNow), absl::Seconds(120));
  EXPECT_EQ(ParseRetryAfter("-3", kNow), absl::Seconds(1));
  EXPECT_EQ(ParseRetryAfter("soon", kNow), absl::Seconds(1));
  EXPECT_EQ(ParseRetryAfter("99999999999999999999999", kNow), absl::Seconds(1));
  EXPECT_EQ(ParseRetryAfter("Tue, 14 Nov 2023 22:14:20 GMT", kNow), absl::Seconds(60));
  EXPECT_EQ(ParseRetryAfter("Tuesday, 14-Nov-23 22:13:30 GMT", kNow), absl::Seconds(10));
  EXPECT_EQ(ParseRetryAfter("Tue Nov 14 22:13:25 2023", kNow), absl::Seconds(5));
  // A date in the past: retry now.
  EXPECT_EQ(ParseRetryAfter("Tue, 14 Nov 2023 22:00:00 GMT", kNow), absl::ZeroDuration());
}

TEST(HttpStatusTableTest, NonJsonBodies) {
  absl::Status bad_gateway = Map(502, "<html><body>Bad Gateway</body></html>");
  EXPECT_EQ(bad_gateway.code(), C::kUnavailable);
  EXPECT_EQ(Reason(bad_gateway), "upstream_unparseable_body");
  EXPECT_EQ(HttpStatus(bad_gateway), "502");

  absl::Status unavailable = Map(503, "Service Unavailable");
  EXPECT_EQ(unavailable.code(), C::kUnavailable);
  EXPECT_EQ(Reason(unavailable), "upstream_unparseable_body");

  absl::Status not_found = Map(404, "<html>Not Found</html>");
  EXPECT_EQ(not_found.code(), C::kInternal);
  EXPECT_EQ(Reason(not_found), "upstream_unparseable_body");
  EXPECT_EQ(HttpStatus(not_found), "404");

  absl::Status internal = Map(500, "{\"error_code\": \"api_err");  // Cut JSON.
  EXPECT_EQ(internal.code(), C::kInternal);
  EXPECT_EQ(Reason(internal), "upstream_unparseable_body");
  EXPECT_EQ(internal.message(), "the upstream answered HTTP 500 with a body that is not JSON");
}

TEST(HttpStatusTableTest, JsonThatIsNotAnObjectIsLikeNoBody) {
  for (const char* body : {"[]", "\"oops\"", "42", "null"}) {
    absl::Status status = Map(409, body);
    EXPECT_EQ(status.code(), C::kAborted) << body;
    EXPECT_EQ(Reason(status), "UPSTREAM_HTTP_409") << body;
  }
}

TEST(HttpStatusTableTest, BodyWithoutErrorCodeUsesDetailThenMessage) {
  absl::Status detail = Map(404, R"({"detail":"Not Found"})");
  EXPECT_EQ(detail.code(), C::kNotFound);
  EXPECT_EQ(Reason(detail), "UPSTREAM_HTTP_404");
  EXPECT_EQ(detail.message(), "Not Found");

  absl::Status message = Map(403, R"({"message":"Forbidden","detail":null})");
  EXPECT_EQ(message.code(), C::kPermissionDenied);
  EXPECT_EQ(message.message(), "Forbidden");
}

TEST(HttpStatusTableTest, FieldsOfWrongTypesAreIgnored) {
  absl::Status status = Map(404, R"({"error_code":17,"detail":{"x":1},"message":[1]})");
  EXPECT_EQ(status.code(), C::kNotFound);
  EXPECT_EQ(Reason(status), "UPSTREAM_HTTP_404");
  EXPECT_EQ(status.message(), "the upstream answered HTTP 404");
}

TEST(HttpStatusTableTest, UnknownErrorCodeKeepsStatusRow) {
  absl::Status status = Map(400, Standard("brand_new_code", "New"));
  EXPECT_EQ(status.code(), C::kInvalidArgument);
  EXPECT_EQ(Reason(status), "brand_new_code");
}

TEST(HttpStatusTableTest, DeactivatedThreadOnlySpecialWithin4xx) {
  EXPECT_EQ(Map(500, Standard("thread_is_deactivated", "x")).code(), C::kInternal);
  EXPECT_EQ(Map(404, Standard("thread_is_deactivated", "x")).code(), C::kFailedPrecondition);
}

TEST(HttpStatusTableTest, MissingRequestMetadataIsTheGatewaysConfigNotTheCaller) {
  absl::Status status =
      Map(422, Standard("request_metadata_missing_or_incomplete", "Request lacks metadata"));
  EXPECT_EQ(status.code(), C::kFailedPrecondition);
  EXPECT_EQ(Reason(status), "request_metadata_missing_or_incomplete");
  EXPECT_NE(status.message().find("licence configuration"), std::string::npos) << status;
  EXPECT_NE(status.message().find("Request lacks metadata"), std::string::npos) << status;
  EXPECT_FALSE(GetBadRequest(status).has_value());
}

TEST(HttpStatusTableTest, InvalidArgumentWithoutDetailArrayStillHasBadRequest) {
  absl::Status status = Map(400, Standard("content_filter_error", "Filtered"));
  ASSERT_EQ(status.code(), C::kInvalidArgument);
  auto bad_request = GetBadRequest(status);
  ASSERT_TRUE(bad_request.has_value());
  ASSERT_EQ(bad_request->field_violations_size(), 1);
  EXPECT_EQ(bad_request->field_violations(0).field(), "request");
  EXPECT_EQ(bad_request->field_violations(0).description(), "Filtered");
  // An empty body too: the upstream refused the request as a whole.
  auto empty = GetBadRequest(Map(422, ""));
  ASSERT_TRUE(empty.has_value());
  EXPECT_EQ(empty->field_violations(0).field(), "request");
}

TEST(HttpStatusTableTest, StreamErrorLinesMapByTheirErrorCodesDocumentedStatus) {
  absl::Status limited = StatusFromStreamErrorLine(Standard("rate_limit_error", "slow down"));
  EXPECT_EQ(limited.code(), C::kResourceExhausted);
  EXPECT_TRUE(GetRetryInfo(limited).has_value());
  EXPECT_EQ(HttpStatus(limited), "200");
  EXPECT_EQ(StatusFromStreamErrorLine(Standard("content_filter_error", "x")).code(),
            C::kInvalidArgument);
  EXPECT_EQ(StatusFromStreamErrorLine(Standard("thread_not_found", "x")).code(), C::kNotFound);
  EXPECT_EQ(StatusFromStreamErrorLine(Standard("brand_new_code", "x")).code(), C::kInternal);
  // 503 would say "retry", but part of the answer already went out: a retry runs it again.
  absl::Status unavailable =
      StatusFromStreamErrorLine(Standard("internal_service_error", "try later"));
  EXPECT_EQ(unavailable.code(), C::kInternal);
  EXPECT_EQ(Reason(unavailable), "internal_service_error");
  EXPECT_EQ(unavailable.message(), "try later");
}

TEST(HttpStatusTableTest, StreamErrorLineMapsLikeA500Body) {
  absl::Status status =
      StatusFromStreamErrorLine(R"({"error_code":"api_timeout_error","detail":"LLM timed out"})");
  EXPECT_EQ(status.code(), C::kInternal);
  EXPECT_EQ(Reason(status), "api_timeout_error");
  EXPECT_EQ(status.message(), "LLM timed out");
  EXPECT_EQ(HttpStatus(status), "200");
  EXPECT_EQ(GetErrorInfo(status)->metadata().at("stream_error"), "true");
}

TEST(HttpStatusTableTest, ValidationDetailsOnlyOnInvalidArgument) {
  absl::Status status = Map(500, R"({"detail":[{"loc":["body","x"],"msg":"m"}]})");
  EXPECT_EQ(status.code(), C::kInternal);
  EXPECT_FALSE(GetBadRequest(status).has_value());
}

}  // namespace
}  // namespace copilot::gateway

namespace copilot::gateway {
namespace {

// Found by the http_status fuzzer: an error_code with a reason-based row must not override a
// status line that has a row of its own.
TEST(HttpStatusTableTest, ReasonRowsNeverOverrideA401OrA429) {
  const std::string body = Standard("thread_is_deactivated", "gone");
  EXPECT_EQ(Map(400, body).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Map(418, body).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Map(401, body).code(), absl::StatusCode::kInternal);
  EXPECT_EQ(Map(429, Standard("request_metadata_missing_or_incomplete", "x")).code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(Map(429, Standard("engine_does_not_support_streaming", "x")).code(),
            absl::StatusCode::kResourceExhausted);
}

// An error_code that is not an identifier never becomes the reason (it could fill the trailers).
TEST(HttpStatusTableTest, OnlyIdentifierErrorCodesBecomeTheReason) {
  EXPECT_EQ(Reason(Map(500, Standard(std::string(63, 'a'), "x"))), std::string(63, 'a'));
  const absl::Status long_code = Map(500, Standard(std::string(64, 'a'), "x"));
  EXPECT_EQ(Reason(long_code), "UPSTREAM_HTTP_500");
  EXPECT_EQ(GetErrorInfo(long_code)->metadata().at("upstream_error_code"), std::string(64, 'a'));
  EXPECT_EQ(Reason(Map(500, Standard("bad code!", "x"))), "UPSTREAM_HTTP_500");
}

// Secrets are redacted after JSON decoding: "\u0050I42" is "PI42".
TEST(HttpStatusTableTest, SecretsAreRedactedFromDecodedStrings) {
  const std::string secret = "PI42";
  const absl::Status status = StatusFromHttpError(
      422,
      R"({"detail":[{"loc":["body","P\u004942"],"msg":"licence P\u004942 unknown"}],)"
      R"("message":"x"})",
      "", kNow, {&secret, 1});
  const std::string everything = status.ToString(absl::StatusToStringMode::kWithEverything);
  EXPECT_EQ(everything.find("PI42"), std::string::npos) << everything;
  EXPECT_EQ(GetBadRequest(status)->field_violations(0).field(), "[redacted]");
}

// The predicates other layers use instead of matching the table's strings.
TEST(HttpStatusTableTest, RateLimitPredicateIsAnHttp429Only) {
  EXPECT_TRUE(IsUpstreamRateLimit(Map(429, R"({"error_code":"rate_limit_exceeded"})", "3")));
  EXPECT_TRUE(IsUpstreamRateLimit(Map(429, "<html>busy</html>")));
  // A rate-limit error line inside a 200 stream: the upstream had accepted the call.
  const absl::Status in_stream =
      StatusFromStreamErrorLine(R"({"error_code":"rate_limit_error","detail":"slow"})");
  EXPECT_EQ(in_stream.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_FALSE(IsUpstreamRateLimit(in_stream));
  // Ours, not the upstream's (no http_status), and other codes.
  EXPECT_FALSE(IsUpstreamRateLimit(
      MakeError(absl::StatusCode::kResourceExhausted, "tenant limit", "tenant_rate_limited")));
  EXPECT_FALSE(IsUpstreamRateLimit(Map(503, "")));
  EXPECT_FALSE(IsUpstreamRateLimit(absl::ResourceExhaustedError("no details")));
  EXPECT_FALSE(IsUpstreamRateLimit(absl::OkStatus()));
}

TEST(HttpStatusTableTest, ThreadNotFoundPredicateNeedsTheUpstreamsReason) {
  EXPECT_TRUE(IsUpstreamThreadNotFound(
      Map(404, R"({"error_code":"thread_not_found","detail":"Thread not found"})")));
  EXPECT_FALSE(
      IsUpstreamThreadNotFound(Map(404, R"({"error_code":"assistant_not_found","detail":"no"})")));
  EXPECT_FALSE(IsUpstreamThreadNotFound(Map(404, "")));
  EXPECT_FALSE(IsUpstreamThreadNotFound(absl::NotFoundError("thread_not_found")));
  EXPECT_FALSE(IsUpstreamThreadNotFound(
      MakeError(absl::StatusCode::kFailedPrecondition, "x", "thread_not_found")));
}

}  // namespace
}  // namespace copilot::gateway
