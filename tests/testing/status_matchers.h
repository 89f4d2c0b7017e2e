// gMock matchers for absl::Status and absl::StatusOr<T>: the code, and the ErrorInfo reason the
// gateway's errors carry (server/common/errors.h).
//
//   EXPECT_THAT(status, StatusIs(absl::StatusCode::kNotFound, "thread_not_found"));
//   EXPECT_THAT(result, StatusIs(absl::StatusCode::kOk));  // result: a StatusOr<T>
#ifndef COPILOT_GATEWAY_TESTS_TESTING_STATUS_MATCHERS_H_
#define COPILOT_GATEWAY_TESTS_TESTING_STATUS_MATCHERS_H_

#include <optional>
#include <ostream>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "server/common/errors.h"

namespace copilot::gateway::testing {
namespace internal_status {

inline const absl::Status& GetStatus(const absl::Status& status) { return status; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& result) {
  return result.status();
}

// The ErrorInfo reason of `status`, or nullopt without one.
inline std::optional<std::string> Reason(const absl::Status& status) {
  std::optional<google::rpc::ErrorInfo> info = GetErrorInfo(status);
  if (!info.has_value()) return std::nullopt;
  return info->reason();
}

class StatusIsMatcher {
 public:
  StatusIsMatcher(absl::StatusCode code, std::optional<std::string> reason)
      : code_(code), reason_(std::move(reason)) {}

  template <typename StatusType>
  bool MatchAndExplain(const StatusType& value, ::testing::MatchResultListener* listener) const {
    const absl::Status& status = GetStatus(value);
    const std::optional<std::string> reason = Reason(status);
    *listener << "whose code is " << absl::StatusCodeToString(status.code());
    if (reason_.has_value()) {
      *listener << ", ErrorInfo reason "
                << (reason.has_value() ? "\"" + *reason + "\"" : std::string("(none)"));
    }
    if (!status.ok()) *listener << ", message \"" << status.message() << "\"";
    if (status.code() != code_) return false;
    return !reason_.has_value() || reason == reason_;
  }
  void DescribeTo(std::ostream* os) const {
    *os << "has code " << absl::StatusCodeToString(code_);
    if (reason_.has_value()) *os << " and ErrorInfo reason \"" << *reason_ << "\"";
  }
  void DescribeNegationTo(std::ostream* os) const {
    *os << "does not have code " << absl::StatusCodeToString(code_);
    if (reason_.has_value()) *os << " with ErrorInfo reason \"" << *reason_ << "\"";
  }

 private:
  const absl::StatusCode code_;
  const std::optional<std::string> reason_;
};

}  // namespace internal_status

// Matches an absl::Status or absl::StatusOr<T> with code `code` and ErrorInfo reason `reason`.
inline ::testing::PolymorphicMatcher<internal_status::StatusIsMatcher> StatusIs(
    absl::StatusCode code, std::string reason) {
  return ::testing::MakePolymorphicMatcher(
      internal_status::StatusIsMatcher(code, std::move(reason)));
}

// Matches an absl::Status or absl::StatusOr<T> with code `code`, whatever its details.
inline ::testing::PolymorphicMatcher<internal_status::StatusIsMatcher> StatusIs(
    absl::StatusCode code) {
  return ::testing::MakePolymorphicMatcher(internal_status::StatusIsMatcher(code, std::nullopt));
}

}  // namespace copilot::gateway::testing

#endif  // COPILOT_GATEWAY_TESTS_TESTING_STATUS_MATCHERS_H_
