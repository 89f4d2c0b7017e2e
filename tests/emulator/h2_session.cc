#include "tests/emulator/h2_session.h"

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "tests/emulator/http_server.h"

namespace copilot::emulator {
namespace {

constexpr size_t kNoLimit = std::numeric_limits<size_t>::max();
// Time between the last bytes before an injected reset and the RST (as for HTTP/1.1).
constexpr absl::Duration kResetGrace = absl::Milliseconds(20);

absl::string_view View(const uint8_t* data, size_t length) {
  return {reinterpret_cast<const char*>(data), length};
}

// Connection-specific headers HTTP/2 forbids (RFC 9113 8.2.2); the server adds its own framing.
bool Forbidden(absl::string_view lower_name) {
  return lower_name == "connection" || lower_name == "keep-alive" ||
         lower_name == "proxy-connection" || lower_name == "transfer-encoding" ||
         lower_name == "upgrade" || lower_name == "content-length";
}

}  // namespace

struct H2Session::Stream {
  int32_t id = 0;
  HttpRequest request;
  size_t header_bytes = 0;
  bool too_large_headers = false;
  bool too_large_body = false;
  bool dispatched = false;
  bool refused = false;  // RST_STREAM REFUSED_STREAM submitted

  // The response, once dispatched.
  ResponsePlan plan;
  EventLoop::TimerId timer = 0;
  bool finished = true;
  bool headers_sent = false;
  size_t next_part = 0;
  size_t body_sent = 0;  // body bytes queued
  size_t budget = kNoLimit;
  // Queued body bytes; the data provider has taken the first `pending_taken` of them. (Taken
  // from the front one frame at a time, erasing would move the rest each time: quadratic, 2 GiB
  // of memmove for an 8 MiB answer.)
  std::string pending;
  size_t pending_taken = 0;
  bool all_queued = false;
  bool eof_sent = false;
  bool stalled = false;
  bool reset_pending = false;
  bool deferred = false;
  size_t bytes_sent = 0;  // header block (approximately) and body bytes handed to the session
};

// nghttp2's C callbacks, forwarding to the session.
struct H2Session::Callbacks {
  static H2Session& Self(void* user_data) { return *static_cast<H2Session*>(user_data); }

  static int OnBeginHeaders(nghttp2_session* /*session*/, const nghttp2_frame* frame,
                            void* user_data) {
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    H2Session& self = Self(user_data);
    auto stream = std::make_unique<Stream>();
    stream->id = frame->hd.stream_id;
    stream->request.version_minor = 1;
    self.streams_[stream->id] = std::move(stream);
    return 0;
  }

  static int OnHeader(nghttp2_session* /*session*/, const nghttp2_frame* frame, const uint8_t* name,
                      size_t name_length, const uint8_t* value, size_t value_length,
                      uint8_t /*flags*/, void* user_data) {
    H2Session& self = Self(user_data);
    auto it = self.streams_.find(frame->hd.stream_id);
    if (it == self.streams_.end()) return 0;
    Stream& stream = *it->second;
    stream.header_bytes += name_length + value_length + 32;
    if (stream.header_bytes > self.options_.max_header_bytes) {
      stream.too_large_headers = true;
      return 0;
    }
    const absl::string_view key = View(name, name_length);
    const absl::string_view text = View(value, value_length);
    HttpRequest& request = stream.request;
    if (key == ":method") {
      request.method = std::string(text);
    } else if (key == ":path") {
      request.target = std::string(text);
      const size_t question = text.find('?');
      request.path = std::string(text.substr(0, question));
      request.query =
          question == absl::string_view::npos ? "" : std::string(text.substr(question + 1));
    } else if (key == ":authority") {
      request.headers.emplace_back("host", std::string(text));
    } else if (!key.empty() && key[0] != ':') {
      request.headers.emplace_back(std::string(key), std::string(text));
    }
    return 0;
  }

  static int OnDataChunk(nghttp2_session* /*session*/, uint8_t /*flags*/, int32_t stream_id,
                         const uint8_t* data, size_t length, void* user_data) {
    H2Session& self = Self(user_data);
    auto it = self.streams_.find(stream_id);
    if (it == self.streams_.end()) return 0;
    Stream& stream = *it->second;
    if (stream.request.body.size() + length > self.options_.max_body_bytes) {
      stream.too_large_body = true;
      return 0;
    }
    if (!stream.too_large_body)
      stream.request.body.append(reinterpret_cast<const char*>(data), length);
    return 0;
  }

