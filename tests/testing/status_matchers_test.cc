#include "tests/testing/status_matchers.h"

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/common/errors.h"

namespace copilot::gateway::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

const absl::Status kNotFound =
    MakeError(absl::StatusCode::kNotFound, "no such thread", "thread_not_found");

// What the matcher says about `value` when it does not match.
template <typename Matcher, typename Value>
std::string Explain(const Matcher& matcher, const Value& value) {
  ::testing::StringMatchResultListener listener;
  EXPECT_FALSE(::testing::ExplainMatchResult(matcher, value, &listener));
  return listener.str();
}

TEST(StatusIsTest, MatchesCodeAndReason) {
  EXPECT_THAT(kNotFound, StatusIs(absl::StatusCode::kNotFound, "thread_not_found"));
  EXPECT_THAT(kNotFound, StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(kNotFound, Not(StatusIs(absl::StatusCode::kNotFound, "assistant_not_found")));
  EXPECT_THAT(kNotFound, Not(StatusIs(absl::StatusCode::kInternal, "thread_not_found")));
  EXPECT_THAT(kNotFound, Not(StatusIs(absl::StatusCode::kInternal)));
}

TEST(StatusIsTest, AReasonIsRequiredWhenAsked) {
  const absl::Status plain = absl::NotFoundError("no ErrorInfo");
  EXPECT_THAT(plain, StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(plain, Not(StatusIs(absl::StatusCode::kNotFound, "")));
  EXPECT_THAT(absl::OkStatus(), StatusIs(absl::StatusCode::kOk));
}

TEST(StatusIsTest, MatchesStatusOr) {
  const absl::StatusOr<int> value = 7;
  const absl::StatusOr<int> error = kNotFound;
  EXPECT_THAT(value, StatusIs(absl::StatusCode::kOk));
  EXPECT_THAT(error, StatusIs(absl::StatusCode::kNotFound, "thread_not_found"));
  EXPECT_THAT(error, Not(StatusIs(absl::StatusCode::kOk)));
}

TEST(StatusIsTest, DescribesWhatItWantsAndWhatItGot) {
  const auto matcher = StatusIs(absl::StatusCode::kInternal, "boom");
  EXPECT_EQ(::testing::DescribeMatcher<absl::Status>(matcher),
            "has code INTERNAL and ErrorInfo reason \"boom\"");
  EXPECT_EQ(::testing::DescribeMatcher<absl::Status>(matcher, /*negation=*/true),
            "does not have code INTERNAL with ErrorInfo reason \"boom\"");
  EXPECT_EQ(Explain(matcher, kNotFound),
            "whose code is NOT_FOUND, ErrorInfo reason \"thread_not_found\", message \"no such "
            "thread\"");
  EXPECT_THAT(Explain(matcher, absl::InternalError("x")), HasSubstr("ErrorInfo reason (none)"));
  EXPECT_EQ(Explain(StatusIs(absl::StatusCode::kNotFound), absl::StatusOr<int>(1)),
            "whose code is OK");
}

}  // namespace
}  // namespace copilot::gateway::testing
