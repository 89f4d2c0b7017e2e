// The upstream over HTTP/2 when it refuses streams: GOAWAY while 1,000 calls are in flight,
// REFUSED_STREAM, an idle GOAWAY, and a connection that dies under a sent POST. No request reaches
// the upstream twice (the emulator's record). Streams the upstream did not process (refused, or
// above a GOAWAY's last stream ID) are sent again, POSTs included: by libcurl on a new
// connection, or by the gateway's retry when libcurl gives up on one; every such call succeeds.
// A POST whose connection died under it, which the upstream may have processed, is never sent
// again: it fails UNAVAILABLE.
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "tests/server/integration/integration_fixture.h"

namespace copilot::gateway::testing {
namespace {

namespace v1 = ::copilot::v1;

const std::string kCerts = COPILOT_TEST_CERTS_DIR;

class GatewayUpstreamH2Test : public ::testing::Test {
 protected:
  // The emulator serving HTTP/2 over TLS with `emulator_args`, the gateway in front of it.
  void Start(std::vector<std::string> emulator_args,
             std::map<std::string, std::string> upstream = {}) {
    emulator_args.insert(emulator_args.end(), {"--tls-http2", "on", "--stream-delay-ms", "2"});
    auto emulator =
        emulator::testing::EmulatorProcess::Start({.args = emulator_args,
                                                   .tls_cert_file = kCerts + "/server.pem",
                                                   .tls_key_file = kCerts + "/server.key"});
    ASSERT_TRUE(emulator.ok()) << emulator.status();
    emulator_ = *std::move(emulator);
    GatewayProcessOptions options;
    options.upstream_url = absl::StrCat("https://127.0.0.1:", emulator_->tls_port(), "/agents");
    options.upstream = std::move(upstream);
    options.upstream["ca_file"] = kCerts + "/ca.pem";
    auto gateway = GatewayProcess::Start(options);
    ASSERT_TRUE(gateway.ok()) << gateway.status();
    gateway_ = *std::move(gateway);
    stub_ = v1::CopilotService::NewStub(gateway_->channel());
  }

  std::vector<grpc::Status> CreateThreadsAtOnce(int n) {
    return testing::CreateThreadsAtOnce(*stub_, n, absl::Seconds(60));
  }

  nlohmann::json EmulatorStats() {
    absl::StatusOr<nlohmann::json> stats = emulator_->Stats();
    EXPECT_TRUE(stats.ok()) << stats.status();
    return stats.ok() ? *stats : nlohmann::json::object();
  }

  std::map<std::string, int> RecordedTitles() { return RecordedCreateThreadTitles(*emulator_); }

  // CreateThreads the gateway sent again because the upstream refused their stream and libcurl
  // gave up on it ("" before the first).
  std::string RefusedStreamRetries() {
    return MetricValue(Scrape(*gateway_),
                       "copilot_gateway_upstream_retries_total{endpoint=\"POST "
                       "/v1/threads\",reason=\"upstream_refused_stream\"}");
  }

