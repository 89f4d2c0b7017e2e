// End-to-end tests of the HTTP/1.1 layer with raw sockets: pipelining, HTTP/1.0, Expect,
// malformed and chunked requests.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/emulator/testing/emulator_process.h"

namespace copilot::emulator {
namespace {

using nlohmann::json;
using testing::EmulatorProcess;

// A blocking loopback socket with a 2 s receive timeout; `receive_buffer` > 0 sets SO_RCVBUF.
class RawConnection {
 public:
  explicit RawConnection(int port, int receive_buffer = 0) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    timeval tv{.tv_sec = 2, .tv_usec = 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (receive_buffer > 0) {
      setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof(receive_buffer));
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  ~RawConnection() { close(fd_); }
  bool connected() const { return connected_; }
  void Send(const std::string& data) {
    ASSERT_EQ(send(fd_, data.data(), data.size(), 0), static_cast<ssize_t>(data.size()));
  }
  // Reads until `marker` has appeared `count` times, EOF, or the timeout.
  std::string ReadUntil(const std::string& marker, int count = 1) {
    std::string in;
    char buffer[4096];
    while (Count(in, marker) < count) {
      ssize_t n = recv(fd_, buffer, sizeof(buffer), 0);
      if (n <= 0) {
        eof_ = n == 0;
        break;
      }
      in.append(buffer, static_cast<size_t>(n));
    }
    return in;
  }
  // Reads everything until the peer closes (or the timeout); true when it closed.
  bool ReadToEof(std::string& in) {
    char buffer[4096];
    while (true) {
      ssize_t n = recv(fd_, buffer, sizeof(buffer), 0);
      if (n == 0) return true;
      if (n < 0) return false;
      in.append(buffer, static_cast<size_t>(n));
    }
  }

 private:
  static int Count(const std::string& s, const std::string& marker) {
    int n = 0;
    for (size_t pos = s.find(marker); pos != std::string::npos; pos = s.find(marker, pos + 1)) ++n;
    return n;
  }
  int fd_ = -1;
  bool connected_ = false;
  bool eof_ = false;
};

class EmulatorHttpTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto started = EmulatorProcess::Start({.api_key = "k"});
    ASSERT_TRUE(started.ok()) << started.status();
    emulator_ = std::move(started).value().release();
  }
  static void TearDownTestSuite() {
    delete emulator_;
    emulator_ = nullptr;
  }
  static EmulatorProcess* emulator_;
};

EmulatorProcess* EmulatorHttpTest::emulator_ = nullptr;

TEST_F(EmulatorHttpTest, AnswersPipelinedRequestsInOrder) {
  RawConnection c(emulator_->port());
  ASSERT_TRUE(c.connected());
  c.Send(
      "GET /agents/v1/assistants/7c0e5d3a-4c1b-4f57-9a51-1f1f3e0a0001 HTTP/1.1\r\napi-key: "
      "k\r\n\r\n"
      "GET /agents/v1/assistants/7c0e5d3a-4c1b-4f57-9a51-1f1f3e0a0003 HTTP/1.1\r\napi-key: "
      "k\r\n\r\n");
  std::string in = c.ReadUntil("HTTP/1.1 200 OK", 2);
  size_t tax = in.find("Haufe Copilot Tax");
  size_t legacy = in.find("Haufe Copilot Legacy");
  ASSERT_NE(tax, std::string::npos) << in;
  ASSERT_NE(legacy, std::string::npos) << in;
  EXPECT_LT(tax, legacy);
}

TEST_F(EmulatorHttpTest, Http10ClosesAfterTheResponse) {
  RawConnection c(emulator_->port());
  c.Send("GET /agents/v1/threads HTTP/1.0\r\napi-key: k\r\n\r\n");
  std::string in;
  EXPECT_TRUE(c.ReadToEof(in));
  EXPECT_TRUE(absl::StartsWith(in, "HTTP/1.1 200 OK\r\n")) << in;
  EXPECT_TRUE(absl::StrContains(in, "Connection: close\r\n"));
  EXPECT_TRUE(absl::StrContains(in, R"("items":[])"));
}

TEST_F(EmulatorHttpTest, ConnectionCloseIsHonoured) {
  RawConnection c(emulator_->port());
  c.Send("GET /agents/v1/threads HTTP/1.1\r\napi-key: k\r\nConnection: close\r\n\r\n");
  std::string in;
  EXPECT_TRUE(c.ReadToEof(in));
  EXPECT_TRUE(absl::StartsWith(in, "HTTP/1.1 200 OK\r\n")) << in;
}

TEST_F(EmulatorHttpTest, ChunkedRequestBodyGets411) {
  RawConnection c(emulator_->port());
  c.Send(
      "POST /agents/v1/threads HTTP/1.1\r\napi-key: k\r\nTransfer-Encoding: chunked\r\n\r\n"
      "2\r\n{}\r\n0\r\n\r\n");
  std::string in;
  EXPECT_TRUE(c.ReadToEof(in));
  EXPECT_TRUE(absl::StartsWith(in, "HTTP/1.1 411 Length Required\r\n")) << in;
}

TEST_F(EmulatorHttpTest, MalformedRequestGets400AndClose) {
  RawConnection c(emulator_->port());
  c.Send("HELLO\r\n\r\n");
  std::string in;
  EXPECT_TRUE(c.ReadToEof(in));
  EXPECT_TRUE(absl::StartsWith(in, "HTTP/1.1 400 Bad Request\r\n")) << in;
}

TEST_F(EmulatorHttpTest, ExpectContinueGets100BeforeTheBody) {
  RawConnection c(emulator_->port());
  std::string body = R"({"assistant_id":"7c0e5d3a-4c1b-4f57-9a51-1f1f3e0a0002"})";
  c.Send(
      absl::StrCat("POST /agents/v1/threads HTTP/1.1\r\napi-key: k\r\nExpect: 100-continue\r\n"
                   "Content-Length: ",
                   body.size(), "\r\n\r\n"));
  EXPECT_EQ(c.ReadUntil("\r\n\r\n"), "HTTP/1.1 100 Continue\r\n\r\n");
  c.Send(body);
  std::string in = c.ReadUntil("\"title\"");
  EXPECT_TRUE(absl::StartsWith(in, "HTTP/1.1 201 Created\r\n")) << in;
}

TEST_F(EmulatorHttpTest, BodyArrivingInPiecesIsAssembled) {
  RawConnection c(emulator_->port());
  std::string body = R"({"assistant_id":"7c0e5d3a-4c1b-4f57-9a51-1f1f3e0a0002","title":"split"})";
  c.Send(absl::StrCat("POST /agents/v1/threads HTTP/1.1\r\napi-key: k\r\nContent-Length: ",
                      body.size(), "\r\n\r\n", body.substr(0, 10)));
  usleep(50 * 1000);
  c.Send(body.substr(10));
  std::string in = c.ReadUntil("\"split\"");
  EXPECT_TRUE(absl::StartsWith(in, "HTTP/1.1 201 Created\r\n")) << in;
}

// The newest record's response_bytes_sent, or -1.
int64_t LastResponseBytesSent(const EmulatorProcess& emulator, bool* finished = nullptr) {
  absl::StatusOr<json> records = emulator.Requests();
  if (!records.ok() || records->empty()) return -1;
  if (finished != nullptr) *finished = records->back()["finished"].get<bool>();
  return records->back()["response_bytes_sent"].get<int64_t>();
}

TEST_F(EmulatorHttpTest, RecordsEveryResponseByteSent) {
  ASSERT_TRUE(emulator_->ClearRequests().ok());
  RawConnection c(emulator_->port());
  c.Send("GET /agents/v1/assistants HTTP/1.0\r\napi-key: k\r\n\r\n");
  std::string in;
  ASSERT_TRUE(c.ReadToEof(in));
  bool finished = false;
  EXPECT_EQ(LastResponseBytesSent(*emulator_, &finished), static_cast<int64_t>(in.size()));
  EXPECT_TRUE(finished);
}

// A client that reads nothing holds the emulator's writes back once the socket buffers are full:
// the count stops well short of the response, and reaches it when the client reads again.
TEST_F(EmulatorHttpTest, ResponseBytesSentStopsWhileTheClientReadsNothing) {
  constexpr int64_t kBody = 16 << 20;
  ASSERT_TRUE(emulator_->ClearRequests().ok());
  ASSERT_TRUE(emulator_
                  ->AddFault({{"endpoint", "list_assistants"},
                              {"times", 1},
                              {"type", "oversized_body"},
                              {"bytes", kBody}})
                  .ok());
  RawConnection c(emulator_->port(), /*receive_buffer=*/64 * 1024);
  c.Send("GET /agents/v1/assistants HTTP/1.0\r\napi-key: k\r\n\r\n");
  // Wait until the count stops moving (two equal readings 200 ms apart; at most 10 s).
  int64_t held = -1;
  int64_t previous = -2;
  for (int i = 0; i < 50 && (held <= 0 || held != previous); ++i) {
    previous = held;
    absl::SleepFor(absl::Milliseconds(200));
    held = LastResponseBytesSent(*emulator_);
  }
  EXPECT_EQ(held, previous) << "the count kept moving while the client read nothing";
  bool finished = true;
  LastResponseBytesSent(*emulator_, &finished);
  EXPECT_FALSE(finished);
  EXPECT_LT(held, kBody / 2);  // The kernel's buffers: a few MiB at most.
  std::string in;
  ASSERT_TRUE(c.ReadToEof(in));
  EXPECT_GT(static_cast<int64_t>(in.size()), kBody);
  EXPECT_EQ(LastResponseBytesSent(*emulator_, &finished), static_cast<int64_t>(in.size()));
  EXPECT_TRUE(finished);
}

}  // namespace
}  // namespace copilot::emulator
