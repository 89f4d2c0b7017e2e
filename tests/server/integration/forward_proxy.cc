#include "tests/server/integration/forward_proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tests/testing/eventually.h"
#include "tests/testing/free_port.h"

namespace copilot::gateway::testing {
namespace {

bool Accepts(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<uint16_t>(port));
  const bool connected =
      connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0;
  close(fd);
  return connected;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace

absl::StatusOr<std::unique_ptr<ForwardProxy>> ForwardProxy::Start(ForwardProxyOptions options) {
  if (access(kBinary, X_OK) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(kBinary, " is missing: apt-get install tinyproxy-bin"));
  }
  absl::Status last = absl::OkStatus();
  // A free port can be taken before tinyproxy binds it: try a few.
  for (int attempt = 0; attempt < 5; ++attempt) {
    absl::StatusOr<int> port = FreeLoopbackPort();
    if (!port.ok()) return port.status();
    char dir_template[] = "/tmp/copilot_forward_proxy_XXXXXX";
    if (mkdtemp(dir_template) == nullptr) return absl::InternalError("mkdtemp failed");
    std::unique_ptr<ForwardProxy> proxy(new ForwardProxy(dir_template, *port));
    // No ConnectPort line: CONNECT to any port. No Allow line: any client (it listens on
    // loopback only).
    std::string config = absl::StrCat("Port ", *port, "\nListen 127.0.0.1\nTimeout 120\n",
                                      "MaxClients 1000\nLogLevel Connect\nLogFile \"", proxy->dir_,
                                      "/tinyproxy.log\"\n");
    if (!options.username.empty()) {
      absl::StrAppend(&config, "BasicAuth ", options.username, " ", options.password, "\n");
    }
    const std::string config_path = proxy->dir_ + "/tinyproxy.conf";
    std::ofstream(config_path) << config;
    absl::StatusOr<std::unique_ptr<ChildProcess>> child = ChildProcess::Start(
        {.argv = {kBinary, "-d", "-c", config_path}, .stdout_path = proxy->dir_ + "/stdout"});
    if (!child.ok()) return child.status();
    proxy->process_ = *std::move(child);
    const int chosen = *port;
    ChildProcess& process = *proxy->process_;
    Eventually([&] { return !process.Running() || Accepts(chosen); }, absl::Seconds(10));
    if (process.Running() && Accepts(chosen)) return proxy;
    last = absl::UnavailableError(
        absl::StrCat("tinyproxy did not listen on port ", chosen, ": ", proxy->Log()));
  }
  return last;
}

ForwardProxy::~ForwardProxy() {
  process_.reset();  // SIGKILL and reap.
  for (const char* name : {"/tinyproxy.conf", "/tinyproxy.log", "/stdout"}) {
    std::remove((dir_ + name).c_str());
  }
  rmdir(dir_.c_str());
}

std::string ForwardProxy::url() const { return absl::StrCat("http://127.0.0.1:", port_); }

std::string ForwardProxy::Log() const { return ReadAll(dir_ + "/tinyproxy.log"); }

std::vector<std::string> ForwardProxy::Requests() const {
  // CONNECT   Dec 03 17:18:00.569 [12507]: Request (file descriptor 4): GET http://... HTTP/1.1
  constexpr absl::string_view kMarker = "): ";
  std::vector<std::string> requests;
  for (absl::string_view line : absl::StrSplit(Log(), '\n')) {
    const std::size_t at = line.find("Request (file descriptor ");
    if (at == absl::string_view::npos) continue;
    const std::size_t marker = line.find(kMarker, at);
    if (marker == absl::string_view::npos) continue;
    requests.emplace_back(line.substr(marker + kMarker.size()));
  }
  return requests;
}

}  // namespace copilot::gateway::testing
