#include "tests/emulator/http_request.h"

#include <cctype>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"

namespace copilot::emulator {

std::optional<absl::string_view> HttpRequest::Header(absl::string_view lower_name) const {
  for (const auto& [name, value] : headers) {
    if (name == lower_name) return value;
  }
  return std::nullopt;
}

bool HttpRequest::KeepAlive() const {
  std::optional<absl::string_view> connection = Header("connection");
  std::string value = connection ? absl::AsciiStrToLower(*connection) : "";
  if (version_minor >= 1) return !absl::StrContains(value, "close");
  return absl::StrContains(value, "keep-alive");
}

std::string PercentDecode(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '+') {
      out.push_back(' ');
    } else if (c == '%' && i + 2 < text.size() &&
               std::isxdigit(static_cast<unsigned char>(text[i + 1])) &&
               std::isxdigit(static_cast<unsigned char>(text[i + 2]))) {
      auto hex = [](char h) {
        return std::isdigit(static_cast<unsigned char>(h))
                   ? h - '0'
                   : std::tolower(static_cast<unsigned char>(h)) - 'a' + 10;
      };
      out.push_back(static_cast<char>(hex(text[i + 1]) * 16 + hex(text[i + 2])));
      i += 2;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> ParseQuery(absl::string_view query) {
  std::vector<std::pair<std::string, std::string>> out;
  for (absl::string_view part : absl::StrSplit(query, '&', absl::SkipEmpty())) {
    size_t eq = part.find('=');
    if (eq == absl::string_view::npos) {
      out.emplace_back(PercentDecode(part), "");
    } else {
      out.emplace_back(PercentDecode(part.substr(0, eq)), PercentDecode(part.substr(eq + 1)));
    }
  }
  return out;
}

bool HttpRequestParser::ExpectsContinue() const {
  std::optional<absl::string_view> expect = request_.Header("expect");
  return expect && absl::EqualsIgnoreCase(*expect, "100-continue");
}

void HttpRequestParser::Reset() {
  headers_done_ = false;
  head_size_ = 0;
  content_length_ = 0;
  consumed_ = 0;
  request_ = HttpRequest();
}

HttpRequestParser::Result HttpRequestParser::ParseHead(absl::string_view head) {
  std::vector<absl::string_view> lines = absl::StrSplit(head, "\r\n");
  if (lines.empty()) return Result::kBadRequest;
  // Request line: METHOD SP target SP HTTP/1.x
  std::vector<absl::string_view> parts = absl::StrSplit(lines[0], ' ');
  if (parts.size() != 3 || parts[0].empty() || parts[1].empty()) return Result::kBadRequest;
  for (char c : parts[0]) {
    if (!std::isupper(static_cast<unsigned char>(c))) return Result::kBadRequest;
  }
  if (parts[2] == "HTTP/1.1") {
    request_.version_minor = 1;
  } else if (parts[2] == "HTTP/1.0") {
    request_.version_minor = 0;
  } else {
    return Result::kBadRequest;
  }
  request_.method = std::string(parts[0]);
  request_.target = std::string(parts[1]);
  size_t q = request_.target.find('?');
  request_.path = request_.target.substr(0, q);
  request_.query = q == std::string::npos ? "" : request_.target.substr(q + 1);
  if (request_.path.empty() || request_.path[0] != '/') return Result::kBadRequest;

  bool has_length = false;
  for (size_t i = 1; i < lines.size(); ++i) {
    absl::string_view line = lines[i];
    size_t colon = line.find(':');
    if (colon == absl::string_view::npos || colon == 0) return Result::kBadRequest;
    std::string name = absl::AsciiStrToLower(line.substr(0, colon));
    if (name.find(' ') != std::string::npos || name.find('\t') != std::string::npos) {
      return Result::kBadRequest;
    }
    std::string value(absl::StripAsciiWhitespace(line.substr(colon + 1)));
    if (name == "content-length") {
      size_t length = 0;
      if (!absl::SimpleAtoi(value, &length)) return Result::kBadRequest;
      if (has_length && length != content_length_) return Result::kBadRequest;
      has_length = true;
      content_length_ = length;
    } else if (name == "transfer-encoding") {
      return Result::kLengthRequired;
    }
    request_.headers.emplace_back(std::move(name), std::move(value));
  }
  if (content_length_ > max_body_bytes_) return Result::kBodyTooLarge;
  return Result::kHeadersDone;
}

HttpRequestParser::Result HttpRequestParser::Parse(absl::string_view data) {
  if (!headers_done_) {
    // Tolerate empty lines before a request line (RFC 9112 section 2.2).
    size_t skip = 0;
    while (skip + 1 < data.size() && data[skip] == '\r' && data[skip + 1] == '\n') skip += 2;
    size_t end = data.find("\r\n\r\n", skip);
    // The limit counts the empty lines before the head too. Up to 3 bytes of the "\r\n\r\n" may
    // have arrived already: only more than that over the limit is too large, so the verdict is
    // the same however the bytes were cut.
    if (end == absl::string_view::npos) {
      return data.size() > max_header_bytes_ + 3 ? Result::kHeadersTooLarge : Result::kNeedMore;
    }
    if (end > max_header_bytes_) return Result::kHeadersTooLarge;
    Result head = ParseHead(data.substr(skip, end - skip));
    if (head != Result::kHeadersDone) return head;
    headers_done_ = true;
    head_size_ = end + 4;
  }
  if (data.size() - head_size_ < content_length_) return Result::kHeadersDone;
  request_.body = std::string(data.substr(head_size_, content_length_));
  consumed_ = head_size_ + content_length_;
  return Result::kComplete;
}

}  // namespace copilot::emulator
