// Issue #13 through the real binaries: each defect a review reproduced on loopback against c50fc6e
// (hostile upstream answers, hostile or careless callers), with what the gateway does now.
#include <arpa/inet.h>
#include <fcntl.h>
#include <grpcpp/generic/generic_stub.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <future>
#include <iostream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "server/common/crypto.h"
#include "server/common/errors.h"
#include "tests/server/integration/integration_fixture.h"
#include "tests/server/integration/slow_grpc_bodies.h"

namespace copilot::gateway::testing {
namespace {

namespace v1 = ::copilot::v1;
using ::testing::HasSubstr;
using ::testing::Not;

std::string Nested(int levels, absl::string_view open, absl::string_view close) {
  std::string text;
  for (int i = 0; i < levels; ++i) absl::StrAppend(&text, open);
  absl::StrAppend(&text, "1");
  for (int i = 0; i < levels; ++i) absl::StrAppend(&text, close);
  return text;
}

std::string Sha256Hex(const std::string& token) { return absl::BytesToHexString(Sha256(token)); }

nlohmann::json RawBody(const std::string& endpoint, int status, const std::string& body) {
  return {{"endpoint", endpoint},
          {"times", 1},
          {"type", "raw_body"},
          {"status", status},
          {"body", body}};
}

// The gateway's log, line by line.
std::vector<std::string> LogLines(const GatewayProcess& gateway) {
  std::ifstream in(gateway.log_path());
  std::stringstream text;
  text << in.rdbuf();
  std::vector<std::string> lines;
  for (absl::string_view line : absl::StrSplit(text.str(), '\n', absl::SkipEmpty())) {
    lines.emplace_back(line);
  }
  return lines;
}

// The gateway's /metrics text.
class GatewayHardeningTest : public GatewayIntegrationTest {};

// Item 1: one answer nested 100,000 levels deep (200 KB) crashed the gateway (SIGSEGV on the
// curl loop thread: every call in flight lost).
TEST_F(GatewayHardeningTest, DeeplyNestedUpstreamBytesNeverCrashTheGateway) {
  const std::string thread = ThreadWithQuestion(kHrAssistant, "deep?");
  Fault(RawBody("run", 200,
                absl::StrCat(R"({"id":"m1","role":"assistant","content":"","tool_calls":[)",
                             R"({"id":"c1","type":"function","function":{"name":"f","arguments":)",
                             Nested(100000, "[", "]"), "}}]}")));
  v1::RunResponse response;
  grpc::Status status = RunOn(thread, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INTERNAL) << status.error_message();
  EXPECT_EQ(Reason(status), "upstream_bad_response");

  // A deep error body and a deep stream line too.
  Fault(RawBody("get_thread", 500, absl::StrCat("{\"detail\":", Nested(30000, "[", "]"), "}")));
  grpc::ClientContext get_context;
  SetTimeout(get_context, absl::Seconds(10));
  v1::GetThreadRequest get;
  get.set_thread_id(thread);
  v1::GetThreadResponse got;
  status = stub_->GetThread(&get_context, get, &got);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_EQ(Reason(status), "upstream_unparseable_body");

  Fault(RawBody("run_stream", 200,
                absl::StrCat(R"({"message_id":"m","delta":{"content":"a"}})", "\n",
                             R"({"message_id":"m","delta":{"sources":[{"meta_data":)",
                             Nested(100000, "[", "]"), "}]}}\n")));
  grpc::ClientContext stream_context;
  SetTimeout(stream_context, absl::Seconds(10));
  v1::StreamRunRequest stream_request;
  stream_request.set_thread_id(thread);
  auto reader = stub_->StreamRun(&stream_context, stream_request);
  v1::StreamRunResponse chunk;
  int chunks = 0;
  while (reader->Read(&chunk)) ++chunks;
  status = reader->Finish();
  EXPECT_EQ(chunks, 1);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INTERNAL);

  // Still serving.
  EXPECT_TRUE(RunOn(ThreadWithQuestion(kHrAssistant, "alive?"), &response).ok());
  EXPECT_EQ(kill(gateway_->pid(), 0), 0);
}

// Item 10: a 200 KB error_code became ErrorInfo.reason: the caller saw RESOURCE_EXHAUSTED
// "received initial metadata size exceeds limit" and the log got a 200 KB line. And a Struct
// nested 64 levels was past what clients parse.
TEST_F(GatewayHardeningTest, OversizedErrorCodesAndDeepStructsStayWithinWhatClientsRead) {
  const std::string thread = ThreadWithQuestion(kHrAssistant, "big?");
  Fault(RawBody(
      "run", 500,
      absl::StrCat(R"({"error_code":")", std::string(200000, 'E'), R"(","detail":"boom"})")));
  v1::RunResponse response;
  grpc::Status status = RunOn(thread, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INTERNAL) << status.error_message();
  EXPECT_EQ(Reason(status), "UPSTREAM_HTTP_500");
  EXPECT_LT(status.error_details().size(), 2000u);
  for (const std::string& line : LogLines(*gateway_)) EXPECT_LT(line.size(), 4096u);

  Fault(RawBody("run", 200,
                absl::StrCat(R"({"id":"m1","role":"assistant","content":"ok","meta_data":)",
                             Nested(60, "{\"a\":", "}"), "}")));
  status = RunOn(thread, &response);  // The C++ stub parses with protobuf's default limit.
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.message().content(), "ok");
}