  std::unique_ptr<emulator::testing::EmulatorProcess> emulator_;
  std::unique_ptr<GatewayProcess> gateway_;
  std::unique_ptr<v1::CopilotService::Stub> stub_;
};

// Every call either succeeded, recorded upstream once, or failed UNAVAILABLE, not recorded (the
// upstream refused it); nothing recorded twice. Returns the calls that succeeded.
int ExpectEachSentAtMostOnce(const std::vector<grpc::Status>& statuses,
                             const std::map<std::string, int>& titles) {
  int ok = 0;
  for (size_t i = 0; i < statuses.size(); ++i) {
    const std::string title = absl::StrCat("call ", i);
    const auto recorded = titles.find(title);
    if (statuses[i].ok()) {
      ++ok;
      EXPECT_TRUE(recorded != titles.end() && recorded->second == 1) << title;
    } else {
      EXPECT_EQ(statuses[i].error_code(), grpc::StatusCode::UNAVAILABLE)
          << title << ": " << statuses[i].error_message();
      EXPECT_TRUE(recorded == titles.end()) << title << " failed but reached the upstream";
    }
  }
  for (const auto& [title, count] : titles) EXPECT_EQ(count, 1) << title;
  return ok;
}

TEST_F(GatewayUpstreamH2Test, GoawayDuringAThousandCallsInFlightSendsNoneTwice) {
  // GOAWAY after every 20 requests of a connection, each answered 300 ms later: when it comes,
  // the connection's other streams are in flight, some of them above its last stream ID.
  constexpr int kCalls = 1000;
  ASSERT_NO_FATAL_FAILURE(Start({"--h2-goaway-after", "20", "--h2-max-concurrent-streams", "100",
                                 "--response-delay-ms", "300"}));
  const std::vector<grpc::Status> statuses = CreateThreadsAtOnce(kCalls);
  const nlohmann::json stats = EmulatorStats();
  const int ok = ExpectEachSentAtMostOnce(statuses, RecordedTitles());
  EXPECT_EQ(ok, kCalls);  // Those above a GOAWAY were sent again.
  EXPECT_GE(stats["h2_goaways_sent"], 1) << stats.dump();
  // The processed ones complete: every request the upstream took was answered to its caller.
  EXPECT_EQ(stats["requests_total"], ok) << stats.dump();
  EXPECT_EQ(stats["in_flight"], 0) << stats.dump();
  std::printf(
      "[ figures  ] %d calls: %d succeeded, %d failed UNAVAILABLE unsent; %s GOAWAYs, "
      "%s streams refused, %s connections; gateway retries after libcurl gave up: %s\n",
      kCalls, ok, kCalls - ok, stats["h2_goaways_sent"].dump().c_str(),
      stats["h2_refused_streams"].dump().c_str(), stats["h2_connections"].dump().c_str(),
      RefusedStreamRetries().empty() ? "0" : RefusedStreamRetries().c_str());
}

TEST_F(GatewayUpstreamH2Test, RefusedStreamsAreSentAgainForPostsAndGets) {
  ASSERT_NO_FATAL_FAILURE(Start({"--h2-refuse-every", "4"}));
  constexpr int kCalls = 40;
  const std::vector<grpc::Status> statuses = CreateThreadsAtOnce(kCalls);
  const int ok = ExpectEachSentAtMostOnce(statuses, RecordedTitles());
  const int64_t refused = EmulatorStats()["h2_refused_streams"].get<int64_t>();
  EXPECT_GE(refused, 1);
  EXPECT_EQ(ok, kCalls);  // POSTs: each refused stream was sent again and processed once.
  // GETs: libcurl sends a refused stream again on a new connection; every call succeeds.
  ASSERT_TRUE(emulator_->ClearRequests().ok());
  for (int i = 0; i < 12; ++i) {
    grpc::Status status = ListAssistantsThrough(*gateway_);
    EXPECT_TRUE(status.ok()) << status.error_message();
  }
  EXPECT_GT(EmulatorStats()["h2_refused_streams"].get<int64_t>(), refused);
  absl::StatusOr<nlohmann::json> records = emulator_->Requests();
  ASSERT_TRUE(records.ok());
  EXPECT_EQ(records->size(), 12u);
}

grpc::Status CreateThread(v1::CopilotService::Stub& stub, const std::string& title) {
  grpc::ClientContext context;
  SetTimeout(context, absl::Seconds(10));
  v1::CreateThreadRequest request;
  request.set_assistant_id(kHrAssistant);
  request.set_title(title);
  v1::CreateThreadResponse response;
  return stub.CreateThread(&context, request, &response);
}

TEST_F(GatewayUpstreamH2Test, AnUpstreamShuttingDownWithGoawayFinishesTheCallsInProgress) {
  // 50 calls in flight, each answered after 500 ms; the upstream gets SIGTERM: GOAWAY, then it
  // finishes what it has (up to 5 s) and exits. Every call in progress completes.
  ASSERT_NO_FATAL_FAILURE(Start({"--response-delay-ms", "500", "--shutdown-grace-ms", "5000"}));
  constexpr int kCalls = 50;
  std::vector<grpc::Status> statuses;
  std::thread caller([&] { statuses = CreateThreadsAtOnce(kCalls); });
  for (int i = 0; i < 300 && EmulatorStats()["in_flight"] != kCalls; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(EmulatorStats()["in_flight"], kCalls);
  absl::StatusOr<int> exit_code = emulator_->Stop(absl::Seconds(10));
  caller.join();
  ASSERT_TRUE(exit_code.ok()) << exit_code.status();
  EXPECT_EQ(*exit_code, 0);
  for (const grpc::Status& status : statuses) {
    EXPECT_TRUE(status.ok()) << status.error_code() << " " << status.error_message();
  }
  // The next call finds no upstream: UNAVAILABLE, nothing hangs.
  EXPECT_EQ(CreateThread(*stub_, "after").error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(GatewayUpstreamH2Test, APostCrossingAnIdleGoawayIsSentAgainOnceItWasRefused) {
  // The upstream ends connections idle for 300 ms with GOAWAY; the gateway keeps them for 10 s,
  // so its second call goes out on a connection the upstream is ending. Not processed upstream;
  // libcurl 7.88 reports the lone stream above the GOAWAY as an HTTP/2 error, the transport
  // knows it was refused ("upstream_refused_stream", "request_sent": "false"), and the
  // gateway's retry sends it on a new connection: it succeeds, processed once.
  ASSERT_NO_FATAL_FAILURE(
      Start({"--keep-alive-timeout-ms", "300"}, {{"max_idle_connection_age", "10s"}}));
  ASSERT_TRUE(CreateThread(*stub_, "first").ok());
  absl::SleepFor(absl::Milliseconds(600));
  const grpc::Status second = CreateThread(*stub_, "second");
  EXPECT_TRUE(second.ok()) << second.error_code() << " " << second.error_message();
  EXPECT_EQ(EmulatorStats()["idle_closed_total"], 1);
  const std::map<std::string, int> titles = RecordedTitles();
  EXPECT_EQ(titles.count("second") != 0 ? titles.at("second") : 0, 1);
  EXPECT_EQ(titles.at("first"), 1);
  EXPECT_EQ(RefusedStreamRetries(), "1");
  EXPECT_TRUE(CreateThread(*stub_, "third").ok());
}

TEST_F(GatewayUpstreamH2Test, APostWhoseConnectionDiedUnderItIsNotSentAgain) {
  // The upstream takes the second CreateThread (it is recorded) and then its connection dies
  // (TCP reset) before any answer: the request went out on a reused connection, so libcurl
  // would send it again on a new one; the transport refuses, since the upstream may have
  // carried it out.
  ASSERT_NO_FATAL_FAILURE(Start({}));
  ASSERT_TRUE(CreateThread(*stub_, "first").ok());
  ASSERT_TRUE(
      emulator_
          ->AddFault(
              {{"endpoint", "create_thread"}, {"type", "reset_before_headers"}, {"times", 1}})
          .ok());
  const grpc::Status second = CreateThread(*stub_, "second");
  EXPECT_EQ(second.error_code(), grpc::StatusCode::UNAVAILABLE) << second.error_message();
  const std::map<std::string, int> titles = RecordedTitles();
  EXPECT_EQ(titles.at("second"), 1);
  EXPECT_TRUE(CreateThread(*stub_, "third").ok());
}

}  // namespace
}  // namespace copilot::gateway::testing