  static int OnFrameRecv(nghttp2_session* /*session*/, const nghttp2_frame* frame,
                         void* user_data) {
    if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) == 0) {
      return 0;
    }
    H2Session& self = Self(user_data);
    auto it = self.streams_.find(frame->hd.stream_id);
    if (it == self.streams_.end() || it->second->dispatched || it->second->refused) return 0;
    self.Dispatch(*it->second);
    return 0;
  }

  static int OnStreamClose(nghttp2_session* /*session*/, int32_t stream_id, uint32_t error_code,
                           void* user_data) {
    H2Session& self = Self(user_data);
    auto it = self.streams_.find(stream_id);
    if (it == self.streams_.end()) return 0;
    Stream& stream = *it->second;
    if (stream.timer != 0) self.loop_.CancelTimer(stream.timer);
    if (stream.dispatched) {
      --self.active_requests_;
      const bool completed = stream.eof_sent && error_code == NGHTTP2_NO_ERROR;
      // Our own injected resets are not the client's doing; anything else that cut the stream
      // short (RST_STREAM CANCEL, the connection gone) is.
      self.Finish(stream, completed, !completed && !stream.reset_pending && !stream.stalled);
    }
    self.streams_.erase(it);
    return 0;
  }

  static ssize_t ReadBody(nghttp2_session* /*session*/, int32_t stream_id, uint8_t* buffer,
                          size_t length, uint32_t* data_flags, nghttp2_data_source* /*source*/,
                          void* user_data) {
    H2Session& self = Self(user_data);
    auto it = self.streams_.find(stream_id);
    if (it == self.streams_.end()) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    Stream& stream = *it->second;
    const size_t n = std::min(length, stream.pending.size() - stream.pending_taken);
    std::memcpy(buffer, stream.pending.data() + stream.pending_taken, n);
    stream.pending_taken += n;
    if (stream.pending_taken == stream.pending.size()) {
      stream.pending.clear();
      stream.pending_taken = 0;
    }
    stream.bytes_sent += n;
    if (stream.pending.empty() && stream.all_queued) {
      *data_flags |= NGHTTP2_DATA_FLAG_EOF;
      stream.eof_sent = true;
      return static_cast<ssize_t>(n);
    }
    if (n == 0) {
      stream.deferred = true;
      if (stream.reset_pending && stream.timer == 0) {
        const int32_t id = stream.id;
        stream.timer = self.loop_.AddTimer(
            kResetGrace, [&self, id] { self.OnStreamTimer(id, &H2Session::ResetStep); });
      }
      return NGHTTP2_ERR_DEFERRED;
    }
    return static_cast<ssize_t>(n);
  }
};

H2Session::H2Session(EventLoop& loop, RequestHandler& handler, H2Options options,
                     std::function<void()> wake)
    : loop_(loop), handler_(handler), options_(options), wake_(std::move(wake)) {}

H2Session::~H2Session() {
  for (auto& [id, stream] : streams_) {
    if (stream->timer != 0) loop_.CancelTimer(stream->timer);
    // Our injected resets and stalls are not the client's doing.
    if (stream->dispatched) {
      Finish(*stream, false, /*client_closed_early=*/!stream->reset_pending && !stream->stalled);
    }
  }
  streams_.clear();
  if (session_ != nullptr) nghttp2_session_del(session_);
}

absl::Status H2Session::Start() {
  nghttp2_session_callbacks* callbacks = nullptr;
  if (nghttp2_session_callbacks_new(&callbacks) != 0) {
    return absl::ResourceExhaustedError("nghttp2_session_callbacks_new");
  }
  nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, &Callbacks::OnBeginHeaders);
  nghttp2_session_callbacks_set_on_header_callback(callbacks, &Callbacks::OnHeader);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, &Callbacks::OnDataChunk);
  nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, &Callbacks::OnFrameRecv);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, &Callbacks::OnStreamClose);
  const int created = nghttp2_session_server_new(&session_, callbacks, this);
  nghttp2_session_callbacks_del(callbacks);
  if (created != 0) return absl::ResourceExhaustedError("nghttp2_session_server_new");
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, options_.max_concurrent_streams},
  };
  if (int rv = nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, 1); rv != 0) {
    return absl::InternalError(absl::StrCat("nghttp2_submit_settings: ", nghttp2_strerror(rv)));
  }
  return absl::OkStatus();
}