// Item 8: a licence echoed with JSON escapes reached the caller, and a 200 answer echoing
// meta_data.user_data.licence delivered the licence in Message.meta_data.
TEST_F(GatewayHardeningTest, EchoedLicencesAreRedactedAfterDecoding) {
  const std::string thread = ThreadWithQuestion(kTaxAssistant, "licence?");
  Fault(RawBody("run", 422,
                R"({"error_code":"request_metadata_missing_or_incomplete",)"
                R"("detail":"licence \u004cIC-TEST-0001 is not valid"})"));
  v1::RunResponse response;
  grpc::Status status = RunOn(thread, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), Not(HasSubstr("LIC-TEST-0001")));
  EXPECT_THAT(status.error_details(), Not(HasSubstr("LIC-TEST-0001")));
  EXPECT_THAT(status.error_message(), HasSubstr("[redacted]"));

  Fault(RawBody("run", 200,
                R"({"id":"m1","role":"assistant","content":"Answer for LIC-TEST-0001",)"
                R"("meta_data":{"user_data":{"licence":"LIC-TEST-0001"}}})"));
  status = RunOn(thread, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_THAT(response.SerializeAsString(), Not(HasSubstr("LIC-TEST-0001")));
  // The field the gateway sent is its own: gone from the answer, not only its value.
  EXPECT_EQ(response.message().meta_data().fields().count("user_data"), 0u);
  EXPECT_THAT(response.message().content(), HasSubstr("[redacted]"));
}

// Item 3: no bound on tool_calls or tools: one 1.6 MB AddMessage with 100k tool calls took the
// gateway to 327 MiB. Refused now before any upstream call, naming the field.
TEST_F(GatewayHardeningTest, UnboundedRequestShapesAreRefusedBeforeAnyUpstreamCall) {
  const std::string thread = ThreadWithQuestion(kHrAssistant, "shapes?");
  ASSERT_TRUE(emulator_->ClearRequests().ok());
  v1::AddMessageRequest add;
  add.set_thread_id(thread);
  add.mutable_message()->set_role(v1::ROLE_ASSISTANT);
  for (int i = 0; i < 100000; ++i) add.mutable_message()->add_tool_calls()->set_id("c");
  grpc::ClientContext context;
  SetTimeout(context, absl::Seconds(10));
  v1::AddMessageResponse added;
  grpc::Status status = stub_->AddMessage(&context, add, &added);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  auto bad = FindDetail<google::rpc::BadRequest>(status);
  ASSERT_TRUE(bad.has_value());
  EXPECT_EQ(bad->field_violations(0).field(), "message.tool_calls");

  v1::RunRequest run;
  run.set_thread_id(thread);
  for (int i = 0; i < 65; ++i) (*run.add_tools()->mutable_fields())["type"].set_string_value("f");
  grpc::ClientContext run_context;
  SetTimeout(run_context, absl::Seconds(10));
  v1::RunResponse response;
  status = stub_->Run(&run_context, run, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  bad = FindDetail<google::rpc::BadRequest>(status);
  ASSERT_TRUE(bad.has_value());
  EXPECT_EQ(bad->field_violations(0).field(), "tools");
  EXPECT_TRUE(Requests().empty()) << Requests().dump();
}

// One unary call with a request sent as raw bytes (what a stub cannot serialize); its status.
grpc::Status RawUnaryCall(const std::shared_ptr<grpc::Channel>& channel, const std::string& method,
                          const std::string& bytes) {
  grpc::GenericStub generic(channel);
  grpc::Slice slice(bytes);
  grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer reply;
  grpc::ClientContext context;
  SetTimeout(context, absl::Seconds(30));
  std::promise<grpc::Status> done;
  generic.UnaryCall(&context, method, grpc::StubOptions(), &request, &reply,
                    [&done](grpc::Status status) { done.set_value(std::move(status)); });
  return done.get_future().get();
}

// Item 11: invalid UTF-8 from a caller made libprotobuf write a non-JSON line per request, the
// caller got an empty-message status, and there was no call log line or metric.
TEST_F(GatewayHardeningTest, InvalidUtf8IsInvalidArgumentNamingTheFieldAndIsLogged) {
  // The request is built by hand: a proto3 string with invalid UTF-8 cannot be serialized
  // cleanly by the stub.
  v1::AddMessageRequest add;
  add.set_thread_id("th1_x");
  add.mutable_message()->set_role(v1::ROLE_USER);
  add.mutable_message()->set_content("MARKER");
  std::string bytes = add.SerializeAsString();
  bytes.replace(bytes.find("MARKER"), 6, "bad\xff\xfe!");
  const grpc::Status status =
      RawUnaryCall(gateway_->channel(), "/copilot.v1.CopilotService/AddMessage", bytes);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("message.content: must be valid UTF-8"));
  auto bad = FindDetail<google::rpc::BadRequest>(status);
  ASSERT_TRUE(bad.has_value());
  EXPECT_EQ(bad->field_violations(0).field(), "message.content");
  EXPECT_EQ(Reason(status), "INVALID_REQUEST");

  // Every log line is JSON, and the call has its line.
  bool logged = false;
  ASSERT_TRUE(Eventually([&] {
    logged = false;
    for (const std::string& line : LogLines(*gateway_)) {
      const nlohmann::json json = nlohmann::json::parse(line, nullptr, false);
      EXPECT_FALSE(json.is_discarded()) << line;
      if (!json.is_discarded() && json.value("msg", "") == "call" &&
          json.value("method", "") == "AddMessage" &&
          json.value("grpc_code", "") == "InvalidArgument") {
        logged = true;
      }
    }
    return logged;
  }));
}

