#include "server/transport/h2_stream_refusals.h"

#include <dlfcn.h>
#include <nghttp2/nghttp2.h>

#include <atomic>
#include <cstdint>

namespace copilot::gateway {
namespace {

using SetOnStreamClose = void (*)(nghttp2_session_callbacks*, nghttp2_on_stream_close_callback);
using GetStreamUserData = void* (*)(nghttp2_session*, int32_t);

thread_local H2SessionObserver* tls_observer = nullptr;

// libcurl's own stream-close callback (one static function of libcurl) and nghttp2's lookup of
// a stream's user data (libcurl's transfer), both resolved when libcurl first installs it.
std::atomic<nghttp2_on_stream_close_callback> curl_on_stream_close{nullptr};
std::atomic<GetStreamUserData> get_stream_user_data{nullptr};

// Whether `function` lives in the same loaded object as libcurl.
bool InLibcurl(const void* function) {
  static const void* const curl_base = [] {
    Dl_info info{};
    void* symbol = dlsym(RTLD_DEFAULT, "curl_easy_init");
    return symbol != nullptr && dladdr(symbol, &info) != 0 ? info.dli_fbase : nullptr;
  }();
  Dl_info info{};
  return curl_base != nullptr && dladdr(function, &info) != 0 && info.dli_fbase == curl_base;
}

int OnStreamClose(nghttp2_session* session, int32_t stream_id, uint32_t error_code,
                  void* user_data) {
  H2SessionObserver* observer = tls_observer;
  GetStreamUserData get = get_stream_user_data.load(std::memory_order_acquire);
  if (error_code == NGHTTP2_REFUSED_STREAM && observer != nullptr && get != nullptr) {
    // libcurl submits each request with its transfer (the easy handle) as the stream's data.
    if (void* easy = get(session, stream_id); easy != nullptr) {
      observer->OnStreamRefused(static_cast<CURL*>(easy));
    }
  }
  return curl_on_stream_close.load(std::memory_order_acquire)(session, stream_id, error_code,
                                                              user_data);
}

}  // namespace

void ObserveH2SessionsOnThisThread(H2SessionObserver* observer) { tls_observer = observer; }

bool H2StreamRefusalsObserved() {
  return curl_on_stream_close.load(std::memory_order_acquire) != nullptr;
}

}  // namespace copilot::gateway

// The interposer (see the header). Exported from the executable by the link option in
// server/transport/CMakeLists.txt.
extern "C" void nghttp2_session_callbacks_set_on_stream_close_callback(
    nghttp2_session_callbacks* cbs, nghttp2_on_stream_close_callback on_stream_close_callback) {
  using copilot::gateway::SetOnStreamClose;
  static const auto real =
      reinterpret_cast<SetOnStreamClose>(dlsym(RTLD_NEXT, __func__));  // NOLINT
  if (real == nullptr) return;  // Unreachable: nghttp2 is loaded, since it calls us.
  nghttp2_on_stream_close_callback installed = on_stream_close_callback;
  if (on_stream_close_callback != nullptr &&
      copilot::gateway::InLibcurl(reinterpret_cast<const void*>(on_stream_close_callback))) {
    auto get = reinterpret_cast<copilot::gateway::GetStreamUserData>(  // NOLINT
        dlsym(RTLD_DEFAULT, "nghttp2_session_get_stream_user_data"));
    if (get != nullptr) {
      copilot::gateway::get_stream_user_data.store(get, std::memory_order_release);
      copilot::gateway::curl_on_stream_close.store(on_stream_close_callback,
                                                   std::memory_order_release);
      installed = &copilot::gateway::OnStreamClose;
    }
    // libcurl installs its callbacks once per HTTP/2 connection, when ALPN chose h2.
    if (copilot::gateway::tls_observer != nullptr) {
      copilot::gateway::tls_observer->OnHttp2Connection();
    }
  }
  real(cbs, installed);
}
