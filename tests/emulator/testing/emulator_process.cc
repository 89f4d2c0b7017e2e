#include "tests/emulator/testing/emulator_process.h"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tests/testing/child_process.h"
#include "tests/testing/eventually.h"

namespace copilot::emulator::testing {
namespace {

using nlohmann::json;

void GlobalInitOnce() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct TransferState {
  HttpResponse* response;
  size_t abort_after_bytes;
};

size_t OnBody(char* data, size_t size, size_t count, void* user) {
  auto* state = static_cast<TransferState*>(user);
  size_t n = size * count;
  state->response->body.append(data, n);
  if (state->abort_after_bytes > 0 && state->response->body.size() >= state->abort_after_bytes) {
    return 0;  // curl aborts the transfer and closes the connection
  }
  return n;
}

size_t OnHeader(char* data, size_t size, size_t count, void* user) {
  auto* response = static_cast<HttpResponse*>(user);
  size_t n = size * count;
  absl::string_view line(data, n);
  if (absl::StartsWith(line, "HTTP/")) {
    response->headers.clear();  // a new (e.g. final after 100 Continue) response
    return n;
  }
  size_t colon = line.find(':');
  if (colon == absl::string_view::npos) return n;
  response->headers.emplace_back(absl::AsciiStrToLower(line.substr(0, colon)),
                                 std::string(absl::StripAsciiWhitespace(line.substr(colon + 1))));
  return n;
}

absl::Status CheckControl(const HttpResponse& r, absl::string_view what) {
  if (!r.ok()) return absl::UnavailableError(absl::StrCat(what, ": ", r.curl_error));
  if (r.status != 200) {
    return absl::FailedPreconditionError(absl::StrCat(what, ": HTTP ", r.status, " ", r.body));
  }
  return absl::OkStatus();
}

absl::StatusOr<json> ControlJson(const HttpResponse& r, absl::string_view what) {
  if (absl::Status s = CheckControl(r, what); !s.ok()) return s;
  json j = r.Json();
  if (j.is_discarded()) return absl::InternalError(absl::StrCat(what, ": body is not JSON"));
  return j;
}

}  // namespace

std::optional<std::string> HttpResponse::Header(absl::string_view lower_name) const {
  for (const auto& [name, value] : headers) {
    if (name == lower_name) return value;
  }
  return std::nullopt;
}

json HttpResponse::Json() const { return json::parse(body, nullptr, /*allow_exceptions=*/false); }

HttpClient::HttpClient() {
  GlobalInitOnce();
  curl_ = curl_easy_init();
}

HttpClient::~HttpClient() { curl_easy_cleanup(curl_); }

HttpResponse HttpClient::Send(absl::string_view method, absl::string_view url,
                              absl::string_view body, const RequestOptions& options) {
  HttpResponse response;
  if (curl_ == nullptr) {
    response.curl_code = CURLE_FAILED_INIT;
    response.curl_error = "curl_easy_init failed";
    return response;
  }
  curl_easy_reset(curl_);
  char error[CURL_ERROR_SIZE] = {0};
  std::string url_str(url);
  std::string method_str(method);
  TransferState state{&response, options.abort_after_bytes};
  curl_easy_setopt(curl_, CURLOPT_URL, url_str.c_str());
  curl_easy_setopt(curl_, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl_, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(curl_, CURLOPT_TIMEOUT_MS,
                   static_cast<long>(absl::ToInt64Milliseconds(options.timeout)));
  curl_easy_setopt(curl_, CURLOPT_WRITEFUNCTION, OnBody);
  curl_easy_setopt(curl_, CURLOPT_WRITEDATA, &state);
  curl_easy_setopt(curl_, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(curl_, CURLOPT_HEADERDATA, &response);
  if (!options.ca_file.empty()) curl_easy_setopt(curl_, CURLOPT_CAINFO, options.ca_file.c_str());
  bool sends_body = !body.empty() || method == "POST" || method == "PUT" || method == "PATCH";
  if (sends_body) {
    curl_easy_setopt(curl_, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    curl_easy_setopt(curl_, CURLOPT_POSTFIELDS, body.data());
  }
  if (method != "GET" && !(method == "POST" && sends_body)) {
    curl_easy_setopt(curl_, CURLOPT_CUSTOMREQUEST, method_str.c_str());
  }
  curl_slist* headers = nullptr;
  if (sends_body) headers = curl_slist_append(headers, "Content-Type: application/json");
  for (const auto& [name, value] : options.headers) {
    headers = curl_slist_append(headers, absl::StrCat(name, ": ", value).c_str());
  }
  curl_easy_setopt(curl_, CURLOPT_HTTPHEADER, headers);

  auto start = std::chrono::steady_clock::now();
  response.curl_code = curl_easy_perform(curl_);
  response.elapsed = absl::FromChrono(std::chrono::steady_clock::now() - start);
  curl_easy_getinfo(curl_, CURLINFO_RESPONSE_CODE, &response.status);
  curl_easy_getinfo(curl_, CURLINFO_HTTP_VERSION, &response.http_version);
  curl_easy_getinfo(curl_, CURLINFO_NUM_CONNECTS, &last_new_connections_);
  if (response.curl_code != CURLE_OK) {
    response.curl_error =
        error[0] != '\0' ? std::string(error) : curl_easy_strerror(response.curl_code);
  }
  curl_slist_free_all(headers);
  return response;
}

HttpResponse SendHttpRequest(absl::string_view method, absl::string_view url,
                             absl::string_view body, const RequestOptions& options) {
  HttpClient client;
  return client.Send(method, url, body, options);
}

struct EmulatorProcess::Child {
  std::unique_ptr<gateway::testing::ChildProcess> process;
};

EmulatorProcess::EmulatorProcess(std::unique_ptr<Child> child, int port, std::string api_key,
                                 std::vector<std::string> extra_api_keys)
    : child_(std::move(child)),
      port_(port),
      api_key_(std::move(api_key)),
      extra_api_keys_(std::move(extra_api_keys)) {}

pid_t EmulatorProcess::pid() const { return child_ != nullptr ? child_->process->pid() : -1; }

absl::StatusOr<std::unique_ptr<EmulatorProcess>> EmulatorProcess::Start(
    EmulatorProcessOptions options) {
  GlobalInitOnce();
  std::vector<std::string> args = {options.binary, "--listen", "127.0.0.1:0", "--api-key",
                                   options.api_key};
  for (const std::string& key : options.extra_api_keys) {
    args.insert(args.end(), {"--api-key", key});
  }
  if (!options.tls_cert_file.empty()) {
    args.insert(args.end(), {"--tls-listen", "127.0.0.1:0", "--tls-cert", options.tls_cert_file,
                             "--tls-key", options.tls_key_file});
  }
  args.insert(args.end(), options.args.begin(), options.args.end());
  // The startup line goes to a file of its own, removed once read.
  char stdout_path[] = "/tmp/haufe_emulator_stdout_XXXXXX";
  const int stdout_fd = mkstemp(stdout_path);
  if (stdout_fd < 0) return absl::InternalError(absl::StrCat("mkstemp: ", std::strerror(errno)));
  close(stdout_fd);
  absl::StatusOr<std::unique_ptr<gateway::testing::ChildProcess>> child =
      gateway::testing::ChildProcess::Start({.argv = std::move(args), .stdout_path = stdout_path});
  if (!child.ok()) {
    std::remove(stdout_path);
    return child.status();
  }
  auto process = std::unique_ptr<EmulatorProcess>(
      new EmulatorProcess(std::make_unique<Child>(Child{*std::move(child)}), 0, options.api_key,
                          options.extra_api_keys));

  std::string line;
  // Until the line is complete or the emulator exited (read once more after it did).
  gateway::testing::Eventually(
      [&] {
        const bool exited = !process->child_->process->Running();
        std::ifstream in(stdout_path);
        std::stringstream contents;
        contents << in.rdbuf();
        line = contents.str();
        // The plain listener's line comes last (the TLS one, if any, before it).
        return absl::StrContains(line, "\nhaufe-emulator listening on ") ||
               absl::StartsWith(line, "haufe-emulator listening on ") || exited;
      },
      options.startup_timeout, absl::Milliseconds(5));
  std::remove(stdout_path);
  // "PREFIX HOST:PORT" lines; the port of the one starting with `prefix`, or 0.
  auto port_after = [&line](absl::string_view prefix) {
    for (absl::string_view each : absl::StrSplit(line, '\n')) {
      const size_t colon = each.rfind(':');
      int port = 0;
      if (absl::StartsWith(each, prefix) && colon != absl::string_view::npos &&
          absl::SimpleAtoi(each.substr(colon + 1), &port)) {
        return port;
      }
    }
    return 0;
  };
  process->port_ = port_after("haufe-emulator listening on ");
  process->tls_port_ = port_after("haufe-emulator tls listening on ");
  if (process->port_ == 0 || (!options.tls_cert_file.empty() && process->tls_port_ == 0)) {
    return absl::UnavailableError(absl::StrCat("haufe-emulator (", options.binary,
                                               ") did not start; stdout: '", line,
                                               "' (see its stderr)"));
  }
  return process;
}

EmulatorProcess::~EmulatorProcess() {
  if (child_ != nullptr) (void)Stop();
}

absl::StatusOr<int> EmulatorProcess::Stop(absl::Duration grace) {
  if (child_ == nullptr) return absl::FailedPreconditionError("Stop: the emulator is not running");
  absl::StatusOr<int> exit_code = child_->process->Terminate(grace);
  child_.reset();
  return exit_code;
}

std::string EmulatorProcess::base_url() const { return absl::StrCat("http://127.0.0.1:", port_); }
std::string EmulatorProcess::api_url() const { return base_url() + "/agents/v1"; }
std::string EmulatorProcess::tls_api_url() const {
  return absl::StrCat("https://127.0.0.1:", tls_port_, "/agents/v1");
}

RequestOptions EmulatorProcess::WithApiKey(const RequestOptions& options) const {
  RequestOptions out = options;
  out.headers.emplace_back("api-key", options.api_key.value_or(api_key_));
  return out;
}

HttpResponse EmulatorProcess::Get(absl::string_view path, const RequestOptions& options) const {
  return SendHttpRequest("GET", base_url() + std::string(path), "", options);
}
HttpResponse EmulatorProcess::Post(absl::string_view path, absl::string_view body,
                                   const RequestOptions& options) const {
  return SendHttpRequest("POST", base_url() + std::string(path), body, options);
}
HttpResponse EmulatorProcess::Delete(absl::string_view path, const RequestOptions& options) const {
  return SendHttpRequest("DELETE", base_url() + std::string(path), "", options);
}
HttpResponse EmulatorProcess::ApiGet(absl::string_view path, const RequestOptions& options) const {
  return SendHttpRequest("GET", api_url() + std::string(path), "", WithApiKey(options));
}
HttpResponse EmulatorProcess::ApiPost(absl::string_view path, absl::string_view body,
                                      const RequestOptions& options) const {
  return SendHttpRequest("POST", api_url() + std::string(path), body, WithApiKey(options));
}
HttpResponse EmulatorProcess::ApiDelete(absl::string_view path,
                                        const RequestOptions& options) const {
  return SendHttpRequest("DELETE", api_url() + std::string(path), "", WithApiKey(options));
}

absl::StatusOr<int64_t> EmulatorProcess::AddFault(const json& rule) const {
  absl::StatusOr<json> j = ControlJson(Post("/_emulator/faults", rule.dump()), "AddFault");
  if (!j.ok()) return j.status();
  return j->value("id", int64_t{0});
}

absl::Status EmulatorProcess::ClearFaults() const {
  return CheckControl(Delete("/_emulator/faults"), "ClearFaults");
}

absl::Status EmulatorProcess::SetConfig(const json& config) const {
  return CheckControl(Post("/_emulator/config", config.dump()), "SetConfig");
}

absl::Status EmulatorProcess::Reset() const {
  return CheckControl(Post("/_emulator/reset", "{}"), "Reset");
}

absl::StatusOr<json> EmulatorProcess::Requests() const {
  return ControlJson(Get("/_emulator/requests"), "Requests");
}

absl::Status EmulatorProcess::ClearRequests() const {
  return CheckControl(Delete("/_emulator/requests"), "ClearRequests");
}

absl::StatusOr<json> EmulatorProcess::Stats() const {
  return ControlJson(Get("/_emulator/stats"), "Stats");
}

}  // namespace copilot::emulator::testing
