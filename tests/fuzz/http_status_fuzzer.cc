// The one HTTP -> status table (server/upstream/http_status_table.h) on any status line, error
// body (JSON of either shape, HTML, truncated, binary) and Retry-After value; and the same body
// as an error line inside a stream.
//
// Properties: never OK; the google.rpc details serialize and keep errors.h's bounds; ErrorInfo
// names the HTTP status; 429 carries RetryInfo and QuotaFailure; a 401 never repeats the body;
// a body that is not JSON is "upstream_unparseable_body"; a stream error line is never
// UNAVAILABLE; Retry-After delays are never negative.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "server/common/errors.h"
#include "server/upstream/http_status_table.h"
#include "tests/fuzz/fuzz_support.h"

namespace copilot::gateway {
namespace {

const absl::Time kNow = absl::FromUnixSeconds(1700000000);

void CheckHttpError(int http_status, const std::string& body, const std::string& retry_after) {
  const absl::Status status = StatusFromHttpError(http_status, body, retry_after, kNow);
  fuzz::CheckErrorIsBounded(status, "StatusFromHttpError");
  auto info = GetErrorInfo(status);
  FUZZ_CHECK(info.has_value(), "no ErrorInfo");
  FUZZ_CHECK(info->metadata().at("http_status") == absl::StrCat(http_status), "http_status");
  FUZZ_CHECK(!info->reason().empty(), "empty reason");
  if (http_status == 429) {
    FUZZ_CHECK(status.code() == absl::StatusCode::kResourceExhausted, "429 code");
    FUZZ_CHECK(GetRetryInfo(status).has_value(), "429 without RetryInfo");
    FUZZ_CHECK(GetQuotaFailure(status).has_value(), "429 without QuotaFailure");
  }
  if (http_status == 401) {
    FUZZ_CHECK(status.code() == absl::StatusCode::kInternal, "401 code");
    FUZZ_CHECK(absl::StartsWith(status.message(), "the upstream rejected the gateway's API key"),
               "401 message repeats the upstream's text");
  }
  const bool blank = absl::StripAsciiWhitespace(body).empty();
  if (!blank && !nlohmann::json::accept(body)) {
    FUZZ_CHECK(info->reason() == "upstream_unparseable_body", "non-JSON body reason");
  }
}

void CheckStreamErrorLine(const std::string& line) {
  const absl::Status status = StatusFromStreamErrorLine(line);
  fuzz::CheckErrorIsBounded(status, "StatusFromStreamErrorLine");
  FUZZ_CHECK(status.code() != absl::StatusCode::kUnavailable, "stream error line UNAVAILABLE");
  auto info = GetErrorInfo(status);
  FUZZ_CHECK(info.has_value(), "no ErrorInfo");
  FUZZ_CHECK(info->metadata().at("http_status") == "200", "http_status");
  FUZZ_CHECK(info->metadata().at("stream_error") == "true", "stream_error");
}

}  // namespace
}  // namespace copilot::gateway

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using copilot::gateway::ParseRetryAfter;
  FuzzedDataProvider input(data, size);
  // Mostly the statuses the table has rows for, sometimes anything curl could report.
  const int http_status =
      input.ConsumeBool() ? input.ConsumeIntegralInRange(100, 599) : input.ConsumeIntegral<int>();
  const std::string retry_after = input.ConsumeRandomLengthString(64);
  const std::string body = input.ConsumeRemainingBytesAsString();

  FUZZ_CHECK(ParseRetryAfter(retry_after, copilot::gateway::kNow) >= absl::ZeroDuration(),
             "negative Retry-After");
  copilot::gateway::CheckHttpError(http_status, body, retry_after);
  copilot::gateway::CheckStreamErrorLine(body);
  return 0;
}