// A request whose invalid UTF-8 lies deep inside it is walked again to name the field: the walk
// copied each nested field at each level and kept the copies while it went deeper, so one 4 MB
// string under 48 levels of a Struct took ~100 copies at once (this test: peak RSS +391 MiB;
// six such requests at once 788 MiB; before any credentials were looked at). It now walks views of
// the request's bytes.
TEST_F(GatewayHardeningTest, ADeeplyNestedUnreadableRequestCostsNoMoreThanItsSize) {
  auto field = [](int number, const std::string& payload) {
    std::string out;
    google::protobuf::io::StringOutputStream stream(&out);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.WriteTag(static_cast<uint32_t>(number << 3 | 2));
    coded.WriteVarint32(static_cast<uint32_t>(payload.size()));
    coded.WriteString(payload);
    coded.Trim();
    return out;
  };
  std::string value = field(3, std::string(4000000, '\xff'));  // Value.string_value, not UTF-8.
  for (int level = 0; level < 48; ++level) value = field(6, field(1, value));  // list_value.values
  // RunRequest.thread_id, then RunRequest.tools (a Struct): fields {"a": value}.
  const std::string request =
      field(1, "th2_x") + field(2, field(1, field(1, "a") + field(2, value)));
  const absl::StatusOr<ProcessSample> before = SampleProcess(gateway_->pid());
  ASSERT_TRUE(before.ok()) << before.status();
  const grpc::Status status =
      RawUnaryCall(gateway_->channel(), "/copilot.v1.CopilotService/Run", request);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("tools[0].fields[0].value.list_value.values[0]"));
  const absl::StatusOr<ProcessSample> after = SampleProcess(gateway_->pid());
  ASSERT_TRUE(after.ok()) << after.status();
  const long grown_mib = (after->hwm_kib - before->rss_kib) / 1024;
#ifdef COPILOT_SANITIZED
  constexpr long kMaxGrowthMib = 256;  // The sanitizer's shadow and quarantine on top.
#else
  constexpr long kMaxGrowthMib = 64;  // gRPC's copy, ours, the parse's: a few times 4 MB.
#endif
  EXPECT_LT(grown_mib, kMaxGrowthMib);
  std::cerr << "a 4 MB request 48 levels deep, unreadable: peak RSS +" << grown_mib << " MiB\n";
}

// One server-streaming call with a request sent as raw bytes (what a stub cannot serialize).
class RawStreamCall final : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  RawStreamCall(grpc::GenericStub& stub, const std::string& method, const std::string& bytes)
      : slice_(bytes), request_(&slice_, 1) {
    context_.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    stub.PrepareBidiStreamingCall(&context_, method, grpc::StubOptions(), this);
    StartWriteLast(&request_, grpc::WriteOptions());
    StartRead(&reply_);
    StartCall();
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;
    ++messages_;
    StartRead(&reply_);
  }
  void OnDone(const grpc::Status& status) override {
    std::lock_guard<std::mutex> lock(mu_);
    status_ = status;
    done_ = true;
    cv_.notify_all();
  }
  // The call's status, once it ended; `messages` gets how many messages came before.
  grpc::Status Await(int* messages) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return done_; });
    *messages = messages_;
    return status_;
  }

 private:
  grpc::ClientContext context_;
  grpc::Slice slice_;
  grpc::ByteBuffer request_;
  grpc::ByteBuffer reply_;
  int messages_ = 0;  // Only on gRPC's callback thread until OnDone.
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  grpc::Status status_;
};

// Item 11 for a streaming method: the stream ends at once with INVALID_ARGUMENT naming the
// field, and the call is counted like any other.
TEST_F(GatewayHardeningTest, InvalidUtf8EndsAStreamWithInvalidArgumentAndIsCounted) {
  v1::StreamRunRequest run;
  run.set_thread_id("MARKER");
  std::string bytes = run.SerializeAsString();
  bytes.replace(bytes.find("MARKER"), 6, "th\xff\xfe_x");
  grpc::GenericStub generic(gateway_->channel());
  RawStreamCall call(generic, "/copilot.v1.CopilotService/StreamRun", bytes);
  int messages = -1;
  const grpc::Status status = call.Await(&messages);
  EXPECT_EQ(messages, 0);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("thread_id: must be valid UTF-8"));
  auto bad = FindDetail<google::rpc::BadRequest>(status);
  ASSERT_TRUE(bad.has_value());
  EXPECT_EQ(bad->field_violations(0).field(), "thread_id");

  // grpc_server_handled_total counts it (the call's log line is checked above for AddMessage).
  auto counted = [&] {
    const std::string scrape = Scrape(*gateway_);
    for (absl::string_view line : absl::StrSplit(scrape, '\n')) {
      if (absl::StartsWith(line, "grpc_server_handled_total{") &&
          absl::StrContains(line, "grpc_method=\"StreamRun\"") &&
          absl::StrContains(line, "grpc_code=\"InvalidArgument\"") && absl::EndsWith(line, " 1")) {
        return true;
      }
    }
    return false;
  };
  EXPECT_TRUE(Eventually(counted));
}

