// The emulator's HTTP/2 (--tls-http2 on): ALPN h2 over its TLS listener, streams multiplexed on
// one connection up to --h2-max-concurrent-streams, GOAWAY after --h2-goaway-after requests and
// on shutdown, REFUSED_STREAM (--h2-refuse-every), the idle keep-alive timeout; a refused or
// unprocessed stream is never recorded, so a client that retries it is recorded once.
#include <curl/curl.h>

#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/emulator/testing/emulator_process.h"

namespace copilot::emulator {
namespace {

using testing::EmulatorProcess;
using testing::HttpClient;
using testing::HttpResponse;
using testing::RequestOptions;

const std::string kCerts = COPILOT_TEST_CERTS_DIR;
constexpr char kHrAssistant[] = "7c0e5d3a-4c1b-4f57-9a51-1f1f3e0a0002";

std::unique_ptr<EmulatorProcess> StartEmulator(std::vector<std::string> args) {
  auto emulator = EmulatorProcess::Start({.args = std::move(args),
                                          .tls_cert_file = kCerts + "/server.pem",
                                          .tls_key_file = kCerts + "/server.key"});
  EXPECT_TRUE(emulator.ok()) << emulator.status();
  return emulator.ok() ? *std::move(emulator) : nullptr;
}

RequestOptions Trusting(const EmulatorProcess& emulator) {
  return {.headers = {{"api-key", emulator.api_key()}}, .ca_file = kCerts + "/ca.pem"};
}

nlohmann::json Stats(const EmulatorProcess& emulator) {
  absl::StatusOr<nlohmann::json> stats = emulator.Stats();
  EXPECT_TRUE(stats.ok()) << stats.status();
  return stats.ok() ? *stats : nlohmann::json::object();
}

size_t Recorded(const EmulatorProcess& emulator, const std::string& route) {
  absl::StatusOr<nlohmann::json> records = emulator.Requests();
  EXPECT_TRUE(records.ok()) << records.status();
  size_t n = 0;
  for (const auto& record : *records) n += record["route"] == route ? 1 : 0;
  return n;
}

struct Parallel {
  std::vector<long> statuses;
  std::vector<long> versions;
  std::vector<std::string> errors;  // libcurl's, "" for a transfer that completed
  long connections = 0;             // new connections over all transfers
  absl::Duration elapsed;
};

// `n` requests at once on one libcurl multi handle, multiplexed over HTTP/2 (PIPEWAIT: wait for a
// connection that can take another stream rather than opening one per request), over at most
// `max_connections` connections at a time (0: no limit; libcurl opens another connection when
// the others carry as many streams as the server allows).
Parallel SendParallel(const EmulatorProcess& emulator, int n, const std::string& method,
                      const std::string& path, const std::string& body, long max_connections = 0) {
  CURLM* multi = curl_multi_init();
  curl_multi_setopt(multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
  curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, max_connections);
  const std::string url = emulator.tls_api_url() + path;
  const std::string ca = kCerts + "/ca.pem";
  const std::string key = "api-key: " + emulator.api_key();
  curl_slist* headers = curl_slist_append(nullptr, key.c_str());
  headers = curl_slist_append(headers, "Content-Type: application/json");
  std::vector<CURL*> easies;
  for (int i = 0; i < n; ++i) {
    CURL* easy = curl_easy_init();
    curl_easy_setopt(easy, CURLOPT_URL, url.c_str());
    curl_easy_setopt(easy, CURLOPT_CAINFO, ca.c_str());
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_2TLS));
    curl_easy_setopt(easy, CURLOPT_PIPEWAIT, 1L);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, 20000L);
    curl_easy_setopt(
        easy, CURLOPT_WRITEFUNCTION,
        +[](char*, size_t size, size_t count, void*) { return size * count; });
    if (method == "POST") curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body.c_str());
    curl_multi_add_handle(multi, easy);
    easies.push_back(easy);
  }
  const absl::Time start = absl::Now();
  int running = 0;
  do {
    curl_multi_perform(multi, &running);
    if (running > 0) curl_multi_poll(multi, nullptr, 0, 100, nullptr);
  } while (running > 0);
  std::map<CURL*, CURLcode> results;
  for (CURLMsg* msg = nullptr; (msg = curl_multi_info_read(multi, &running)) != nullptr;) {
    if (msg->msg == CURLMSG_DONE) results[msg->easy_handle] = msg->data.result;
  }
  Parallel result;
  result.elapsed = absl::Now() - start;
  for (CURL* easy : easies) {
    long status = 0;
    long version = 0;
    long connects = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(easy, CURLINFO_HTTP_VERSION, &version);
    curl_easy_getinfo(easy, CURLINFO_NUM_CONNECTS, &connects);
    result.statuses.push_back(status);
    result.versions.push_back(version);
    result.errors.push_back(results[easy] == CURLE_OK ? "" : curl_easy_strerror(results[easy]));
    result.connections += connects;
    curl_multi_remove_handle(multi, easy);
    curl_easy_cleanup(easy);
  }
  curl_multi_cleanup(multi);
  curl_slist_free_all(headers);
  return result;
}

