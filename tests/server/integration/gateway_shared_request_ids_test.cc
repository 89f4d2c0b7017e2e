// Issue #16, item 5: request_id is exactly-once across replicas. Three gateway processes share
// one redis-server; the upstream (the emulator) takes 1.5 s per request. A client sends each of
// CreateThread, AddMessage, Run and Complete to one replica, gives up on it (a cancel, a
// deadline, a replica killed mid-call) and retries on the two others. The emulator's record
// says the upstream saw each request exactly once, and every retry gets the same result.
#include <signal.h>

#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "tests/server/integration/integration_fixture.h"
#include "tests/server/limits/redis_server.h"

namespace copilot::gateway::testing {
namespace {

namespace v1 = ::copilot::v1;

enum class Method { kCreateThread, kAddMessage, kRun, kComplete };
// Each method, its name and the emulator's route for its upstream request.
struct MethodInfo {
  Method method;
  const char* name;
  const char* route;
};
constexpr MethodInfo kMethods[] = {{Method::kCreateThread, "CreateThread", "create_thread"},
                                   {Method::kAddMessage, "AddMessage", "create_message"},
                                   {Method::kRun, "Run", "run"},
                                   {Method::kComplete, "Complete", "chat_completions"}};

const char* RouteOf(Method method) {
  for (const MethodInfo& info : kMethods) {
    if (info.method == method) return info.route;
  }
  return "";
}

// `message` serialized deterministically (map entries in key order): equal messages, equal
// bytes.
std::string Bytes(const google::protobuf::Message& message) {
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream stream(&bytes);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    message.SerializeToCodedStream(&coded);
  }
  return bytes;
}

// What one call returned: its status and its response, serialized.
struct Outcome {
  grpc::Status status;
  std::string response;
};

// One request of `method` carrying `marker` (in its title, content or a tool's name, so the
// emulator's record shows it) under `request_id`.
struct Request {
  Method method;
  std::string marker;
  std::string request_id;
  std::string thread_id;  // AddMessage and Run.
};

Outcome Invoke(v1::CopilotService::Stub& stub, grpc::ClientContext& context,
               const Request& request) {
  Outcome outcome;
  switch (request.method) {
    case Method::kCreateThread: {
      v1::CreateThreadRequest call;
      call.set_assistant_id(kHrAssistant);
      call.set_title(request.marker);
      call.set_request_id(request.request_id);
      v1::CreateThreadResponse response;
      outcome.status = stub.CreateThread(&context, call, &response);
      outcome.response = Bytes(response);
      break;
    }
    case Method::kAddMessage: {
      v1::AddMessageRequest call;
      call.set_thread_id(request.thread_id);
      call.mutable_message()->set_role(v1::ROLE_USER);
      call.mutable_message()->set_content(request.marker);
      call.set_request_id(request.request_id);
      v1::AddMessageResponse response;
      outcome.status = stub.AddMessage(&context, call, &response);
      outcome.response = Bytes(response);
      break;
    }
    case Method::kRun: {
      v1::RunRequest call;
      call.set_thread_id(request.thread_id);
      (*call.add_tools()->mutable_fields())["name"].set_string_value(request.marker);
      call.set_request_id(request.request_id);
      v1::RunResponse response;
      outcome.status = stub.Run(&context, call, &response);
      outcome.response = Bytes(response);
      break;
    }
    case Method::kComplete: {
      v1::CompleteRequest call;
      call.set_assistant_id(kTaxAssistant);
      v1::MessageInput* message = call.add_messages();
      message->set_role(v1::ROLE_USER);
      message->set_content(request.marker);
      call.set_request_id(request.request_id);
      v1::CompleteResponse response;
      outcome.status = stub.Complete(&context, call, &response);
      outcome.response = Bytes(response);
      break;
    }
  }
  return outcome;
}

class GatewaySharedRequestIdsTest : public ::testing::Test {
 protected:
  static constexpr int kUpstreamDelayMs = 1500;

