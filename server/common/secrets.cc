#include "server/common/secrets.h"

#include <string>

#include "absl/strings/str_replace.h"

namespace copilot::gateway {

std::string RedactSecrets(absl::string_view text, absl::Span<const std::string> secrets) {
  std::string out(text);
  for (const std::string& secret : secrets) {
    if (!secret.empty()) absl::StrReplaceAll({{secret, kRedacted}}, &out);
  }
  return out;
}

}  // namespace copilot::gateway
