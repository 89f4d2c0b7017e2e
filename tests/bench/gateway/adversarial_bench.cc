// adversarial_bench: one tenant sends worst-case requests at its maximum concurrency while
// another tenant runs normal calls. Prints the victim's latencies without and with the
// attacker, and the gateway's peak RSS against its documented bound (issue #13).
//
//   adversarial_bench [--seconds S] [--rounds R] [--attackers A] [--victims V] [--answer-mib M]
//                     [--inline-decode-bytes B] [--max-read-per-turn B] [--gateway-cpu N]
//                     [--decode-threads N] [--event-loops N] [--upstream http|h2]
//                     [--connections-per-tenant true|false]
//
// Victim (tenant "victim", no limits): V loops of AddMessage then StreamRun on its own thread:
// the AddMessage latency, the StreamRun time to first chunk and every gap between chunks.
// Attacker (tenant "attacker", max_concurrent_answers 8, other calls 20/s): A loops, each
// repeating the worst it can do within its limits:
//   - ListMessages answered with an M MiB page (the emulator serves it canned, so the emulator
//     is not the bottleneck): the gateway decodes M MiB of JSON per call;
//   - Run with 60 tools of 4 KiB (just under the request bounds);
//   - AddMessage with a new request_id each time and 20,000-character content (the request_id
//     store fills with the attacker's entries; the answers quote it, so the thread's messages
//     stay under the upstream's 30,000-character limit).
// Phase 1 measures the victim alone for S seconds, phase 2 with the attacker for S seconds;
// --rounds R repeats the pair R times and also prints the figures of all rounds pooled.
// --inline-decode-bytes 1GiB decodes every answer on the transport's loop (no decode pool): the
// figures without the isolation, for comparison; --max-read-per-turn 0 lets one transfer take
// all libcurl reads at once (upstream.max_read_per_turn). --gateway-cpu N runs the gateway alone on
// CPU N and the emulator and the callers on the other CPUs: on a small machine, without it the
// victim's latency also measures the callers' and the emulator's share of the same cores.
// --upstream h2 puts the emulator behind HTTPS with HTTP/2 (the real upstream's default): both
// tenants' calls then share the gateway's upstream connections unless each tenant has its own
// (upstream.connections_per_tenant, the default; --connections-per-tenant false shares them).
#include <dirent.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/support/proto_buffer_writer.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "copilot/v1/copilot_service.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "server/common/cpus.h"
#include "server/common/crypto.h"
#include "tests/emulator/testing/emulator_process.h"
#include "tests/server/integration/gateway_process.h"