  void SetUp() override {
    auto redis = RedisServer::Start();
    ASSERT_TRUE(redis.ok()) << redis.status();
    redis_ = *std::move(redis);
    auto emulator = emulator::testing::EmulatorProcess::Start({});
    ASSERT_TRUE(emulator.ok()) << emulator.status();
    emulator_ = *std::move(emulator);
    GatewayProcessOptions options;
    options.upstream_url = emulator_->base_url() + "/agents";
    // A killed replica's claim ends 5 s after this: a retry then learns the outcome is unknown.
    options.upstream["max_call_timeout"] = "4s";
    options.upstream["connect_timeout"] = "1s";
    options.shutdown_grace = "5s";
    options.extra_yaml = absl::StrCat("redis:\n  url: \"", redis_->url(),
                                      "\"\n  on_failure: fail_open\n  replicas: 3\n");
    for (int i = 0; i < 3; ++i) {
      auto gateway = GatewayProcess::Start(options);
      ASSERT_TRUE(gateway.ok()) << gateway.status();
      stubs_.push_back(v1::CopilotService::NewStub((*gateway)->NewChannel()));
      gateways_.push_back(*std::move(gateway));
    }
    // Threads for AddMessage and Run, made before the upstream slows down.
    for (int i = 0; i < 8; ++i) {
      grpc::ClientContext context;
      SetTimeout(context, absl::Seconds(10));
      v1::CreateThreadRequest request;
      request.set_assistant_id(kHrAssistant);
      v1::CreateThreadResponse response;
      grpc::Status status = stubs_[0]->CreateThread(&context, request, &response);
      ASSERT_TRUE(status.ok()) << status.error_message();
      threads_.push_back(response.thread().id());
      // A Run needs a message in its thread.
      grpc::ClientContext add_context;
      SetTimeout(add_context, absl::Seconds(10));
      v1::AddMessageRequest add;
      add.set_thread_id(threads_.back());
      add.mutable_message()->set_role(v1::ROLE_USER);
      add.mutable_message()->set_content("What changes for travel expenses this year?");
      v1::AddMessageResponse added;
      status = stubs_[0]->AddMessage(&add_context, add, &added);
      ASSERT_TRUE(status.ok()) << status.error_message();
    }
    ASSERT_TRUE(
        emulator_
            ->AddFault({{"endpoint", "*"}, {"type", "latency"}, {"delay_ms", kUpstreamDelayMs}})
            .ok());
  }

  void TearDown() override {
    stubs_.clear();
    for (auto& gateway : gateways_) {
      if (gateway != nullptr) gateway->Stop();
    }
  }

  // The four requests of one scenario, each with its own marker, request_id and thread.
  std::vector<Request> Requests(const std::string& scenario, int index) {
    std::vector<Request> requests;
    int n = 0;
    for (const MethodInfo& info : kMethods) {
      requests.push_back({info.method, absl::StrCat(scenario, "-", info.name),
                          absl::StrFormat("0000%04d-1111-4222-8333-%012d", index, n),
                          threads_[static_cast<std::size_t>(2 * index + (n % 2))]});
      ++n;
    }
    return requests;
  }

  // How many times the upstream received `request`.
  int Received(const Request& request) {
    absl::StatusOr<nlohmann::json> records = emulator_->Requests();
    EXPECT_TRUE(records.ok()) << records.status();
    int count = 0;
    if (!records.ok()) return -1;
    for (const auto& record : *records) {
      if (record["route"] == RouteOf(request.method) &&
          absl::StrContains(record["body"].get<std::string>(), request.marker)) {
        ++count;
      }
    }
    return count;
  }

  // Waits until the upstream received every request (it holds each for 1.5 s).
  void AwaitReceived(const std::vector<Request>& requests) {
    for (const Request& request : requests) {
      ASSERT_TRUE(Eventually([&] { return Received(request) >= 1; }, absl::Seconds(5)))
          << request.marker << " never reached the upstream";
    }
  }

  // Sends every request to replica `replica` at once, with `timeout`; the outcomes come back
  // in order.
  std::vector<Outcome> SendAll(int replica, const std::vector<Request>& requests,
                               absl::Duration timeout) {
    std::vector<Outcome> outcomes(requests.size());
    std::vector<std::thread> callers;
    for (std::size_t i = 0; i < requests.size(); ++i) {
      callers.emplace_back([&, i] {
        grpc::ClientContext context;
        SetTimeout(context, timeout);
        outcomes[i] = Invoke(*stubs_[static_cast<std::size_t>(replica)], context, requests[i]);
      });
    }
    for (std::thread& caller : callers) caller.join();
    return outcomes;
  }

