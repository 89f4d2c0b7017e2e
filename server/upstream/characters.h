// What usage and quotas count as characters: Unicode code points of message contents (what the
// caller sends, and what answers bring back). Pure functions: thread-safe.
#ifndef COPILOT_GATEWAY_SERVER_UPSTREAM_CHARACTERS_H_
#define COPILOT_GATEWAY_SERVER_UPSTREAM_CHARACTERS_H_

#include <cstdint>

#include "absl/strings/string_view.h"
#include "copilot/v1/resources.pb.h"
#include "server/upstream/haufe_api.h"

namespace copilot::gateway {

// Code points in `text`, counting every byte that does not continue a UTF-8 sequence (the
// caller's text is validated before; an answer's is counted as the upstream sent it).
inline int64_t CountCharacters(absl::string_view text) {
  int64_t count = 0;
  for (const char c : text) count += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return count;
}

inline int64_t CallerCharacters(const copilot::v1::MessageInput& message) {
  return CountCharacters(message.content());
}

inline int64_t CallerCharacters(const CompletionParams& params) {
  int64_t count = 0;
  for (const copilot::v1::MessageInput& message : params.messages) {
    count += CallerCharacters(message);
  }
  return count;
}

inline int64_t AnswerCharacters(const copilot::v1::Message& message) {
  return CountCharacters(message.content());
}

inline int64_t AnswerCharacters(const copilot::v1::MessageChunk& chunk) {
  return CountCharacters(chunk.delta().content());
}

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_UPSTREAM_CHARACTERS_H_
