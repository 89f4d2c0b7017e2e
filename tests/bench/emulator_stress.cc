// emulator_stress: holds N concurrent slow requests against haufe-emulator and reports what it
// cost the emulator. Not part of the test suite.
//
//   emulator_stress [--connections N] [--hold-seconds S] [--target HOST:PORT --pid PID
//                    --api-key KEY] [--connect-batch B]
//
// Without --target it starts the emulator itself (emulator_testing). It installs a latency fault
// of S seconds on list_assistants, opens N connections from one epoll loop (non-blocking
// connect, one GET each), waits for every answer, and prints successes/failures, the emulator's
// peak connections (/_emulator/stats), its peak RSS (VmHWM) and CPU time (utime+stime), and the
// wall time.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "tests/emulator/testing/emulator_process.h"

namespace {

using copilot::emulator::testing::EmulatorProcess;
using copilot::emulator::testing::HttpResponse;
using copilot::emulator::testing::SendHttpRequest;
using Clock = std::chrono::steady_clock;

struct Options {
  int connections = 10000;
  int hold_seconds = 10;
  int connect_batch = 1000;
  std::string target;  // HOST:PORT; empty: start an emulator
  int pid = 0;
  std::string api_key = "test-api-key";
};

struct Conn {
  int fd = -1;
  size_t sent = 0;
  std::string in;
  bool done = false;
  bool ok = false;
  Clock::time_point start;
  Clock::time_point request_sent;
  double seconds = 0;     // socket creation to complete response
  double after_send = 0;  // request fully sent to complete response
};

bool ParseOptions(int argc, char** argv, Options& o) {
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (i + 1 >= argc) return false;
    std::string value = argv[++i];
    bool ok = true;
    if (flag == "--connections") {
      ok = absl::SimpleAtoi(value, &o.connections) && o.connections > 0;
    } else if (flag == "--hold-seconds") {
      ok = absl::SimpleAtoi(value, &o.hold_seconds) && o.hold_seconds >= 0;
    } else if (flag == "--connect-batch") {
      ok = absl::SimpleAtoi(value, &o.connect_batch) && o.connect_batch > 0;
    } else if (flag == "--target") {
      o.target = value;
    } else if (flag == "--pid") {
      ok = absl::SimpleAtoi(value, &o.pid);
    } else if (flag == "--api-key") {
      o.api_key = value;
    } else {
      ok = false;
    }
    if (!ok) return false;
  }
  return true;
}

void RaiseFileLimit() {
  rlimit limit{};
  getrlimit(RLIMIT_NOFILE, &limit);
  limit.rlim_cur = limit.rlim_max;
  setrlimit(RLIMIT_NOFILE, &limit);
}

std::string ProcStatusField(int pid, const std::string& field) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) {
      return std::string(absl::StripAsciiWhitespace(line.substr(field.size() + 1)));
    }
  }
  return "?";
}

