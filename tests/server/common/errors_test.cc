#include "server/common/errors.h"

#include <cerrno>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace copilot::gateway {
namespace {

TEST(ErrorsTest, MakeErrorCarriesErrorInfo) {
  absl::Status status = MakeError(absl::StatusCode::kNotFound, "Thread not found",
                                  "thread_not_found", {{"http_status", "404"}});
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(status.message(), "Thread not found");
  auto info = GetErrorInfo(status);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->reason(), "thread_not_found");
  EXPECT_EQ(info->domain(), "copilot-gateway");
  EXPECT_EQ(info->metadata().at("http_status"), "404");
  EXPECT_FALSE(GetRetryInfo(status).has_value());
}

TEST(ErrorsTest, FieldViolationsAccumulate) {
  absl::Status status =
      MakeError(absl::StatusCode::kInvalidArgument, "bad request", "INVALID_REQUEST");
  AddFieldViolation(status, "thread_id", "must be a thread ID returned by CreateThread");
  AddFieldViolation(status, "message.content", "must not be empty");
  auto bad = GetBadRequest(status);
  ASSERT_TRUE(bad.has_value());
  ASSERT_EQ(bad->field_violations_size(), 2);
  EXPECT_EQ(bad->field_violations(0).field(), "thread_id");
  EXPECT_EQ(bad->field_violations(1).field(), "message.content");
  EXPECT_EQ(bad->field_violations(1).description(), "must not be empty");
}

TEST(ErrorsTest, RetryDelayKeepsSubSecondPrecision) {
  absl::Status status = MakeError(absl::StatusCode::kResourceExhausted, "slow down", "rate");
  SetRetryDelay(status, absl::Milliseconds(2500));
  auto retry = GetRetryInfo(status);
  ASSERT_TRUE(retry.has_value());
  EXPECT_EQ(retry->retry_delay().seconds(), 2);
  EXPECT_EQ(retry->retry_delay().nanos(), 500000000);
}

TEST(ErrorsTest, ToRpcStatusPacksEveryDetailInFixedOrder) {
  absl::Status status = MakeError(absl::StatusCode::kResourceExhausted, "limited", "TENANT_RATE");
  AddQuotaViolation(status, "tenant:acme", "answer-generation rate");
  SetRetryDelay(status, absl::Seconds(1));
  google::rpc::Status rpc = ToRpcStatus(status);
  EXPECT_EQ(rpc.code(), static_cast<int>(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(rpc.message(), "limited");
  ASSERT_EQ(rpc.details_size(), 3);
  EXPECT_TRUE(rpc.details(0).Is<google::rpc::ErrorInfo>());
  EXPECT_TRUE(rpc.details(1).Is<google::rpc::RetryInfo>());
  EXPECT_TRUE(rpc.details(2).Is<google::rpc::QuotaFailure>());
  google::rpc::QuotaFailure quota;
  ASSERT_TRUE(rpc.details(2).UnpackTo(&quota));
  EXPECT_EQ(quota.violations(0).subject(), "tenant:acme");
}

TEST(ErrorsTest, SetErrorMetadataIfAbsentKeepsExistingValues) {
  absl::Status status = MakeError(absl::StatusCode::kInternal, "bad body", "upstream_bad_response",
                                  {{"http_status", "201"}});
  SetErrorMetadataIfAbsent(status, "http_status", "200");
  EXPECT_EQ(GetErrorInfo(status)->metadata().at("http_status"), "201");
  SetErrorMetadataIfAbsent(status, "curl_code", "56");
  EXPECT_EQ(GetErrorInfo(status)->metadata().at("curl_code"), "56");
  EXPECT_EQ(GetErrorInfo(status)->reason(), "upstream_bad_response");
}

TEST(ErrorsTest, SetErrorMetadataIfAbsentAddsErrorInfoNamedAfterTheCode) {
  absl::Status status = absl::InternalError("plain");
  SetErrorMetadataIfAbsent(status, "http_status", "200");
  auto info = GetErrorInfo(status);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->reason(), "INTERNAL");
  EXPECT_EQ(info->domain(), "copilot-gateway");
  EXPECT_EQ(info->metadata().at("http_status"), "200");
}

TEST(ErrorsTest, DetailsAreBoundedToFitInTrailers) {
  absl::Status status = MakeError(absl::StatusCode::kInvalidArgument, std::string(100000, 'x'),
                                  "upstream_validation_error");
  for (int i = 0; i < 1000; ++i) {
    AddFieldViolation(status, "messages." + std::to_string(i) + ".content", std::string(5000, 'y'));
  }
  google::rpc::Status rpc = ToRpcStatus(status);
  EXPECT_EQ(rpc.message().size(), kMaxErrorMessageBytes);
  auto bad = GetBadRequest(status);
  ASSERT_TRUE(bad.has_value());
  ASSERT_EQ(bad->field_violations_size(), kMaxViolations);
  EXPECT_EQ(bad->field_violations(0).field(), "messages.0.content");
  EXPECT_EQ(bad->field_violations(0).description().size(), kMaxViolationTextBytes);
  EXPECT_LT(rpc.ByteSizeLong(), 4096u);
}

TEST(ErrorsTest, TruncateUtf8NeverSplitsACharacter) {
  EXPECT_EQ(TruncateUtf8("short", 10), "short");
  // "ä" is two bytes (C3 A4): cutting inside it backs up to before it.
  EXPECT_EQ(TruncateUtf8("abcdäfgh", 8), "abcd...");
  EXPECT_EQ(TruncateUtf8("abcdefgh", 7), "abcd...");
}

TEST(ErrorsTest, OkStatusCarriesNothing) {
  absl::Status status;
  AddFieldViolation(status, "x", "y");
  EXPECT_TRUE(status.ok());
  EXPECT_EQ(ToRpcStatus(status).details_size(), 0);
}

TEST(ErrorsTest, ErrnoTextNamesTheError) {
  EXPECT_EQ(ErrnoText(ENOENT), "No such file or directory");
  EXPECT_EQ(ErrnoText(ETIMEDOUT), "Connection timed out");
  EXPECT_THAT(ErrnoText(99999), ::testing::HasSubstr("99999"));  // Unknown: glibc names the number.
}

}  // namespace
}  // namespace copilot::gateway