  // Sends every request to replica 0 and cancels each once the upstream received them all.
  std::vector<Outcome> CancelOnReplica0OnceReceived(const std::vector<Request>& requests) {
    std::vector<grpc::ClientContext> contexts(requests.size());
    std::vector<Outcome> outcomes(requests.size());
    std::vector<std::thread> callers;
    for (std::size_t i = 0; i < requests.size(); ++i) {
      SetTimeout(contexts[i], absl::Seconds(20));
      callers.emplace_back([&, i] { outcomes[i] = Invoke(*stubs_[0], contexts[i], requests[i]); });
    }
    AwaitReceived(requests);
    for (grpc::ClientContext& context : contexts) context.TryCancel();
    for (std::thread& caller : callers) caller.join();
    return outcomes;
  }

  // Both retries (on replicas 1 and 2) succeeded with the same response, and the upstream saw
  // each request once.
  void ExpectRetriesGotTheOneResult(const std::vector<Request>& requests) {
    std::vector<Outcome> first = SendAll(1, requests, absl::Seconds(20));
    std::vector<Outcome> second = SendAll(2, requests, absl::Seconds(20));
    for (std::size_t i = 0; i < requests.size(); ++i) {
      SCOPED_TRACE(requests[i].marker);
      EXPECT_TRUE(first[i].status.ok())
          << first[i].status.error_code() << " " << first[i].status.error_message();
      EXPECT_TRUE(second[i].status.ok())
          << second[i].status.error_code() << " " << second[i].status.error_message();
      EXPECT_FALSE(first[i].response.empty());
      EXPECT_EQ(first[i].response, second[i].response);
      EXPECT_EQ(Received(requests[i]), 1);
    }
  }

