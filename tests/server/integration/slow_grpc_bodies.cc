#include "tests/server/integration/slow_grpc_bodies.h"

#include <curl/curl.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace copilot::gateway::testing {
namespace {

struct Stream {
  CURL* easy = nullptr;
  std::size_t body_bytes = 0;  // The gRPC frame: 5-byte prefix + message.
  std::size_t offered = 0;
  int64_t* bytes_sent = nullptr;
  bool ended = false;
};

// Hands out the frame up to its last byte, then pauses the upload for good.
std::size_t ReadBody(char* buffer, std::size_t size, std::size_t count, void* user) {
  auto* stream = static_cast<Stream*>(user);
  const std::size_t left = stream->body_bytes - 1 - stream->offered;
  if (left == 0) return CURL_READFUNC_PAUSE;
  const std::size_t n = std::min(left, size * count);
  std::memset(buffer, 'a', n);
  if (stream->offered == 0 && n >= 5) {
    const auto length = static_cast<uint32_t>(stream->body_bytes - 5);
    buffer[0] = 0;  // Not compressed.
    buffer[1] = static_cast<char>(length >> 24);
    buffer[2] = static_cast<char>(length >> 16);
    buffer[3] = static_cast<char>(length >> 8);
    buffer[4] = static_cast<char>(length);
  }
  stream->offered += n;
  *stream->bytes_sent += static_cast<int64_t>(n);
  return n;
}

std::size_t Discard(char* /*data*/, std::size_t size, std::size_t count, void* /*user*/) {
  return size * count;
}

}  // namespace

SlowGrpcBodiesResult RunSlowGrpcBodies(const SlowGrpcBodiesOptions& options) {
  SlowGrpcBodiesResult result;
  CURLM* multi = curl_multi_init();
  // One connection per stream: libcurl 7.88 fails a new stream on a connection where another's
  // upload is paused ("Error in the HTTP2 framing layer").
  curl_multi_setopt(multi, CURLMOPT_PIPELINING, CURLPIPE_NOTHING);
  curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, "content-type: application/grpc");
  headers = curl_slist_append(headers, "te: trailers");
  headers = curl_slist_append(headers, "expect:");
  const std::string url =
      absl::StrCat("http://127.0.0.1:", options.port, "/copilot.v1.CopilotService/AddMessage");
  const int total = options.streams;
  std::vector<std::unique_ptr<Stream>> streams;
  for (int i = 0; i < total; ++i) {
    auto stream = std::make_unique<Stream>();
    stream->body_bytes = options.message_bytes + 5;
    stream->bytes_sent = &result.bytes_sent;
    CURL* easy = curl_easy_init();
    stream->easy = easy;
    curl_easy_setopt(easy, CURLOPT_URL, url.c_str());
    curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE);
    curl_easy_setopt(easy, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, "POST");
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(easy, CURLOPT_READFUNCTION, ReadBody);
    curl_easy_setopt(easy, CURLOPT_READDATA, stream.get());
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, Discard);
    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, Discard);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, stream.get());
    curl_multi_add_handle(multi, easy);
    streams.push_back(std::move(stream));
  }
  const absl::Time end = absl::Now() + options.hold;
  while (absl::Now() < end) {
    int running = 0;
    curl_multi_perform(multi, &running);
    int queued = 0;
    while (CURLMsg* message = curl_multi_info_read(multi, &queued)) {
      if (message->msg != CURLMSG_DONE) continue;
      Stream* stream = nullptr;
      curl_easy_getinfo(message->easy_handle, CURLINFO_PRIVATE, &stream);
      if (stream != nullptr && !stream->ended) {
        stream->ended = true;
        ++result.streams_ended;
      }
    }
    curl_multi_poll(multi, nullptr, 0, 20, nullptr);
  }
  long connections = 0;
  for (const auto& stream : streams) {
    long count = 0;
    if (curl_easy_getinfo(stream->easy, CURLINFO_NUM_CONNECTS, &count) == CURLE_OK) {
      connections += count;
    }
    curl_multi_remove_handle(multi, stream->easy);
    curl_easy_cleanup(stream->easy);
  }
  result.connections_used = static_cast<int>(connections);
  curl_multi_cleanup(multi);
  curl_slist_free_all(headers);
  return result;
}

}  // namespace copilot::gateway::testing