// Item 6 through the real binary: two idle TCP connections used to block /healthz, /readyz and
// /metrics (civetweb, 2 workers, 10 s timeout). With 300 held open, each is answered at once (2 s:
// generous on a loaded 2-core machine; kubelet's probe timeout is 1 s), and the gauge shows the
// connection cap holding.
TEST_F(GatewayHardeningTest, IdleOpsConnectionsDoNotDelayProbesOrScrapes) {
  std::vector<int> idle;
  for (int i = 0; i < 300; ++i) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(gateway_->metrics_port()));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address), 0);
    idle.push_back(fd);
  }
  std::string scrape;
  for (const char* path : {"/healthz", "/readyz", "/metrics"}) {
    const emulator::testing::HttpResponse response = emulator::testing::SendHttpRequest(
        "GET", absl::StrCat("http://127.0.0.1:", gateway_->metrics_port(), path), "");
    EXPECT_EQ(response.status, 200) << path << " " << response.curl_error;
    EXPECT_LT(response.elapsed, absl::Seconds(2)) << path;
    if (absl::string_view(path) == "/metrics") scrape = response.body;
  }
  // At most 256 open (the oldest idle ones were closed to make room), this scrape's included.
  double open = -1;
  for (absl::string_view line : absl::StrSplit(scrape, '\n')) {
    if (absl::ConsumePrefix(&line, "copilot_gateway_ops_connections ")) {
      ASSERT_TRUE(absl::SimpleAtod(line, &open)) << line;
    }
  }
  EXPECT_GT(open, 200);
  EXPECT_LE(open, 256);
  for (const int fd : idle) close(fd);
}

// Item 12: the transport's error text ("Failed to connect to 127.0.0.1 port 1 ...") reached
// callers. It goes to the call's log line only.
TEST(GatewayTransportErrorTest, TransportDetailsAreLoggedNotReturned) {
  GatewayProcessOptions options;
  options.upstream_url = "http://127.0.0.1:1/agents";
  auto gateway = GatewayProcess::Start(options);
  ASSERT_TRUE(gateway.ok()) << gateway.status();
  auto stub = v1::CopilotService::NewStub((*gateway)->channel());
  grpc::ClientContext context;
  SetTimeout(context, absl::Seconds(10));
  v1::GetThreadRequest request;
  request.set_thread_id(SignedHandle("test", kUnknownThread, kHrAssistant));
  v1::GetThreadResponse response;
  grpc::Status status = stub->GetThread(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  EXPECT_EQ(Reason(status), "upstream_unreachable");
  for (const char* leak : {"127.0.0.1", "port 1", "Failed to connect"}) {
    EXPECT_THAT(status.error_message(), Not(HasSubstr(leak)));
    EXPECT_THAT(status.error_details(), Not(HasSubstr(leak)));
  }
  bool logged = false;
  for (int i = 0; i < 100 && !logged; ++i) {
    for (const std::string& line : LogLines(**gateway)) {
      if (absl::StrContains(line, "\"upstream_error\"") && absl::StrContains(line, "127.0.0.1")) {
        logged = true;
      }
    }
    if (!logged) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(logged);
  EXPECT_EQ(*(*gateway)->Stop(), 0);
}

// The log pipeline stops reading (a stalled log collector: the container's stderr pipe fills).
// Every call's log and audit lines were written on the thread that completed the call, the
// upstream event loop: once the pipe was full, every loop blocked in write(2) and the gateway
// stopped answering. Now a thread of its own writes them; what does not fit log_buffer_bytes
// is dropped and counted, the calls go on, and the gateway still stops on SIGTERM.
TEST(GatewayLogPipeTest, AStderrNobodyReadsNeverStallsCallsOrTheShutdown) {
  auto emulator = emulator::testing::EmulatorProcess::Start({});
  ASSERT_TRUE(emulator.ok()) << emulator.status();
  const std::string fifo = absl::StrCat(::testing::TempDir(), "/gateway-stderr-", getpid());
  unlink(fifo.c_str());
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0) << std::strerror(errno);
  // Opened for reading (so that the gateway's open for writing returns) and never read.
  const int reader = open(fifo.c_str(), O_RDONLY | O_NONBLOCK);
  ASSERT_GE(reader, 0);
  GatewayProcessOptions options;
  options.upstream_url = (*emulator)->base_url() + "/agents";
  options.stderr_path = fifo;
  options.extra_yaml = "log_buffer_bytes: 64KiB\n";
  auto gateway = GatewayProcess::Start(options);
  ASSERT_TRUE(gateway.ok()) << gateway.status();
  auto stub = v1::CopilotService::NewStub((*gateway)->channel());
  // Each Complete logs a call line and an audit line (~800 bytes): 600 of them are ~480 KB,
  // past the pipe's 64 KiB and the 64 KiB buffer several times over.
  constexpr int kCalls = 600;
  std::atomic<int> ok{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < 4; ++c) {
    callers.emplace_back([&] {
      for (int i = 0; i < kCalls / 4; ++i) {
        grpc::ClientContext context;
        SetTimeout(context, absl::Seconds(10));
        v1::CompleteRequest request;
        request.set_assistant_id(kTaxAssistant);
        v1::MessageInput* message = request.add_messages();
        message->set_role(v1::ROLE_USER);
        message->set_content("Wie hoch ist die Pendlerpauschale?");
        v1::CompleteResponse response;
        grpc::Status status = stub->Complete(&context, request, &response);
        EXPECT_TRUE(status.ok()) << status.error_code() << " " << status.error_message();
        if (status.ok()) ++ok;
      }
    });
  }
  for (std::thread& caller : callers) caller.join();
  EXPECT_EQ(ok.load(), kCalls);
  const std::string scrape = Scrape(**gateway);
  double dropped = 0;
  ASSERT_TRUE(absl::SimpleAtod(
      MetricValue(scrape, "copilot_gateway_log_lines_dropped_total{log=\"stderr\"}"), &dropped))
      << scrape;
  EXPECT_GT(dropped, 0);
  double buffered = -1;
  ASSERT_TRUE(absl::SimpleAtod(
      MetricValue(scrape, "copilot_gateway_log_buffered_bytes{log=\"stderr\"}"), &buffered));
  // The buffer's bound, plus at most the batch the writer is blocked in.
  EXPECT_LE(buffered, 2 * 64 * 1024);
  // SIGTERM: the gateway gives up on the lines stderr does not take and exits 0.
  absl::StatusOr<int> code = (*gateway)->Stop();
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0);
  // What reached the pipe begins with whole JSON lines.
  char head[4096];
  const ssize_t n = read(reader, head, sizeof(head));
  ASSERT_GT(n, 0);
  const std::string first(head, std::find(head, head + n, '\n'));
  EXPECT_FALSE(nlohmann::json::parse(first, nullptr, false).is_discarded()) << first;
  close(reader);
  unlink(fifo.c_str());
}

