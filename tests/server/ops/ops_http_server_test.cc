#include "server/ops/ops_http_server.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/eventually.h"

namespace copilot::gateway {
namespace {

using ::copilot::gateway::testing::Eventually;
using ::testing::AllOf;
using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::StartsWith;

// How fast a request must be answered while other clients hold connections open. Alone, one
// takes about a millisecond here; generous because the test machine is a loaded 2-core box.
// The civetweb listener this replaced took its 10 s request timeout per two idle connections.
constexpr absl::Duration kPromptly = absl::Seconds(2);

struct Response {
  long status = 0;  // NOLINT(runtime/int): libcurl's type.
  std::string content_type;
  std::string content_length;  // The Content-Length header, or empty.
  std::string body;
};

// One request with libcurl's easy API; status 0 when the request failed or took longer than
// `timeout`.
Response Fetch(const std::string& url, bool head = false,
               absl::Duration timeout = absl::Seconds(30)) {
  Response response;
  CURL* curl = curl_easy_init();
  if (curl == nullptr) return response;
  auto on_body = +[](char* data, size_t size, size_t count, void* out) -> size_t {
    static_cast<Response*>(out)->body.append(data, size * count);
    return size * count;
  };
  auto on_header = +[](char* data, size_t size, size_t count, void* out) -> size_t {
    absl::string_view line(data, size * count);
    if (absl::StartsWithIgnoreCase(line, "content-length:")) {
      line.remove_prefix(15);
      static_cast<Response*>(out)->content_length = std::string(absl::StripAsciiWhitespace(line));
    }
    return size * count;
  };
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &response);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &response);
  curl_easy_setopt(curl, CURLOPT_NOBODY, head ? 1L : 0L);
  const long timeout_ms = absl::ToInt64Milliseconds(timeout);  // NOLINT(runtime/int): libcurl's.
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
  if (curl_easy_perform(curl) == CURLE_OK) {
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &response.status);
    char* type = nullptr;
    curl_easy_getinfo(curl, CURLINFO_CONTENT_TYPE, &type);
    if (type != nullptr) response.content_type = type;
  }
  curl_easy_cleanup(curl);
  return response;
}

// A request and how long it took to be answered.
struct Timed {
  Response response;
  absl::Duration took;
};

Timed TimedFetch(const std::string& url) {
  const absl::Time start = absl::Now();
  Response response = Fetch(url, /*head=*/false, /*timeout=*/absl::Seconds(5));
  return Timed{std::move(response), absl::Now() - start};
}

