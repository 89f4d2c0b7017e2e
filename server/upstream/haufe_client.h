// HaufeClient: the production HaufeApi. REST paths, headers, JSON <-> proto and the one HTTP
// status table (http_status_table.h), over an injected HttpTransport.
#ifndef COPILOT_GATEWAY_SERVER_UPSTREAM_HAUFE_CLIENT_H_
#define COPILOT_GATEWAY_SERVER_UPSTREAM_HAUFE_CLIENT_H_

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/transport/http_transport.h"
#include "server/upstream/decode_pool.h"
#include "server/upstream/haufe_api.h"
#include "server/upstream/response_memory.h"

namespace copilot::gateway {

// Plain data, validated by whoever builds it (the config loader).
struct HaufeClientConfig {
  // Base URL without the version, e.g. "https://api.haufe.ai/agents"; "/v1/..." is appended.
  std::string base_url = "https://api.haufe.ai/agents";
  // Bound on establishing a connection (UNAVAILABLE "upstream_unreachable" after it).
  absl::Duration connect_timeout = absl::Seconds(5);
  // No response byte for this long while not paused: "upstream_stalled" (INTERNAL on a POST,
  // which may have been carried out; UNAVAILABLE on GET and DELETE).
  absl::Duration stall_timeout = absl::Seconds(60);
  // Bound on one response body, also on a whole stream: INTERNAL "upstream_response_too_large".
  std::size_t max_response_bytes = 16 * 1024 * 1024;
  // Bound on one NDJSON line of a stream: INTERNAL "upstream_stream_line_too_long".
  std::size_t max_ndjson_line_bytes = 1024 * 1024;
  // Sent as `user-agent: copilot-gateway/<version>`; empty: the version this was built as.
  std::string version;
  // Answers larger than this are decoded on the DecodePool (when there is one), not on the
  // transport's event loop thread.
  std::size_t inline_decode_bytes = 64 * 1024;
  // Each tenant's requests go over connections of their own (HttpRequest::connection_pool is
  // the tenant's ID): over HTTP/2, one tenant's answers never queue in front of another's.
  bool connections_per_tenant = true;
};

// Thread-safe: the object is immutable after construction; each call owns its own state, which
// only the transport's event loop thread touches (plus a mutex-guarded handle for Cancel and
// Resume). Callbacks and sinks run on the transport's event loop thread, except for a request
// rejected before it was sent (an empty upstream ID), whose callback runs inline with
// INVALID_ARGUMENT.
//
// Streams: each complete NDJSON line goes to ChunkSink::OnChunk as soon as it arrives. When
// OnChunk returns false the transfer is paused (HttpTransferHandler::OnData returns false) and
// the lines already received wait until UpstreamCall::Resume(); they are delivered on the next
// OnData call, which the transport makes after Resume (CurlTransport makes one with an empty
// piece). An upstream error line (`error_code`, no `delta`) ends the stream with that error;
// a stream cut mid-line ends with INTERNAL "upstream_stream_truncated"; transport failures
// keep the transport's status ("upstream_reset" / "upstream_stalled": UNAVAILABLE before the
// first response byte, INTERNAL after it on a POST).
// Completion of a buffered call: the 2xx body or the mapped error, and the HTTP status (0 when
// no response arrived).
using BufferedDone = absl::AnyInvocable<void(absl::StatusOr<std::string>, int) &&>;

class HaufeClient final : public HaufeApi {
 public:
  // `now` is the wall clock used only to read HTTP-date Retry-After headers. `memory`, when
  // given (it must outlive the client), bounds the response bytes held over all calls: a
  // response that would pass it fails (ResponseMemoryExhausted). `decode_pool`, when given (it
  // must outlive the client), decodes answers and error bodies over config.inline_decode_bytes,
  // and their callbacks then run on its threads.
  HaufeClient(
      HaufeClientConfig config, std::shared_ptr<HttpTransport> transport,
      std::function<absl::Time()> now = [] { return absl::Now(); },
      ResponseMemory* memory = nullptr, DecodePool* decode_pool = nullptr);

  std::shared_ptr<UpstreamCall> ListAssistants(
      const UpstreamCallOptions& options,
      UpstreamCallback<std::vector<copilot::v1::Assistant>> done) override;
  std::shared_ptr<UpstreamCall> GetAssistant(
      const UpstreamCallOptions& options, const std::string& assistant_id,
      UpstreamCallback<copilot::v1::Assistant> done) override;
  std::shared_ptr<UpstreamCall> CreateThread(const UpstreamCallOptions& options,
                                             const CreateThreadParams& params,
                                             UpstreamCallback<copilot::v1::Thread> done) override;
  std::shared_ptr<UpstreamCall> GetThread(const UpstreamCallOptions& options,
                                          const std::string& thread_id,
                                          UpstreamCallback<copilot::v1::Thread> done) override;
  std::shared_ptr<UpstreamCall> DeleteThread(const UpstreamCallOptions& options,
                                             const std::string& thread_id,
                                             UpstreamDoneCallback done) override;
  std::shared_ptr<UpstreamCall> AddMessage(const UpstreamCallOptions& options,
                                           const std::string& thread_id,
                                           const copilot::v1::MessageInput& message,
                                           UpstreamCallback<copilot::v1::Message> done) override;
  std::shared_ptr<UpstreamCall> ListMessages(const UpstreamCallOptions& options,
                                             const std::string& thread_id, int page_size,
                                             const std::string& cursor,
                                             UpstreamCallback<MessagePage> done) override;
  std::shared_ptr<UpstreamCall> Run(const UpstreamCallOptions& options, const RunParams& params,
                                    UpstreamCallback<copilot::v1::Message> done) override;
  std::shared_ptr<UpstreamCall> StreamRun(const UpstreamCallOptions& options,
                                          const RunParams& params,
                                          std::shared_ptr<ChunkSink> sink) override;
  std::shared_ptr<UpstreamCall> Complete(const UpstreamCallOptions& options,
                                         const CompletionParams& params,
                                         UpstreamCallback<copilot::v1::Message> done) override;
  std::shared_ptr<UpstreamCall> StreamComplete(const UpstreamCallOptions& options,
                                               const CompletionParams& params,
                                               std::shared_ptr<ChunkSink> sink) override;

 private:
  // The request for `method` on `path_and_query` ("/v1/..."), with the common headers.
  HttpRequest MakeRequest(const UpstreamCallOptions& options, absl::string_view method,
                          absl::string_view path_and_query, std::string body, bool stream) const;
  // Starts a buffered call: `done` gets the 2xx body or the mapped error.
  std::shared_ptr<UpstreamCall> StartBuffered(const UpstreamCallOptions& options,
                                              HttpRequest request, BufferedDone done);
  std::shared_ptr<UpstreamCall> StartStream(const UpstreamCallOptions& options, HttpRequest request,
                                            std::shared_ptr<ChunkSink> sink);

  const HaufeClientConfig config_;
  const std::string base_url_;  // config_.base_url without a trailing '/'.
  const std::shared_ptr<HttpTransport> transport_;
  const std::function<absl::Time()> now_;
  ResponseMemory* const memory_;
  DecodePool* const decode_pool_;
};

// Percent-encodes `text` for use as one URL path segment or query value (RFC 3986 unreserved
// characters stay as they are).
std::string UrlEncode(absl::string_view text);

// The metric label of a request: "GET /v1/threads/{thread_id}/messages" for
// ("GET", "/v1/threads/abc/messages?limit=5"). IDs become placeholders; the query is dropped.
std::string EndpointTemplate(absl::string_view method, absl::string_view path_and_query);

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_UPSTREAM_HAUFE_CLIENT_H_
