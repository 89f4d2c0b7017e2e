#include "server/common/json_text.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <nlohmann/json.hpp>

namespace copilot::gateway {

std::size_t PlainJsonStringEnd(absl::string_view text, std::size_t from) {
  const char* const data = text.data();
  const std::size_t size = text.size();
  std::size_t i = from;
#if defined(__SSE2__)
  const __m128i quote = _mm_set1_epi8('"');
  const __m128i backslash = _mm_set1_epi8('\\');
  const __m128i del = _mm_set1_epi8(0x7f);
  const __m128i space = _mm_set1_epi8(0x20);
  for (; i + 16 <= size; i += 16) {
    const __m128i chunk = _mm_loadu_si128(reinterpret_cast<const __m128i*>(data + i));
    // A signed comparison: the bytes from 0x80 up are negative, below 0x20 as the controls are.
    const __m128i special =
        _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(chunk, quote), _mm_cmpeq_epi8(chunk, backslash)),
                     _mm_or_si128(_mm_cmpeq_epi8(chunk, del), _mm_cmplt_epi8(chunk, space)));
    const int mask = _mm_movemask_epi8(special);
    if (mask != 0) return i + static_cast<std::size_t>(__builtin_ctz(static_cast<unsigned>(mask)));
  }
#endif
  for (; i < size; ++i) {
    const auto c = static_cast<unsigned char>(data[i]);
    if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') return i;
  }
  return size;
}

void AppendJsonString(std::string& out, absl::string_view text) {
  if (PlainJsonStringEnd(text, 0) == text.size()) {
    out.push_back('"');
    out.append(text.data(), text.size());
    out.push_back('"');
    return;
  }
  out += nlohmann::json(std::string(text))
             .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace copilot::gateway
