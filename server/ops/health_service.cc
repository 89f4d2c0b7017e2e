#include "server/ops/health_service.h"

#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/common/errors.h"
#include "server/common/grpc_status.h"

namespace copilot::gateway {

using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

// One Watch stream's state, shared by the reactor (gRPC's threads) and the service (whoever
// sets a status). The reactor is touched only by whoever holds the write slot (`writing`) or
// sets `finished` while no write is in flight: it is never used after Finish.
struct HealthService::Watcher {
  std::string service;
  absl::Mutex mu;
  WatchReactor* reactor ABSL_GUARDED_BY(mu) = nullptr;
  bool writing ABSL_GUARDED_BY(mu) = false;
  bool cancelled ABSL_GUARDED_BY(mu) = false;
  bool finished ABSL_GUARDED_BY(mu) = false;
  uint64_t version ABSL_GUARDED_BY(mu) = 0;  // Of the newest status taken.
  std::optional<Status> pending ABSL_GUARDED_BY(mu);
  HealthCheckResponse writing_response;  // Untouched while a write is in flight.
};

class HealthService::WatchReactor final : public grpc::ServerWriteReactor<HealthCheckResponse> {
 public:
  WatchReactor(HealthService& service, std::shared_ptr<Watcher> watcher)
      : service_(service), watcher_(std::move(watcher)) {
    absl::MutexLock lock(&watcher_->mu);
    watcher_->reactor = this;
  }

  // A status (of `version`) to send; the newest wins when writes are in flight.
  static void Notify(const std::shared_ptr<Watcher>& watcher, Status status, uint64_t version) {
    WatchReactor* reactor = nullptr;
    {
      absl::MutexLock lock(&watcher->mu);
      if (watcher->finished || watcher->cancelled || version < watcher->version) return;
      watcher->version = version;
      if (watcher->writing) {
        watcher->pending = status;
        return;
      }
      watcher->writing = true;
      watcher->writing_response.set_status(status);
      reactor = watcher->reactor;
    }
    reactor->StartWrite(&watcher->writing_response);
  }

  void OnWriteDone(bool ok) override {
    bool write = false;
    bool finish = false;
    {
      absl::MutexLock lock(&watcher_->mu);
      watcher_->writing = false;
      if (!ok || watcher_->cancelled) {
        finish = !watcher_->finished;
        watcher_->finished = true;
      } else if (watcher_->pending.has_value()) {
        watcher_->writing = true;
        watcher_->writing_response.set_status(*watcher_->pending);
        watcher_->pending.reset();
        write = true;
      }
    }
    if (write) StartWrite(&watcher_->writing_response);
    if (finish) {
      Finish(ToGrpcStatus(MakeError(absl::StatusCode::kCancelled,
                                    "the watch ended: a status could not be sent", "watch_ended")));
    }
  }

  void OnCancel() override {
    bool finish = false;
    {
      absl::MutexLock lock(&watcher_->mu);
      watcher_->cancelled = true;  // A write in flight finishes it in OnWriteDone.
      if (!watcher_->finished && !watcher_->writing) {
        watcher_->finished = true;
        finish = true;
      }
    }
    if (finish) Finish(ToGrpcStatus(CancelledByCaller()));
  }

  void OnDone() override {
    service_.Unregister(watcher_);
    delete this;
  }

 private:
  HealthService& service_;
  const std::shared_ptr<Watcher> watcher_;
};

namespace {

// A Watch refused at once (too many open).
class RefusedWatch final : public grpc::ServerWriteReactor<HealthCheckResponse> {
 public:
  explicit RefusedWatch(int max_watches) {
    Finish(ToGrpcStatus(
        MakeError(absl::StatusCode::kResourceExhausted,
                  absl::StrCat("at most ", max_watches, " health Watch streams at once; use Check"),
                  "too_many_health_watches", {{"max_watches", absl::StrCat(max_watches)}})));
  }
  void OnDone() override { delete this; }
};

}  // namespace

HealthService::Status HealthService::StatusOf(const std::string& service) const {
  auto it = statuses_.find(service);
  return it == statuses_.end() ? HealthCheckResponse::SERVICE_UNKNOWN : it->second;
}

void HealthService::SetServingStatus(const std::string& service, bool serving) {
  const Status status = serving ? HealthCheckResponse::SERVING : HealthCheckResponse::NOT_SERVING;
  std::vector<std::shared_ptr<Watcher>> watchers;
  uint64_t version = 0;
  {
    absl::MutexLock lock(&mu_);
    statuses_[service] = status;
    version = ++version_;
    for (const auto& watcher : watchers_) {
      if (watcher->service == service) watchers.push_back(watcher);
    }
  }
  for (const auto& watcher : watchers) WatchReactor::Notify(watcher, status, version);
}

grpc::ServerUnaryReactor* HealthService::Check(grpc::CallbackServerContext* context,
                                               const HealthCheckRequest* request,
                                               HealthCheckResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  std::optional<Status> status;
  {
    absl::MutexLock lock(&mu_);
    auto it = statuses_.find(request->service());
    if (it != statuses_.end()) status = it->second;
  }
  if (!status.has_value()) {
    reactor->Finish(ToGrpcStatus(MakeError(absl::StatusCode::kNotFound, "unknown service",
                                           "health_service_unknown",
                                           {{"service", TruncateUtf8(request->service(), 128)}})));
    return reactor;
  }
  response->set_status(*status);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerWriteReactor<HealthCheckResponse>* HealthService::Watch(
    grpc::CallbackServerContext* context, const HealthCheckRequest* request) {
  auto watcher = std::make_shared<Watcher>();
  watcher->service = request->service();
  Status status;
  uint64_t version = 0;
  {
    absl::MutexLock lock(&mu_);
    if (static_cast<int>(watchers_.size()) >= max_watches_) return new RefusedWatch(max_watches_);
    watchers_.insert(watcher);
    status = StatusOf(watcher->service);
    version = version_;
  }
  auto* reactor = new WatchReactor(*this, watcher);
  WatchReactor::Notify(watcher, status, version);
  return reactor;
}

void HealthService::Unregister(const std::shared_ptr<Watcher>& watcher) {
  absl::MutexLock lock(&mu_);
  watchers_.erase(watcher);
}

int HealthService::watches() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(watchers_.size());
}

}  // namespace copilot::gateway
