// H2StreamRefusals: tells the upstream event loop when the upstream refused one of its HTTP/2
// streams, i.e. said it did not process the request (RFC 9113 section 8.7): RST_STREAM with
// REFUSED_STREAM, or a GOAWAY whose last stream ID is below the stream's (nghttp2 closes such
// streams with REFUSED_STREAM too).
//
// libcurl (7.88) does not say why a stream closed: it re-sends a request on a new connection
// both when its stream was refused (safe for any method) and when a reused connection died
// under it (not safe for a POST: the upstream may have carried it out). To tell the two apart,
// this file interposes nghttp2_session_callbacks_set_on_stream_close_callback (the executable's
// definition comes first in the dynamic linker's lookup order; the library exports it with
// --export-dynamic-symbol): when libcurl installs its stream-close callback, a wrapper is
// installed in its place that reports refused streams and then calls libcurl's. Callbacks of
// any other nghttp2 user in the process are passed through untouched.
//
// The same wrapper says when libcurl sets up an HTTP/2 session (it installs its callbacks once
// per connection that negotiated h2): the loop sizes its connection bound from that
// (CurlTransportOptions::max_connections).
//
// Where the interposition is not in effect (a libcurl linked to nghttp2 statically, or one that
// installs the callback some other way) nothing is ever reported, and every stream close looks
// like a connection that may have died after the upstream acted: the safe side (and HTTP/2
// connections are not bounded by the load: libcurl's own burst behaviour).
#ifndef COPILOT_GATEWAY_SERVER_TRANSPORT_H2_STREAM_REFUSALS_H_
#define COPILOT_GATEWAY_SERVER_TRANSPORT_H2_STREAM_REFUSALS_H_

#include <curl/curl.h>

namespace copilot::gateway {

// Receives the HTTP/2 events seen on one thread. Called on that thread, from inside
// curl_multi_socket_action (or any other libcurl call that drives a connection). Must not call
// into libcurl other than curl_easy_getinfo.
class H2SessionObserver {
 public:
  virtual ~H2SessionObserver() = default;
  // Before libcurl handles the stream's close; `easy` is the transfer whose stream was refused.
  virtual void OnStreamRefused(CURL* easy) = 0;
  // libcurl set up an HTTP/2 session: a connection to the upstream negotiated HTTP/2 (ALPN h2).
  virtual void OnHttp2Connection() = 0;
};

// Reports the refused streams and new HTTP/2 connections of libcurl transfers run by the
// calling thread to `observer` (nullptr: to nobody) until it is called again on this thread.
void ObserveH2SessionsOnThisThread(H2SessionObserver* observer);

// Whether libcurl's stream-close callback has been wrapped at least once in this process (i.e.
// an HTTP/2 connection was set up and refusals are seen). For tests and the log.
bool H2StreamRefusalsObserved();

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_TRANSPORT_H2_STREAM_REFUSALS_H_
