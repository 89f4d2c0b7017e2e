#include "server/common/json_text.h"

#include <nlohmann/json.hpp>

namespace copilot::gateway {

void AppendJsonString(std::string& out, absl::string_view text) {
  bool plain = true;
  for (const char c : text) {
    if (c < 0x20 || c > 0x7e || c == '"' || c == '\\') {
      plain = false;
      break;
    }
  }
  if (plain) {
    out.push_back('"');
    out.append(text.data(), text.size());
    out.push_back('"');
    return;
  }
  out += nlohmann::json(std::string(text))
             .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace copilot::gateway