absl::Status H2Session::Receive(absl::string_view data) {
  const ssize_t n = nghttp2_session_mem_recv(
      session_, reinterpret_cast<const uint8_t*>(data.data()), data.size());
  if (n < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("HTTP/2: ", nghttp2_strerror(static_cast<int>(n))));
  }
  return absl::OkStatus();
}

absl::Status H2Session::CollectOutput(std::string& out, size_t max_bytes) {
  // Bounded per call: a client that opened a large flow-control window and reads slowly must not
  // make the server buffer every answer at once; the rest waits in the session.
  while (out.size() < max_bytes) {
    const uint8_t* data = nullptr;
    const ssize_t n = nghttp2_session_mem_send(session_, &data);
    if (n < 0) {
      return absl::InternalError(absl::StrCat("HTTP/2: ", nghttp2_strerror(static_cast<int>(n))));
    }
    if (n == 0) return absl::OkStatus();
    out.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

bool H2Session::Done() const {
  return nghttp2_session_want_read(session_) == 0 && nghttp2_session_want_write(session_) == 0;
}

void H2Session::GoAway() {
  if (goaway_sent_) return;
  SendGoAway();
  // Streams that started but were not handed to the handler are above the GOAWAY: refused.
  std::vector<int32_t> refused;
  for (const auto& [id, stream] : streams_) {
    if (!stream->dispatched) refused.push_back(id);
  }
  for (int32_t id : refused) Refuse(id);
}

void H2Session::SendGoAway() {
  goaway_sent_ = true;
  ++stats_.goaways_sent;
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE, last_dispatched_, NGHTTP2_NO_ERROR, nullptr,
                        0);
}

void H2Session::Refuse(int32_t stream_id) {
  auto it = streams_.find(stream_id);
  if (it != streams_.end()) {
    if (it->second->refused) return;
    it->second->refused = true;
  }
  ++stats_.refused_streams;
  nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_REFUSED_STREAM);
}

void H2Session::Dispatch(Stream& stream) {
  ++streams_seen_;
  if (goaway_sent_ || (options_.refuse_every > 0 && streams_seen_ % options_.refuse_every == 0)) {
    Refuse(stream.id);
    return;
  }
  stream.dispatched = true;
  ++active_requests_;
  ++stats_.requests;
  last_dispatched_ = std::max(last_dispatched_, stream.id);
  if (stream.too_large_headers || stream.too_large_body) {
    stream.plan.status = stream.too_large_headers ? 431 : 413;
    stream.plan.headers.emplace_back("Content-Type", "application/json");
    stream.plan.body_parts.push_back(stream.too_large_headers
                                         ? R"({"detail":"Request header fields too large"})"
                                         : R"({"detail":"Request body too large"})");
  } else {
    stream.plan = handler_.Handle(std::move(stream.request));
  }
  stream.finished = false;
  if (options_.goaway_after_requests > 0 && stats_.requests == options_.goaway_after_requests) {
    GoAway();
  }
  const int32_t id = stream.id;
  if (stream.plan.start_delay > absl::ZeroDuration()) {
    stream.timer = loop_.AddTimer(stream.plan.start_delay,
                                  [this, id] { OnStreamTimer(id, &H2Session::Begin); });
    return;
  }
  Begin(id);
}

