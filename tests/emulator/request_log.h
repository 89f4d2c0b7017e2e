// The record of upstream requests the emulator received (GET /_emulator/requests).
#ifndef COPILOT_TESTS_EMULATOR_REQUEST_LOG_H_
#define COPILOT_TESTS_EMULATOR_REQUEST_LOG_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>

#include "nlohmann/json.hpp"
#include "tests/emulator/http_request.h"

namespace copilot::emulator {

struct RequestRecord {
  int64_t seq = 0;
  std::string method;
  std::string path;
  std::string query;
  nlohmann::json headers;  // {lower-case name: value}; repeated headers joined with ", "
  std::string body;
  std::string route;
  int status = 0;  // sent status, 0 while (or if) nothing was sent
  bool client_closed_early = false;
  bool finished = false;
  bool rate_limited = false;  // refused with 429 by the rate limits (not by a rate_limit fault)
  size_t response_bytes_sent = 0;  // accepted by the kernel so far (see ResponseProgress)
};

// Keeps the newest `max_records` records, oldest first. Not thread-safe (loop thread only).
class RequestLog {
 public:
  explicit RequestLog(size_t max_records) : max_records_(max_records) {}

  // Records `request` under `route` and returns its sequence number (1, 2, ...).
  int64_t Append(const HttpRequest& request, absl::string_view route);
  // Updates a record if it is still kept.
  void SetStatus(int64_t seq, int status);
  void SetFinished(int64_t seq, bool client_closed_early);
  void SetResponseBytesSent(int64_t seq, size_t bytes);
  void SetRateLimited(int64_t seq);
  void Clear() { records_.clear(); }
  nlohmann::json ToJson() const;
  size_t size() const { return records_.size(); }

 private:
  RequestRecord* Find(int64_t seq);

  size_t max_records_;
  int64_t next_seq_ = 1;
  std::deque<RequestRecord> records_;
};

}  // namespace copilot::emulator

#endif  // COPILOT_TESTS_EMULATOR_REQUEST_LOG_H_
