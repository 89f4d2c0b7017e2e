// first_chunk_bench: the time to the first chunk of a streamed chat completion, one call at a
// time, three ways against one haufe-emulator: REST straight to it (NDJSON from
// POST /v1/chat/completions/stream), REST through a proxy hop (e.g. nginx), and gRPC
// StreamComplete through copilot-gateway. The three paths take turns call by call, so a drift of
// the machine's speed reaches all three alike. Each stream is read to its end and checked (a
// REST 200 with at least one line; gRPC status OK with at least one chunk); any failure ends the
// bench with exit status 1. Used by tests/bench/side_by_side.sh (issue #17: "Streaming first
// chunk: added p50 <= nginx's added p50").
//
//   first_chunk_bench --direct URL --proxy URL --gateway HOST:PORT --api-key KEY
//                     --assistant UUID [--calls N] [--warmup N] [--floor HOST:PORT]
//
// URL is the API's base, e.g. http://127.0.0.1:8080/agents. Prints, per path, the p50 and p99 of
// the first chunk in ms and, for the two hops, what they add to the direct path at each. With
// --floor, a fourth path takes its turn: StreamComplete from grpc_floor_server (gRPC alone, its
// first chunk written at once, no upstream), printed as "floor" with its p50 and p99 only: what
// a gRPC stream's first chunk costs this client and server before any upstream.
#include <curl/curl.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "copilot/v1/copilot_service.grpc.pb.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Flags {
  std::string direct;
  std::string proxy;
  std::string gateway;
  std::string api_key;
  std::string assistant;
  std::string floor;
  int calls = 500;
  int warmup = 50;
};

constexpr char kQuestion[] = "How many days of paid leave does an employee get?";

bool ParseFlags(int argc, char** argv, Flags& flags) {
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string arg = argv[i];
    const char* value = argv[i + 1];
    if (arg == "--direct") {
      flags.direct = value;
    } else if (arg == "--proxy") {
      flags.proxy = value;
    } else if (arg == "--gateway") {
      flags.gateway = value;
    } else if (arg == "--api-key") {
      flags.api_key = value;
    } else if (arg == "--assistant") {
      flags.assistant = value;
    } else if (arg == "--calls") {
      flags.calls = std::atoi(value);
    } else if (arg == "--warmup") {
      flags.warmup = std::atoi(value);
    } else if (arg == "--floor") {
      flags.floor = value;
    } else {
      std::fprintf(stderr, "first_chunk_bench: unknown flag %s\n", arg.c_str());
      return false;
    }
  }
  if (argc % 2 == 0 || flags.direct.empty() || flags.proxy.empty() || flags.gateway.empty() ||
      flags.api_key.empty() || flags.assistant.empty() || flags.calls < 1 || flags.warmup < 0) {
    std::fprintf(stderr,
                 "usage: first_chunk_bench --direct URL --proxy URL --gateway HOST:PORT "
                 "--api-key KEY --assistant UUID [--calls N] [--warmup N] [--floor HOST:PORT]\n");
    return false;
  }
  return true;
}

// One REST path: a reused easy handle (keep-alive), the stream read to its end.
class RestPath {
 public:
  RestPath(const std::string& base_url, const std::string& api_key, const std::string& assistant)
      : curl_(curl_easy_init()),
        url_(base_url + "/v1/chat/completions/stream"),
        body_("{\"assistant_id\":\"" + assistant +
              "\",\"messages\":[{\"role\":\"user\",\"content\":\"" + kQuestion + "\"}]}") {
    headers_ = curl_slist_append(headers_, ("api-key: " + api_key).c_str());
    headers_ = curl_slist_append(headers_, "content-type: application/json");
    curl_easy_setopt(curl_, CURLOPT_URL, url_.c_str());
    curl_easy_setopt(curl_, CURLOPT_HTTPHEADER, headers_);
    curl_easy_setopt(curl_, CURLOPT_POSTFIELDS, body_.c_str());
    curl_easy_setopt(curl_, CURLOPT_WRITEFUNCTION, &RestPath::OnData);
    curl_easy_setopt(curl_, CURLOPT_WRITEDATA, this);
    curl_easy_setopt(curl_, CURLOPT_TIMEOUT_MS, 10000L);
  }
  ~RestPath() {
    curl_slist_free_all(headers_);
    curl_easy_cleanup(curl_);
  }
  RestPath(const RestPath&) = delete;
  RestPath& operator=(const RestPath&) = delete;

  // The first chunk's time in ms; negative when the call failed.
  double Call() {
    start_ = Clock::now();
    first_.reset();
    received_.clear();
    const CURLcode code = curl_easy_perform(curl_);
    long status = 0;
    curl_easy_getinfo(curl_, CURLINFO_RESPONSE_CODE, &status);
    if (code != CURLE_OK || status != 200 || !first_.has_value()) {
      std::fprintf(stderr, "first_chunk_bench: %s: %s, HTTP %ld, %zu bytes\n", url_.c_str(),
                   curl_easy_strerror(code), status, received_.size());
      return -1;
    }
    return std::chrono::duration<double, std::milli>(*first_ - start_).count();
  }

