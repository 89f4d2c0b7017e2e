// Operations through the real binaries: /metrics (checked with promtool and scraped by a real
// Prometheus server), grpc.health.v1 and /healthz /readyz, reflection, JSON call logs with
// x-request-id and traceparent, the log level and reload metrics at run time, graceful shutdown
// with 100 calls in flight, and connection age.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <regex>
#include <set>
#include <sstream>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "server/common/crypto.h"
#include "tests/server/integration/integration_fixture.h"
#include "tests/testing/child_process.h"
#include "tests/testing/eventually.h"

namespace copilot::gateway::testing {
namespace {

namespace v1 = ::copilot::v1;
using ::grpc::health::v1::HealthCheckRequest;
using ::grpc::health::v1::HealthCheckResponse;
using ::testing::HasSubstr;
using ::testing::Not;

// How long Eventually waits unless a test says otherwise (the gateway works on its own threads).
constexpr absl::Duration kEventuallyTimeout = absl::Seconds(10);

// Reads a whole file.
std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Runs `command` through the shell; returns its exit code and fills `output` (stdout+stderr).
int Shell(const std::string& command, std::string* output) {
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return -1;
  char buffer[4096];
  std::string text;
  while (std::size_t n = fread(buffer, 1, sizeof(buffer), pipe)) text.append(buffer, n);
  const int status = pclose(pipe);
  if (output != nullptr) *output = text;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// The value of the sample `series` (name with labels exactly as the text format prints them,
// e.g. `grpc_server_started_total{grpc_method="Run",...}`), or -1 when absent. Labels are
// matched as a set, in any order.
double Sample(const std::string& scrape, const std::string& name,
              const std::map<std::string, std::string>& labels = {}) {
  for (absl::string_view line : absl::StrSplit(scrape, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    const std::size_t space = line.rfind(' ');
    if (space == absl::string_view::npos) continue;
    absl::string_view series = line.substr(0, space);
    const std::size_t brace = series.find('{');
    if (series.substr(0, brace) != name) continue;
    bool all = true;
    for (const auto& [key, value] : labels) {
      if (!absl::StrContains(series, absl::StrCat(key, "=\"", value, "\""))) all = false;
    }
    double number = 0;
    if (all && absl::SimpleAtod(line.substr(space + 1), &number)) return number;
  }
  return -1;
}

std::map<std::string, std::string> Rpc(const std::string& method, const std::string& type) {
  return {
      {"grpc_method", method}, {"grpc_service", "copilot.v1.CopilotService"}, {"grpc_type", type}};
}

std::map<std::string, std::string> With(std::map<std::string, std::string> labels,
                                        const std::string& key, const std::string& value) {
  labels[key] = value;
  return labels;
}

// The JSON log lines of a gateway log whose msg is `msg`.
std::vector<nlohmann::json> LogLines(const std::string& path, const std::string& msg) {
  std::vector<nlohmann::json> lines;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    nlohmann::json json = nlohmann::json::parse(line, nullptr, false);
    if (!json.is_discarded() && json.value("msg", "") == msg) lines.push_back(json);
  }
  return lines;
}

// A free TCP port on 127.0.0.1 (bound and released; a tiny race with other processes).
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  socklen_t length = sizeof(address);
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  close(fd);
  return ntohs(address.sin_port);
}

// One emulator and one gateway per test, each test with its own settings.
class GatewayOpsTest : public ::testing::Test {
 protected:
  void StartGateway(GatewayProcessOptions options = {},
                    std::vector<std::string> emulator_args = {"--stream-delay-ms", "2"}) {
    auto emulator = emulator::testing::EmulatorProcess::Start({.args = emulator_args});
    ASSERT_TRUE(emulator.ok()) << emulator.status();
    emulator_ = *std::move(emulator);
    options.upstream_url = emulator_->base_url() + "/agents";
    options.upstream.emplace("max_call_timeout", "60s");
    auto gateway = GatewayProcess::Start(options);
    ASSERT_TRUE(gateway.ok()) << gateway.status();
    gateway_ = *std::move(gateway);
    ASSERT_GT(gateway_->metrics_port(), 0);
    stub_ = v1::CopilotService::NewStub(gateway_->channel());
  }

