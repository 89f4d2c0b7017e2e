#include "client/read_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

#include "absl/status/status.h"

namespace copilot::client {
namespace {

absl::Status ErrnoError(int error) {
  // std::generic_category().message() is thread-safe, unlike strerror().
  return absl::NotFoundError(std::generic_category().message(error));
}

}  // namespace

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno);
  std::string contents;
  char buffer[16 * 1024];
  while (true) {
    const ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n > 0) {
      contents.append(buffer, static_cast<size_t>(n));
    } else if (n == 0) {
      break;
    } else if (errno != EINTR) {
      const int error = errno;
      close(fd);
      return ErrnoError(error);
    }
  }
  close(fd);
  return contents;
}

}  // namespace copilot::client