namespace {

namespace v1 = ::copilot::v1;
using ::copilot::gateway::testing::GatewayProcess;
using ::copilot::gateway::testing::GatewayProcessOptions;
using ::copilot::gateway::testing::ProcessSample;
using ::copilot::gateway::testing::SampleProcess;

constexpr char kHrAssistant[] = "7c0e5d3a-4c1b-4f57-9a51-1f1f3e0a0002";
constexpr char kVictimToken[] = "bench-victim-token";
constexpr char kAttackerToken[] = "bench-attacker-token";

struct Options {
  int seconds = 15;
  int rounds = 1;  // Baseline then attack phases, this many times.
  int attackers = 8;
  int victims = 4;
  int answer_mib = 8;
  std::string inline_decode_bytes;     // Empty: the gateway's default.
  std::string max_read_per_turn;       // Empty: the gateway's default.
  int decode_threads = 0;              // 0: the gateway's default.
  int event_loops = 0;                 // 0: the gateway's default (upstream.event_loops).
  bool http2 = false;                  // --upstream h2: HTTPS with HTTP/2, else plain HTTP/1.1.
  std::string connections_per_tenant;  // Empty: the gateway's default.
  // >= 0: the gateway runs on this CPU alone and the emulator and this program on the others,
  // as in production, where callers and the upstream are other machines.
  int gateway_cpu = -1;
};

bool ParseOptions(int argc, char** argv, Options& options) {
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string arg = argv[i];
    const std::string value = argv[i + 1];
    int number = 0;
    if (arg == "--inline-decode-bytes") {
      options.inline_decode_bytes = value;
      continue;
    }
    if (arg == "--upstream") {
      if (value != "http" && value != "h2") {
        std::fprintf(stderr, "--upstream: expected http or h2\n");
        return false;
      }
      options.http2 = value == "h2";
      continue;
    }
    if (arg == "--connections-per-tenant") {
      if (value != "true" && value != "false") {
        std::fprintf(stderr, "--connections-per-tenant: expected true or false\n");
        return false;
      }
      options.connections_per_tenant = value;
      continue;
    }
    if (arg == "--max-read-per-turn") {
      options.max_read_per_turn = value;
      continue;
    }
    if (arg == "--gateway-cpu") {
      if (!absl::SimpleAtoi(value, &options.gateway_cpu) || options.gateway_cpu < 0 ||
          options.gateway_cpu >= CPU_SETSIZE) {
        std::fprintf(stderr, "bad value for %s\n", arg.c_str());
        return false;
      }
      continue;
    }
    if (!absl::SimpleAtoi(value, &number) || number <= 0) {
      std::fprintf(stderr, "bad value for %s\n", arg.c_str());
      return false;
    }
    if (arg == "--seconds") {
      options.seconds = number;
    } else if (arg == "--rounds") {
      options.rounds = number;
    } else if (arg == "--attackers") {
      options.attackers = number;
    } else if (arg == "--victims") {
      options.victims = number;
    } else if (arg == "--decode-threads") {
      options.decode_threads = number;
    } else if (arg == "--event-loops") {
      options.event_loops = number;
    } else if (arg == "--answer-mib") {
      options.answer_mib = number;
    } else {
      std::fprintf(stderr, "unknown flag %s\n", arg.c_str());
      return false;
    }
  }
  return argc % 2 == 1;
}

// The calling thread on `cpu` alone. Threads and children created afterwards inherit it.
bool PinTo(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return sched_setaffinity(0, sizeof(set), &set) == 0;
}

// Every thread of this process on every CPU in `all` but `cpu`.
bool PinAllThreadsAwayFrom(int cpu, const cpu_set_t& all) {
  cpu_set_t set = all;
  CPU_CLR(cpu, &set);
  if (CPU_COUNT(&set) == 0) return false;
  DIR* tasks = opendir("/proc/self/task");
  if (tasks == nullptr) return false;
  bool ok = true;
  while (const dirent* entry = readdir(tasks)) {
    int tid = 0;
    if (!absl::SimpleAtoi(entry->d_name, &tid)) continue;  // "." and "..".
    ok = sched_setaffinity(tid, sizeof(set), &set) == 0 && ok;
  }
  closedir(tasks);
  return ok;
}

std::string Sha256Hex(const std::string& text) {
  return absl::BytesToHexString(copilot::gateway::Sha256(text));
}

// An M MiB ListMessages page: messages with long content and sources.
std::string BigPage(int mib) {
  nlohmann::json items = nlohmann::json::array();
  std::size_t bytes = 0;
  for (int i = 0; bytes < static_cast<std::size_t>(mib) * 1024 * 1024; ++i) {
    nlohmann::json message = {
        {"id", absl::StrCat("00000000-0000-4000-8000-", absl::Dec(i, absl::kZeroPad12))},
        {"thread_id", "00000000-0000-4000-8000-000000000001"},
        {"role", "assistant"},
        {"content", std::string(2000, 'c')},
        {"created_at", "2025-03-15T09:12:33.456789Z"},
        {"sources",
         {{{"content", std::string(500, 's')},
           {"meta_data", {{"document_title", "t"}, {"section", "s"}, {"app_doc_id", i}}}}}},
        {"meta_data", {{"type", "lgagentmetadatamodel"}, {"legal_advice", false}}}};
    bytes += message.dump().size();
    items.push_back(std::move(message));
  }
  return nlohmann::json{{"cursor", nullptr}, {"items", std::move(items)}}.dump();
}

