// THE one table that turns an upstream HTTP error response into an absl::Status (DESIGN.md
// "Errors"). Every non-2xx answer of the Haufe API, and every error line inside an NDJSON stream,
// goes through here; nothing else in the gateway looks at upstream status codes.
//
// Rows (code from the HTTP status; ErrorInfo.reason = the body's `error_code` when it is an
// identifier of at most 63 characters, else UPSTREAM_HTTP_<n> with the code's first 64 bytes in
// metadata "upstream_error_code"):
//   400, 422            INVALID_ARGUMENT + BadRequest built from a validation `detail` array
//                       (one violation on field "request" when the body names no field)
//   4xx but 401 and 429, naming thread_is_deactivated, engine_does_not_support_streaming,
//       request_metadata_missing_or_incomplete (meta_data is the gateway's)  FAILED_PRECONDITION
//   401                 INTERNAL (the gateway's API key was rejected; the caller is not at fault)
//   403                 PERMISSION_DENIED
//   404                 NOT_FOUND
//   409                 ABORTED
//   429                 RESOURCE_EXHAUSTED + RetryInfo (Retry-After, default 1 s) + QuotaFailure
//   500                 INTERNAL
//   502, 503, 504       UNAVAILABLE
//   other 4xx           FAILED_PRECONDITION
//   other 5xx, 1xx, 3xx INTERNAL
// A non-empty body that is not JSON (a proxy's HTML page, say) keeps RESOURCE_EXHAUSTED for 429
// and UNAVAILABLE for 502/503/504, and is INTERNAL otherwise, reason "upstream_unparseable_body".
// Every error carries ErrorInfo metadata {"http_status": "<n>"}.
#ifndef COPILOT_GATEWAY_SERVER_UPSTREAM_HTTP_STATUS_TABLE_H_
#define COPILOT_GATEWAY_SERVER_UPSTREAM_HTTP_STATUS_TABLE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

namespace copilot::gateway {

// Retry delay used for a 429 without a usable Retry-After header.
inline constexpr absl::Duration kDefaultUpstreamRetryDelay = absl::Seconds(1);

// The status for an upstream response with a non-2xx `http_status`, its (possibly empty,
// possibly non-JSON) `body` and its Retry-After header value (empty when absent). `now` is only
// used to turn an HTTP-date Retry-After into a delay. Never returns OK; never throws.
// `secrets` (what the gateway sent on this call: API key, licence) are redacted from every
// string the status takes from the body.
absl::Status StatusFromHttpError(int http_status, absl::string_view body,
                                 absl::string_view retry_after, absl::Time now,
                                 absl::Span<const std::string> secrets = {});

// The status for an error line inside a 2xx NDJSON stream (`{"error_code": ..., "detail": ...}`):
// mapped like a body of the HTTP status the upstream documents for that error_code (500 when
// unknown; rate limits stay RESOURCE_EXHAUSTED with RetryInfo), except that UNAVAILABLE becomes
// INTERNAL (part of the answer went out: retrying would run it again). Reason = its error_code,
// metadata {"http_status": "200", "stream_error": "true"} since the status line said 200.
absl::Status StatusFromStreamErrorLine(absl::string_view line,
                                       absl::Span<const std::string> secrets = {});

// Predicates over statuses the table made, so that no other layer matches its strings.
// The upstream refused the call with HTTP 429 (its rate or tier limit; not an error line inside
// a stream, which the upstream had accepted).
bool IsUpstreamRateLimit(const absl::Status& status);
// The upstream does not know the thread (404, error_code thread_not_found).
bool IsUpstreamThreadNotFound(const absl::Status& status);

// The delay a Retry-After header value asks for: delta-seconds or an HTTP-date (relative to
// `now`, never negative). Empty or unparseable values give kDefaultUpstreamRetryDelay.
absl::Duration ParseRetryAfter(absl::string_view value, absl::Time now);

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_UPSTREAM_HTTP_STATUS_TABLE_H_
