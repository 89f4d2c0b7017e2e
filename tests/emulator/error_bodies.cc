#include "tests/emulator/error_bodies.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace copilot::emulator {

using nlohmann::json;

absl::StatusOr<ErrorShape> ParseErrorShape(absl::string_view text) {
  if (text == "old") return ErrorShape::kOld;
  if (text == "new") return ErrorShape::kNew;
  return absl::InvalidArgumentError(
      absl::StrCat("error shape must be old or new, got '", text, "'"));
}

absl::string_view ErrorShapeName(ErrorShape shape) {
  return shape == ErrorShape::kOld ? "old" : "new";
}

json StandardError(absl::string_view error_code, absl::string_view detail) {
  return json{{"error_code", error_code}, {"detail", detail}};
}

json ValidationErrorBody(ErrorShape shape, const std::vector<ValidationIssue>& issues) {
  json items = json::array();
  for (const ValidationIssue& issue : issues) {
    items.push_back(json{{"loc", issue.loc},
                         {shape == ErrorShape::kOld ? "message" : "msg", issue.msg},
                         {"type", issue.type}});
  }
  if (shape == ErrorShape::kOld) return json{{"error_code", "validation_error"}, {"detail", items}};
  return json{{"detail", items}};
}

json RateLimitBody(ErrorShape shape) {
  if (shape == ErrorShape::kOld) return StandardError("rate_limit_gateway", "Rate limit exceeded");
  return json{{"message", "Rate limit exceeded!"}};
}

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

}  // namespace copilot::emulator