  std::unique_ptr<RedisServer> redis_;
  std::unique_ptr<emulator::testing::EmulatorProcess> emulator_;
  std::vector<std::unique_ptr<GatewayProcess>> gateways_;
  std::vector<std::unique_ptr<v1::CopilotService::Stub>> stubs_;
  std::vector<std::string> threads_;
};

TEST_F(GatewaySharedRequestIdsTest, ARetryOnAnotherReplicaAfterACancelGetsTheFirstResult) {
  const std::vector<Request> requests = Requests("cancel", 0);
  std::vector<Outcome> outcomes = CancelOnReplica0OnceReceived(requests);
  for (const Outcome& outcome : outcomes) {
    EXPECT_EQ(outcome.status.error_code(), grpc::StatusCode::CANCELLED);
  }
  ExpectRetriesGotTheOneResult(requests);
  // Replica 1 waited for replica 0's attempts (which outlived their cancelled callers).
  EXPECT_NE(MetricValue(Scrape(*gateways_[1]),
                        "copilot_gateway_request_id_shared_lookups_total{result=\"in_flight\"}"),
            "");
}

TEST_F(GatewaySharedRequestIdsTest, ARetryOnAnotherReplicaAfterADeadlineGetsTheFirstResult) {
  const std::vector<Request> requests = Requests("deadline", 1);
  std::vector<Outcome> outcomes = SendAll(0, requests, absl::Milliseconds(700));
  for (std::size_t i = 0; i < requests.size(); ++i) {
    EXPECT_EQ(outcomes[i].status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED)
        << requests[i].marker;
  }
  ExpectRetriesGotTheOneResult(requests);
}

// The replica running the requests is killed after the upstream received them (and carried
// them out): no retry sends them again; every retry learns the outcome is unknown, the same way.
TEST_F(GatewaySharedRequestIdsTest, ARetryAfterTheReplicaRunningItWasKilledIsNeverSentTwice) {
  const std::vector<Request> requests = Requests("kill", 2);
  std::vector<Outcome> outcomes(requests.size());
  std::thread sender([&] { outcomes = SendAll(0, requests, absl::Seconds(20)); });
  AwaitReceived(requests);
  ASSERT_EQ(::kill(gateways_[0]->pid(), SIGKILL), 0);
  sender.join();
  gateways_[0]->Stop();
  gateways_[0].reset();
  for (const Outcome& outcome : outcomes) {
    EXPECT_EQ(outcome.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  }
  // A retry while the killed replica's claim holds waits for it, up to max_call_timeout (4 s),
  // and is told the request is still in flight (DEADLINE_EXCEEDED, REQUEST_IN_FLIGHT); once the
  // claim ended (max_call_timeout + 2 s after it was made) every retry learns the outcome is
  // unknown. The client retries on replica 1 until then.
  const absl::Time start = absl::Now();
  std::vector<Outcome> first;
  for (;;) {
    first = SendAll(1, requests, absl::Seconds(30));
    bool in_flight = false;
    for (const Outcome& outcome : first) {
      if (outcome.status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
        EXPECT_THAT(outcome.status.error_details(), ::testing::HasSubstr("REQUEST_IN_FLIGHT"));
        in_flight = true;
      }
    }
    if (!in_flight || absl::Now() - start > absl::Seconds(20)) break;
  }
  const absl::Duration waited = absl::Now() - start;
  std::vector<Outcome> second = SendAll(2, requests, absl::Seconds(30));
  for (std::size_t i = 0; i < requests.size(); ++i) {
    SCOPED_TRACE(requests[i].marker);
    EXPECT_EQ(first[i].status.error_code(), grpc::StatusCode::ABORTED)
        << first[i].status.error_message();
    EXPECT_THAT(first[i].status.error_details(), ::testing::HasSubstr("request_outcome_unknown"));
    EXPECT_EQ(second[i].status.error_code(), grpc::StatusCode::ABORTED);
    EXPECT_EQ(first[i].status.error_message(), second[i].status.error_message());
    EXPECT_EQ(Received(requests[i]), 1);
  }
  // No longer than the claims held (6 s after they were made), and a poll.
  EXPECT_LT(waited, absl::Seconds(9));
  EXPECT_NE(MetricValue(Scrape(*gateways_[2]),
                        "copilot_gateway_request_id_shared_lookups_total{result=\"unknown\"}"),
            "");
}

// A rolling restart: the replica whose caller cancelled is drained (SIGTERM) while the request
// still runs upstream. The drain waits for it, so its result is recorded and the retry on
// another replica gets it.
TEST_F(GatewaySharedRequestIdsTest, ADrainedReplicaFinishesTheCallsItsCallersLeft) {
  const std::vector<Request> requests = Requests("drain", 3);
  CancelOnReplica0OnceReceived(requests);
  absl::StatusOr<int> exit_code = gateways_[0]->Stop();
  ASSERT_TRUE(exit_code.ok()) << exit_code.status();
  EXPECT_EQ(*exit_code, 0);
  std::ifstream log(gateways_[0]->log_path());
  std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  EXPECT_THAT(text, ::testing::HasSubstr("call(s) with a request_id whose callers went away"));
  EXPECT_THAT(text, ::testing::Not(::testing::HasSubstr("end unfinished")));
  gateways_[0].reset();
  ExpectRetriesGotTheOneResult(requests);
}

// Redis unreachable with on_failure: fail_open: calls with a request_id go on, de-duplicated
// within the replica only; the metric says so. Back when Redis is.
TEST_F(GatewaySharedRequestIdsTest, WithRedisDownCallsFailOpenToTheReplicasOwnMemory) {
  redis_->Kill();
  Request request{Method::kComplete, "redis-down", "99999999-1111-4222-8333-000000000001", ""};
  for (int attempt = 0; attempt < 2; ++attempt) {
    grpc::ClientContext context;
    SetTimeout(context, absl::Seconds(10));
    Outcome outcome = Invoke(*stubs_[1], context, request);
    EXPECT_TRUE(outcome.status.ok()) << outcome.status.error_message();
  }
  EXPECT_EQ(Received(request), 1);  // The second was answered from the replica's memory.
  EXPECT_NE(MetricValue(Scrape(*gateways_[1]),
                        "copilot_gateway_request_id_shared_lookups_total{result=\"unavailable\"}"),
            "");
  ASSERT_TRUE(redis_->Restart().ok());
}

}  // namespace
}  // namespace copilot::gateway::testing