  void TearDown() override {
    if (gateway_ != nullptr) {
      absl::StatusOr<int> exit_code = gateway_->Stop(absl::Seconds(30));
      EXPECT_TRUE(exit_code.ok() && *exit_code == 0)
          << "copilot-gateway exit: " << (exit_code.ok() ? std::to_string(*exit_code) : "?");
    }
  }

  std::string OpsUrl(const std::string& path) const {
    return absl::StrCat("http://127.0.0.1:", gateway_->metrics_port(), path);
  }

  std::string Scrape() const {
    emulator::testing::HttpResponse response =
        emulator::testing::SendHttpRequest("GET", OpsUrl("/metrics"), "");
    EXPECT_EQ(response.status, 200);
    return response.body;
  }

  long HttpStatus(const std::string& path) const {
    return emulator::testing::SendHttpRequest("GET", OpsUrl(path), "").status;
  }

  HealthCheckResponse::ServingStatus Health(const std::string& service,
                                            grpc::Status* status_out = nullptr) {
    auto health = grpc::health::v1::Health::NewStub(gateway_->NewChannel());
    grpc::ClientContext context;
    SetTimeout(context, absl::Seconds(5));
    HealthCheckRequest request;
    request.set_service(service);
    HealthCheckResponse response;
    grpc::Status status = health->Check(&context, request, &response);
    if (status_out != nullptr) *status_out = status;
    return status.ok() ? response.status() : HealthCheckResponse::UNKNOWN;
  }

  grpc::Status CreateThread(std::string* thread_id = nullptr,
                            std::vector<std::pair<std::string, std::string>> metadata = {},
                            std::string* request_id = nullptr) {
    grpc::ClientContext context;
    SetTimeout(context, absl::Seconds(10));
    for (const auto& [key, value] : metadata) context.AddMetadata(key, value);
    v1::CreateThreadRequest request;
    request.set_assistant_id(kTaxAssistant);
    v1::CreateThreadResponse response;
    grpc::Status status = stub_->CreateThread(&context, request, &response);
    if (thread_id != nullptr) *thread_id = response.thread().id();
    if (request_id != nullptr) {
      auto it = context.GetServerInitialMetadata().find("x-request-id");
      *request_id = it == context.GetServerInitialMetadata().end()
                        ? ""
                        : std::string(it->second.data(), it->second.size());
    }
    return status;
  }

  std::string ThreadWithQuestion() {
    std::string thread;
    EXPECT_TRUE(CreateThread(&thread).ok());
    grpc::ClientContext context;
    SetTimeout(context, absl::Seconds(10));
    v1::AddMessageRequest add;
    add.set_thread_id(thread);
    add.mutable_message()->set_role(v1::ROLE_USER);
    add.mutable_message()->set_content("How is a company car taxed?");
    v1::AddMessageResponse added;
    EXPECT_TRUE(stub_->AddMessage(&context, add, &added).ok());
    return thread;
  }

  nlohmann::json UpstreamRequests(const std::string& route) {
    nlohmann::json out = nlohmann::json::array();
    auto records = emulator_->Requests();
    EXPECT_TRUE(records.ok()) << records.status();
    if (!records.ok()) return out;
    for (const auto& record : *records) {
      if (record.value("route", "") == route) out.push_back(record);
    }
    return out;
  }