void H2Session::Begin(int32_t stream_id) {
  auto it = streams_.find(stream_id);
  if (it == streams_.end()) return;
  Stream& stream = *it->second;
  const ResponsePlan& plan = stream.plan;
  if (plan.interruption == Interruption::kResetBeforeHeaders) {
    stream.reset_pending = true;
    reset_requested_ = true;
    return;
  }
  if (plan.interruption == Interruption::kResetAfterBytes) {
    stream.budget = plan.interrupt_after_bytes.value_or(plan.BodySize() / 2);
  } else if (plan.interruption == Interruption::kStallAfterBytes) {
    stream.budget = plan.interrupt_after_bytes.value_or(0);
  }
  std::vector<std::pair<std::string, std::string>> fields;
  fields.emplace_back(":status", absl::StrCat(plan.status));
  for (const auto& [name, value] : plan.headers) {
    std::string lower = absl::AsciiStrToLower(name);
    if (!Forbidden(lower)) fields.emplace_back(std::move(lower), value);
  }
  if (!plan.chunked && plan.status != 204 && plan.status != 304) {
    fields.emplace_back("content-length", absl::StrCat(plan.BodySize()));
  }
  std::vector<nghttp2_nv> nva;
  nva.reserve(fields.size());
  for (auto& [name, value] : fields) {
    nva.push_back(nghttp2_nv{reinterpret_cast<uint8_t*>(name.data()),
                             reinterpret_cast<uint8_t*>(value.data()), name.size(), value.size(),
                             NGHTTP2_NV_FLAG_NONE});
    stream.bytes_sent += name.size() + value.size();
  }
  nghttp2_data_provider provider{};
  provider.read_callback = &Callbacks::ReadBody;
  if (int rv = nghttp2_submit_response(session_, stream_id, nva.data(), nva.size(), &provider);
      rv != 0) {
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_INTERNAL_ERROR);
    return;
  }
  stream.headers_sent = true;
  if (plan.on_progress) {
    plan.on_progress(ResponseProgress{
        .headers_sent = true, .status = plan.status, .bytes_sent = stream.bytes_sent});
  }
  EmitParts(stream);
}

void H2Session::EmitParts(Stream& stream) {
  const ResponsePlan& plan = stream.plan;
  const bool interrupting = plan.interruption != Interruption::kNone;
  while (true) {
    if (stream.next_part >= plan.body_parts.size() ||
        (interrupting && stream.body_sent >= stream.budget)) {
      if (interrupting) {
        if (plan.interruption == Interruption::kStallAfterBytes) {
          stream.stalled = true;
        } else {
          stream.reset_pending = true;
        }
      } else {
        stream.all_queued = true;
      }
      break;
    }
    const std::string& part = plan.body_parts[stream.next_part];
    ++stream.next_part;
    if (part.empty()) continue;
    const size_t n = std::min(part.size(), stream.budget - stream.body_sent);
    stream.pending.append(part, 0, n);
    stream.body_sent += n;
    if (n < part.size()) continue;  // cut short: the loop head interrupts
    if (plan.chunked && plan.part_interval > absl::ZeroDuration() &&
        stream.next_part < plan.body_parts.size()) {
      const int32_t id = stream.id;
      stream.timer = loop_.AddTimer(plan.part_interval,
                                    [this, id] { OnStreamTimer(id, &H2Session::EmitStep); });
      break;
    }
  }
  if (stream.deferred) {
    stream.deferred = false;
    nghttp2_session_resume_data(session_, stream.id);
  }
}

void H2Session::OnStreamTimer(int32_t stream_id, void (H2Session::*step)(int32_t)) {
  auto it = streams_.find(stream_id);
  if (it == streams_.end()) return;
  it->second->timer = 0;
  (this->*step)(stream_id);
  wake_();  // Last: the owner may destroy this session.
}

void H2Session::EmitStep(int32_t stream_id) {
  auto it = streams_.find(stream_id);
  if (it != streams_.end()) EmitParts(*it->second);
}

void H2Session::ResetStep(int32_t /*stream_id*/) { reset_requested_ = true; }

void H2Session::Finish(Stream& stream, bool completed, bool client_closed_early) {
  if (stream.finished) return;
  stream.finished = true;
  if (stream.plan.on_progress) {
    stream.plan.on_progress(ResponseProgress{.headers_sent = stream.headers_sent,
                                             .status = stream.headers_sent ? stream.plan.status : 0,
                                             .finished = true,
                                             .completed = completed,
                                             .client_closed_early = client_closed_early,
                                             .bytes_sent = stream.bytes_sent});
  }
}

}  // namespace copilot::emulator