// Latencies collected by several threads.
class Samples {
 public:
  void Add(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    values_.push_back(absl::ToDoubleMilliseconds(d));
  }
  // The p-th percentile in milliseconds (0 when empty).
  double Percentile(double p) {
    absl::MutexLock lock(&mu_);
    if (values_.empty()) return 0;
    std::sort(values_.begin(), values_.end());
    const std::size_t index =
        std::min(values_.size() - 1, static_cast<std::size_t>(p / 100.0 * values_.size()));
    return values_[index];
  }
  std::size_t count() {
    absl::MutexLock lock(&mu_);
    return values_.size();
  }
  // Adds `other`'s values to these.
  void AddAll(Samples& other) {
    std::vector<double> values;
    {
      absl::MutexLock lock(&other.mu_);
      values = other.values_;
    }
    absl::MutexLock lock(&mu_);
    values_.insert(values_.end(), values.begin(), values.end());
  }

 private:
  absl::Mutex mu_;
  std::vector<double> values_;
};

struct VictimFigures {
  Samples add_message;
  Samples first_chunk;
  Samples chunk_gap;
  Samples stream_total;
  std::atomic<int> failures{0};

  void AddAll(VictimFigures& other) {
    add_message.AddAll(other.add_message);
    first_chunk.AddAll(other.first_chunk);
    chunk_gap.AddAll(other.chunk_gap);
    stream_total.AddAll(other.stream_total);
    failures += other.failures.load();
  }
};

void Authorize(grpc::ClientContext& context, const char* token) {
  context.AddMetadata("authorization", absl::StrCat("Bearer ", token));
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
}

std::string NewThread(v1::CopilotService::Stub& stub, const char* token) {
  grpc::ClientContext context;
  Authorize(context, token);
  v1::CreateThreadRequest request;
  request.set_assistant_id(kHrAssistant);
  v1::CreateThreadResponse response;
  grpc::Status status = stub.CreateThread(&context, request, &response);
  if (!status.ok()) std::fprintf(stderr, "CreateThread: %s\n", status.error_message().c_str());
  return response.thread().id();
}

// One victim loop until `stop`: AddMessage, then StreamRun, on its own thread.
void Victim(v1::CopilotService::Stub& stub, std::atomic<bool>& stop, VictimFigures& figures) {
  const std::string thread = NewThread(stub, kVictimToken);
  while (!stop.load()) {
    grpc::ClientContext add_context;
    Authorize(add_context, kVictimToken);
    v1::AddMessageRequest add;
    add.set_thread_id(thread);
    add.mutable_message()->set_role(v1::ROLE_USER);
    add.mutable_message()->set_content("How many days of leave do I have left this year?");
    v1::AddMessageResponse added;
    absl::Time start = absl::Now();
    if (!stub.AddMessage(&add_context, add, &added).ok()) {
      ++figures.failures;
      continue;
    }
    figures.add_message.Add(absl::Now() - start);
    grpc::ClientContext stream_context;
    Authorize(stream_context, kVictimToken);
    v1::StreamRunRequest run;
    run.set_thread_id(thread);
    start = absl::Now();
    auto reader = stub.StreamRun(&stream_context, run);
    v1::StreamRunResponse chunk;
    absl::Time last = start;
    bool first = true;
    while (reader->Read(&chunk)) {
      const absl::Time now = absl::Now();
      if (first) {
        figures.first_chunk.Add(now - start);
        first = false;
      } else {
        figures.chunk_gap.Add(now - last);
      }
      last = now;
    }
    if (!reader->Finish().ok()) {
      ++figures.failures;
      continue;
    }
    figures.stream_total.Add(absl::Now() - start);
  }
}

struct AttackCounts {
  std::atomic<int> ok{0};
  std::atomic<int> refused{0};  // RESOURCE_EXHAUSTED: the attacker's own limits.
  std::atomic<int> failed{0};
  absl::Mutex mu;
  std::string first_failure ABSL_GUARDED_BY(mu);
};