// utime + stime of `pid`, in seconds.
double CpuSeconds(int pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t paren = stat.rfind(')');
  if (paren == std::string::npos) return -1;
  std::vector<std::string> fields = absl::StrSplit(stat.substr(paren + 2), ' ');
  // After "pid (comm) ": state is field 3; utime and stime are fields 14 and 15.
  double utime = 0;
  double stime = 0;
  if (fields.size() < 13 || !absl::SimpleAtod(fields[11], &utime) ||
      !absl::SimpleAtod(fields[12], &stime)) {
    return -1;
  }
  return (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// Whether `in` holds a complete response; sets `ok` when its status is 200.
bool ResponseComplete(const std::string& in, bool& ok) {
  size_t head_end = in.find("\r\n\r\n");
  if (head_end == std::string::npos) return false;
  std::string head = absl::AsciiStrToLower(in.substr(0, head_end));
  size_t cl = head.find("content-length:");
  size_t length = 0;
  if (cl != std::string::npos) {
    size_t eol = head.find("\r\n", cl);
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(head.substr(cl + 15, eol - cl - 15)),
                          &length)) {
      return false;
    }
  }
  if (in.size() < head_end + 4 + length) return false;
  ok = in.rfind("HTTP/1.1 200", 0) == 0;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!ParseOptions(argc, argv, o)) {
    std::fprintf(stderr,
                 "usage: emulator_stress [--connections N] [--hold-seconds S] [--connect-batch B]"
                 "\n         [--target HOST:PORT --pid PID --api-key KEY]\n");
    return 2;
  }
  RaiseFileLimit();
  rlimit limit{};
  getrlimit(RLIMIT_NOFILE, &limit);
  if (limit.rlim_cur < static_cast<rlim_t>(o.connections) + 64) {
    std::fprintf(stderr, "RLIMIT_NOFILE %llu is too low for %d connections\n",
                 static_cast<unsigned long long>(limit.rlim_cur), o.connections);
    return 1;
  }

  std::unique_ptr<EmulatorProcess> owned;
  std::string host = "127.0.0.1";
  int port = 0;
  int pid = o.pid;
  if (o.target.empty()) {
    auto started = EmulatorProcess::Start({.api_key = o.api_key});
    if (!started.ok()) {
      std::fprintf(stderr, "%s\n", std::string(started.status().message()).c_str());
      return 1;
    }
    owned = *std::move(started);
    port = owned->port();
    pid = owned->pid();
  } else {
    size_t colon = o.target.rfind(':');
    if (colon == std::string::npos || !absl::SimpleAtoi(o.target.substr(colon + 1), &port)) {
      std::fprintf(stderr, "--target must be HOST:PORT\n");
      return 2;
    }
    host = o.target.substr(0, colon);
  }
  std::string base = absl::StrCat("http://", host, ":", port);
  nlohmann::json fault = {
      {"endpoint", "list_assistants"}, {"type", "latency"}, {"delay_ms", o.hold_seconds * 1000}};
  HttpResponse installed = SendHttpRequest("POST", base + "/_emulator/faults", fault.dump());
  if (installed.status != 200) {
    std::fprintf(stderr, "installing the latency fault failed: %ld %s\n", installed.status,
                 installed.body.c_str());
    return 1;
  }
  double cpu_before = pid > 0 ? CpuSeconds(pid) : -1;

  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, host.c_str(), &addr.sin_addr);
  const std::string request = absl::StrCat("GET /agents/v1/assistants HTTP/1.1\r\nHost: ", host,
                                           "\r\napi-key: ", o.api_key, "\r\n\r\n");

  int ep = epoll_create1(EPOLL_CLOEXEC);
  std::vector<Conn> conns(static_cast<size_t>(o.connections));
  size_t opened = 0;
  size_t finished = 0;
  size_t connect_errors = 0;
  Clock::time_point start = Clock::now();
  Clock::time_point deadline = start + std::chrono::seconds(o.hold_seconds + 60);
  std::vector<epoll_event> events(4096);
  auto fail = [&](Conn& c) {
    if (c.done) return;
    c.done = true;
    c.ok = false;
    close(c.fd);
    ++finished;
  };
  int64_t mid_peak = -1;
  bool mid_sampled = false;
  while (finished < conns.size() && Clock::now() < deadline) {
    // Open the next batch of connections.
    for (int b = 0; b < o.connect_batch && opened < conns.size(); ++b, ++opened) {
      Conn& c = conns[opened];
      c.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      c.start = Clock::now();
      if (c.fd < 0) {
        ++connect_errors;
        c.done = true;
        ++finished;
        continue;
      }
      int one = 1;
      setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      int rc = connect(c.fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
      if (rc != 0 && errno != EINPROGRESS) {
        ++connect_errors;
        fail(c);
        continue;
      }
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
      ev.data.u64 = opened;
      epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &ev);
    }
    if (!mid_sampled && opened == conns.size() &&
        Clock::now() - start > std::chrono::seconds(o.hold_seconds) / 2) {
      HttpResponse stats = SendHttpRequest("GET", base + "/_emulator/stats", "");
      nlohmann::json j = stats.Json();
      if (!j.is_discarded()) mid_peak = j.value("open_connections", int64_t{-1});
      mid_sampled = true;
    }
    int n = epoll_wait(ep, events.data(), static_cast<int>(events.size()),
                       opened < conns.size() ? 1 : 100);
    for (int i = 0; i < n; ++i) {
      Conn& c = conns[events[i].data.u64];
      if (c.done) continue;
      if (events[i].events & EPOLLERR) {
        fail(c);
        continue;
      }
      if ((events[i].events & EPOLLOUT) && c.sent < request.size()) {
        ssize_t w = send(c.fd, request.data() + c.sent, request.size() - c.sent, MSG_NOSIGNAL);
        if (w > 0) c.sent += static_cast<size_t>(w);
        if (c.sent == request.size()) c.request_sent = Clock::now();
        if (w < 0 && errno != EAGAIN) {
          fail(c);
          continue;
        }
      }
      if (events[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) {
        char buf[8192];
        bool closed = false;
        while (true) {
          ssize_t r = read(c.fd, buf, sizeof(buf));
          if (r > 0) {
            c.in.append(buf, static_cast<size_t>(r));
            continue;
          }
          if (r == 0 || (errno != EAGAIN && errno != EINTR)) closed = true;
          break;
        }
        bool ok = false;
        if (ResponseComplete(c.in, ok)) {
          c.done = true;
          c.ok = ok;
          c.seconds = std::chrono::duration<double>(Clock::now() - c.start).count();
          c.after_send = std::chrono::duration<double>(Clock::now() - c.request_sent).count();
          close(c.fd);
          ++finished;
        } else if (closed) {
          fail(c);
        }
      }
    }
  }
  double wall = std::chrono::duration<double>(Clock::now() - start).count();
  size_t successes = 0;
  std::vector<double> latencies;
  std::vector<double> after_send;
  for (Conn& c : conns) {
    if (!c.done) {
      close(c.fd);
    } else if (c.ok) {
      ++successes;
      latencies.push_back(c.seconds);
      after_send.push_back(c.after_send);
    }
  }
  std::sort(latencies.begin(), latencies.end());
  std::sort(after_send.begin(), after_send.end());
  auto pct_of = [](const std::vector<double>& v, double p) {
    return v.empty() ? 0.0 : v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
  };
  auto pct = [&](double p) { return pct_of(latencies, p); };
  HttpResponse stats = SendHttpRequest("GET", base + "/_emulator/stats", "");
  SendHttpRequest("DELETE", base + "/_emulator/faults", "");

  std::printf("connections        %d (hold %d s, connect batch %d)\n", o.connections,
              o.hold_seconds, o.connect_batch);
  std::printf("successes          %zu\n", successes);
  std::printf("failures           %zu (connect errors %zu, unfinished %zu)\n",
              conns.size() - successes, connect_errors, conns.size() - finished);
  std::printf("latency s          min %.3f  p50 %.3f  p99 %.3f  max %.3f (from connect)\n", pct(0),
              pct(0.5), pct(0.99), latencies.empty() ? 0.0 : latencies.back());
  std::printf(
      "after send s       min %.3f  p50 %.3f  p99 %.3f  max %.3f (request sent -> answer)\n",
      pct_of(after_send, 0), pct_of(after_send, 0.5), pct_of(after_send, 0.99),
      after_send.empty() ? 0.0 : after_send.back());
  std::printf("emulator stats     %s\n", stats.body.c_str());
  std::printf("open mid-hold      %lld\n", static_cast<long long>(mid_peak));
  if (pid > 0) {
    double cpu_after = CpuSeconds(pid);
    std::printf("emulator VmHWM     %s\n", ProcStatusField(pid, "VmHWM").c_str());
    std::printf("emulator CPU s     %.2f total (%.2f during the run)\n", cpu_after,
                cpu_after - cpu_before);
  }
  std::printf("wall s             %.2f\n", wall);
  return successes == conns.size() ? 0 : 1;
}
