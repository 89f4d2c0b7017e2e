// The config loader (server/config/config_loader.h) on any YAML text, the way the gateway reads
// its file at start and on every reload.
//
// Properties: yaml-cpp's exceptions never escape; every rejection is INVALID_ARGUMENT naming
// a path; a parsed config is validated without crashing, twice with the same answer.
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "server/config/config_loader.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace gw = copilot::gateway;
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<gw::GatewayConfig> config = gw::ParseConfigYaml(text);
  if (!config.ok()) {
    FUZZ_CHECK(config.status().code() == absl::StatusCode::kInvalidArgument,
               config.status().ToString());
    FUZZ_CHECK(!config.status().message().empty(), "an error without a message");
    return 0;
  }
  const absl::Status valid = gw::ValidateConfig(*config);
  FUZZ_CHECK(valid.ok() || valid.code() == absl::StatusCode::kInvalidArgument, valid.ToString());
  FUZZ_CHECK(gw::ValidateConfig(*config) == valid, "ValidateConfig is not deterministic");
  absl::StatusOr<gw::GatewayConfig> built =
      gw::BuildConfigFromText("fuzz.yaml", text, gw::ConfigOverrides());
  FUZZ_CHECK(built.ok() == valid.ok(), "BuildConfigFromText disagrees with ValidateConfig");
  return 0;
}
