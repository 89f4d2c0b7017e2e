#include "client/error_details.h"

#include <string>
#include <vector>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "google/rpc/error_details.pb.h"
#include "gtest/gtest.h"
#include "tests/client/fake_copilot_service.h"

namespace copilot::client {
namespace {

using ::copilot::client::testing::MakeStatus;

google::rpc::ErrorInfo MakeErrorInfo(const std::string& reason, const std::string& http_status) {
  google::rpc::ErrorInfo info;
  info.set_reason(reason);
  info.set_domain("copilot-gateway");
  if (!http_status.empty()) (*info.mutable_metadata())["http_status"] = http_status;
  return info;
}

google::rpc::RetryInfo MakeRetryInfo(int64_t seconds, int32_t nanos) {
  google::rpc::RetryInfo retry;
  retry.mutable_retry_delay()->set_seconds(seconds);
  retry.mutable_retry_delay()->set_nanos(nanos);
  return retry;
}

google::rpc::QuotaFailure MakeQuotaFailure(const std::string& subject,
                                           const std::string& description) {
  google::rpc::QuotaFailure quota;
  auto* v = quota.add_violations();
  v->set_subject(subject);
  v->set_description(description);
  return quota;
}

google::rpc::BadRequest MakeBadRequest(
    const std::vector<std::pair<std::string, std::string>>& fields) {
  google::rpc::BadRequest bad;
  for (const auto& [field, description] : fields) {
    auto* v = bad.add_field_violations();
    v->set_field(field);
    v->set_description(description);
  }
  return bad;
}

// ---- codes, row by row ------------------------------------------------------

struct CodeRow {
  grpc::StatusCode grpc_code;
  absl::StatusCode absl_code;
};

class CodeMappingTest : public ::testing::TestWithParam<CodeRow> {};

TEST_P(CodeMappingTest, KeepsTheCode) {
  const CodeRow& row = GetParam();
  absl::Status status = FromGrpcStatus(grpc::Status(row.grpc_code, "boom"));
  EXPECT_EQ(status.code(), row.absl_code);
  EXPECT_EQ(status.message(), "boom");
}

INSTANTIATE_TEST_SUITE_P(
    AllCodes, CodeMappingTest,
    ::testing::Values(
        CodeRow{grpc::StatusCode::CANCELLED, absl::StatusCode::kCancelled},
        CodeRow{grpc::StatusCode::UNKNOWN, absl::StatusCode::kUnknown},
        CodeRow{grpc::StatusCode::INVALID_ARGUMENT, absl::StatusCode::kInvalidArgument},
        CodeRow{grpc::StatusCode::DEADLINE_EXCEEDED, absl::StatusCode::kDeadlineExceeded},
        CodeRow{grpc::StatusCode::NOT_FOUND, absl::StatusCode::kNotFound},
        CodeRow{grpc::StatusCode::ALREADY_EXISTS, absl::StatusCode::kAlreadyExists},
        CodeRow{grpc::StatusCode::PERMISSION_DENIED, absl::StatusCode::kPermissionDenied},
        CodeRow{grpc::StatusCode::RESOURCE_EXHAUSTED, absl::StatusCode::kResourceExhausted},
        CodeRow{grpc::StatusCode::FAILED_PRECONDITION, absl::StatusCode::kFailedPrecondition},
        CodeRow{grpc::StatusCode::ABORTED, absl::StatusCode::kAborted},
        CodeRow{grpc::StatusCode::OUT_OF_RANGE, absl::StatusCode::kOutOfRange},
        CodeRow{grpc::StatusCode::UNIMPLEMENTED, absl::StatusCode::kUnimplemented},
        CodeRow{grpc::StatusCode::INTERNAL, absl::StatusCode::kInternal},
        CodeRow{grpc::StatusCode::UNAVAILABLE, absl::StatusCode::kUnavailable},
        CodeRow{grpc::StatusCode::DATA_LOSS, absl::StatusCode::kDataLoss},
        CodeRow{grpc::StatusCode::UNAUTHENTICATED, absl::StatusCode::kUnauthenticated},
        // Out of range: not a code this library knows.
        CodeRow{static_cast<grpc::StatusCode>(31), absl::StatusCode::kUnknown}),
    [](const ::testing::TestParamInfo<CodeRow>& info) {
      return absl::StrCat("Code", static_cast<int>(info.param.grpc_code));
    });

TEST(FromGrpcStatusTest, OkIsOkWithoutPayload) {
  absl::Status status = FromGrpcStatus(grpc::Status::OK);
  EXPECT_TRUE(status.ok());
  EXPECT_FALSE(status.GetPayload(kRpcStatusPayloadUrl).has_value());
}

// ---- readable messages, row by row ------------------------------------------

struct MessageRow {
  std::string name;
  grpc::Status input;
  absl::StatusCode code;
  std::string message;
};

class ReadableMessageTest : public ::testing::TestWithParam<MessageRow> {};

TEST_P(ReadableMessageTest, AppendsDetails) {
  const MessageRow& row = GetParam();
  absl::Status status = FromGrpcStatus(row.input);
  EXPECT_EQ(status.code(), row.code);
  EXPECT_EQ(status.message(), row.message);
}

std::vector<MessageRow> MessageRows() {
  google::rpc::ErrorInfo extra_metadata = MakeErrorInfo("upstream_error", "502");
  (*extra_metadata.mutable_metadata())["tenant"] = "acme";
  google::rpc::PreconditionFailure precondition;
  auto* p = precondition.add_violations();
  p->set_type("THREAD_STATE");
  p->set_subject("threads/t1");
  p->set_description("thread is deleted");
  google::rpc::RequestInfo request_info;
  request_info.set_request_id("req-7");
  google::rpc::Help help;
  help.add_links()->set_url("https://example.invalid/help");
  return {
      {"NoDetails", grpc::Status(grpc::StatusCode::UNAVAILABLE, "connection refused"),
       absl::StatusCode::kUnavailable, "connection refused"},
      {"ErrorInfoWithHttpStatus",
       MakeStatus(grpc::StatusCode::NOT_FOUND, "Thread not found",
                  MakeErrorInfo("thread_not_found", "404")),
       absl::StatusCode::kNotFound,
       "Thread not found [reason: thread_not_found; upstream HTTP 404]"},
      {"ErrorInfoWithoutHttpStatus",
       MakeStatus(grpc::StatusCode::UNAUTHENTICATED, "No token",
                  MakeErrorInfo("missing_credentials", "")),
       absl::StatusCode::kUnauthenticated, "No token [reason: missing_credentials]"},
      {"ErrorInfoOtherMetadata",
       MakeStatus(grpc::StatusCode::UNAVAILABLE, "Upstream failed", extra_metadata),
       absl::StatusCode::kUnavailable,
       "Upstream failed [reason: upstream_error; upstream HTTP 502; tenant=acme]"},
      {"NonNumericHttpStatus",
       MakeStatus(grpc::StatusCode::INTERNAL, "Odd", MakeErrorInfo("odd", "n/a")),
       absl::StatusCode::kInternal, "Odd [reason: odd; http_status=n/a]"},
      {"RetryAndQuota",
       MakeStatus(grpc::StatusCode::RESOURCE_EXHAUSTED, "Too many requests",
                  MakeErrorInfo("rate_limited", ""), MakeRetryInfo(2, 0),
                  MakeQuotaFailure("tenant:acme", "answer-generation rate")),
       absl::StatusCode::kResourceExhausted,
       "Too many requests [reason: rate_limited; retry after 2s; "
       "quota: tenant:acme: answer-generation rate]"},
      {"FractionalRetryDelay",
       MakeStatus(grpc::StatusCode::UNAVAILABLE, "Overloaded", MakeRetryInfo(1, 500000000)),
       absl::StatusCode::kUnavailable, "Overloaded [retry after 1.5s]"},
      {"DetailsInAnyOrder",
       MakeStatus(grpc::StatusCode::RESOURCE_EXHAUSTED, "Slow down",
                  MakeQuotaFailure("tenant:acme", ""), MakeRetryInfo(3, 0),
                  MakeErrorInfo("rate_limited", "429")),
       absl::StatusCode::kResourceExhausted,
       "Slow down [reason: rate_limited; upstream HTTP 429; retry after 3s; quota: tenant:acme]"},
      {"BadRequestFields",
       MakeStatus(grpc::StatusCode::INVALID_ARGUMENT, "Invalid request",
                  MakeBadRequest(
                      {{"thread_id", "must be a UUID"}, {"message.content", "must not be blank"}})),
       absl::StatusCode::kInvalidArgument,
       "Invalid request [field thread_id: must be a UUID; "
       "field message.content: must not be blank]"},
      {"PreconditionFailure",
       MakeStatus(grpc::StatusCode::FAILED_PRECONDITION, "Thread deleted", precondition),
       absl::StatusCode::kFailedPrecondition,
       "Thread deleted [precondition THREAD_STATE threads/t1: thread is deleted]"},
      {"RequestInfo", MakeStatus(grpc::StatusCode::INTERNAL, "Oops", request_info),
       absl::StatusCode::kInternal, "Oops [request id req-7]"},
      {"UnknownDetailTypeAddsNothing", MakeStatus(grpc::StatusCode::INTERNAL, "Oops", help),
       absl::StatusCode::kInternal, "Oops"},
      {"EmptyMessage",
       MakeStatus(grpc::StatusCode::NOT_FOUND, "", MakeErrorInfo("thread_not_found", "404")),
       absl::StatusCode::kNotFound, "[reason: thread_not_found; upstream HTTP 404]"},
      {"UnreadableDetails",
       grpc::Status(grpc::StatusCode::INTERNAL, "Broken", std::string("\xff\xff\xff", 3)),
       absl::StatusCode::kInternal, "Broken [unreadable error details]"},
  };
}

INSTANTIATE_TEST_SUITE_P(Rows, ReadableMessageTest, ::testing::ValuesIn(MessageRows()),
                         [](const ::testing::TestParamInfo<MessageRow>& info) {
                           return info.param.name;
                         });

// ---- structured details -----------------------------------------------------

TEST(GetErrorDetailsTest, ReturnsEveryKnownDetail) {
  google::rpc::PreconditionFailure precondition;
  auto* p = precondition.add_violations();
  p->set_type("THREAD_STATE");
  p->set_subject("threads/t1");
  p->set_description("deleted");
  google::rpc::RequestInfo request_info;
  request_info.set_request_id("req-9");
  absl::Status status = FromGrpcStatus(
      MakeStatus(grpc::StatusCode::RESOURCE_EXHAUSTED, "Too many requests",
                 MakeErrorInfo("rate_limited", "429"), MakeRetryInfo(2, 250000000),
                 MakeQuotaFailure("tenant:acme", "answer-generation rate"),
                 MakeBadRequest({{"thread_id", "must be a UUID"}}), precondition, request_info));

  ErrorDetails details = GetErrorDetails(status);
  EXPECT_EQ(details.reason, "rate_limited");
  EXPECT_EQ(details.domain, "copilot-gateway");
  EXPECT_EQ(details.metadata, (std::map<std::string, std::string>{{"http_status", "429"}}));
  EXPECT_EQ(details.http_status, 429);
  EXPECT_EQ(details.retry_delay, absl::Milliseconds(2250));
  EXPECT_EQ(details.quota_violations,
            (std::vector<QuotaViolation>{{"tenant:acme", "answer-generation rate"}}));
  EXPECT_EQ(details.field_violations,
            (std::vector<FieldViolation>{{"thread_id", "must be a UUID"}}));
  EXPECT_EQ(details.precondition_violations,
            (std::vector<PreconditionViolation>{{"THREAD_STATE", "threads/t1", "deleted"}}));
  EXPECT_EQ(details.request_id, "req-9");
}

TEST(GetErrorDetailsTest, EmptyWithoutDetails) {
  ErrorDetails details =
      GetErrorDetails(FromGrpcStatus(grpc::Status(grpc::StatusCode::UNAVAILABLE, "down")));
  EXPECT_EQ(details.reason, "");
  EXPECT_FALSE(details.http_status.has_value());
  EXPECT_FALSE(details.retry_delay.has_value());
  EXPECT_TRUE(details.field_violations.empty());
  EXPECT_TRUE(details.quota_violations.empty());
}

TEST(GetErrorDetailsTest, EmptyForLocalStatusAndOk) {
  EXPECT_EQ(GetErrorDetails(absl::NotFoundError("local")).reason, "");
  EXPECT_EQ(GetErrorDetails(absl::OkStatus()).reason, "");
}

TEST(GetErrorDetailsTest, IgnoresCorruptPayload) {
  absl::Status status = absl::InternalError("x");
  status.SetPayload(kRpcStatusPayloadUrl, absl::Cord("\xff\xff"));
  EXPECT_EQ(GetErrorDetails(status).reason, "");
}

TEST(ToRpcStatusTest, KeepsTheServersMessageAndDetails) {
  absl::Status status = FromGrpcStatus(MakeStatus(grpc::StatusCode::NOT_FOUND, "Thread not found",
                                                  MakeErrorInfo("thread_not_found", "404")));
  google::rpc::Status rpc = ToRpcStatus(status);
  EXPECT_EQ(rpc.code(), 5);
  // Without the readable summary: the details are there to be read.
  EXPECT_EQ(rpc.message(), "Thread not found");
  ASSERT_EQ(rpc.details_size(), 1);
  google::rpc::ErrorInfo info;
  ASSERT_TRUE(rpc.details(0).UnpackTo(&info));
  EXPECT_EQ(info.reason(), "thread_not_found");
}

TEST(ToRpcStatusTest, UsesTheTrailersCodeOverTheDetailsCode) {
  google::rpc::Status inner;
  inner.set_code(13);
  inner.set_message("inner");
  absl::Status status =
      FromGrpcStatus(grpc::Status(grpc::StatusCode::NOT_FOUND, "outer", inner.SerializeAsString()));
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ToRpcStatus(status).code(), 5);
  EXPECT_EQ(ToRpcStatus(status).message(), "outer");
}

TEST(ToRpcStatusTest, KeepsUnknownDetailTypes) {
  google::rpc::Help help;
  help.add_links()->set_url("https://example.invalid/help");
  google::rpc::Status rpc =
      ToRpcStatus(FromGrpcStatus(MakeStatus(grpc::StatusCode::INTERNAL, "Oops", help)));
  ASSERT_EQ(rpc.details_size(), 1);
  EXPECT_TRUE(rpc.details(0).Is<google::rpc::Help>());
}

TEST(ToRpcStatusTest, BuildsFromLocalStatus) {
  google::rpc::Status rpc = ToRpcStatus(absl::InvalidArgumentError("bad timeout"));
  EXPECT_EQ(rpc.code(), 3);
  EXPECT_EQ(rpc.message(), "bad timeout");
  EXPECT_EQ(rpc.details_size(), 0);
  EXPECT_EQ(ToRpcStatus(absl::OkStatus()).code(), 0);
}

TEST(FormatErrorTest, NamesTheCodeWithoutPayloads) {
  absl::Status status = FromGrpcStatus(MakeStatus(grpc::StatusCode::NOT_FOUND, "Thread not found",
                                                  MakeErrorInfo("thread_not_found", "404")));
  EXPECT_EQ(FormatError(status),
            "NOT_FOUND: Thread not found [reason: thread_not_found; upstream HTTP 404]");
  EXPECT_EQ(FormatError(absl::OkStatus()), "OK");
}

}  // namespace
}  // namespace copilot::client