// A client TCP socket (blocking), closed when destroyed; fd() is -1 when it could not connect.
class Client {
 public:
  // Connects to 127.0.0.1:`port`; a `receive_buffer` > 0 is set as SO_RCVBUF first.
  explicit Client(int port, int receive_buffer = 0) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return;
    if (receive_buffer > 0) {
      setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
    }
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = htons(static_cast<uint16_t>(port));
    if (connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
      close(fd_);
      fd_ = -1;
    }
  }
  ~Client() {
    if (fd_ >= 0) close(fd_);
  }
  Client(Client&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Client& operator=(Client&&) = delete;

  int fd() const { return fd_; }

  bool Send(absl::string_view data) const {
    while (!data.empty()) {
      const ssize_t n = send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // True once the server closed the connection (EOF or reset); does not wait. What the server
  // sent before is appended to `received`.
  bool ClosedByServer(std::string* received) const {
    char buffer[4096];
    while (true) {
      const ssize_t n = recv(fd_, buffer, sizeof buffer, MSG_DONTWAIT);
      if (n > 0) {
        received->append(buffer, static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      return n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
    }
  }

  // Reads until the server closes the connection or `timeout` passes; says whether it closed.
  bool ReadUntilClosed(absl::Duration timeout, std::string* received) const {
    const absl::Time give_up = absl::Now() + timeout;
    while (true) {
      if (ClosedByServer(received)) return true;
      const absl::Duration left = give_up - absl::Now();
      if (left <= absl::ZeroDuration()) return false;
      pollfd ready{.fd = fd_, .events = POLLIN, .revents = 0};
      poll(&ready, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
    }
  }

 private:
  int fd_ = -1;
};

// Sends `request` on a new connection; returns all the server answered before it closed the
// connection, or "(not closed)" + that when it did not close it within 5 s.
std::string Exchange(int port, absl::string_view request) {
  const Client client(port);
  if (client.fd() < 0 || !client.Send(request)) return "(not sent)";
  std::string response;
  if (!client.ReadUntilClosed(absl::Seconds(5), &response)) return "(not closed)" + response;
  return response;
}

class OpsHttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override { Restart(OpsHttpOptions()); }

  // (Re)starts the server under test, on 127.0.0.1 with a free port.
  void Restart(OpsHttpOptions options) {
    server_.reset();
    OpsHandlers handlers;
    handlers.metrics = [this] {
      ++metrics_calls_;
      return metrics_body_;
    };
    handlers.live = [this] { return live_.load(); };
    handlers.ready = [this] { return ready_.load(); };
    absl::StatusOr<std::unique_ptr<OpsHttpServer>> server =
        OpsHttpServer::Start("127.0.0.1:0", std::move(handlers), options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  std::string Url(absl::string_view path) const {
    return absl::StrCat("http://127.0.0.1:", server_->port(), path);
  }

  // Opens `count` connections that send nothing.
  std::vector<Client> IdleClients(int count) const {
    std::vector<Client> clients;
    clients.reserve(count);
    for (int i = 0; i < count; ++i) clients.emplace_back(server_->port());
    return clients;
  }

  std::atomic<bool> live_{true};
  std::atomic<bool> ready_{true};
  std::atomic<int> metrics_calls_{0};
  std::string metrics_body_ = "# TYPE up gauge\nup 1\n";  // Set before Restart.
  std::unique_ptr<OpsHttpServer> server_;
};

TEST_F(OpsHttpServerTest, ReportsTheAddressItListensOn) {
  EXPECT_GT(server_->port(), 0);
  EXPECT_EQ(server_->address(), absl::StrCat("127.0.0.1:", server_->port()));
}

TEST_F(OpsHttpServerTest, MetricsServesTheHandlersBodyAsPrometheusText) {
  const Response response = Fetch(Url("/metrics"));
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, "# TYPE up gauge\nup 1\n");
  EXPECT_THAT(response.content_type, StartsWith("text/plain"));
  EXPECT_THAT(response.content_type, HasSubstr("version=0.0.4"));
  EXPECT_EQ(response.content_length, std::to_string(response.body.size()));
  EXPECT_EQ(metrics_calls_.load(), 1);
}

TEST_F(OpsHttpServerTest, HealthzIsOkWhileLive) {
  const Response response = Fetch(Url("/healthz"));
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(absl::StripAsciiWhitespace(response.body), "ok");
  EXPECT_THAT(response.content_type, StartsWith("text/plain"));
  live_ = false;
  EXPECT_EQ(Fetch(Url("/healthz")).status, 503);
}

TEST_F(OpsHttpServerTest, ReadyzFollowsTheReadyHandler) {
  EXPECT_EQ(Fetch(Url("/readyz")).status, 200);
  ready_ = false;
  const Response not_ready = Fetch(Url("/readyz"));
  EXPECT_EQ(not_ready.status, 503);
  EXPECT_THAT(not_ready.body, HasSubstr("not ready"));
  ready_ = true;
  EXPECT_EQ(Fetch(Url("/readyz")).status, 200);
}

TEST_F(OpsHttpServerTest, HeadAnswersHeadersWithoutABody) {
  const Response response = Fetch(Url("/metrics"), /*head=*/true);
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, "");
  EXPECT_THAT(response.content_type, HasSubstr("version=0.0.4"));
  EXPECT_EQ(response.content_length, "21");  // The GET body's length.
  ready_ = false;
  EXPECT_EQ(Fetch(Url("/readyz"), /*head=*/true).status, 503);
  EXPECT_EQ(Fetch(Url("/healthz"), /*head=*/true).status, 200);
}

TEST_F(OpsHttpServerTest, UnknownPathIsNotFound) {
  EXPECT_EQ(Fetch(Url("/")).status, 404);
  EXPECT_EQ(Fetch(Url("/nope")).status, 404);
  EXPECT_EQ(Fetch(Url("/debug/pprof")).status, 404);
  EXPECT_EQ(metrics_calls_.load(), 0);
}

TEST_F(OpsHttpServerTest, QueryStringIsIgnored) {
  EXPECT_EQ(Fetch(Url("/metrics?name[]=up")).status, 200);
  EXPECT_EQ(metrics_calls_.load(), 1);
}

// Only the exact paths are endpoints: a path that merely starts with one is unknown.
TEST_F(OpsHttpServerTest, PathThatOnlyStartsWithAnEndpointIsNotFound) {
  EXPECT_EQ(Fetch(Url("/metricsx")).status, 404);
  EXPECT_EQ(Fetch(Url("/metrics.json")).status, 404);
  EXPECT_EQ(Fetch(Url("/healthzz")).status, 404);
  EXPECT_EQ(Fetch(Url("/readyz-now")).status, 404);
  EXPECT_EQ(metrics_calls_.load(), 0);
}

TEST_F(OpsHttpServerTest, StopsListeningWhenDestroyed) {
  const int port = server_->port();
  server_.reset();
  EXPECT_EQ(Fetch(absl::StrCat("http://127.0.0.1:", port, "/healthz")).status, 0);
}

TEST_F(OpsHttpServerTest, DestroyingTheServerClosesItsConnections) {
  const Client idle(server_->port());
  ASSERT_GE(idle.fd(), 0);
  absl::SleepFor(absl::Milliseconds(100));  // Accepted.
  server_.reset();
  std::string received;
  EXPECT_TRUE(idle.ReadUntilClosed(absl::Seconds(2), &received));
  EXPECT_EQ(received, "");
}

// The reviewer's reproduction, 50 times over: civetweb's two workers each waited 10 s on an idle
// connection while the probes queued behind them.
TEST_F(OpsHttpServerTest, IdleConnectionsDoNotDelayProbesOrScrapes) {
  const std::vector<Client> idle = IdleClients(100);
  for (const Client& client : idle) ASSERT_GE(client.fd(), 0);
  const Timed healthz = TimedFetch(Url("/healthz"));
  const Timed readyz = TimedFetch(Url("/readyz"));
  const Timed metrics = TimedFetch(Url("/metrics"));
  EXPECT_EQ(healthz.response.status, 200);
  EXPECT_EQ(healthz.response.body, "ok\n");
  EXPECT_LT(healthz.took, kPromptly);
  EXPECT_EQ(readyz.response.status, 200);
  EXPECT_EQ(readyz.response.body, "ready\n");
  EXPECT_LT(readyz.took, kPromptly);
  EXPECT_EQ(metrics.response.status, 200);
  EXPECT_EQ(metrics.response.body, "# TYPE up gauge\nup 1\n");
  EXPECT_LT(metrics.took, kPromptly);
  // The idle connections are still open: they were not closed to make way.
  int closed = 0;
  std::string received;
  for (const Client& client : idle) closed += client.ClosedByServer(&received) ? 1 : 0;
  EXPECT_EQ(closed, 0);
  // copilot_gateway_ops_connections: the 100 idle ones (each probe's was closed once answered).
  EXPECT_TRUE(Eventually([&] { return server_->connections() == 100; })) << server_->connections();
}

// More connections than the cap: the oldest idle ones are closed to make room, in the order
// they came, so a flood of idle connections cannot lock a probe out.
TEST_F(OpsHttpServerTest, ConnectionsOverTheCapCloseTheOldestIdleOnesAndProbesAnswer) {
  const int cap = OpsHttpOptions().max_connections;
  ASSERT_EQ(cap, 256);
  const std::vector<Client> idle = IdleClients(300);
  for (const Client& client : idle) ASSERT_GE(client.fd(), 0);
  const Timed healthz = TimedFetch(Url("/healthz"));
  EXPECT_EQ(healthz.response.status, 200);
  EXPECT_LT(healthz.took, kPromptly);
  // 300 idle + the probe = 301 accepted: the first 45 were closed, every later one is open.
  const int evicted = 300 + 1 - cap;
  std::string received;
  EXPECT_TRUE(idle[evicted - 1].ReadUntilClosed(absl::Seconds(2), &received));
  int closed_first = 0;
  int closed_later = 0;
  for (int i = 0; i < 300; ++i) {
    if (idle[i].ClosedByServer(&received)) ++(i < evicted ? closed_first : closed_later);
  }
  EXPECT_EQ(closed_first, evicted);
  EXPECT_EQ(closed_later, 0);
  EXPECT_EQ(received, "");  // Closed without an answer.
  // Never more than the cap open: the 255 idle ones left once the probe's was closed.
  EXPECT_TRUE(Eventually([&] { return server_->connections() == cap - 1; }))
      << server_->connections();
  EXPECT_EQ(Fetch(Url("/readyz")).status, 200);
}

// Three clients each send one byte of a request head every 50 ms and would need 12 s to finish
// it: each is closed, unanswered, when the head deadline (1 s here) passes, and probes meanwhile
// are answered at once.
TEST_F(OpsHttpServerTest, SlowLorisIsClosedAtTheHeadDeadlineAndDoesNotDelayProbes) {
  OpsHttpOptions options;
  options.head_timeout = absl::Seconds(1);
  ASSERT_NO_FATAL_FAILURE(Restart(options));
  constexpr int kClients = 3;
  const std::string head = absl::StrCat("GET /healthz HTTP/1.1\r\nX-Slow: ", std::string(220, 'a'));
  std::vector<Client> clients;
  std::vector<absl::Time> connected;
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back(server_->port());
    connected.push_back(absl::Now());
    ASSERT_GE(clients.back().fd(), 0);
  }
  std::vector<absl::Duration> open_for(kClients, absl::InfiniteDuration());
  std::vector<std::string> received(kClients);
  std::thread loris([&] {
    const absl::Time give_up = absl::Now() + absl::Seconds(10);
    for (size_t sent = 0; sent < head.size() && absl::Now() < give_up; ++sent) {
      bool any_open = false;
      for (int i = 0; i < kClients; ++i) {
        if (open_for[i] != absl::InfiniteDuration()) continue;
        if (clients[i].ClosedByServer(&received[i]) || !clients[i].Send(head.substr(sent, 1))) {
          open_for[i] = absl::Now() - connected[i];
          continue;
        }
        any_open = true;
      }
      if (!any_open) break;
      absl::SleepFor(absl::Milliseconds(50));
    }
  });
  absl::SleepFor(absl::Milliseconds(300));  // The dripping is under way.
  const Timed healthz = TimedFetch(Url("/healthz"));
  const Timed readyz = TimedFetch(Url("/readyz"));
  loris.join();
  EXPECT_EQ(healthz.response.status, 200);
  EXPECT_LT(healthz.took, kPromptly);
  EXPECT_EQ(readyz.response.status, 200);
  EXPECT_LT(readyz.took, kPromptly);
  for (int i = 0; i < kClients; ++i) {
    // Connected before the server accepted it, so never before the deadline; the upper bound
    // allows for the 50 ms drip and a loaded machine.
    EXPECT_GE(open_for[i], absl::Milliseconds(950)) << "client " << i;
    EXPECT_LT(open_for[i], absl::Seconds(3)) << "client " << i;
    EXPECT_EQ(received[i], "") << "client " << i;
  }
}

// A request of exactly `size` bytes for `path`, padded with one header.
std::string RequestOfSize(absl::string_view path, size_t size) {
  const std::string start = absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: x\r\nX-Pad: ");
  return absl::StrCat(start, std::string(size - start.size() - 4, 'p'), "\r\n\r\n");
}

TEST_F(OpsHttpServerTest, RequestHeadOverEightKibIsAnswered431) {
  const size_t limit = OpsHttpOptions().max_head_bytes;
  ASSERT_EQ(limit, 8192u);
  EXPECT_THAT(Exchange(server_->port(), RequestOfSize("/metrics", limit)),
              StartsWith("HTTP/1.1 200 OK\r\n"));
  EXPECT_EQ(metrics_calls_.load(), 1);
  EXPECT_THAT(Exchange(server_->port(), RequestOfSize("/metrics", limit + 1)),
              StartsWith("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
  const std::string large = Exchange(server_->port(), RequestOfSize("/metrics", 64 * 1024));
  EXPECT_THAT(large, StartsWith("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
  EXPECT_THAT(large, HasSubstr("\r\nConnection: close\r\n"));
  EXPECT_EQ(metrics_calls_.load(), 1);  // Not for the oversized ones.
}

// More than the kernel holds for a client that does not read: the largest send buffer TCP
// grows to (the last field of net.ipv4.tcp_wmem, 4 MiB by default) and 1 MiB.
size_t MoreThanTheKernelBuffers() {
  std::ifstream tcp_wmem("/proc/sys/net/ipv4/tcp_wmem");
  size_t least = 0;
  size_t initial = 0;
  size_t most = 4 << 20;  // Kept when the file cannot be read.
  tcp_wmem >> least >> initial >> most;
  return most + (1 << 20);
}

// Three clients ask for a /metrics body larger than the kernel's buffers and never read it:
// probes are answered meanwhile, and once the write timeout (1 s here) passed the three are
// reset with their responses unfinished.
TEST_F(OpsHttpServerTest, ClientsThatNeverReadALargeScrapeDoNotBlockOthersAndAreDropped) {
  metrics_body_ = std::string(MoreThanTheKernelBuffers(), '#');
  OpsHttpOptions options;
  options.write_timeout = absl::Seconds(1);
  ASSERT_NO_FATAL_FAILURE(Restart(options));
  std::vector<Client> readers_not;
  const absl::Time asked = absl::Now();
  for (int i = 0; i < 3; ++i) {
    readers_not.emplace_back(server_->port(), /*receive_buffer=*/4096);
    ASSERT_TRUE(readers_not.back().Send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"));
  }
  absl::SleepFor(absl::Milliseconds(200));  // The server has filled their socket buffers.
  const Timed healthz = TimedFetch(Url("/healthz"));
  const Timed readyz = TimedFetch(Url("/readyz"));
  EXPECT_EQ(healthz.response.status, 200);
  EXPECT_LT(healthz.took, kPromptly);
  EXPECT_EQ(readyz.response.status, 200);
  EXPECT_LT(readyz.took, kPromptly);
  // Reading earlier would let the server finish: read only once the write timeout is over (it
  // runs from each scrape's end, a little after `asked`).
  absl::SleepFor(asked + absl::Seconds(2) - absl::Now());
  for (const Client& client : readers_not) {
    std::string received;
    EXPECT_TRUE(client.ReadUntilClosed(absl::Seconds(5), &received));
    EXPECT_THAT(received, StartsWith("HTTP/1.1 200 OK\r\n"));
    EXPECT_LT(received.size(), metrics_body_.size());
  }
  EXPECT_EQ(metrics_calls_.load(), 3);
}

TEST_F(OpsHttpServerTest, ResponsesCloseTheConnectionAndAreNotCached) {
  const std::string response =
      Exchange(server_->port(), "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(response,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
            "Cache-Control: no-store\r\nConnection: close\r\n\r\nok\n");
  const std::string not_found = Exchange(server_->port(), "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_THAT(not_found, StartsWith("HTTP/1.1 404 Not Found\r\n"));
  EXPECT_THAT(not_found, HasSubstr("\r\nCache-Control: no-store\r\n"));
  EXPECT_THAT(not_found, HasSubstr("\r\nConnection: close\r\n"));
}

TEST_F(OpsHttpServerTest, HeadSendsTheGetHeadersAndNoBody) {
  EXPECT_EQ(Exchange(server_->port(), "HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n"),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
            "Cache-Control: no-store\r\nConnection: close\r\n\r\n");
  const std::string metrics = Exchange(server_->port(), "HEAD /metrics HTTP/1.1\r\n\r\n");
  EXPECT_THAT(metrics, HasSubstr("\r\nContent-Length: 21\r\n"));
  EXPECT_THAT(metrics, EndsWith("\r\n\r\n"));
  EXPECT_THAT(Exchange(server_->port(), "HEAD /nope HTTP/1.1\r\n\r\n"),
              AllOf(StartsWith("HTTP/1.1 404 Not Found\r\n"), EndsWith("\r\n\r\n")));
}

TEST_F(OpsHttpServerTest, OtherMethodsOnAnEndpointAreNotAllowed) {
  for (const char* request :
       {"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", "DELETE /healthz HTTP/1.1\r\n\r\n",
        "PUT /readyz?now=1 HTTP/1.1\r\n\r\n", "OPTIONS /metrics HTTP/1.1\r\n\r\n"}) {
    const std::string response = Exchange(server_->port(), request);
    EXPECT_THAT(response, StartsWith("HTTP/1.1 405 Method Not Allowed\r\n")) << request;
    EXPECT_THAT(response, HasSubstr("\r\nAllow: GET, HEAD\r\n")) << request;
  }
  EXPECT_THAT(Exchange(server_->port(), "POST /nope HTTP/1.1\r\n\r\n"),
              StartsWith("HTTP/1.1 404 Not Found\r\n"));
  EXPECT_EQ(metrics_calls_.load(), 0);
}

TEST_F(OpsHttpServerTest, MalformedRequestLineIsBadRequest) {
  for (const char* request :
       {"GARBAGE\r\n\r\n", "GET /healthz\r\n\r\n", "GET healthz HTTP/1.1\r\n\r\n",
        "GET  /healthz HTTP/1.1\r\n\r\n", "GET /healthz FTP/1.1\r\n\r\n",
        "GET /healthz HTTP/1.1 extra\r\n\r\n", "G(T /healthz HTTP/1.1\r\n\r\n", "\r\n\r\n"}) {
    EXPECT_THAT(Exchange(server_->port(), request), StartsWith("HTTP/1.1 400 Bad Request\r\n"))
        << request;
  }
}

TEST_F(OpsHttpServerTest, AcceptsHttp10AndBareLineFeeds) {
  EXPECT_THAT(Exchange(server_->port(), "GET /readyz HTTP/1.0\n\n"),
              AllOf(StartsWith("HTTP/1.1 200 OK\r\n"), EndsWith("\r\n\r\nready\n")));
}

TEST_F(OpsHttpServerTest, QueryStringIsIgnoredOnEveryEndpoint) {
  EXPECT_EQ(Fetch(Url("/healthz?verbose")).status, 200);
  EXPECT_EQ(Fetch(Url("/readyz?")).status, 200);
  EXPECT_EQ(Fetch(Url("/metricsx?x=1")).status, 404);
}

TEST_F(OpsHttpServerTest, HandlersRunOnTheServersThread) {
  std::atomic<int> calls{0};
  std::thread::id first;
  bool same = true;
  server_.reset();
  OpsHandlers handlers;
  auto note = [&] {
    if (calls++ == 0) {
      first = std::this_thread::get_id();
    } else {
      same = same && first == std::this_thread::get_id();
    }
  };
  handlers.metrics = [&] {
    note();
    return std::string();
  };
  handlers.live = [&] {
    note();
    return true;
  };
  handlers.ready = [&] {
    note();
    return true;
  };
  absl::StatusOr<std::unique_ptr<OpsHttpServer>> server =
      OpsHttpServer::Start("127.0.0.1:0", std::move(handlers));
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string base = absl::StrCat("http://127.0.0.1:", (*server)->port());
  for (const char* path : {"/metrics", "/healthz", "/readyz", "/metrics"}) {
    EXPECT_EQ(Fetch(base + path).status, 200);
  }
  server->reset();
  EXPECT_EQ(calls.load(), 4);
  EXPECT_TRUE(same);
  EXPECT_NE(first, std::this_thread::get_id());
}

// A socket listening on 127.0.0.1 on a free port; closed when destroyed.
class Listener {
 public:
  Listener() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = 0;
    socklen_t length = sizeof address;
    if (fd_ < 0 || bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
        listen(fd_, 1) != 0 ||
        getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
      return;
    }
    port_ = ntohs(address.sin_port);
  }
  ~Listener() {
    if (fd_ >= 0) close(fd_);
  }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

OpsHandlers TrivialHandlers() {
  return OpsHandlers{.metrics = [] { return std::string(); },
                     .live = [] { return true; },
                     .ready = [] { return true; }};
}

TEST(OpsHttpServerStartTest, FailsWithUnavailableWhenTheAddressIsInUse) {
  const Listener taken;
  ASSERT_GT(taken.port(), 0);
  const std::string listen = absl::StrCat("127.0.0.1:", taken.port());
  absl::StatusOr<std::unique_ptr<OpsHttpServer>> server =
      OpsHttpServer::Start(listen, TrivialHandlers());
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(server.status().message(), HasSubstr(listen));
}

TEST(OpsHttpServerStartTest, FailsWhenAnotherOpsServerHasThePort) {
  absl::StatusOr<std::unique_ptr<OpsHttpServer>> first =
      OpsHttpServer::Start("127.0.0.1:0", TrivialHandlers());
  ASSERT_TRUE(first.ok()) << first.status();
  const std::string listen = (*first)->address();
  absl::StatusOr<std::unique_ptr<OpsHttpServer>> second =
      OpsHttpServer::Start(listen, TrivialHandlers());
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  // The first one still answers.
  EXPECT_EQ(Fetch(absl::StrCat("http://", listen, "/healthz")).status, 200);
}

TEST(OpsHttpServerStartTest, FailsOnAnUnparsableAddress) {
  absl::StatusOr<std::unique_ptr<OpsHttpServer>> server =
      OpsHttpServer::Start("not an address", TrivialHandlers());
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(server.status().message(), HasSubstr("not an address"));
}

TEST(OpsHttpServerStartTest, ListensOnIpv6Loopback) {
  const int probe = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in6 loopback{};
  loopback.sin6_family = AF_INET6;
  loopback.sin6_addr = in6addr_loopback;
  const bool ipv6 =
      probe >= 0 && bind(probe, reinterpret_cast<sockaddr*>(&loopback), sizeof loopback) == 0;
  if (probe >= 0) close(probe);
  if (!ipv6) GTEST_SKIP() << "no IPv6 loopback here";
  for (const std::string host : {"[::1]", "[::]"}) {
    absl::StatusOr<std::unique_ptr<OpsHttpServer>> server =
        OpsHttpServer::Start(host + ":0", TrivialHandlers());
    ASSERT_TRUE(server.ok()) << server.status();
    EXPECT_EQ((*server)->address(), absl::StrCat(host, ":", (*server)->port()));
    EXPECT_EQ(Fetch(absl::StrCat("http://[::1]:", (*server)->port(), "/healthz")).status, 200);
  }
}

TEST(OpsHttpServerStartTest, ListensOnAHostName) {
  absl::StatusOr<std::unique_ptr<OpsHttpServer>> server =
      OpsHttpServer::Start("localhost:0", TrivialHandlers());
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_GT((*server)->port(), 0);
  EXPECT_EQ((*server)->address(), absl::StrCat("localhost:", (*server)->port()));
  EXPECT_EQ(Fetch(absl::StrCat("http://", (*server)->address(), "/healthz")).status, 200);
}

TEST(OpsHttpServerStartTest, FailsWithUnavailableOnAddressesItCannotListenOn) {
  for (const std::string listen :
       {"127.0.0.1:70000", "127.0.0.1:port", "::1:0", ":9464", "[::1]9464", "127.0.0.1:"}) {
    absl::StatusOr<std::unique_ptr<OpsHttpServer>> server =
        OpsHttpServer::Start(listen, TrivialHandlers());
    ASSERT_FALSE(server.ok()) << listen;
    EXPECT_EQ(server.status().code(), absl::StatusCode::kUnavailable) << listen;
    EXPECT_THAT(server.status().message(), HasSubstr(listen));
  }
}

TEST(OpsHttpServerStartTest, RejectsOptionsWithoutRoom) {
  OpsHttpOptions no_connections;
  no_connections.max_connections = 0;
  OpsHttpOptions no_head;
  no_head.max_head_bytes = 0;
  OpsHttpOptions no_time;
  no_time.head_timeout = absl::ZeroDuration();
  for (const OpsHttpOptions& options : {no_connections, no_head, no_time}) {
    absl::StatusOr<std::unique_ptr<OpsHttpServer>> server =
        OpsHttpServer::Start("127.0.0.1:0", TrivialHandlers(), options);
    ASSERT_FALSE(server.ok());
    EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
  }
}

}  // namespace
}  // namespace copilot::gateway
