// Shared set-up of the integration tests: the real haufe-emulator and copilot-gateway binaries
// over loopback, and helpers to read google.rpc details and the emulator's request record.
#ifndef COPILOT_GATEWAY_TESTS_SERVER_INTEGRATION_INTEGRATION_FIXTURE_H_
#define COPILOT_GATEWAY_TESTS_SERVER_INTEGRATION_INTEGRATION_FIXTURE_H_

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "copilot/v1/copilot_service.grpc.pb.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/core/signed_thread_handles.h"
#include "tests/emulator/testing/emulator_process.h"
#include "tests/server/integration/forward_proxy.h"
#include "tests/server/integration/gateway_process.h"
#include "tests/testing/eventually.h"

namespace copilot::gateway::testing {

inline constexpr char kTaxAssistant[] = "7c0e5d3a-4c1b-4f57-9a51-1f1f3e0a0001";
inline constexpr char kHrAssistant[] = "7c0e5d3a-4c1b-4f57-9a51-1f1f3e0a0002";
inline constexpr char kLegacyAssistant[] = "7c0e5d3a-4c1b-4f57-9a51-1f1f3e0a0003";
inline constexpr char kUnknownThread[] = "00000000-0000-4000-8000-00000000abcd";

// The google.rpc.Status in a call's grpc-status-details-bin.
inline google::rpc::Status RpcStatus(const grpc::Status& status) {
  google::rpc::Status details;
  details.ParseFromString(status.error_details());
  return details;
}

template <typename Detail>
std::optional<Detail> FindDetail(const grpc::Status& status) {
  const google::rpc::Status rpc = RpcStatus(status);
  for (const auto& any : rpc.details()) {
    Detail detail;
    if (any.Is<Detail>() && any.UnpackTo(&detail)) return detail;
  }
  return std::nullopt;
}

inline std::string Reason(const grpc::Status& status) {
  auto info = FindDetail<google::rpc::ErrorInfo>(status);
  return info ? info->reason() : "(no ErrorInfo)";
}

inline std::string HttpStatusOf(const grpc::Status& status) {
  auto info = FindDetail<google::rpc::ErrorInfo>(status);
  if (!info) return "(no ErrorInfo)";
  auto it = info->metadata().find("http_status");
  return it == info->metadata().end() ? "" : it->second;
}

// The handle the suite's gateway (GatewayProcessOptions' default signing key) gives `tenant_id`
// for an upstream thread: lets a test name threads the upstream does not have.
inline std::string SignedHandle(const std::string& tenant_id, const std::string& upstream_thread,
                                const std::string& assistant_id) {
  Tenant tenant;
  tenant.id = tenant_id;
  return SignedThreadHandles(GatewayProcessOptions().signing_key)
      .ToCaller(tenant, ThreadRef{upstream_thread, assistant_id});
}

// Deadline helper for client contexts.
inline void SetTimeout(grpc::ClientContext& context, absl::Duration timeout) {
  context.set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout));
}

// `n` CreateThread calls through `stub` at once, titled "call <i>", each with `timeout` (the
// callback API: no thread per call); their statuses, in order.
inline std::vector<grpc::Status> CreateThreadsAtOnce(copilot::v1::CopilotService::Stub& stub, int n,
                                                     absl::Duration timeout) {
  struct Call {
    grpc::ClientContext context;
    copilot::v1::CreateThreadRequest request;
    copilot::v1::CreateThreadResponse response;
  };
  std::vector<std::unique_ptr<Call>> calls;
  std::vector<grpc::Status> statuses(static_cast<std::size_t>(n));
  std::mutex mutex;
  std::condition_variable done;
  int remaining = n;
  for (int i = 0; i < n; ++i) {
    auto call = std::make_unique<Call>();
    SetTimeout(call->context, timeout);
    call->request.set_assistant_id(kHrAssistant);
    call->request.set_title(absl::StrCat("call ", i));
    stub.async()->CreateThread(&call->context, &call->request, &call->response,
                               [&, i](grpc::Status status) {
                                 std::lock_guard<std::mutex> lock(mutex);
                                 statuses[static_cast<std::size_t>(i)] = std::move(status);
                                 if (--remaining == 0) done.notify_one();
                               });
    calls.push_back(std::move(call));
  }
  std::unique_lock<std::mutex> lock(mutex);
  done.wait(lock, [&] { return remaining == 0; });
  return statuses;
}

