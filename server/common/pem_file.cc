#include "server/common/pem_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/common/errors.h"

namespace copilot::gateway {
namespace {

// More than any certificate bundle (Debian's whole CA bundle is about 200 KiB); what is past it
// is not looked at (a path such as /dev/zero must not hold the start-up).
constexpr std::size_t kMaxRead = 4 * 1024 * 1024;

bool HoldsBlock(absl::string_view text, PemKind kind) {
  if (kind == PemKind::kCertificates) return absl::StrContains(text, "-----BEGIN CERTIFICATE-----");
  for (std::size_t begin = text.find("-----BEGIN "); begin != absl::string_view::npos;
       begin = text.find("-----BEGIN ", begin + 1)) {
    const std::size_t line_end = text.find('\n', begin);
    if (absl::StrContains(text.substr(begin, line_end - begin), "PRIVATE KEY-----")) return true;
  }
  return false;
}

absl::Status CannotRead(absl::string_view setting, const std::string& path, int error) {
  return absl::InvalidArgumentError(
      absl::StrCat(setting, ": cannot read ", path, ": ", ErrnoText(error)));
}

}  // namespace

absl::Status CheckPemFile(absl::string_view setting, const std::string& path, PemKind kind) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return CannotRead(setting, path, errno);
  std::string text;
  char buffer[16384];
  while (text.size() < kMaxRead) {
    const ssize_t n = read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int error = errno;
      close(fd);
      return CannotRead(setting, path, error);
    }
    if (n == 0) break;
    text.append(buffer, static_cast<std::size_t>(n));
  }
  close(fd);
  if (!HoldsBlock(text, kind)) {
    return absl::InvalidArgumentError(
        absl::StrCat(setting, ": ", path, " holds no PEM ",
                     kind == PemKind::kCertificates ? "certificate" : "private key"));
  }
  return absl::OkStatus();
}

}  // namespace copilot::gateway