 private:
  static size_t OnData(char* data, size_t size, size_t count, void* self_ptr) {
    auto* self = static_cast<RestPath*>(self_ptr);
    const size_t bytes = size * count;
    self->received_.append(data, bytes);
    // A chunk is one whole NDJSON line.
    if (!self->first_.has_value() && self->received_.find('\n') != std::string::npos) {
      self->first_ = Clock::now();
    }
    return bytes;
  }

  CURL* curl_;
  curl_slist* headers_ = nullptr;
  const std::string url_;
  const std::string body_;
  Clock::time_point start_;
  std::optional<Clock::time_point> first_;
  std::string received_;
};

// The gateway path: one channel, one StreamComplete at a time.
class GrpcPath {
 public:
  GrpcPath(const std::string& address, const std::string& assistant)
      : stub_(copilot::v1::CopilotService::NewStub(
            grpc::CreateChannel(address, grpc::InsecureChannelCredentials()))) {
    request_.set_assistant_id(assistant);
    copilot::v1::MessageInput* message = request_.add_messages();
    message->set_role(copilot::v1::ROLE_USER);
    message->set_content(kQuestion);
  }

  double Call() {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    const Clock::time_point start = Clock::now();
    std::unique_ptr<grpc::ClientReader<copilot::v1::StreamCompleteResponse>> reader =
        stub_->StreamComplete(&context, request_);
    copilot::v1::StreamCompleteResponse response;
    if (!reader->Read(&response)) {
      const grpc::Status status = reader->Finish();
      std::fprintf(stderr, "first_chunk_bench: StreamComplete: no chunk, %d %s\n",
                   status.error_code(), status.error_message().c_str());
      return -1;
    }
    const Clock::time_point first = Clock::now();
    while (reader->Read(&response)) {
    }
    const grpc::Status status = reader->Finish();
    if (!status.ok()) {
      std::fprintf(stderr, "first_chunk_bench: StreamComplete: %d %s\n", status.error_code(),
                   status.error_message().c_str());
      return -1;
    }
    return std::chrono::duration<double, std::milli>(first - start).count();
  }

 private:
  std::unique_ptr<copilot::v1::CopilotService::Stub> stub_;
  copilot::v1::StreamCompleteRequest request_;
};

double Percentile(std::vector<double> values, double p) {
  std::sort(values.begin(), values.end());
  const auto at = static_cast<std::size_t>(p * static_cast<double>(values.size() - 1) + 0.5);
  return values[std::min(at, values.size() - 1)];
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags;
  if (!ParseFlags(argc, argv, flags)) return 2;
  curl_global_init(CURL_GLOBAL_DEFAULT);
  int failures = 0;
  std::vector<double> times[4];
  const int paths = flags.floor.empty() ? 3 : 4;
  {
    RestPath direct(flags.direct, flags.api_key, flags.assistant);
    RestPath proxy(flags.proxy, flags.api_key, flags.assistant);
    GrpcPath gateway(flags.gateway, flags.assistant);
    std::optional<GrpcPath> floor;
    if (paths == 4) floor.emplace(flags.floor, flags.assistant);
    for (int i = 0; i < flags.warmup + flags.calls && failures == 0; ++i) {
      const double t[4] = {direct.Call(), proxy.Call(), gateway.Call(),
                           floor.has_value() ? floor->Call() : 0};
      for (int path = 0; path < paths; ++path) {
        if (t[path] < 0) {
          ++failures;
        } else if (i >= flags.warmup) {
          times[path].push_back(t[path]);
        }
      }
    }
  }
  curl_global_cleanup();
  if (failures > 0) return 1;
  const char* names[4] = {"direct", "proxy", "gateway", "floor"};
  const double direct50 = Percentile(times[0], 0.50);
  const double direct99 = Percentile(times[0], 0.99);
  for (int path = 0; path < paths; ++path) {
    const double p50 = Percentile(times[path], 0.50);
    const double p99 = Percentile(times[path], 0.99);
    if (path == 0 || path == 3) {
      std::printf("first_chunk %s calls=%zu p50_ms=%.3f p99_ms=%.3f\n", names[path],
                  times[path].size(), p50, p99);
    } else {
      std::printf(
          "first_chunk %s calls=%zu p50_ms=%.3f p99_ms=%.3f added_p50_ms=%.3f "
          "added_p99_ms=%.3f\n",
          names[path], times[path].size(), p50, p99, p50 - direct50, p99 - direct99);
    }
  }
  return 0;
}
