// An HttpTransport the fuzz targets drive by hand, as CurlTransport would: a paused transfer
// gets no OnData until Resume (then one with an empty piece), a cancelled one gets
// OnComplete(CANCELLED). Single-threaded, like a fuzz target.
#ifndef COPILOT_TESTS_FUZZ_FAKE_TRANSPORT_H_
#define COPILOT_TESTS_FUZZ_FAKE_TRANSPORT_H_

#include <memory>
#include <utility>

#include "absl/status/status.h"
#include "server/common/errors.h"
#include "server/transport/http_transport.h"

namespace copilot::gateway::fuzz {

class FakeTransfer final : public HttpTransfer {
 public:
  void Cancel() override { cancelled = true; }
  void Resume() override { paused = false; }
  bool cancelled = false;
  bool paused = false;
};

class FakeTransport final : public HttpTransport {
 public:
  std::shared_ptr<HttpTransfer> Start(HttpRequest request,
                                      std::shared_ptr<HttpTransferHandler> handler) override {
    this->request = std::move(request);
    this->handler = std::move(handler);
    transfer = std::make_shared<FakeTransfer>();
    return transfer;
  }
  HttpRequest request;
  std::shared_ptr<HttpTransferHandler> handler;
  std::shared_ptr<FakeTransfer> transfer;
};

// The transport's own failures, as HttpTransferHandler::OnComplete documents them.
inline absl::Status TransportFailure(int which) {
  switch (which % 4) {
    case 0:
      return MakeError(absl::StatusCode::kUnavailable, "connection reset", "upstream_reset",
                       {{"headers_received", "true"}, {"response_started", "true"}});
    case 1:
      return MakeError(absl::StatusCode::kInternal, "stalled", "upstream_stalled",
                       {{"headers_received", "true"}, {"response_started", "true"}});
    case 2:
      return MakeError(absl::StatusCode::kDeadlineExceeded, "deadline", "upstream_timeout");
    default:
      return MakeError(absl::StatusCode::kInternal, "too large", "upstream_response_too_large");
  }
}

inline absl::Status Cancelled() {
  return MakeError(absl::StatusCode::kCancelled, "cancelled", "upstream_call_cancelled");
}

}  // namespace copilot::gateway::fuzz

#endif  // COPILOT_TESTS_FUZZ_FAKE_TRANSPORT_H_
