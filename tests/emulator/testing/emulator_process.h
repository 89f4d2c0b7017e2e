// Test support: runs the haufe-emulator binary as a child process and talks to it over HTTP.
//
//   auto emulator = EmulatorProcess::Start({.args = {"--stream-delay-ms", "5"}});
//   ASSERT_TRUE(emulator.ok()) << emulator.status();
//   HttpResponse r = (*emulator)->ApiGet("/assistants");       // adds the api-key header
//   EXPECT_EQ(r.status, 200);
//   (*emulator)->AddFault({{"endpoint", "run"}, {"type", "status"}, {"status", 503}});
//   absl::StatusOr<nlohmann::json> records = (*emulator)->Requests();
//
// The emulator listens on 127.0.0.1 with port 0 (a free port, read from its startup line) and is
// killed when the EmulatorProcess is destroyed. The binary path defaults to HAUFE_EMULATOR_PATH,
// a compile definition that the emulator_testing CMake target sets for everything linking it.
// All helpers block; each call is independent, so an EmulatorProcess may be used from several
// threads at once (libcurl easy handles are per call).
#ifndef COPILOT_TESTS_EMULATOR_TESTING_EMULATOR_PROCESS_H_
#define COPILOT_TESTS_EMULATOR_TESTING_EMULATOR_PROCESS_H_

#include <curl/curl.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"

// Set by the emulator_testing CMake target (the built binary); without it the binary is looked up
// on PATH.
#ifndef HAUFE_EMULATOR_PATH
#define HAUFE_EMULATOR_PATH "haufe-emulator"
#endif

namespace copilot::emulator::testing {

// What a client saw. On a transport failure `curl_code` says which (e.g. CURLE_RECV_ERROR after a
// reset, CURLE_OPERATION_TIMEDOUT after a stall) and `status`, `headers` and `body` hold whatever
// had arrived by then.
struct HttpResponse {
  CURLcode curl_code = CURLE_OK;
  std::string curl_error;                                    // curl's error buffer, "" on success
  long status = 0;                                           // 0 when no status line arrived
  std::vector<std::pair<std::string, std::string>> headers;  // lower-case names, final response
  std::string body;                                          // decoded body bytes received
  absl::Duration elapsed;                                    // total transfer time
  long http_version = 0;  // CURL_HTTP_VERSION_1_1, CURL_HTTP_VERSION_2_0 (https: ALPN decides)

  bool ok() const { return curl_code == CURLE_OK; }
  // The first value of `lower_name`, or nullopt.
  std::optional<std::string> Header(absl::string_view lower_name) const;
  // The body as JSON; a discarded value (is_discarded()) when it is not JSON.
  nlohmann::json Json() const;
};

struct RequestOptions {
  std::vector<std::pair<std::string, std::string>> headers = {};  // extra request headers
  absl::Duration timeout = absl::Seconds(10);                     // whole transfer
  // Close the connection (a client-side cancel) once this many body bytes arrived; 0: never.
  size_t abort_after_bytes = 0;
  // The key the Api* helpers of EmulatorProcess send instead of api_key(), e.g. one of
  // extra_api_keys() or a wrong one. Ignored by the other helpers.
  std::optional<std::string> api_key = std::nullopt;
  // https:// URLs: the CA bundle to verify the server with (empty: the system's).
  std::string ca_file = {};
};

// A blocking HTTP/1.1 client on one libcurl easy handle; consecutive requests reuse its
// connection (keep-alive). Not thread-safe: one per thread.
class HttpClient {
 public:
  HttpClient();
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // `method` is GET, POST, DELETE, ...; `body` is sent (with Content-Length) when not empty or
  // when the method is POST/PUT/PATCH.
  HttpResponse Send(absl::string_view method, absl::string_view url, absl::string_view body,
                    const RequestOptions& options = {});
  // Connections opened by the last Send (0 when it reused a kept-alive one).
  long last_new_connections() const { return last_new_connections_; }

