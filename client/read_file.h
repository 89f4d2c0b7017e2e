// Reads a whole file, for the few inputs the client takes from files (TLS
// PEM files, the CLI's --token-file).
#ifndef COPILOT_CLIENT_READ_FILE_H_
#define COPILOT_CLIENT_READ_FILE_H_

#include <string>

#include "absl/status/statusor.h"

namespace copilot::client {

// The contents of `path`, read to its end (regular files, pipes such as
// /dev/stdin or a shell's <(...), ...). NOT_FOUND with the system's reason
// ("No such file or directory", "Is a directory", "Permission denied") when
// it cannot be opened or read; the message does not repeat the path, so the
// caller can say what the file was for. Thread-safe.
absl::StatusOr<std::string> ReadWholeFile(const std::string& path);

}  // namespace copilot::client

#endif  // COPILOT_CLIENT_READ_FILE_H_