TEST(EmulatorH2Test, ServesEveryKindOfResponseOverHttp2) {
  std::unique_ptr<EmulatorProcess> emulator =
      StartEmulator({"--tls-http2", "on", "--stream-delay-ms", "5"});
  ASSERT_NE(emulator, nullptr);
  HttpClient client;
  HttpResponse listed =
      client.Send("GET", emulator->tls_api_url() + "/assistants", "", Trusting(*emulator));
  ASSERT_TRUE(listed.ok()) << listed.curl_error;
  EXPECT_EQ(listed.http_version, CURL_HTTP_VERSION_2_0);
  EXPECT_EQ(listed.status, 200);
  EXPECT_TRUE(listed.Json().is_array()) << listed.body;
  EXPECT_TRUE(listed.Header("content-length").has_value());

  HttpResponse created =
      client.Send("POST", emulator->tls_api_url() + "/threads",
                  absl::StrCat(R"({"assistant_id":")", kHrAssistant, R"("})"), Trusting(*emulator));
  ASSERT_TRUE(created.ok()) << created.curl_error;
  ASSERT_EQ(created.status, 201) << created.body;
  const std::string thread_id = created.Json()["id"];
  // A streamed answer: NDJSON parts paced apart, no Content-Length, every line arrives.
  HttpResponse added =
      client.Send("POST", emulator->tls_api_url() + "/threads/" + thread_id + "/messages",
                  R"({"role":"user","content":"Hi"})", Trusting(*emulator));
  ASSERT_TRUE(added.ok()) << added.curl_error;
  ASSERT_EQ(added.status, 201) << added.body;
  HttpResponse streamed =
      client.Send("POST", emulator->tls_api_url() + "/threads/" + thread_id + "/run/stream", "{}",
                  Trusting(*emulator));
  ASSERT_TRUE(streamed.ok()) << streamed.curl_error;
  EXPECT_EQ(streamed.http_version, CURL_HTTP_VERSION_2_0);
  EXPECT_EQ(streamed.status, 200) << streamed.body;
  EXPECT_FALSE(streamed.Header("content-length").has_value());
  EXPECT_NE(streamed.body.find("\n"), std::string::npos) << streamed.body;
  // An error answer keeps its status and body.
  HttpResponse missing =
      client.Send("GET", emulator->tls_api_url() + "/threads/00000000-0000-4000-8000-000000000000",
                  "", Trusting(*emulator));
  ASSERT_TRUE(missing.ok()) << missing.curl_error;
  EXPECT_EQ(missing.status, 404) << missing.body;
  EXPECT_EQ(client.last_new_connections(), 0);  // one connection for all of them
  const nlohmann::json stats = Stats(*emulator);
  EXPECT_EQ(stats["h2_connections"], 1) << stats.dump();
  EXPECT_EQ(stats["in_flight"], 0) << stats.dump();
  EXPECT_EQ(Recorded(*emulator, "run_stream"), 1u);
}

