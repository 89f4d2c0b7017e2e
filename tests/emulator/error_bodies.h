// The error bodies of haufe-api.md section 2.4, in both the old and the new spec's shapes.
#ifndef COPILOT_TESTS_EMULATOR_ERROR_BODIES_H_
#define COPILOT_TESTS_EMULATOR_ERROR_BODIES_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace copilot::emulator {

// Which spec revision's bodies validation errors and 429s use.
enum class ErrorShape {
  kOld,  // {"error_code":"validation_error","detail":[{loc,message,type}]}; rate_limit_gateway
  kNew,  // {"detail":[{loc,msg,type}]}; {"message":"Rate limit exceeded!"}
};

absl::StatusOr<ErrorShape> ParseErrorShape(absl::string_view text);
absl::string_view ErrorShapeName(ErrorShape shape);

// One pydantic-style validation problem.
struct ValidationIssue {
  nlohmann::json loc;  // e.g. ["body", "assistant_id"]
  std::string msg;     // e.g. "Field required"
  std::string type;    // e.g. "missing"
};

// {"error_code": code, "detail": detail}
nlohmann::json StandardError(absl::string_view error_code, absl::string_view detail);
// The 422 validation body in `shape`.
nlohmann::json ValidationErrorBody(ErrorShape shape, const std::vector<ValidationIssue>& issues);
// The 429 body in `shape`.
nlohmann::json RateLimitBody(ErrorShape shape);

// Serializes without throwing (invalid UTF-8 is replaced by U+FFFD).
std::string Dump(const nlohmann::json& j);

}  // namespace copilot::emulator

#endif  // COPILOT_TESTS_EMULATOR_ERROR_BODIES_H_