// A gateway with bearer tenants: "a" and "b" on the gateway's upstream key, "c" with its own.
class GatewayTenantHardeningTest : public ::testing::Test {
 protected:
  static constexpr char kTokenA[] = "token-a-7f3e";
  static constexpr char kTokenB[] = "token-b-91c2";
  static constexpr char kTokenC[] = "token-c-55aa";
  static constexpr char kKeyC[] = "upstream-key-of-c";

  void StartGateway(const std::string& tenant_a_limits, const std::string& extra) {
    auto emulator = emulator::testing::EmulatorProcess::Start(
        {.args = {"--stream-delay-ms", "1"}, .extra_api_keys = {kKeyC}});
    ASSERT_TRUE(emulator.ok()) << emulator.status();
    emulator_ = *std::move(emulator);
    key_c_path_ = absl::StrCat(::testing::TempDir(), "/hardening-key-c-", getpid());
    std::ofstream(key_c_path_) << kKeyC << "\n";
    GatewayProcessOptions options;
    options.upstream_url = emulator_->base_url() + "/agents";
    options.identity = "bearer";
    options.extra_yaml =
        absl::StrCat("tenants:\n", "  - id: a\n    bearer_token_sha256: [\"", Sha256Hex(kTokenA),
                     "\"]\n", "    licence: LIC-A-TAX\n    assistants: [{id: \"*\"}]\n",
                     tenant_a_limits, "  - id: b\n    bearer_token_sha256: [\"", Sha256Hex(kTokenB),
                     "\"]\n", "    licence: LIC-B\n    assistants: [{id: \"*\"}]\n",
                     "  - id: c\n    bearer_token_sha256: [\"", Sha256Hex(kTokenC), "\"]\n",
                     "    licence: LIC-C-HR\n    assistants: [{id: \"*\"}]\n",
                     "    api_key_file: \"", key_c_path_, "\"\n", extra);
    auto gateway = GatewayProcess::Start(options);
    ASSERT_TRUE(gateway.ok()) << gateway.status();
    gateway_ = *std::move(gateway);
    stub_ = v1::CopilotService::NewStub(gateway_->channel());
  }

  void TearDown() override {
    if (gateway_ != nullptr) {
      EXPECT_EQ(*gateway_->Stop(), 0);
    }
    if (!key_c_path_.empty()) unlink(key_c_path_.c_str());
  }

  static void Authorize(grpc::ClientContext& context, const char* token) {
    context.AddMetadata("authorization", absl::StrCat("Bearer ", token));
    SetTimeout(context, absl::Seconds(20));
  }

  std::string Thread(const char* token, const std::string& title = "") {
    grpc::ClientContext context;
    Authorize(context, token);
    v1::CreateThreadRequest create;
    create.set_assistant_id(kHrAssistant);
    create.set_title(title);
    v1::CreateThreadResponse created;
    EXPECT_TRUE(stub_->CreateThread(&context, create, &created).ok());
    grpc::ClientContext add_context;
    Authorize(add_context, token);
    v1::AddMessageRequest add;
    add.set_thread_id(created.thread().id());
    add.mutable_message()->set_role(v1::ROLE_USER);
    add.mutable_message()->set_content("question");
    v1::AddMessageResponse added;
    EXPECT_TRUE(stub_->AddMessage(&add_context, add, &added).ok());
    return created.thread().id();
  }

  std::unique_ptr<emulator::testing::EmulatorProcess> emulator_;
  std::unique_ptr<GatewayProcess> gateway_;
  std::unique_ptr<v1::CopilotService::Stub> stub_;
  std::string key_c_path_;
};

// Item 2: a call waiting on an in-flight first attempt with the same request_id never passed
// admission: 20 concurrent Runs sharing one request_id all got in past a cap of 1.
TEST_F(GatewayTenantHardeningTest, RequestIdRetriesCountAgainstTheTenantsLimits) {
  StartGateway(
      "    limits:\n      answer_per_minute: 60\n      answer_burst: 60\n"
      "      max_concurrent_answers: 1\n",
      "");
  const std::string thread = Thread(kTokenA);
  ASSERT_TRUE(
      emulator_->AddFault({{"endpoint", "run"}, {"type", "latency"}, {"delay_ms", 1500}}).ok());
  constexpr int kCalls = 20;
  std::vector<grpc::Status> statuses(kCalls);
  std::vector<std::thread> callers;
  for (int i = 0; i < kCalls; ++i) {
    callers.emplace_back([&, i] {
      // The first one starts alone, so it is the one attempt in flight.
      if (i > 0) std::this_thread::sleep_for(std::chrono::milliseconds(300));
      grpc::ClientContext context;
      Authorize(context, kTokenA);
      v1::RunRequest run;
      run.set_thread_id(thread);
      run.set_request_id("11111111-2222-4333-8444-555555555555");
      v1::RunResponse response;
      statuses[i] = stub_->Run(&context, run, &response);
    });
  }
  for (std::thread& caller : callers) caller.join();
  int ok = 0;
  int refused = 0;
  for (const grpc::Status& status : statuses) {
    if (status.ok()) ++ok;
    if (status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
      ++refused;
      EXPECT_EQ(Reason(status), "tenant_concurrency_exceeded");
    }
  }
  EXPECT_EQ(ok, 1);
  EXPECT_EQ(refused, kCalls - 1);
  auto records = emulator_->Requests();
  ASSERT_TRUE(records.ok());
  int runs = 0;
  for (const auto& record : *records) runs += record.value("route", "") == "run";
  EXPECT_EQ(runs, 1);
}

