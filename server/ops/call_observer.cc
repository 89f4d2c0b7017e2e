#include "server/ops/call_observer.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "google/rpc/error_details.pb.h"
#include "server/common/crypto.h"
#include "server/common/errors.h"
#include "server/common/log.h"

namespace copilot::gateway {
namespace {

bool IsLowerHex(absl::string_view text) {
  return std::all_of(text.begin(), text.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

bool AllZero(absl::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char c) { return c == '0'; });
}

}  // namespace

std::string RequestIdFor(std::optional<absl::string_view> from_caller) {
  if (from_caller.has_value() && !from_caller->empty() && from_caller->size() <= 128 &&
      std::all_of(from_caller->begin(), from_caller->end(), [](char c) {
        return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
               absl::string_view("._:/+=-").find(c) != absl::string_view::npos;
      })) {
    return std::string(*from_caller);
  }
  return absl::BytesToHexString(IdentifierBytes(16));
}

std::string TraceparentFor(std::optional<absl::string_view> from_caller) {
  const std::string span = absl::BytesToHexString(IdentifierBytes(8));
  // version "00": 00-<32 hex trace-id>-<16 hex parent-id>-<2 hex flags>, lower case.
  if (from_caller.has_value() && from_caller->size() == 55) {
    const absl::string_view text = *from_caller;
    const absl::string_view trace_id = text.substr(3, 32);
    const absl::string_view parent = text.substr(36, 16);
    const absl::string_view flags = text.substr(53, 2);
    if (text.substr(0, 3) == "00-" && text[35] == '-' && text[52] == '-' && IsLowerHex(trace_id) &&
        IsLowerHex(parent) && IsLowerHex(flags) && !AllZero(trace_id) && !AllZero(parent)) {
      return absl::StrCat("00-", trace_id, "-", span, "-", flags);
    }
  }
  return absl::StrCat("00-", absl::BytesToHexString(IdentifierBytes(16)), "-", span, "-00");
}

CallObserver::CallObserver(GatewayMetrics* metrics, absl::string_view method, bool server_stream,
                           std::shared_ptr<CallTrace> trace, std::string peer, CallGate* gate)
    : metrics_(metrics),
      method_(metrics != nullptr ? metrics->FindMethod(method) : nullptr),
      method_name_(method),
      server_stream_(server_stream),
      trace_(std::move(trace)),
      peer_(std::move(peer)),
      start_(std::chrono::steady_clock::now()),
      gate_(gate),
      refused_(gate != nullptr && !gate->Enter(peer_)) {
  if (method_ != nullptr) {
    method_->started->Increment();
    method_->msg_received->Increment();
    metrics_->calls_in_flight().Increment();
  }
}

void CallObserver::Done() {
  if (done_.exchange(true)) return;
  // The overhead runs to gRPC's end of the call (its status handed to the transport), not to
  // Finish: what the caller waits for after the upstream answered includes sending it.
  if (method_ != nullptr && finished_.load()) {
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    method_->overhead->Observe(
        std::max(0.0, seconds - absl::ToDoubleSeconds(trace_->upstream_time())));
  }
  if (gate_ != nullptr && !refused_) gate_->Leave(peer_);
}

void CallObserver::MessageSent() {
  if (method_ != nullptr) method_->msg_sent->Increment();
}

void CallObserver::Finished(const absl::Status& status) {
  if (finished_.exchange(true)) return;
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double upstream_seconds = absl::ToDoubleSeconds(trace_->upstream_time());
  const int code = static_cast<int>(status.code());
  std::string tenant = trace_->tenant();
  if (tenant.empty() && status.code() == absl::StatusCode::kUnauthenticated) {
    tenant = "unauthenticated";
  }
  if (method_ != nullptr) {
    // A unary call sends its one response message only on success (as go-grpc-prometheus).
    if (!server_stream_ && status.ok()) method_->msg_sent->Increment();
    const int index = code >= 0 && code < kGrpcCodeCount ? code : 2;  // 2: Unknown.
    method_->handled[static_cast<std::size_t>(index)]->Increment();
    method_->handling->Observe(seconds);
    if (!tenant.empty()) metrics_->CountTenantCall(tenant, *method_, code);
    metrics_->calls_in_flight().Decrement();
  }
  if (!LogEnabled(LogLevel::kInfo)) return;
  JsonLogLine line(LogLevel::kInfo, "call");
  line.AddString("method", method_name_)
      .AddString("grpc_code", GrpcCodeName(code))
      .AddDouble("duration_ms", std::round(seconds * 1e6) / 1e3);
  if (!tenant.empty()) line.AddString("tenant", tenant);
  line.AddString("request_id", trace_->request_id())
      .AddString("trace_id", trace_->traceparent().substr(3, 32));
  if (const int requests = trace_->upstream_requests(); requests > 0) {
    line.AddInt("upstream_status", trace_->upstream_status())
        .AddDouble("upstream_ms", std::round(upstream_seconds * 1e6) / 1e3)
        .AddInt("upstream_requests", requests);
  }
  if (const std::optional<google::rpc::ErrorInfo> info = GetErrorInfo(status); info.has_value()) {
    line.AddString("error_reason", info->reason());
  }
  if (const std::string detail = trace_->upstream_error(); !detail.empty()) {
    line.AddString("upstream_error", detail);
  } else if (const std::string internal = GetInternalDetail(status); !internal.empty()) {
    line.AddString("error_detail", internal);  // E.g. why the limit store did not answer.
  }
  line.AddString("peer", peer_);
  LogText(LogLevel::kInfo, std::move(line).Text());
}

}  // namespace copilot::gateway