void Count(const grpc::Status& status, AttackCounts& counts) {
  if (status.ok()) {
    ++counts.ok;
  } else if (status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
    ++counts.refused;
  } else {
    ++counts.failed;
    absl::MutexLock lock(&counts.mu);
    if (counts.first_failure.empty()) {
      counts.first_failure = absl::StrCat(status.error_code(), " ", status.error_message());
    }
  }
}

// The attacker's client: typed calls, and a generic stub for ListMessages.
struct AttackerStubs {
  std::unique_ptr<v1::CopilotService::Stub> typed;
  std::unique_ptr<grpc::GenericStub> generic;
};

// One attacker loop until `stop`. In production the attacker's client runs on its own
// machines; here it shares two cores with the gateway and the victim, so its thread runs at a
// lower priority, and it takes its 8 MiB ListMessages answers as bytes without parsing them
// (gRPC's callback thread would parse them at normal priority), for its own work on the
// callers' core not to count against the gateway.
void Attacker(AttackerStubs& stubs, std::atomic<bool>& stop, AttackCounts& counts, int index) {
  v1::CopilotService::Stub& stub = *stubs.typed;
  setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), 10);
  const std::string thread = NewThread(stub, kAttackerToken);
  google::protobuf::Struct tool;
  (*tool.mutable_fields())["type"].set_string_value("function");
  (*tool.mutable_fields())["description"].set_string_value(std::string(4000, 'd'));
  while (!stop.load()) {
    {
      grpc::ClientContext context;
      Authorize(context, kAttackerToken);
      v1::ListMessagesRequest list;
      list.set_thread_id(thread);
      grpc::ByteBuffer request;
      grpc::ByteBuffer page;
      bool own_buffer = false;
      if (!grpc::GenericSerialize<grpc::ProtoBufferWriter, v1::ListMessagesRequest>(list, &request,
                                                                                    &own_buffer)
               .ok()) {
        std::abort();
      }
      std::promise<grpc::Status> listed;
      stubs.generic->UnaryCall(&context, "/copilot.v1.CopilotService/ListMessages",
                               grpc::StubOptions(), &request, &page,
                               [&listed](grpc::Status status) { listed.set_value(status); });
      Count(listed.get_future().get(), counts);
    }
    {
      grpc::ClientContext context;
      Authorize(context, kAttackerToken);
      v1::AddMessageRequest add;
      add.set_thread_id(thread);
      // New in every round of every attack (a request_id reused for another thread is refused).
      static std::atomic<uint64_t> next_request{0};
      add.set_request_id(absl::StrCat("a", absl::Hex(index, absl::kZeroPad7), "-0000-4000-8000-",
                                      absl::Hex(next_request++, absl::kZeroPad12)));
      add.mutable_message()->set_role(v1::ROLE_USER);
      add.mutable_message()->set_content(std::string(20000, 'q'));
      v1::AddMessageResponse added;
      // When its limits refused this one, the Run below fails upstream (INVALID_ARGUMENT: the
      // thread's last message is not the user's), still carrying its 60 tools through the gateway.
      Count(stub.AddMessage(&context, add, &added), counts);
    }
    {
      grpc::ClientContext context;
      Authorize(context, kAttackerToken);
      v1::RunRequest run;
      run.set_thread_id(thread);
      for (int i = 0; i < 60; ++i) *run.add_tools() = tool;
      v1::RunResponse response;
      Count(stub.Run(&context, run, &response), counts);
    }
  }
}

struct Phase {
  double add_p50, add_p99, first_p50, first_p99, gap_p50, gap_p99, gap_max, total_p99;
  std::size_t streams;
  int failures;
};

Phase Summarize(VictimFigures& figures) {
  return Phase{figures.add_message.Percentile(50), figures.add_message.Percentile(99),
               figures.first_chunk.Percentile(50), figures.first_chunk.Percentile(99),
               figures.chunk_gap.Percentile(50),   figures.chunk_gap.Percentile(99),
               figures.chunk_gap.Percentile(100),  figures.stream_total.Percentile(99),
               figures.stream_total.count(),       figures.failures.load()};
}