// The titles of the create_thread requests `emulator` recorded, each with how often it came.
inline std::map<std::string, int> RecordedCreateThreadTitles(
    const emulator::testing::EmulatorProcess& emulator) {
  absl::StatusOr<nlohmann::json> records = emulator.Requests();
  EXPECT_TRUE(records.ok()) << records.status();
  std::map<std::string, int> titles;
  if (!records.ok()) return titles;
  for (const auto& record : *records) {
    if (record["route"] != "create_thread") continue;
    const nlohmann::json body = nlohmann::json::parse(record["body"].get<std::string>(), nullptr,
                                                      /*allow_exceptions=*/false);
    ++titles[body.is_object() ? body.value("title", std::string("?")) : std::string("?")];
  }
  return titles;
}

// The gateway's /metrics page (empty when it cannot be fetched).
inline std::string Scrape(const GatewayProcess& gateway) {
  return emulator::testing::SendHttpRequest(
             "GET", absl::StrCat("http://127.0.0.1:", gateway.metrics_port(), "/metrics"), "")
      .body;
}

// One ListAssistants through `gateway` with a 10 s deadline: the cheapest upstream call.
inline grpc::Status ListAssistantsThrough(const GatewayProcess& gateway) {
  auto stub = copilot::v1::CopilotService::NewStub(gateway.channel());
  grpc::ClientContext context;
  SetTimeout(context, absl::Seconds(10));
  copilot::v1::ListAssistantsResponse response;
  return stub->ListAssistants(&context, copilot::v1::ListAssistantsRequest(), &response);
}

// The value of the series `series` (name and labels as exposed) in a /metrics scrape; "" when
// absent. Failure messages then show one line, not the whole scrape.
inline std::string MetricValue(const std::string& scrape, const std::string& series) {
  const std::string prefix = series + " ";
  for (std::size_t at = 0; at < scrape.size();) {
    const std::size_t end = std::min(scrape.find('\n', at), scrape.size());
    if (scrape.compare(at, prefix.size(), prefix) == 0) {
      return scrape.substr(at + prefix.size(), end - at - prefix.size());
    }
    at = end + 1;
  }
  return "";
}

// One emulator and one gateway per test suite; the emulator is reset before each test.
//
// With COPILOT_TEST_UPSTREAM_TLS=1 in the environment the gateway reaches the emulator over
// HTTPS (its TLS listener with the test certificates; upstream.ca_file the test CA): ctest runs
// the RPC, streaming and error-table suites a second time that way, named "tls.<test>". With
// COPILOT_TEST_UPSTREAM_H2=1 too, the emulator offers HTTP/2 and the gateway speaks it (ALPN h2,
// streams multiplexed): "h2.<test>". With COPILOT_TEST_UPSTREAM_PROXY=1 as well, through a real
// forward proxy (tinyproxy) with CONNECT and proxy authentication, as behind a corporate egress
// proxy: "h2+proxy.<test>".
class GatewayIntegrationTest : public ::testing::Test {
 protected:
  static bool EnvironmentSays(const char* name) {
    const char* value = std::getenv(name);
    return value != nullptr && std::string(value) == "1";
  }
  static bool UpstreamOverTls() { return EnvironmentSays("COPILOT_TEST_UPSTREAM_TLS"); }
  static bool UpstreamOverHttp2() { return EnvironmentSays("COPILOT_TEST_UPSTREAM_H2"); }
  static bool UpstreamThroughProxy() { return EnvironmentSays("COPILOT_TEST_UPSTREAM_PROXY"); }
  static constexpr char kProxyUser[] = "egress";
  static constexpr char kProxyPassword[] = "proxy-password-1";