// Item 4: one LRU shared by all tenants: one tenant's flood evicted another's entry, whose
// retry inside the TTL then stored the message twice. A tenant now holds at most its share.
TEST_F(GatewayTenantHardeningTest, OneTenantsRequestIdFloodNeverEvictsAnothersEntry) {
  StartGateway("", "request_ids:\n  max_bytes: 256KiB\n  max_tenant_share: 0.25\n");
  const std::string victim_thread = Thread(kTokenA);
  auto add = [&](const char* token, const std::string& thread, const std::string& request_id,
                 const std::string& content) {
    grpc::ClientContext context;
    Authorize(context, token);
    v1::AddMessageRequest request;
    request.set_thread_id(thread);
    request.set_request_id(request_id);
    request.mutable_message()->set_role(v1::ROLE_USER);
    request.mutable_message()->set_content(content);
    v1::AddMessageResponse response;
    grpc::Status status = stub_->AddMessage(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.message().id();
  };
  const std::string kVictimRequest = "aaaaaaaa-0000-4000-8000-000000000001";
  const std::string first = add(kTokenA, victim_thread, kVictimRequest, "victim message");
  const std::string flood_thread = Thread(kTokenB);
  for (int i = 0; i < 300; ++i) {
    add(kTokenB, flood_thread,
        absl::StrCat("bbbbbbbb-0000-4000-8000-", absl::Dec(i, absl::kZeroPad12)),
        std::string(2000, 'f'));
  }
  // The victim's retry inside the TTL returns the first answer: nothing stored twice.
  EXPECT_EQ(add(kTokenA, victim_thread, kVictimRequest, "victim message"), first);
  auto records = emulator_->Requests();
  ASSERT_TRUE(records.ok());
  int victim_posts = 0;
  for (const auto& record : *records) {
    if (record.value("route", "") == "create_message" &&
        absl::StrContains(record.value("body", ""), "victim message")) {
      ++victim_posts;
    }
  }
  EXPECT_EQ(victim_posts, 1);
}

// Item 5: Retry-After was not capped (99999999 held every tenant for 3 years) and a 429 on one
// upstream key held tenants using other keys.
TEST_F(GatewayTenantHardeningTest, A429HoldIsCappedAndOnlyHoldsItsOwnKey) {
  StartGateway("", "upstream_budget:\n  max_retry_after: 2s\n");
  const std::string thread_a = Thread(kTokenA);
  const std::string thread_c = Thread(kTokenC);
  ASSERT_TRUE(emulator_
                  ->AddFault({{"endpoint", "run"},
                              {"times", 1},
                              {"type", "rate_limit"},
                              {"retry_after", 99999999}})
                  .ok());
  auto run = [&](const char* token, const std::string& thread, absl::Duration* took) {
    grpc::ClientContext context;
    Authorize(context, token);
    v1::RunRequest request;
    request.set_thread_id(thread);
    v1::RunResponse response;
    const absl::Time start = absl::Now();
    grpc::Status status = stub_->Run(&context, request, &response);
    if (took != nullptr) *took = absl::Now() - start;
    return status;
  };
  grpc::Status limited = run(kTokenA, thread_a, nullptr);
  ASSERT_EQ(limited.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  auto retry = FindDetail<google::rpc::RetryInfo>(limited);
  ASSERT_TRUE(retry.has_value());
  EXPECT_LE(retry->retry_delay().seconds(), 2);
  // Tenant c uses another upstream key: not held.
  absl::Duration took_c;
  EXPECT_TRUE(run(kTokenC, thread_c, &took_c).ok());
  EXPECT_LT(took_c, absl::Seconds(1));
  // Tenant a waits out the capped hold (2 s, within max_wait), then goes through.
  absl::Duration took_a;
  grpc::Status held = run(kTokenA, thread_a, &took_a);
  EXPECT_TRUE(held.ok()) << held.error_message();
  EXPECT_GE(took_a, absl::Seconds(1));
  EXPECT_LT(took_a, absl::Seconds(6));
}

// Item 7: 5,000 health Watch streams took +89 MiB; nothing capped streams per connection (nor
// gRPC's memory: max_grpc_memory now does).
TEST(GatewayStreamCapTest, StreamsPerConnectionAreCapped) {
  auto emulator = emulator::testing::EmulatorProcess::Start({});
  ASSERT_TRUE(emulator.ok()) << emulator.status();
  GatewayProcessOptions options;
  options.upstream_url = (*emulator)->base_url() + "/agents";
  options.extra_yaml = "max_concurrent_streams: 100\nmax_grpc_memory: 64MiB\n";
  auto gateway = GatewayProcess::Start(options);
  ASSERT_TRUE(gateway.ok()) << gateway.status();
  auto channel = (*gateway)->NewChannel();
  auto health = grpc::health::v1::Health::NewStub(channel);
  constexpr int kStreams = 150;
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  for (int i = 0; i < kStreams; ++i) contexts.push_back(std::make_unique<grpc::ClientContext>());
  std::atomic<int> answered{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kStreams; ++i) {
    // Opening a stream blocks while the connection has no stream to spare.
    threads.emplace_back([&, i] {
      grpc::health::v1::HealthCheckRequest request;
      request.set_service("liveness");
      auto reader = health->Watch(contexts[i].get(), request);
      grpc::health::v1::HealthCheckResponse response;
      if (reader->Read(&response)) ++answered;
      while (reader->Read(&response)) {
      }
      reader->Finish();
    });
  }
  for (int i = 0; i < 1000 && answered.load() < 100; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::this_thread::sleep_for(std::chrono::seconds(1));
  EXPECT_EQ(answered.load(), 100);  // max_concurrent_streams: the rest wait for a slot.
  for (auto& context : contexts) context->TryCancel();
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(*(*gateway)->Stop(), 0);
}

// Item 7: nothing bounded the connections clients may open and hold (gRPC 1.51 has no such
// bound), and a socket that never spoke held its place for gRPC's 120 s handshake timeout.
TEST(GatewayConnectionCapTest, ConnectionsPastTheCapAreRefusedCountedAndFreed) {
  auto emulator = emulator::testing::EmulatorProcess::Start({});
  ASSERT_TRUE(emulator.ok()) << emulator.status();
  GatewayProcessOptions options;
  options.upstream_url = (*emulator)->base_url() + "/agents";
  options.extra_yaml = "max_connections: 3\nhandshake_timeout: 1s\n";
  auto gateway = GatewayProcess::Start(options);
  ASSERT_TRUE(gateway.ok()) << gateway.status();
  // A health Check on a channel of its own (its own connection).
  auto check = [](const std::shared_ptr<grpc::Channel>& channel) {
    auto health = grpc::health::v1::Health::NewStub(channel);
    grpc::ClientContext context;
    SetTimeout(context, absl::Seconds(5));
    grpc::health::v1::HealthCheckRequest request;
    request.set_service("liveness");
    grpc::health::v1::HealthCheckResponse response;
    return health->Check(&context, request, &response);
  };
  // Scrapes until the gauge shows `open` connections (at most 5 s); the last value.
  auto wait_for_open = [&gateway](const std::string& open) {
    std::string value;
    for (int i = 0; i < 100; ++i) {
      value = MetricValue(Scrape(**gateway), "copilot_gateway_grpc_connections");
      if (value == open) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return value;
  };
  std::vector<std::shared_ptr<grpc::Channel>> held;
  for (int i = 0; i < 3; ++i) {
    held.push_back((*gateway)->NewChannel());
    const grpc::Status ok = check(held.back());
    ASSERT_TRUE(ok.ok()) << i << ": " << ok.error_message();
  }
  const grpc::Status refused = check((*gateway)->NewChannel());
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAVAILABLE) << refused.error_message();
  const std::string scrape = Scrape(**gateway);
  EXPECT_EQ(MetricValue(scrape, "copilot_gateway_grpc_connections"), "3");
  double refused_total = 0;
  ASSERT_TRUE(absl::SimpleAtod(
      MetricValue(scrape, "copilot_gateway_grpc_connections_refused_total"), &refused_total));
  EXPECT_GE(refused_total, 1);
  // Log lines are written by the gateway's log-writer thread: soon, not before the answer.
  EXPECT_TRUE(Eventually([&] {
    for (const std::string& line : LogLines(**gateway)) {
      if (absl::StrContains(line, "at server.max_connections (3)")) return true;
    }
    return false;
  }));
  // A connection that ends frees its place.
  held.pop_back();
  EXPECT_EQ(wait_for_open("2"), "2");
  held.push_back((*gateway)->NewChannel());
  EXPECT_TRUE(check(held.back()).ok());
  held.clear();
  EXPECT_EQ(wait_for_open("0"), "0");
  // Sockets that never speak take the places until handshake_timeout closes them.
  std::vector<int> silent;
  for (int i = 0; i < 3; ++i) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>((*gateway)->port()));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address), 0);
    silent.push_back(fd);
  }
  EXPECT_EQ(wait_for_open("3"), "3");
  EXPECT_EQ(check((*gateway)->NewChannel()).error_code(), grpc::StatusCode::UNAVAILABLE);
  const absl::Time start = absl::Now();
  timeval five_seconds{};
  five_seconds.tv_sec = 5;
  setsockopt(silent[0], SOL_SOCKET, SO_RCVTIMEO, &five_seconds, sizeof five_seconds);
  // The server's HTTP/2 settings come first, then the gateway closes it (EOF or a reset).
  char bytes[4096];
  ssize_t got = 0;
  while ((got = read(silent[0], bytes, sizeof bytes)) > 0) {
  }
  EXPECT_TRUE(got == 0 || errno == ECONNRESET) << ErrnoText(errno);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_EQ(wait_for_open("0"), "0");
  EXPECT_TRUE(check((*gateway)->NewChannel()).ok());
  for (const int fd : silent) close(fd);
  EXPECT_EQ(*(*gateway)->Stop(), 0);
}