 private:
  CURL* curl_;
  long last_new_connections_ = 0;
};

// One request on a fresh connection.
HttpResponse SendHttpRequest(absl::string_view method, absl::string_view url,
                             absl::string_view body, const RequestOptions& options = {});

struct EmulatorProcessOptions {
  // Extra command-line arguments, e.g. {"--error-shape", "new", "--fault", "{...}"}.
  std::vector<std::string> args = {};
  std::string api_key = "test-api-key";
  // More accepted keys (one --api-key each, after `api_key`): tenants with upstream keys of their
  // own. The Api* helpers send `api_key` unless RequestOptions::api_key says otherwise.
  std::vector<std::string> extra_api_keys = {};
  std::string binary = HAUFE_EMULATOR_PATH;
  absl::Duration startup_timeout = absl::Seconds(10);
  // Both set: a second listener serves the same API over HTTPS with this certificate and key
  // (tls_port(), tls_api_url()); the control helpers keep using plain HTTP.
  std::string tls_cert_file = {};
  std::string tls_key_file = {};
};

// A running haufe-emulator child process. Thread-safe for concurrent requests (see file comment);
// Stop() and destruction must not race with requests.
class EmulatorProcess {
 public:
  // Starts the binary with --listen 127.0.0.1:0, --api-key KEY for `options.api_key` and each
  // of `options.extra_api_keys`, plus `options.args`, and waits for its startup line. Fails if it
  // exits or stays silent for `startup_timeout`.
  static absl::StatusOr<std::unique_ptr<EmulatorProcess>> Start(
      EmulatorProcessOptions options = {});
  // Kills the child (SIGTERM, then SIGKILL after 5 s) unless Stop() already reaped it.
  ~EmulatorProcess();
  EmulatorProcess(const EmulatorProcess&) = delete;
  EmulatorProcess& operator=(const EmulatorProcess&) = delete;

  int port() const { return port_; }
  int tls_port() const { return tls_port_; }  // 0 without TLS
  // The emulator's process ID; -1 after Stop().
  pid_t pid() const;
  const std::string& api_key() const { return api_key_; }
  const std::vector<std::string>& extra_api_keys() const { return extra_api_keys_; }
  std::string base_url() const;  // "http://127.0.0.1:PORT"
  std::string api_url() const;   // base_url() + "/agents/v1"
  // "https://127.0.0.1:TLS_PORT/agents/v1" (the certificate must name 127.0.0.1).
  std::string tls_api_url() const;

  // Any path on the emulator (control API, or upstream without the api-key header).
  HttpResponse Get(absl::string_view path, const RequestOptions& options = {}) const;
  HttpResponse Post(absl::string_view path, absl::string_view body,
                    const RequestOptions& options = {}) const;
  HttpResponse Delete(absl::string_view path, const RequestOptions& options = {}) const;

  // Upstream API: `path` is below /agents/v1 (e.g. "/threads"); adds "api-key: <api_key()>"
  // (or options.api_key when set).
  HttpResponse ApiGet(absl::string_view path, const RequestOptions& options = {}) const;
  HttpResponse ApiPost(absl::string_view path, absl::string_view body,
                       const RequestOptions& options = {}) const;
  HttpResponse ApiDelete(absl::string_view path, const RequestOptions& options = {}) const;

  // Control API (docs/emulator.md). Errors carry the HTTP status and body.
  absl::StatusOr<int64_t> AddFault(const nlohmann::json& rule) const;
  absl::Status ClearFaults() const;
  absl::Status SetConfig(const nlohmann::json& config) const;
  absl::Status Reset() const;
  absl::StatusOr<nlohmann::json> Requests() const;
  absl::Status ClearRequests() const;
  absl::StatusOr<nlohmann::json> Stats() const;

  // SIGTERM, wait up to `grace`, then SIGKILL. Returns the exit code (128+signal if killed).
  absl::StatusOr<int> Stop(absl::Duration grace = absl::Seconds(5));

 private:
  // The child process (a ChildProcess of tests/testing/, kept out of this header: its namespace
  // copilot::gateway::testing would hide ::testing in tests inside copilot::gateway).
  struct Child;
  EmulatorProcess(std::unique_ptr<Child> child, int port, std::string api_key,
                  std::vector<std::string> extra_api_keys);
  RequestOptions WithApiKey(const RequestOptions& options) const;

  std::unique_ptr<Child> child_;  // Null after Stop().
  int port_;
  int tls_port_ = 0;
  std::string api_key_;
  std::vector<std::string> extra_api_keys_;
};

}  // namespace copilot::emulator::testing

#endif  // COPILOT_TESTS_EMULATOR_TESTING_EMULATOR_PROCESS_H_