  // Settings of the suite's gateway. Small limits so faults show quickly.
  static GatewayProcessOptions DefaultGatewayOptions(const std::string& upstream_url) {
    GatewayProcessOptions options;
    options.upstream_url = upstream_url;
    options.upstream = {{"connect_timeout", "1s"},
                        {"stall_timeout", "1s"},
                        {"max_call_timeout", "30s"},
                        {"max_response_bytes", "1MiB"}};
    if (UpstreamOverTls()) {
      options.upstream["ca_file"] = std::string(COPILOT_TEST_CERTS_DIR) + "/ca.pem";
    }
    if (proxy_ != nullptr) {
      options.upstream["proxy"] = proxy_->url();
      options.upstream["proxy_credentials_file"] = *proxy_credentials_file_;
    }
    return options;
  }

  static void SetUpTestSuite() {
    emulator::testing::EmulatorProcessOptions emulator_options{.args = {"--stream-delay-ms", "2"}};
    if (UpstreamOverTls()) {
      emulator_options.tls_cert_file = std::string(COPILOT_TEST_CERTS_DIR) + "/server.pem";
      emulator_options.tls_key_file = std::string(COPILOT_TEST_CERTS_DIR) + "/server.key";
    }
    if (UpstreamOverHttp2()) {
      emulator_options.args.insert(emulator_options.args.end(), {"--tls-http2", "on"});
    }
    auto emulator = emulator::testing::EmulatorProcess::Start(emulator_options);
    ASSERT_TRUE(emulator.ok()) << emulator.status();
    emulator_ = std::move(*emulator).release();
    if (UpstreamThroughProxy()) {
      auto proxy = ForwardProxy::Start({.username = kProxyUser, .password = kProxyPassword});
      ASSERT_TRUE(proxy.ok()) << proxy.status();
      proxy_ = std::move(*proxy).release();
      char path[] = "/tmp/copilot_proxy_credentials_XXXXXX";
      const int fd = mkstemp(path);
      ASSERT_GE(fd, 0);
      close(fd);
      std::ofstream(path) << kProxyUser << ":" << kProxyPassword << "\n";
      proxy_credentials_file_ = new std::string(path);
    }
    auto gateway = GatewayProcess::Start(DefaultGatewayOptions(UpstreamUrl()));
    ASSERT_TRUE(gateway.ok()) << gateway.status();
    gateway_ = std::move(*gateway).release();
  }

  static void TearDownTestSuite() {
    if (gateway_ != nullptr) {
      absl::StatusOr<int> exit_code = gateway_->Stop();
      EXPECT_TRUE(exit_code.ok() && *exit_code == 0)
          << "copilot-gateway exit: " << (exit_code.ok() ? std::to_string(*exit_code) : "?");
      delete gateway_;
      gateway_ = nullptr;
    }
    if (UpstreamOverHttp2() && emulator_ != nullptr) {
      // The suite's upstream calls went over HTTP/2, not HTTP/1.1 after ALPN.
      absl::StatusOr<nlohmann::json> stats = emulator_->Stats();
      ASSERT_TRUE(stats.ok()) << stats.status();
      EXPECT_GE((*stats)["h2_connections"], 1) << stats->dump();
    }
    delete emulator_;
    emulator_ = nullptr;
    if (proxy_ != nullptr) {
      // Every upstream request went through the proxy's tunnel (a plain-HTTP upstream: as
      // absolute-URI requests), none of them refused.
      const std::vector<std::string> requests = proxy_->Requests();
      EXPECT_FALSE(requests.empty()) << proxy_->Log();
      for (const std::string& request : requests) {
        const bool tunnelled = request.rfind("CONNECT 127.0.0.1:", 0) == 0;
        const bool forwarded = request.find(" http://127.0.0.1:") != std::string::npos;
        EXPECT_TRUE(UpstreamOverTls() ? tunnelled : forwarded) << request;
      }
      EXPECT_EQ(proxy_->Log().find(" 407 "), std::string::npos) << proxy_->Log();
      delete proxy_;
      proxy_ = nullptr;
      std::remove(proxy_credentials_file_->c_str());
      delete proxy_credentials_file_;
      proxy_credentials_file_ = nullptr;
    }
  }

