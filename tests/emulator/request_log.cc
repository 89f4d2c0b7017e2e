#include "tests/emulator/request_log.h"

#include "absl/strings/str_cat.h"

namespace copilot::emulator {

using nlohmann::json;

int64_t RequestLog::Append(const HttpRequest& request, absl::string_view route) {
  RequestRecord record;
  record.seq = next_seq_++;
  record.method = request.method;
  record.path = request.path;
  record.query = request.query;
  record.headers = json::object();
  for (const auto& [name, value] : request.headers) {
    auto it = record.headers.find(name);
    if (it == record.headers.end()) {
      record.headers[name] = value;
    } else {
      *it = absl::StrCat(it->get<std::string>(), ", ", value);
    }
  }
  record.body = request.body;
  record.route = std::string(route);
  if (max_records_ == 0) return record.seq;
  while (records_.size() >= max_records_) records_.pop_front();
  records_.push_back(std::move(record));
  return records_.back().seq;
}

RequestRecord* RequestLog::Find(int64_t seq) {
  // Sequence numbers are dense and increasing, but Clear() may have dropped a prefix.
  if (records_.empty() || seq < records_.front().seq || seq > records_.back().seq) return nullptr;
  RequestRecord& r = records_[static_cast<size_t>(seq - records_.front().seq)];
  return r.seq == seq ? &r : nullptr;
}

void RequestLog::SetStatus(int64_t seq, int status) {
  if (RequestRecord* r = Find(seq)) r->status = status;
}

void RequestLog::SetFinished(int64_t seq, bool client_closed_early) {
  if (RequestRecord* r = Find(seq)) {
    r->finished = true;
    r->client_closed_early = client_closed_early;
  }
}

void RequestLog::SetResponseBytesSent(int64_t seq, size_t bytes) {
  if (RequestRecord* r = Find(seq)) r->response_bytes_sent = bytes;
}

void RequestLog::SetRateLimited(int64_t seq) {
  if (RequestRecord* r = Find(seq)) r->rate_limited = true;
}

json RequestLog::ToJson() const {
  json out = json::array();
  for (const RequestRecord& r : records_) {
    out.push_back(json{{"seq", r.seq},
                       {"method", r.method},
                       {"path", r.path},
                       {"query", r.query},
                       {"headers", r.headers},
                       {"body", r.body},
                       {"route", r.route},
                       {"status", r.status},
                       {"client_closed_early", r.client_closed_early},
                       {"finished", r.finished},
                       {"rate_limited", r.rate_limited},
                       {"response_bytes_sent", r.response_bytes_sent}});
  }
  return out;
}

}  // namespace copilot::emulator