// Runs the victims for options.seconds; their figures go to `figures`.
Phase RunVictims(const Options& options,
                 std::vector<std::unique_ptr<v1::CopilotService::Stub>>& stubs,
                 std::atomic<bool>& stop, VictimFigures& figures) {
  std::vector<std::thread> victims;
  for (int i = 0; i < options.victims; ++i) {
    victims.emplace_back([&, i] { Victim(*stubs[i % stubs.size()], stop, figures); });
  }
  std::this_thread::sleep_for(std::chrono::seconds(options.seconds));
  stop = true;
  for (std::thread& victim : victims) victim.join();
  return Summarize(figures);
}

void PrintRatios(const Phase& baseline, const Phase& attacked) {
  std::printf(
      "  ratio (attack / baseline): AddMessage p99 %.2fx, first chunk p99 %.2fx, "
      "chunk gap p99 %.2fx, stream p99 %.2fx\n",
      attacked.add_p99 / std::max(baseline.add_p99, 1e-9),
      attacked.first_p99 / std::max(baseline.first_p99, 1e-9),
      attacked.gap_p99 / std::max(baseline.gap_p99, 1e-9),
      attacked.total_p99 / std::max(baseline.total_p99, 1e-9));
}

void PrintPhase(const char* name, const Phase& phase) {
  std::printf(
      "  %-16s AddMessage p50 %7.2f ms p99 %7.2f ms | StreamRun first chunk p50 %7.2f p99 %7.2f "
      "| chunk gap p50 %6.2f p99 %6.2f max %7.2f | stream p99 %7.2f ms | %zu streams, %d "
      "failures\n",
      name, phase.add_p50, phase.add_p99, phase.first_p50, phase.first_p99, phase.gap_p50,
      phase.gap_p99, phase.gap_max, phase.total_p99, phase.streams, phase.failures);
}

