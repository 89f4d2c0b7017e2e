#include "server/common/secrets.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_replace.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/reflection.h"

namespace copilot::gateway {
namespace {

bool ContainsAny(absl::string_view text, absl::Span<const std::string> secrets) {
  return std::ranges::any_of(secrets, [text](const std::string& secret) {
    return !secret.empty() && absl::StrContains(text, secret);
  });
}

bool AnySecret(absl::Span<const std::string> secrets) {
  return std::ranges::any_of(secrets, [](const std::string& secret) { return !secret.empty(); });
}

bool RedactFields(google::protobuf::Message& message, absl::Span<const std::string> secrets) {
  using google::protobuf::FieldDescriptor;
  const google::protobuf::Reflection* reflection = message.GetReflection();
  std::vector<const FieldDescriptor*> fields;
  reflection->ListFields(message, &fields);
  bool changed = false;
  for (const FieldDescriptor* field : fields) {
    if (field->cpp_type() == FieldDescriptor::CPPTYPE_STRING) {
      if (field->is_repeated()) {
        for (int i = 0; i < reflection->FieldSize(message, field); ++i) {
          const std::string& value =
              reflection->GetRepeatedStringReference(message, field, i, nullptr);
          if (ContainsAny(value, secrets)) {
            reflection->SetRepeatedString(&message, field, i, RedactSecrets(value, secrets));
            changed = true;
          }
        }
      } else {
        std::string scratch;
        const std::string& value = reflection->GetStringReference(message, field, &scratch);
        if (ContainsAny(value, secrets)) {
          reflection->SetString(&message, field, RedactSecrets(value, secrets));
          changed = true;
        }
      }
    } else if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      // Map fields are repeated entry messages here (key and value fields).
      if (field->is_repeated()) {
        for (int i = 0; i < reflection->FieldSize(message, field); ++i) {
          changed |= RedactFields(*reflection->MutableRepeatedMessage(&message, field, i), secrets);
        }
      } else {
        changed |= RedactFields(*reflection->MutableMessage(&message, field), secrets);
      }
    }
  }
  return changed;
}

}  // namespace

std::string RedactSecrets(absl::string_view text, absl::Span<const std::string> secrets) {
  std::string out(text);
  for (const std::string& secret : secrets) {
    if (!secret.empty()) absl::StrReplaceAll({{secret, kRedacted}}, &out);
  }
  return out;
}

size_t SecretPrefixAtEnd(absl::string_view text, absl::Span<const std::string> secrets) {
  size_t longest = 0;
  for (const std::string& secret : secrets) {
    for (size_t length = std::min(text.size(), secret.size() - (secret.empty() ? 0 : 1));
         length > longest; --length) {
      if (absl::EndsWith(text, absl::string_view(secret).substr(0, length))) {
        longest = length;
        break;
      }
    }
  }
  return longest;
}

bool RedactSecretsInMessage(google::protobuf::Message& message,
                            absl::Span<const std::string> secrets) {
  if (!AnySecret(secrets)) return false;
  return RedactFields(message, secrets);
}

}  // namespace copilot::gateway