  std::unique_ptr<emulator::testing::EmulatorProcess> emulator_;
  std::unique_ptr<GatewayProcess> gateway_;
  std::unique_ptr<v1::CopilotService::Stub> stub_;
};

TEST_F(GatewayOpsTest, MetricsCountCallsCodesMessagesAndUpstreamRequests) {
  StartGateway();
  std::string thread;
  ASSERT_TRUE(CreateThread(&thread).ok());
  thread = ThreadWithQuestion();
  {  // A thread that is not the caller's: NOT_FOUND without an upstream call.
    grpc::ClientContext context;
    v1::GetThreadRequest request;
    request.set_thread_id("th1_not-a-thread");
    v1::GetThreadResponse response;
    EXPECT_EQ(stub_->GetThread(&context, request, &response).error_code(),
              grpc::StatusCode::NOT_FOUND);
  }
  int chunks = 0;
  {
    grpc::ClientContext context;
    SetTimeout(context, absl::Seconds(20));
    v1::StreamRunRequest request;
    request.set_thread_id(thread);
    auto reader = stub_->StreamRun(&context, request);
    v1::StreamRunResponse response;
    while (reader->Read(&response)) ++chunks;
    ASSERT_TRUE(reader->Finish().ok());
  }
  ASSERT_GT(chunks, 1);
  {  // The upstream's rate limit: RESOURCE_EXHAUSTED, counted as 429 upstream.
    ASSERT_TRUE(
        emulator_->AddFault({{"endpoint", "run"}, {"type", "status"}, {"status", 429}}).ok());
    grpc::ClientContext context;
    SetTimeout(context, absl::Seconds(10));
    v1::RunRequest request;
    request.set_thread_id(thread);
    v1::RunResponse response;
    EXPECT_EQ(stub_->Run(&context, request, &response).error_code(),
              grpc::StatusCode::RESOURCE_EXHAUSTED);
  }

  const std::string scrape = Scrape();
  const auto create = Rpc("CreateThread", "unary");
  EXPECT_EQ(Sample(scrape, "grpc_server_started_total", create), 2);
  EXPECT_EQ(Sample(scrape, "grpc_server_msg_received_total", create), 2);
  EXPECT_EQ(Sample(scrape, "grpc_server_msg_sent_total", create), 2);
  EXPECT_EQ(Sample(scrape, "grpc_server_handled_total", With(create, "grpc_code", "OK")), 2);
  EXPECT_EQ(Sample(scrape, "grpc_server_handled_total", With(create, "grpc_code", "Internal")), 0);
  EXPECT_EQ(Sample(scrape, "grpc_server_handling_seconds_count", create), 2);
  EXPECT_EQ(Sample(scrape, "grpc_server_handling_seconds_bucket", With(create, "le", "300")), 2);
  const auto get = Rpc("GetThread", "unary");
  EXPECT_EQ(Sample(scrape, "grpc_server_handled_total", With(get, "grpc_code", "NotFound")), 1);
  EXPECT_EQ(Sample(scrape, "grpc_server_msg_sent_total", get), 0);  // No response message.
  const auto stream = Rpc("StreamRun", "server_stream");
  EXPECT_EQ(Sample(scrape, "grpc_server_msg_sent_total", stream), chunks);
  EXPECT_EQ(Sample(scrape, "grpc_server_handled_total", With(stream, "grpc_code", "OK")), 1);
  EXPECT_EQ(Sample(scrape, "grpc_server_handled_total",
                   With(Rpc("Run", "unary"), "grpc_code", "ResourceExhausted")),
            1);
  // The tenant counter, with the configured tenant ID.
  EXPECT_EQ(Sample(scrape, "copilot_gateway_tenant_calls_total",
                   {{"tenant", "test"}, {"grpc_method", "CreateThread"}, {"grpc_code", "OK"}}),
            2);
  // Upstream requests by endpoint template and status class.
  EXPECT_EQ(Sample(scrape, "copilot_gateway_upstream_requests_total",
                   {{"endpoint", "POST /v1/threads"}, {"status", "2xx"}}),
            2);
  EXPECT_EQ(Sample(scrape, "copilot_gateway_upstream_requests_total",
                   {{"endpoint", "POST /v1/threads/{thread_id}/run"}, {"status", "429"}}),
            1);
  EXPECT_EQ(Sample(scrape, "copilot_gateway_upstream_time_to_first_byte_seconds_count",
                   {{"endpoint", "POST /v1/threads/{thread_id}/run/stream"}}),
            1);
  EXPECT_EQ(Sample(scrape, "copilot_gateway_upstream_request_duration_seconds_count",
                   {{"endpoint", "POST /v1/threads/{thread_id}/messages"}}),
            1);
  EXPECT_EQ(Sample(scrape, "copilot_gateway_upstream_in_flight"), 0);
  // The connections those requests used, idle in the cache now (within max_idle_connection_age).
  EXPECT_GE(Sample(scrape, "copilot_gateway_upstream_connections"), 1);
  EXPECT_EQ(Sample(scrape, "copilot_gateway_calls_in_flight"), 0);
  // The overhead: one observation per call, far below the call's own time for a stream.
  EXPECT_EQ(
      Sample(scrape, "copilot_gateway_overhead_seconds_count", {{"grpc_method", "StreamRun"}}), 1);
  EXPECT_LT(Sample(scrape, "copilot_gateway_overhead_seconds_sum", {{"grpc_method", "StreamRun"}}),
            Sample(scrape, "grpc_server_handling_seconds_sum", stream));
  EXPECT_EQ(Sample(scrape, "copilot_gateway_ready"), 1);
  EXPECT_EQ(Sample(scrape, "copilot_gateway_build_info"), 1);
  EXPECT_EQ(Sample(scrape, "copilot_gateway_config_info",
                   {{"sha256", absl::BytesToHexString(Sha256(Slurp(gateway_->config_path())))}}),
            1);
  // Process metrics of this very process.
  EXPECT_GT(Sample(scrape, "process_resident_memory_bytes"), 1e6);
  EXPECT_GT(Sample(scrape, "process_open_fds"), 3);
  EXPECT_GT(Sample(scrape, "process_threads"), 1);
  EXPECT_GT(Sample(scrape, "process_start_time_seconds"), absl::ToUnixSeconds(absl::Now()) - 600);
  EXPECT_GE(Sample(scrape, "process_cpu_seconds_total"), 0);
  // No label carries raw request input (the made-up thread handle above).
  EXPECT_THAT(scrape, Not(HasSubstr("not-a-thread")));

  // Prometheus's own linter accepts the page.
  const std::string path = absl::StrCat(::testing::TempDir(), "/scrape-", getpid(), ".txt");
  std::ofstream(path) << scrape;
  std::string output;
  const int code = Shell(absl::StrCat("promtool check metrics < ", path), &output);
  std::remove(path.c_str());
  EXPECT_EQ(code, 0) << output;
}

TEST_F(GatewayOpsTest, HealthLivenessReadinessAndHttpProbes) {
  StartGateway();
  EXPECT_EQ(Health(""), HealthCheckResponse::SERVING);
  EXPECT_EQ(Health("liveness"), HealthCheckResponse::SERVING);
  EXPECT_EQ(Health("readiness"), HealthCheckResponse::SERVING);
  EXPECT_EQ(Health("copilot.v1.CopilotService"), HealthCheckResponse::SERVING);
  grpc::Status status;
  Health("no.such.Service", &status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(HttpStatus("/healthz"), 200);
  EXPECT_EQ(HttpStatus("/readyz"), 200);
  EXPECT_EQ(HttpStatus("/nothing-here"), 404);
}

TEST_F(GatewayOpsTest, ReflectionV1AlphaListsAndDescribesTheService) {
  StartGateway();
  auto reflection = grpc::reflection::v1alpha::ServerReflection::NewStub(gateway_->channel());
  grpc::ClientContext context;
  SetTimeout(context, absl::Seconds(10));
  auto stream = reflection->ServerReflectionInfo(&context);
  grpc::reflection::v1alpha::ServerReflectionRequest request;
  request.set_list_services("");
  ASSERT_TRUE(stream->Write(request));
  grpc::reflection::v1alpha::ServerReflectionResponse response;
  ASSERT_TRUE(stream->Read(&response));
  std::set<std::string> services;
  for (const auto& service : response.list_services_response().service()) {
    services.insert(service.name());
  }
  EXPECT_TRUE(services.count("copilot.v1.CopilotService")) << response.DebugString();
  EXPECT_TRUE(services.count("grpc.health.v1.Health")) << response.DebugString();

  request.set_file_containing_symbol("copilot.v1.CopilotService");
  ASSERT_TRUE(stream->Write(request));
  ASSERT_TRUE(stream->Read(&response));
  ASSERT_GT(response.file_descriptor_response().file_descriptor_proto_size(), 0);
  bool found = false;
  for (const std::string& bytes : response.file_descriptor_response().file_descriptor_proto()) {
    google::protobuf::FileDescriptorProto file;
    ASSERT_TRUE(file.ParseFromString(bytes));
    for (const auto& service : file.service()) {
      if (service.name() == "CopilotService") found = service.method_size() == 11;
    }
  }
  EXPECT_TRUE(found);
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
}

TEST_F(GatewayOpsTest, RequestIdAndTraceparentAreReturnedLoggedAndSentUpstream) {
  StartGateway();
  // The caller's ID is kept, returned and sent upstream.
  std::string returned;
  ASSERT_TRUE(CreateThread(nullptr, {{"x-request-id", "caller-req-42"}}, &returned).ok());
  EXPECT_EQ(returned, "caller-req-42");
  // None (or an unusable one): a new one.
  std::string generated;
  ASSERT_TRUE(CreateThread(nullptr, {}, &generated).ok());
  EXPECT_TRUE(std::regex_match(generated, std::regex("[0-9a-f]{32}"))) << generated;
  std::string replaced;
  ASSERT_TRUE(CreateThread(nullptr, {{"x-request-id", "has spaces"}}, &replaced).ok());
  EXPECT_TRUE(std::regex_match(replaced, std::regex("[0-9a-f]{32}"))) << replaced;
  // A caller's trace continues upstream with the gateway's span as the parent.
  const std::string trace = "0af7651916cd43dd8448eb211c80319c";
  ASSERT_TRUE(
      CreateThread(nullptr, {{"traceparent", absl::StrCat("00-", trace, "-b7ad6b7169203331-01")}})
          .ok());

  nlohmann::json creates = UpstreamRequests("create_thread");
  ASSERT_EQ(creates.size(), 4u);
  EXPECT_EQ(creates[0]["headers"].value("x-request-id", ""), "caller-req-42");
  EXPECT_EQ(creates[1]["headers"].value("x-request-id", ""), generated);
  EXPECT_EQ(creates[2]["headers"].value("x-request-id", ""), replaced);
  const std::string sent = creates[3]["headers"].value("traceparent", "");
  EXPECT_TRUE(std::regex_match(sent, std::regex("00-" + trace + "-[0-9a-f]{16}-01"))) << sent;
  EXPECT_THAT(sent, Not(HasSubstr("b7ad6b7169203331")));
  // Without a caller trace, a new valid one.
  EXPECT_TRUE(std::regex_match(creates[1]["headers"].value("traceparent", ""),
                               std::regex("00-[0-9a-f]{32}-[0-9a-f]{16}-00")));

  // One JSON line per call, with the IDs and the upstream's status.
  std::vector<nlohmann::json> calls;
  ASSERT_TRUE(Eventually(
      [&] {
        calls = LogLines(gateway_->log_path(), "call");
        return calls.size() >= 4;
      },
      kEventuallyTimeout));
  EXPECT_EQ(calls[0].value("method", ""), "CreateThread");
  EXPECT_EQ(calls[0].value("grpc_code", ""), "OK");
  EXPECT_EQ(calls[0].value("tenant", ""), "test");
  EXPECT_EQ(calls[0].value("request_id", ""), "caller-req-42");
  EXPECT_EQ(calls[0].value("upstream_status", 0), 201);
  EXPECT_GT(calls[0].value("duration_ms", 0.0), 0.0);
  EXPECT_EQ(calls[0].value("level", ""), "info");
  EXPECT_EQ(calls[3].value("trace_id", ""), trace);
}

TEST_F(GatewayOpsTest, LogLevelChangesOnReloadWithoutRestart) {
  GatewayProcessOptions options;
  options.extra_yaml = "config_reload_interval: 200ms\n";
  StartGateway(options);
  const std::string original = Slurp(gateway_->config_path());
  auto reload_with = [&](const std::string& extra, int reloads) {
    std::ofstream(gateway_->config_path(), std::ios::trunc) << original << extra;
    ASSERT_TRUE(Eventually(
        [&] {
          return Sample(Scrape(), "copilot_gateway_config_reloads_total", {{"result", "ok"}}) ==
                 reloads;
        },
        kEventuallyTimeout));
  };
  std::string id;
  ASSERT_TRUE(CreateThread(nullptr, {{"x-request-id", "at-info"}}).ok());
  reload_with("log_level: warning\n", 1);
  ASSERT_TRUE(CreateThread(nullptr, {{"x-request-id", "at-warning"}}).ok());
  reload_with("log_level: debug\n", 2);
  ASSERT_TRUE(CreateThread(nullptr, {{"x-request-id", "at-debug"}}).ok());

  std::vector<std::string> logged;
  ASSERT_TRUE(Eventually(
      [&] {
        logged.clear();
        for (const auto& line : LogLines(gateway_->log_path(), "call")) {
          logged.push_back(line.value("request_id", ""));
        }
        return logged.size() >= 2;
      },
      kEventuallyTimeout));
  EXPECT_THAT(logged, ::testing::ElementsAre("at-info", "at-debug"));
  // At debug, each upstream request has its own line.
  std::vector<nlohmann::json> upstream = LogLines(gateway_->log_path(), "upstream request");
  ASSERT_EQ(upstream.size(), 1u);
  EXPECT_EQ(upstream[0].value("endpoint", ""), "POST /v1/threads");
  EXPECT_EQ(upstream[0].value("request_id", ""), "at-debug");
  EXPECT_EQ(upstream[0].value("level", ""), "debug");
}

// Issue #4's reload metric: a refused file is counted, the config in force keeps its hash.
TEST_F(GatewayOpsTest, RefusedReloadIsCountedAndTheConfigInForceStays) {
  GatewayProcessOptions options;
  options.extra_yaml = "config_reload_interval: 200ms\n";
  StartGateway(options);
  const std::string original = Slurp(gateway_->config_path());
  const std::string original_hash = absl::BytesToHexString(Sha256(original));
  std::string scrape = Scrape();
  EXPECT_EQ(Sample(scrape, "copilot_gateway_config_reloads_total", {{"result", "failed"}}), 0);
  EXPECT_EQ(Sample(scrape, "copilot_gateway_config_last_reload_successful"), 1);

  std::ofstream(gateway_->config_path(), std::ios::trunc) << original << "identity: sometimes\n";
  ASSERT_TRUE(Eventually(
      [&] {
        scrape = Scrape();
        return Sample(scrape, "copilot_gateway_config_reloads_total", {{"result", "failed"}}) == 1;
      },
      kEventuallyTimeout));
  EXPECT_EQ(Sample(scrape, "copilot_gateway_config_last_reload_successful"), 0);
  EXPECT_EQ(Sample(scrape, "copilot_gateway_config_info", {{"sha256", original_hash}}), 1);
  EXPECT_TRUE(CreateThread().ok());  // Still serving with the old config.

  const std::string fixed = original + "log_level: info\n";
  std::ofstream(gateway_->config_path(), std::ios::trunc) << fixed;
  ASSERT_TRUE(Eventually(
      [&] {
        scrape = Scrape();
        return Sample(scrape, "copilot_gateway_config_reloads_total", {{"result", "ok"}}) == 1;
      },
      kEventuallyTimeout));
  EXPECT_EQ(Sample(scrape, "copilot_gateway_config_last_reload_successful"), 1);
  EXPECT_EQ(Sample(scrape, "copilot_gateway_config_info",
                   {{"sha256", absl::BytesToHexString(Sha256(fixed))}}),
            1);
  EXPECT_EQ(Sample(scrape, "copilot_gateway_config_info", {{"sha256", original_hash}}), -1);
}

// SIGTERM with 100 slow Runs in flight: readiness turns NOT_SERVING at once while calls are still
// accepted for shutdown_delay; then new calls are refused, every Run finishes OK within the
// drain time, and the process exits 0.
TEST_F(GatewayOpsTest, SigtermDrainsHundredSlowRunsThenExitsZero) {
  GatewayProcessOptions options;
  options.shutdown_delay = "2s";
  options.shutdown_grace = "30s";
  StartGateway(options);
  constexpr int kRuns = 100;
  std::vector<std::string> threads;
  for (int i = 0; i < kRuns; ++i) threads.push_back(ThreadWithQuestion());
  ASSERT_TRUE(
      emulator_->AddFault({{"endpoint", "run"}, {"type", "latency"}, {"delay_ms", 4000}}).ok());

  struct Call {
    grpc::ClientContext context;
    v1::RunRequest request;
    v1::RunResponse response;
  };
  std::vector<std::unique_ptr<Call>> calls;
  std::mutex mu;
  std::condition_variable done_cv;
  int done = 0;
  std::vector<grpc::Status> statuses(kRuns);
  const absl::Time start = absl::Now();
  for (int i = 0; i < kRuns; ++i) {
    calls.push_back(std::make_unique<Call>());
    Call& call = *calls.back();
    SetTimeout(call.context, absl::Seconds(60));
    call.request.set_thread_id(threads[static_cast<std::size_t>(i)]);
    stub_->async()->Run(&call.context, &call.request, &call.response, [&, i](grpc::Status status) {
      std::lock_guard<std::mutex> lock(mu);
      statuses[static_cast<std::size_t>(i)] = std::move(status);
      ++done;
      done_cv.notify_all();
    });
  }
  ASSERT_TRUE(
      Eventually([&] { return Sample(Scrape(), "copilot_gateway_upstream_in_flight") == kRuns; },
                 kEventuallyTimeout))
      << Scrape();

  ASSERT_EQ(kill(gateway_->pid(), SIGTERM), 0);
  // Draining: not ready, still live, still accepting calls.
  EXPECT_TRUE(Eventually([&] { return HttpStatus("/readyz") == 503; }, absl::Seconds(1)));
  EXPECT_EQ(Health("readiness"), HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(Health(""), HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(Health("liveness"), HealthCheckResponse::SERVING);
  EXPECT_EQ(HttpStatus("/healthz"), 200);
  EXPECT_TRUE(CreateThread().ok()) << "calls are accepted during shutdown_delay";

  // After the delay: new calls are refused (on a new connection as on the old one).
  ASSERT_TRUE(Eventually(
      [&] { return absl::StrContains(Slurp(gateway_->log_path()), "shutting down: no new calls"); },
      absl::Seconds(5)));
  {
    auto fresh = v1::CopilotService::NewStub(gateway_->NewChannel());
    grpc::ClientContext context;
    SetTimeout(context, absl::Seconds(2));
    v1::CreateThreadRequest request;
    request.set_assistant_id(kTaxAssistant);
    v1::CreateThreadResponse response;
    EXPECT_EQ(fresh->CreateThread(&context, request, &response).error_code(),
              grpc::StatusCode::UNAVAILABLE);
  }
  EXPECT_EQ(CreateThread().error_code(), grpc::StatusCode::UNAVAILABLE);

  // Every Run in flight finishes OK.
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(done_cv.wait_for(lock, std::chrono::seconds(60), [&] { return done == kRuns; }));
  }
  int ok = 0;
  std::string failures;
  for (const grpc::Status& status : statuses) {
    if (status.ok()) {
      ++ok;
    } else {
      absl::StrAppend(&failures, status.error_code(), " ", status.error_message(), "; ");
    }
  }
  EXPECT_EQ(ok, kRuns) << failures;
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));
  absl::StatusOr<int> exit_code = gateway_->Stop(absl::Seconds(30));
  ASSERT_TRUE(exit_code.ok());
  EXPECT_EQ(*exit_code, 0);
  gateway_.reset();
}

// Calls still in flight after shutdown_grace are cancelled cleanly: the caller gets an error,
// the upstream transfer is aborted, and the process still exits 0.
TEST_F(GatewayOpsTest, CallsOutlivingTheDrainTimeAreCancelledAndTheExitIsClean) {
  GatewayProcessOptions options;
  options.shutdown_delay = "0s";
  options.shutdown_grace = "1s";
  StartGateway(options);
  const std::string thread = ThreadWithQuestion();
  ASSERT_TRUE(
      emulator_->AddFault({{"endpoint", "run_stream"}, {"type", "latency"}, {"delay_ms", 30000}})
          .ok());
  grpc::ClientContext context;
  SetTimeout(context, absl::Seconds(60));
  v1::StreamRunRequest request;
  request.set_thread_id(thread);
  auto reader = stub_->StreamRun(&context, request);
  ASSERT_TRUE(
      Eventually([&] { return Sample(Scrape(), "copilot_gateway_upstream_in_flight") == 1; },
                 kEventuallyTimeout));
  const absl::Time start = absl::Now();
  absl::StatusOr<int> exit_code = gateway_->Stop(absl::Seconds(20));
  ASSERT_TRUE(exit_code.ok());
  EXPECT_EQ(*exit_code, 0);
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  v1::StreamRunResponse response;
  while (reader->Read(&response)) {
  }
  EXPECT_FALSE(reader->Finish().ok());
  gateway_.reset();
}

// A maximum connection age makes clients reconnect (so load spreads over replicas) without
// failing a call that outlives it.
TEST_F(GatewayOpsTest, MaxConnectionAgeRecyclesConnectionsWithoutFailingCalls) {
  GatewayProcessOptions options;
  options.extra_yaml = "keepalive:\n  max_connection_age: 1s\n  max_connection_age_grace: 30s\n";
  StartGateway(options);
  const std::string thread = ThreadWithQuestion();
  ASSERT_TRUE(
      emulator_->AddFault({{"endpoint", "run"}, {"type", "latency"}, {"delay_ms", 2500}}).ok());
  grpc::ClientContext context;
  SetTimeout(context, absl::Seconds(20));
  v1::RunRequest request;
  request.set_thread_id(thread);
  v1::RunResponse response;
  EXPECT_TRUE(stub_->Run(&context, request, &response).ok()) << "outlived the connection age";
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_TRUE(CreateThread().ok());
  // The gateway saw the first and the last call come from different client ports.
  std::vector<nlohmann::json> calls;
  ASSERT_TRUE(Eventually(
      [&] {
        calls = LogLines(gateway_->log_path(), "call");
        return calls.size() >= 4;
      },
      kEventuallyTimeout));
  EXPECT_NE(calls.front().value("peer", ""), calls.back().value("peer", ""));
}

// A real Prometheus server scrapes the gateway; PromQL through its HTTP API returns the count.
TEST_F(GatewayOpsTest, PrometheusServerScrapesAndAnswersPromQl) {
  std::string output;
  if (Shell("command -v prometheus", &output) != 0) {
    GTEST_FAIL() << "prometheus is not installed (scripts/install-deps.sh installs it)";
  }
  StartGateway();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(CreateThread().ok());

  const std::string dir = absl::StrCat(::testing::TempDir(), "/prometheus-", getpid());
  ASSERT_EQ(Shell(absl::StrCat("rm -rf ", dir, " && mkdir -p ", dir, "/data"), nullptr), 0);
  std::ofstream(dir + "/prometheus.yml")
      << "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
      << "scrape_configs:\n  - job_name: copilot-gateway\n    static_configs:\n"
      << "      - targets: ['127.0.0.1:" << gateway_->metrics_port() << "']\n";
  const int port = FreePort();
  absl::StatusOr<std::unique_ptr<ChildProcess>> prometheus =
      ChildProcess::Start({.argv = {"prometheus", "--config.file=" + dir + "/prometheus.yml",
                                    "--storage.tsdb.path=" + dir + "/data",
                                    absl::StrCat("--web.listen-address=127.0.0.1:", port)},
                           .stdout_path = dir + "/prometheus.out",
                           .stderr_path = dir + "/prometheus.log"});
  ASSERT_TRUE(prometheus.ok()) << prometheus.status();
  const std::string query =
      "sum(grpc_server_handled_total%7Bgrpc_method%3D%22CreateThread%22%2Cgrpc_code%3D%22OK%22%7D)";
  const std::string url = absl::StrCat("http://127.0.0.1:", port, "/api/v1/query?query=", query);
  std::string value;
  const bool answered = Eventually(
      [&] {
        emulator::testing::HttpResponse response =
            emulator::testing::SendHttpRequest("GET", url, "");
        if (response.status != 200) return false;
        nlohmann::json json = response.Json();
        if (json.is_discarded() || json["data"]["result"].empty()) return false;
        value = json["data"]["result"][0]["value"][1].get<std::string>();
        return value == "3";
      },
      absl::Seconds(60));
  (void)(*prometheus)->Terminate(absl::Seconds(30));
  EXPECT_TRUE(answered) << "last value: '" << value << "'; prometheus log:\n"
                        << Slurp(dir + "/prometheus.log");
  Shell(absl::StrCat("rm -rf ", dir), nullptr);
}

}  // namespace
}  // namespace copilot::gateway::testing