int Main(int argc, char** argv) {
  Options options;
  if (!ParseOptions(argc, argv, options)) {
    std::fprintf(
        stderr,
        "usage: adversarial_bench [--seconds S] [--rounds R] [--attackers A] [--victims V] "
        "[--answer-mib M] [--inline-decode-bytes B] [--max-read-per-turn B] [--gateway-cpu N] "
        "[--decode-threads N] [--event-loops N] [--upstream http|h2] "
        "[--connections-per-tenant true|false]\n");
    return 2;
  }
  // The CPUs this program may use, read once: after the gateway's start pinned this thread to
  // one CPU, the set it then reads would be that CPU alone.
  cpu_set_t all_cpus;
  if (sched_getaffinity(0, sizeof(all_cpus), &all_cpus) != 0) {
    std::perror("sched_getaffinity");
    return 2;
  }
  if (options.gateway_cpu >= 0 && !PinAllThreadsAwayFrom(options.gateway_cpu, all_cpus)) {
    std::fprintf(stderr, "--gateway-cpu %d: cannot leave that CPU to the gateway\n",
                 options.gateway_cpu);
    return 2;
  }
  copilot::emulator::testing::EmulatorProcessOptions emulator_options{
      .args = {"--max-record", "100", "--stream-delay-ms", "20"}};
  const std::string certs = COPILOT_TEST_CERTS_DIR;
  if (options.http2) {
    emulator_options.tls_cert_file = certs + "/server.pem";
    emulator_options.tls_key_file = certs + "/server.key";
    emulator_options.args.insert(emulator_options.args.end(), {"--tls-http2", "on"});
  }
  auto emulator = copilot::emulator::testing::EmulatorProcess::Start(emulator_options);
  if (!emulator.ok()) {
    std::fprintf(stderr, "emulator: %s\n", std::string(emulator.status().message()).c_str());
    return 1;
  }
  GatewayProcessOptions gateway_options;
  gateway_options.upstream_url =
      options.http2 ? absl::StrCat("https://127.0.0.1:", (*emulator)->tls_port(), "/agents")
                    : (*emulator)->base_url() + "/agents";
  gateway_options.identity = "bearer";
  gateway_options.upstream = {{"max_call_timeout", "60s"}};
  if (options.http2) gateway_options.upstream.emplace("ca_file", certs + "/ca.pem");
  if (!options.inline_decode_bytes.empty()) {
    gateway_options.upstream.emplace("inline_decode_bytes", options.inline_decode_bytes);
  }
  if (!options.max_read_per_turn.empty()) {
    gateway_options.upstream.emplace("max_read_per_turn", options.max_read_per_turn);
  }
  if (options.decode_threads > 0) {
    gateway_options.upstream.emplace("decode_threads", absl::StrCat(options.decode_threads));
  }
  if (options.event_loops > 0) {
    gateway_options.upstream.emplace("event_loops", absl::StrCat(options.event_loops));
  }
  if (!options.connections_per_tenant.empty()) {
    gateway_options.upstream.emplace("connections_per_tenant", options.connections_per_tenant);
  }
  gateway_options.extra_yaml = absl::StrCat(
      "tenants:\n  - id: victim\n    bearer_token_sha256: [\"", Sha256Hex(kVictimToken),
      "\"]\n    assistants: [{id: \"*\"}]\n  - id: attacker\n    bearer_token_sha256: [\"",
      Sha256Hex(kAttackerToken),
      "\"]\n    assistants: [{id: \"*\"}]\n    limits:\n      max_concurrent_answers: 8\n"
      "      answer_per_second: 10\n      other_per_second: 20\n");
  if (options.gateway_cpu >= 0 && !PinTo(options.gateway_cpu)) {
    std::fprintf(stderr, "--gateway-cpu %d: cannot run there\n", options.gateway_cpu);
    return 2;
  }
  auto gateway = GatewayProcess::Start(gateway_options);
  // Back to the other CPUs for the callers: every thread of this program, since starting the
  // gateway started gRPC's own threads here (they inherited the one CPU). When this step failed
  // silently, every caller thread shared the gateway's CPU.
  if (options.gateway_cpu >= 0 && !PinAllThreadsAwayFrom(options.gateway_cpu, all_cpus)) {
    std::fprintf(stderr, "--gateway-cpu %d: cannot leave that CPU again\n", options.gateway_cpu);
    return 2;
  }
  if (!gateway.ok()) {
    std::fprintf(stderr, "gateway: %s\n", std::string(gateway.status().message()).c_str());
    return 1;
  }
  const pid_t pid = (*gateway)->pid();
  // The attacker's pages, canned (the victim never lists messages).
  const std::string page = BigPage(options.answer_mib);
  auto fault = (*emulator)->AddFault(
      {{"endpoint", "list_messages"}, {"type", "raw_body"}, {"status", 200}, {"body", page}});
  if (!fault.ok()) {
    std::fprintf(stderr, "fault: %s\n", std::string(fault.status().message()).c_str());
    return 1;
  }
  // Each tenant on its own connections, as separate services would be: the attacker's 8 MiB
  // answers do not share an HTTP/2 connection (and its TCP window) with the victim's calls.
  std::vector<std::unique_ptr<v1::CopilotService::Stub>> stubs;
  std::vector<AttackerStubs> attacker_stubs;
  for (int i = 0; i < 4; ++i) {
    stubs.push_back(v1::CopilotService::NewStub((*gateway)->NewChannel()));
    std::shared_ptr<grpc::Channel> channel = (*gateway)->NewChannel();
    attacker_stubs.push_back(AttackerStubs{v1::CopilotService::NewStub(channel),
                                           std::make_unique<grpc::GenericStub>(channel)});
  }

  // Each round: the victims alone, then under attack. Rounds alternate the two so that a slow
  // spell of the machine falls on both, and the figures of all rounds are also pooled: a p99 of
  // one 60 s phase (~1,100 calls) is its 11th worst call and moved 2x between runs.
  VictimFigures all_baseline;
  VictimFigures all_attacked;
  AttackCounts counts;
  absl::StatusOr<ProcessSample> before = absl::UnknownError("no round");
  absl::StatusOr<ProcessSample> after = absl::UnknownError("no round");
  double attack_cpu_seconds = 0;
  std::printf(
      "adversarial_bench: %d victim loops (AddMessage + StreamRun), %d attacker loops "
      "(ListMessages of %d MiB, Run with 60 tools of 4 KiB, AddMessage of 20,000 chars with a "
      "new request_id), %d s per phase, %d round(s)%s\n",
      options.victims, options.attackers, options.answer_mib, options.seconds, options.rounds,
      absl::StrCat(options.inline_decode_bytes.empty()
                       ? ""
                       : absl::StrCat(", inline_decode_bytes ", options.inline_decode_bytes),
                   options.max_read_per_turn.empty()
                       ? ""
                       : absl::StrCat(", max_read_per_turn ", options.max_read_per_turn))
          .c_str());
  for (int round = 1; round <= options.rounds; ++round) {
    VictimFigures alone;
    std::atomic<bool> stop_baseline{false};
    const Phase baseline = RunVictims(options, stubs, stop_baseline, alone);
    before = SampleProcess(pid);

    std::atomic<bool> stop_attack{false};
    std::vector<std::thread> attackers;
    for (int i = 0; i < options.attackers; ++i) {
      attackers.emplace_back(
          [&, i] { Attacker(attacker_stubs[i % attacker_stubs.size()], stop_attack, counts, i); });
    }
    std::this_thread::sleep_for(std::chrono::seconds(2));  // Let the attack reach its stride.
    VictimFigures under;
    std::atomic<bool> stop_victims{false};
    const Phase attacked = RunVictims(options, stubs, stop_victims, under);
    stop_attack = true;
    for (std::thread& attacker : attackers) attacker.join();
    after = SampleProcess(pid);
    if (before.ok() && after.ok()) attack_cpu_seconds += after->cpu_seconds - before->cpu_seconds;

    std::printf(" round %d\n", round);
    PrintPhase("baseline:", baseline);
    PrintPhase("under attack:", attacked);
    PrintRatios(baseline, attacked);
    std::fflush(stdout);
    all_baseline.AddAll(alone);
    all_attacked.AddAll(under);
  }
  if (options.rounds > 1) {
    std::printf(" all %d rounds pooled\n", options.rounds);
    const Phase baseline = Summarize(all_baseline);
    const Phase attacked = Summarize(all_attacked);
    PrintPhase("baseline:", baseline);
    PrintPhase("under attack:", attacked);
    PrintRatios(baseline, attacked);
  }
  {
    absl::MutexLock lock(&counts.mu);
    std::printf("  attacker calls: %d OK, %d refused by its limits, %d failed otherwise%s\n",
                counts.ok.load(), counts.refused.load(), counts.failed.load(),
                counts.first_failure.empty()
                    ? ""
                    : absl::StrCat(" (first: ", counts.first_failure, ")").c_str());
  }
  if (before.ok() && after.ok()) {
    std::printf(
        "  gateway: RSS %.1f MiB before the last attack, %.1f MiB after; peak (VmHWM) %.1f "
        "MiB; CPU %.2f s during the attacks (%d s of victims under attack)\n",
        before->rss_kib / 1024.0, after->rss_kib / 1024.0, after->hwm_kib / 1024.0,
        attack_cpu_seconds, options.rounds * options.seconds);
  }
  // The gateway's decode threads: as set, else one per CPU it may use (at most 4).
  const int decodes = options.decode_threads > 0 ? options.decode_threads
                      : options.gateway_cpu >= 0 ? 1
                                                 : std::min(4, copilot::gateway::UsableCpus());
  std::printf(
      "  documented bound (docs/architecture.md, Memory model, defaults): gRPC quota 64 MiB "
      "(~190 MiB at its peak) + response buffers 256 MiB + %d decode thread(s) x ~16 MiB x 15 "
      "+ request_id store 64 MiB + ~35 MiB baseline = ~%d MiB\n",
      decodes, 190 + 256 + decodes * 16 * 15 + 64 + 35);
  std::fflush(stdout);
  stubs.clear();
  absl::StatusOr<int> exit_code = (*gateway)->Stop();
  return exit_code.ok() && *exit_code == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) { return Main(argc, argv); }
