// Command-line parsing for the `copilot` CLI: GNU-style long flags and
// positional arguments, with no global state (unlike absl flags, which suit
// subcommands poorly and would make RunCli non-reentrant).
#ifndef COPILOT_CLIENT_CLI_ARG_PARSER_H_
#define COPILOT_CLIENT_CLI_ARG_PARSER_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace copilot::client::cli {

// A flag a command accepts. Plain data.
struct FlagSpec {
  // Name without the leading "--", e.g. "thread".
  absl::string_view name;
  // "--name VALUE" / "--name=VALUE" when true; a switch ("--name") otherwise.
  bool takes_value = true;
};

// The result of ParseArgs. Plain data; not synchronized.
struct ParsedArgs {
  // Flags given, by name; switches map to "". A repeated flag keeps its last
  // value.
  absl::flat_hash_map<std::string, std::string> flags;
  // Positional arguments in order.
  std::vector<std::string> positionals;

  bool Has(absl::string_view name) const { return flags.contains(name); }
  std::optional<std::string> Get(absl::string_view name) const;
};

// Parses `args` against `specs`. Flags are "--name VALUE", "--name=VALUE" or,
// for switches, "--name"; "-h" means "--help" when `specs` has "help"; "--"
// makes every later argument positional; "-" alone is positional. With
// `stop_at_positional`, the first positional argument and everything after it
// are returned unparsed in `positionals` (for global flags before a
// subcommand). Fails with INVALID_ARGUMENT naming the flag for an unknown
// flag, a missing value, or a value given to a switch.
absl::StatusOr<ParsedArgs> ParseArgs(absl::Span<const std::string> args,
                                     absl::Span<const FlagSpec> specs,
                                     bool stop_at_positional = false);

}  // namespace copilot::client::cli

#endif  // COPILOT_CLIENT_CLI_ARG_PARSER_H_