// A large answer goes out a share at a time: a connection sends at most 512 KiB of HTTP/2 frames
// in one pass of the emulator's loop and goes on in the next, after the other connections and
// the timers that pace streamed chunks. Every byte arrives, in order.
TEST(EmulatorH2Test, ALargeAnswerGoesOutInSharesAndArrivesWhole) {
  std::unique_ptr<EmulatorProcess> emulator = StartEmulator({"--tls-http2", "on"});
  ASSERT_NE(emulator, nullptr);
  std::string answer = "[";
  for (int i = 0; answer.size() < (16u << 20); ++i) absl::StrAppend(&answer, "\"", i, "\",");
  answer.back() = ']';
  ASSERT_TRUE(emulator
                  ->AddFault({{"endpoint", "list_assistants"},
                              {"type", "raw_body"},
                              {"status", 200},
                              {"body", answer}})
                  .ok());
  HttpClient client;
  HttpResponse listed =
      client.Send("GET", emulator->tls_api_url() + "/assistants", "", Trusting(*emulator));
  ASSERT_TRUE(listed.ok()) << listed.curl_error;
  EXPECT_EQ(listed.http_version, CURL_HTTP_VERSION_2_0);
  EXPECT_EQ(listed.status, 200);
  EXPECT_EQ(listed.body.size(), answer.size());
  EXPECT_TRUE(listed.body == answer) << "the body arrived changed";
  const nlohmann::json stats = Stats(*emulator);
  EXPECT_GT(stats["h2_output_yields"], 0) << stats.dump();
  EXPECT_EQ(stats["in_flight"], 0) << stats.dump();
}

TEST(EmulatorH2Test, OffersOnlyHttp11UnlessAsked) {
  std::unique_ptr<EmulatorProcess> emulator = StartEmulator({});
  ASSERT_NE(emulator, nullptr);
  HttpResponse listed = testing::SendHttpRequest("GET", emulator->tls_api_url() + "/assistants", "",
                                                 Trusting(*emulator));
  ASSERT_TRUE(listed.ok()) << listed.curl_error;
  EXPECT_EQ(listed.http_version, CURL_HTTP_VERSION_1_1);
  EXPECT_EQ(Stats(*emulator)["h2_connections"], 0);
}

TEST(EmulatorH2Test, MultiplexesUpToTheConcurrentStreamCap) {
  // 30 requests of 300 ms each on one connection, at most 10 streams at a time: three rounds.
  std::unique_ptr<EmulatorProcess> emulator = StartEmulator(
      {"--tls-http2", "on", "--h2-max-concurrent-streams", "10", "--response-delay-ms", "300"});
  ASSERT_NE(emulator, nullptr);
  Parallel result = SendParallel(*emulator, 30, "GET", "/assistants", "", /*max_connections=*/1);
  for (size_t i = 0; i < result.statuses.size(); ++i) {
    EXPECT_EQ(result.statuses[i], 200) << i;
    EXPECT_EQ(result.versions[i], CURL_HTTP_VERSION_2_0) << i;
  }
  // The cap holds: never more than 10 at a time, so at least three rounds of 300 ms. (libcurl
  // may replace the connection on a loaded machine, one at a time.)
  EXPECT_GE(result.elapsed, absl::Milliseconds(900));
  EXPECT_LE(result.connections, 3);
  EXPECT_EQ(Stats(*emulator)["h2_refused_streams"], 0);
}

TEST(EmulatorH2Test, GoawayAfterNRequestsLeavesTheRestToANewConnectionAndRecordsEachOnce) {
  std::unique_ptr<EmulatorProcess> emulator =
      StartEmulator({"--tls-http2", "on", "--h2-goaway-after", "5", "--response-delay-ms", "50"});
  ASSERT_NE(emulator, nullptr);
  // One connection at a time, so each one carries as many streams as the server takes.
  // 20 requests, 5 per connection: a stream is refused 3 times at most, below libcurl's 5 tries.
  Parallel result = SendParallel(*emulator, 20, "POST", "/threads",
                                 absl::StrCat(R"({"assistant_id":")", kHrAssistant, R"("})"),
                                 /*max_connections=*/1);
  // libcurl sends a refused stream again on a new connection, up to 5 times, and (7.88) fails
  // the lone stream left above a GOAWAY outright: a few may fail, never with an answer.
  size_t ok = 0;
  for (size_t i = 0; i < result.statuses.size(); ++i) {
    if (result.statuses[i] == 201) {
      ++ok;
    } else {
      EXPECT_EQ(result.statuses[i], 0) << i << ": " << result.errors[i];
    }
  }
  EXPECT_GE(ok, 15u);
  EXPECT_GE(result.connections, 4);  // five requests per connection
  const nlohmann::json stats = Stats(*emulator);
  EXPECT_GE(stats["h2_goaways_sent"], 3) << stats.dump();
  // Streams above a GOAWAY were not processed: only the answered requests were recorded, once.
  EXPECT_EQ(Recorded(*emulator, "create_thread"), ok);
  EXPECT_EQ(stats["requests_total"], ok) << stats.dump();
}

