#include "server/common/json_text.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

namespace copilot::gateway {
namespace {

std::string NlohmannString(const std::string& text) {
  return nlohmann::json(text).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// Every byte value at every position of texts 1 to 40 bytes long (the sixteen-byte steps, the
// bytes after them, and the rest): the first byte a JSON string does not hold as it is, and the
// string written as nlohmann writes it.
TEST(JsonTextTest, EveryByteAtEveryPositionIsFoundAndWrittenAsNlohmannWritesIt) {
  for (std::size_t length = 1; length <= 40; ++length) {
    for (std::size_t at = 0; at < length; ++at) {
      for (int byte = 0; byte < 256; ++byte) {
        std::string text(length, 'a');
        text[at] = static_cast<char>(byte);
        const bool plain = byte >= 0x20 && byte < 0x7f && byte != '"' && byte != '\\';
        ASSERT_EQ(PlainJsonStringEnd(text, 0), plain ? length : at)
            << "byte " << byte << " at " << at << " of " << length;
        // From past it: nothing else stops the scan.
        ASSERT_EQ(PlainJsonStringEnd(text, at + 1), length) << byte << " " << at << " " << length;
        std::string written = "x";
        AppendJsonString(written, text);
        ASSERT_EQ(written, "x" + NlohmannString(text))
            << "byte " << byte << " at " << at << " of " << length;
      }
    }
  }
}

TEST(JsonTextTest, TheScanStartsWhereItIsTold) {
  const std::string text = R"(0123456789abcdef"0123456789abcdef\0123456789)";
  EXPECT_EQ(PlainJsonStringEnd(text, 0), 16u);
  EXPECT_EQ(PlainJsonStringEnd(text, 16), 16u);
  EXPECT_EQ(PlainJsonStringEnd(text, 17), 33u);
  EXPECT_EQ(PlainJsonStringEnd(text, 34), text.size());
  EXPECT_EQ(PlainJsonStringEnd(text, text.size()), text.size());
  EXPECT_EQ(PlainJsonStringEnd("", 0), 0u);
}

}  // namespace
}  // namespace copilot::gateway