// Item 7: Watch streams are open to anyone; gRPC's default health service kept every one.
TEST(GatewayStreamCapTest, HealthWatchStreamsAreCappedAndCheckIsNot) {
  auto emulator = emulator::testing::EmulatorProcess::Start({});
  ASSERT_TRUE(emulator.ok()) << emulator.status();
  GatewayProcessOptions options;
  options.upstream_url = (*emulator)->base_url() + "/agents";
  options.extra_yaml = "max_health_watches: 10\n";
  auto gateway = GatewayProcess::Start(options);
  ASSERT_TRUE(gateway.ok()) << gateway.status();
  auto health = grpc::health::v1::Health::NewStub((*gateway)->NewChannel());
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<grpc::ClientReader<grpc::health::v1::HealthCheckResponse>>> readers;
  grpc::health::v1::HealthCheckRequest request;
  request.set_service("readiness");
  for (int i = 0; i < 10; ++i) {
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    readers.push_back(health->Watch(contexts.back().get(), request));
    grpc::health::v1::HealthCheckResponse response;
    ASSERT_TRUE(readers.back()->Read(&response));
    EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  }
  {
    grpc::ClientContext context;
    auto refused = health->Watch(&context, request);
    grpc::health::v1::HealthCheckResponse response;
    EXPECT_FALSE(refused->Read(&response));
    const grpc::Status status = refused->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
    EXPECT_EQ(Reason(status), "too_many_health_watches");
  }
  // The bound's metric: the 10 open, not the refused one.
  EXPECT_THAT(Scrape(**gateway), HasSubstr("\ncopilot_gateway_health_watches 10\n"));
  // Check is never capped; an unknown service is NOT_FOUND.
  grpc::ClientContext check_context;
  grpc::health::v1::HealthCheckResponse checked;
  EXPECT_TRUE(health->Check(&check_context, request, &checked).ok());
  EXPECT_EQ(checked.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  grpc::ClientContext unknown_context;
  request.set_service("no.such.Service");
  const grpc::Status unknown = health->Check(&unknown_context, request, &checked);
  EXPECT_EQ(unknown.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Reason(unknown), "health_service_unknown");
  // A watcher sees the change when the gateway drains.
  ASSERT_EQ(kill((*gateway)->pid(), SIGTERM), 0);
  grpc::health::v1::HealthCheckResponse changed;
  ASSERT_TRUE(readers[0]->Read(&changed));
  EXPECT_EQ(changed.status(), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  for (auto& context : contexts) context->TryCancel();
  for (auto& reader : readers) {
    const grpc::Status ended = reader->Finish();
    EXPECT_EQ(ended.error_code(), grpc::StatusCode::CANCELLED);
  }
  EXPECT_EQ(*(*gateway)->Stop(), 0);
}

// Item 7: gRPC buffers a request message before the service sees it, credentials or not: 400
// streams each declaring a 4 MiB message and never sending its last byte took the gateway to
// 1.1 GiB of RSS (the quota's default then, 512 MiB, overshot 2x; the pod limit
// is 512 MiB). Past max_grpc_memory gRPC resets streams (RST_STREAM ENHANCE_YOUR_CALM, "Buffers
// full"); the process stays within a few times the quota and keeps serving.
TEST(GatewayGrpcMemoryTest, RequestBodiesHeldOpenAreResetPastMaxGrpcMemory) {
  auto emulator = emulator::testing::EmulatorProcess::Start({});
  ASSERT_TRUE(emulator.ok()) << emulator.status();
  GatewayProcessOptions options;
  options.upstream_url = (*emulator)->base_url() + "/agents";
  options.extra_yaml = "max_grpc_memory: 32MiB\n";
  auto gateway = GatewayProcess::Start(options);
  ASSERT_TRUE(gateway.ok()) << gateway.status();
  const absl::StatusOr<ProcessSample> before = SampleProcess((*gateway)->pid());
  ASSERT_TRUE(before.ok()) << before.status();
  SlowGrpcBodiesResult attack;
  std::thread attacker(
      [&] { attack = RunSlowGrpcBodies({.port = (*gateway)->port(), .hold = absl::Seconds(8)}); });
  // The gateway answers others while it is under way.
  std::this_thread::sleep_for(std::chrono::seconds(3));
  auto health = grpc::health::v1::Health::NewStub((*gateway)->NewChannel());
  grpc::ClientContext context;
  SetTimeout(context, absl::Seconds(5));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service("readiness");
  grpc::health::v1::HealthCheckResponse response;
  const grpc::Status checked = health->Check(&context, request, &response);
  attacker.join();
  EXPECT_TRUE(checked.ok()) << checked.error_message();
  const absl::StatusOr<ProcessSample> after = SampleProcess((*gateway)->pid());
  ASSERT_TRUE(after.ok()) << after.status();
  const long grown_mib = (after->hwm_kib - before->rss_kib) / 1024;
  // 400 streams x 4 MiB were on offer; the quota let a fraction through and ended streams.
  EXPECT_EQ(attack.connections_used, 400);
  EXPECT_GT(attack.streams_ended, 0);
  EXPECT_LT(attack.bytes_sent, int64_t{1200} * 1024 * 1024);
#ifdef COPILOT_SANITIZED
  constexpr long kMaxGrowthMib = 1024;  // The sanitizer's shadow and quarantine on top.
#else
  constexpr long kMaxGrowthMib = 256;
#endif
  EXPECT_LT(grown_mib, kMaxGrowthMib)
      << "sent " << (attack.bytes_sent >> 20) << " MiB; " << attack.streams_ended << " ended";
  std::cerr << "slow bodies: sent " << (attack.bytes_sent >> 20) << " MiB over "
            << attack.connections_used << " connections, " << attack.streams_ended
            << " streams ended by the gateway, peak RSS +" << grown_mib << " MiB\n";
  EXPECT_EQ(*(*gateway)->Stop(), 0);
}

}  // namespace
}  // namespace copilot::gateway::testing
