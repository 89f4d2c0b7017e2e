// UUIDv4 generation from an injected seed, and UUID syntax checks.
#ifndef COPILOT_TESTS_EMULATOR_UUID_H_
#define COPILOT_TESTS_EMULATOR_UUID_H_

#include <cstdint>
#include <random>
#include <string>

#include "absl/strings/string_view.h"

namespace copilot::emulator {

// Makes random (version 4) UUIDs from a seeded PRNG, so a run with a fixed seed is repeatable.
// Not thread-safe; the emulator uses it from its event-loop thread only.
class UuidGenerator {
 public:
  explicit UuidGenerator(uint64_t seed) : rng_(seed) {}
  // Returns a lower-case canonical UUIDv4, e.g. "0b3c...-4...-[89ab]...".
  std::string Next();

 private:
  std::mt19937_64 rng_;
};

// True when `text` is a UUID in canonical 8-4-4-4-12 hex form (any version, either case), the
// form FastAPI/pydantic accepts. Pydantic also accepts the 32-hex form without hyphens.
bool IsUuid(absl::string_view text);

// The canonical lower-case 8-4-4-4-12 form of a text for which IsUuid() is true.
std::string NormalizeUuid(absl::string_view text);

}  // namespace copilot::emulator

#endif  // COPILOT_TESTS_EMULATOR_UUID_H_