TEST(EmulatorH2Test, RefusedStreamsAreNotProcessedAndTheClientSendsThemAgain) {
  std::unique_ptr<EmulatorProcess> emulator =
      StartEmulator({"--tls-http2", "on", "--h2-refuse-every", "3"});
  ASSERT_NE(emulator, nullptr);
  HttpClient client;
  for (int i = 0; i < 6; ++i) {
    HttpResponse created = client.Send("POST", emulator->tls_api_url() + "/threads",
                                       absl::StrCat(R"({"assistant_id":")", kHrAssistant, R"("})"),
                                       Trusting(*emulator));
    ASSERT_TRUE(created.ok()) << created.curl_error;
    EXPECT_EQ(created.status, 201) << created.body;
  }
  EXPECT_GE(Stats(*emulator)["h2_refused_streams"], 2);
  EXPECT_EQ(Recorded(*emulator, "create_thread"), 6u);
}

TEST(EmulatorH2Test, ShutdownSendsGoawayAndFinishesTheRequestsInProgress) {
  std::unique_ptr<EmulatorProcess> emulator = StartEmulator(
      {"--tls-http2", "on", "--response-delay-ms", "700", "--shutdown-grace-ms", "5000"});
  ASSERT_NE(emulator, nullptr);
  HttpResponse slow;
  std::thread caller([&] {
    slow = testing::SendHttpRequest("GET", emulator->tls_api_url() + "/assistants", "",
                                    Trusting(*emulator));
  });
  for (int i = 0; i < 200 && Stats(*emulator)["in_flight"] != 1; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  const absl::Time start = absl::Now();
  absl::StatusOr<int> exit_code = emulator->Stop(absl::Seconds(10));
  ASSERT_TRUE(exit_code.ok()) << exit_code.status();
  EXPECT_EQ(*exit_code, 0);
  caller.join();
  ASSERT_TRUE(slow.ok()) << slow.curl_error;
  EXPECT_EQ(slow.status, 200);
  EXPECT_EQ(slow.http_version, CURL_HTTP_VERSION_2_0);
  EXPECT_LT(absl::Now() - start, absl::Seconds(4));  // exits once it is done, not at the grace
}

TEST(EmulatorH2Test, AConnectionIdleLongerThanTheKeepAliveTimeoutEndsWithGoaway) {
  std::unique_ptr<EmulatorProcess> emulator =
      StartEmulator({"--tls-http2", "on", "--keep-alive-timeout-ms", "200"});
  ASSERT_NE(emulator, nullptr);
  HttpClient client;
  ASSERT_TRUE(
      client.Send("GET", emulator->tls_api_url() + "/assistants", "", Trusting(*emulator)).ok());
  absl::SleepFor(absl::Milliseconds(400));
  // The client reuses the connection; the server answers the request with GOAWAY (last stream
  // ID: the one before it) and closes. The request was not processed. (libcurl 7.88 reports
  // the lone stream above the GOAWAY as an HTTP/2 error rather than sending it again.)
  HttpResponse crossed =
      client.Send("GET", emulator->tls_api_url() + "/assistants", "", Trusting(*emulator));
  if (crossed.ok()) {
    EXPECT_EQ(crossed.status, 200);
  }
  EXPECT_EQ(Stats(*emulator)["idle_closed_total"], 1);
  EXPECT_EQ(Recorded(*emulator, "list_assistants"), crossed.ok() ? 2u : 1u);
  HttpResponse next =
      client.Send("GET", emulator->tls_api_url() + "/assistants", "", Trusting(*emulator));
  ASSERT_TRUE(next.ok()) << next.curl_error;
  EXPECT_EQ(next.status, 200);
}

}  // namespace
}  // namespace copilot::emulator