  void SetUp() override {
    ASSERT_NE(emulator_, nullptr);
    ASSERT_NE(gateway_, nullptr);
    ASSERT_TRUE(emulator_->Reset().ok());
    stub_ = copilot::v1::CopilotService::NewStub(gateway_->channel());
  }

  static std::string UpstreamUrl() {
    return UpstreamOverTls() ? absl::StrCat("https://127.0.0.1:", emulator_->tls_port(), "/agents")
                             : emulator_->base_url() + "/agents";
  }

  // Installs a fault rule on the emulator.
  static void Fault(const nlohmann::json& rule) {
    auto id = emulator_->AddFault(rule);
    ASSERT_TRUE(id.ok()) << id.status();
  }

  // The emulator's request record (control requests are not recorded).
  static nlohmann::json Requests() {
    auto records = emulator_->Requests();
    EXPECT_TRUE(records.ok()) << records.status();
    return records.ok() ? *records : nlohmann::json::array();
  }

  // Records of route `route`.
  static std::vector<nlohmann::json> RequestsTo(const std::string& route) {
    std::vector<nlohmann::json> out;
    for (const auto& record : Requests()) {
      if (record.value("route", "") == route) out.push_back(record);
    }
    return out;
  }

  // Creates a thread with `assistant` and adds one user message; returns the thread ID.
  std::string ThreadWithQuestion(const std::string& assistant, const std::string& question) {
    grpc::ClientContext create_context;
    SetTimeout(create_context, absl::Seconds(10));
    copilot::v1::CreateThreadRequest create;
    create.set_assistant_id(assistant);
    copilot::v1::CreateThreadResponse created;
    grpc::Status status = stub_->CreateThread(&create_context, create, &created);
    EXPECT_TRUE(status.ok()) << status.error_message();
    grpc::ClientContext add_context;
    SetTimeout(add_context, absl::Seconds(10));
    copilot::v1::AddMessageRequest add;
    add.set_thread_id(created.thread().id());
    add.mutable_message()->set_role(copilot::v1::ROLE_USER);
    add.mutable_message()->set_content(question);
    copilot::v1::AddMessageResponse added;
    status = stub_->AddMessage(&add_context, add, &added);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return created.thread().id();
  }

  // Run on `thread` with a deadline of `timeout`.
  grpc::Status RunOn(const std::string& thread, copilot::v1::RunResponse* response,
                     absl::Duration timeout = absl::Seconds(10)) {
    grpc::ClientContext context;
    SetTimeout(context, timeout);
    copilot::v1::RunRequest request;
    request.set_thread_id(thread);
    return stub_->Run(&context, request, response);
  }

  static inline emulator::testing::EmulatorProcess* emulator_ = nullptr;
  static inline ForwardProxy* proxy_ = nullptr;  // With COPILOT_TEST_UPSTREAM_PROXY=1.
  static inline std::string* proxy_credentials_file_ = nullptr;
  static inline GatewayProcess* gateway_ = nullptr;
  std::unique_ptr<copilot::v1::CopilotService::Stub> stub_;
};

}  // namespace copilot::gateway::testing

#endif  // COPILOT_GATEWAY_TESTS_SERVER_INTEGRATION_INTEGRATION_FIXTURE_H_
