#include "server/ops/ops_http_server.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace copilot::gateway {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::StartsWith;

struct Response {
  long status = 0;  // NOLINT(runtime/int): libcurl's type.
  std::string content_type;
  std::string content_length;  // The Content-Length header, or empty.
  std::string body;
};

// One request with libcurl's easy API; status 0 when the request failed.
Response Fetch(const std::string& url, bool head = false) {
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
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 30000L);
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

class OpsHttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    OpsHandlers handlers;
    handlers.metrics = [this] {
      ++metrics_calls_;
      return std::string("# TYPE up gauge\nup 1\n");
    };
    handlers.live = [this] { return live_.load(); };
    handlers.ready = [this] { return ready_.load(); };
    absl::StatusOr<std::unique_ptr<OpsHttpServer>> server =
        OpsHttpServer::Start("127.0.0.1:0", std::move(handlers));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  std::string Url(absl::string_view path) const {
    return absl::StrCat("http://127.0.0.1:", server_->port(), path);
  }

  std::atomic<bool> live_{true};
  std::atomic<bool> ready_{true};
  std::atomic<int> metrics_calls_{0};
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

}  // namespace
}  // namespace copilot::gateway
