// The emulated Haufe Copilot API (routes under /agents/v1), its fault injection, the request
// record and the control API (/_emulator/...). Behaviour: docs/emulator.md.
#ifndef COPILOT_TESTS_EMULATOR_EMULATOR_APP_H_
#define COPILOT_TESTS_EMULATOR_EMULATOR_APP_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "nlohmann/json.hpp"
#include "tests/emulator/clock.h"
#include "tests/emulator/emulator_options.h"
#include "tests/emulator/error_bodies.h"
#include "tests/emulator/faults.h"
#include "tests/emulator/http_server.h"
#include "tests/emulator/rate_limiter.h"
#include "tests/emulator/request_log.h"
#include "tests/emulator/routes.h"
#include "tests/emulator/thread_store.h"
#include "tests/emulator/uuid.h"

namespace copilot::emulator {

// Answers every request with a ResponsePlan; all state (threads, faults, records, config) lives
// here. Never blocks: delays and pacing are expressed in the plan and run by the server's timers.
// Not thread-safe: used from the event-loop thread only.
class EmulatorApp final : public RequestHandler {
 public:
  // `server_stats` reports the HTTP server's connection counters for /_emulator/stats.
  EmulatorApp(const EmulatorOptions& options, Clock& clock, UuidGenerator& uuids,
              std::function<ServerStats()> server_stats);

  ResponsePlan Handle(HttpRequest request) override;

 private:
  // An upstream answer before delays and faults are applied.
  struct Reply {
    ResponsePlan plan;
    bool stream = false;                // NDJSON lines, one per body part
    std::function<void()> on_complete;  // runs once the whole response was sent
    bool rate_limited = false;          // a 429 of the rate limiter
  };

  ResponsePlan HandleControl(const HttpRequest& request);
  Reply HandleUpstream(const HttpRequest& request, const RouteMatch& route);
  Reply FaultReply(const FaultRule& rule, const RouteMatch& route);
  void ApplyFault(const FaultRule& rule, Reply& reply);

  Reply ListAssistants();
  Reply GetAssistant(const RouteMatch& route);
  Reply ListThreads(const HttpRequest& request);
  Reply CreateThread(const HttpRequest& request);
  Reply GetThread(const RouteMatch& route);
  Reply DeleteThread(const RouteMatch& route);
  Reply ListMessages(const HttpRequest& request, const RouteMatch& route);
  Reply CreateMessage(const HttpRequest& request, const RouteMatch& route);
  Reply DeleteMessage(const RouteMatch& route);
  Reply Run(const HttpRequest& request, const RouteMatch& route, bool stream);
  Reply ChatCompletions(const HttpRequest& request, bool stream);
  // Why the upstream would refuse to answer `stack` (run and chat completions share these checks,
  // in this order): streaming unsupported, required meta_data missing, a message-stack rule.
  std::optional<Reply> RefuseAnswer(const Assistant& assistant, const nlohmann::json& meta_data,
                                    const std::vector<StackMessage>& stack, bool stream) const;
  // The answer to `stack` in `thread`, blocking or streamed; stores it (now or on completion).
  Reply Answer(Thread& thread, const Assistant& assistant, const std::vector<StackMessage>& stack,
               bool stream);

  Reply Json(int status, const nlohmann::json& body) const;
  Reply Error(int status, absl::string_view error_code, absl::string_view detail) const;
  Reply Validation(const std::vector<ValidationIssue>& issues) const;
  nlohmann::json ConfigJson() const;
  ResponsePlan SetConfig(const std::string& body);

  absl::flat_hash_set<std::string> api_keys_;  // any of them is accepted
  ErrorShape error_shape_;
  int64_t stream_delay_ms_;
  int64_t response_delay_ms_;
  ThreadStore store_;
  FaultTable faults_;
  RateLimiter rate_limiter_;
  RequestLog log_;
  std::function<ServerStats()> server_stats_;
  int64_t requests_total_ = 0;
  int64_t in_flight_ = 0;
};

}  // namespace copilot::emulator

#endif  // COPILOT_TESTS_EMULATOR_EMULATOR_APP_H_
