#include "tests/emulator/rate_limiter.h"

#include <algorithm>

namespace copilot::emulator {
namespace {

constexpr absl::Duration kBurstWindow = absl::Seconds(1);
constexpr absl::Duration kSustainedWindow = absl::Seconds(60);

// Index of the first arrival inside the window of length `window` ending at `now`, i.e. the first
// one later than now - window.
size_t FirstInWindow(const std::deque<absl::Duration>& arrivals, absl::Duration now,
                     absl::Duration window) {
  return static_cast<size_t>(std::upper_bound(arrivals.begin(), arrivals.end(), now - window) -
                             arrivals.begin());
}

}  // namespace

RouteClass ClassOfRoute(absl::string_view route_name) {
  if (route_name == "run" || route_name == "run_stream" || route_name == "chat_completions" ||
      route_name == "chat_completions_stream") {
    return RouteClass::kAnswer;
  }
  return RouteClass::kOther;
}

absl::string_view RouteClassName(RouteClass route_class) {
  return route_class == RouteClass::kAnswer ? "answer" : "other";
}

absl::string_view RateLimitConfig::ModeName() const {
  if (!enforced) return "off";
  if (answer == kTier0Answer && other == kTier0Other) return "tier0";
  return "custom";
}

void ApplyRateLimitUpdate(const RateLimitUpdate& update, RateLimitConfig& config) {
  if (update.mode == "off") {
    config.enforced = false;
  } else if (update.mode == "tier0") {
    config.enforced = true;
    config.answer = kTier0Answer;
    config.other = kTier0Other;
  } else if (update.mode == "custom" || update.HasLimit()) {
    config.enforced = true;
  }
  if (update.answer_rps) config.answer.rps = *update.answer_rps;
  if (update.answer_rpm) config.answer.rpm = *update.answer_rpm;
  if (update.other_rps) config.other.rps = *update.other_rps;
  if (update.other_rpm) config.other.rpm = *update.other_rpm;
}

nlohmann::json RateLimitCounters::ToJson() const {
  return nlohmann::json{{"admitted", admitted},
                        {"refused", refused},
                        {"max_admitted_1s", max_admitted_1s},
                        {"max_admitted_60s", max_admitted_60s}};
}

RateLimitDecision RateLimiter::Admit(absl::string_view api_key, RouteClass route_class) {
  const absl::Duration now = clock_.MonotonicNow();
  Bucket& bucket = buckets_[api_key][static_cast<size_t>(route_class)];
  std::deque<absl::Duration>& arrivals = bucket.arrivals;
  while (!arrivals.empty() && arrivals.front() <= now - kSustainedWindow) arrivals.pop_front();
  const size_t first_in_burst = FirstInWindow(arrivals, now, kBurstWindow);
  const int64_t in_burst = static_cast<int64_t>(arrivals.size() - first_in_burst);
  const int64_t in_sustained = static_cast<int64_t>(arrivals.size());

  if (config_.enforced) {
    const WindowLimits& limits = config_.For(route_class);
    // The request fits once enough of the oldest arrivals in a full window have left it: the
    // (count - limit + 1)-th oldest leaves at its arrival + window.
    bool refuse = false;
    absl::Duration wait = absl::ZeroDuration();
    if (in_burst >= limits.rps) {
      refuse = true;
      const absl::Duration leaves =
          arrivals[first_in_burst + static_cast<size_t>(in_burst - limits.rps)] + kBurstWindow;
      wait = std::max(wait, leaves - now);
    }
    if (in_sustained >= limits.rpm) {
      refuse = true;
      const absl::Duration leaves =
          arrivals[static_cast<size_t>(in_sustained - limits.rpm)] + kSustainedWindow;
      wait = std::max(wait, leaves - now);
    }
    if (refuse) {
      ++bucket.counters.refused;
      const int64_t seconds = absl::ToInt64Seconds(absl::Ceil(wait, absl::Seconds(1)));
      return RateLimitDecision{.admitted = false,
                               .retry_after_seconds = std::max<int64_t>(1, seconds)};
    }
  }

  arrivals.push_back(now);
  RateLimitCounters& c = bucket.counters;
  ++c.admitted;
  // A window's count only grows when a request arrives, so the windows ending now are the only
  // new candidates for the maxima.
  c.max_admitted_1s = std::max(c.max_admitted_1s, in_burst + 1);
  c.max_admitted_60s = std::max(c.max_admitted_60s, in_sustained + 1);
  return RateLimitDecision{};
}

RateLimitCounters RateLimiter::Counters(absl::string_view api_key, RouteClass route_class) const {
  auto it = buckets_.find(api_key);
  if (it == buckets_.end()) return RateLimitCounters{};
  return it->second[static_cast<size_t>(route_class)].counters;
}

RateLimitCounters RateLimiter::Counters(RouteClass route_class) const {
  RateLimitCounters total;
  for (const auto& [key, buckets] : buckets_) {
    const RateLimitCounters& c = buckets[static_cast<size_t>(route_class)].counters;
    total.admitted += c.admitted;
    total.refused += c.refused;
    total.max_admitted_1s = std::max(total.max_admitted_1s, c.max_admitted_1s);
    total.max_admitted_60s = std::max(total.max_admitted_60s, c.max_admitted_60s);
  }
  return total;
}

nlohmann::json RateLimiter::StatsJson() const {
  nlohmann::json by_key = nlohmann::json::object();
  for (const auto& [key, buckets] : buckets_) {
    by_key[key] = nlohmann::json{
        {"answer", buckets[static_cast<size_t>(RouteClass::kAnswer)].counters.ToJson()},
        {"other", buckets[static_cast<size_t>(RouteClass::kOther)].counters.ToJson()}};
  }
  return nlohmann::json{{"answer", Counters(RouteClass::kAnswer).ToJson()},
                        {"other", Counters(RouteClass::kOther).ToJson()},
                        {"by_key", std::move(by_key)}};
}

}  // namespace copilot::emulator
