#include "server/common/secrets.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_replace.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/reflection.h"
#include "google/protobuf/struct.pb.h"

namespace copilot::gateway {
namespace {

bool ContainsAny(absl::string_view text, absl::Span<const std::string> secrets) {
  return std::ranges::any_of(secrets, [text](const std::string& secret) {
    return !secret.empty() && absl::StrContains(text, secret);
  });
}

// Messages RedactSecretsInMessage looks for secrets in through their wire form, at most.
constexpr std::size_t kMaxWireCheckBytes = 64 * 1024;

bool AnySecret(absl::Span<const std::string> secrets) {
  return std::ranges::any_of(secrets, [](const std::string& secret) { return !secret.empty(); });
}

bool ValueMayHoldSecret(const google::protobuf::Value& value,
                        absl::Span<const std::string> secrets);

bool StructMayHoldSecret(const google::protobuf::Struct& object,
                         absl::Span<const std::string> secrets) {
  return std::ranges::any_of(object.fields(), [secrets](const auto& entry) {
    return ContainsAny(entry.first, secrets) || ValueMayHoldSecret(entry.second, secrets);
  });
}

bool ValueMayHoldSecret(const google::protobuf::Value& value,
                        absl::Span<const std::string> secrets) {
  switch (value.kind_case()) {
    case google::protobuf::Value::kStringValue:
      return ContainsAny(value.string_value(), secrets);
    case google::protobuf::Value::kStructValue:
      return StructMayHoldSecret(value.struct_value(), secrets);
    case google::protobuf::Value::kListValue:
      return std::ranges::any_of(value.list_value().values(),
                                 [secrets](const google::protobuf::Value& item) {
                                   return ValueMayHoldSecret(item, secrets);
                                 });
    default:
      return false;  // Numbers, booleans, null: no text.
  }
}

// Whether any string RedactFields would look at (map keys included) holds a secret, read
// without changing the message. Reflection over a map field (Struct's) turns the map into its
// repeated form each time, on every answer; Struct, Value and ListValue are read through their
// own types instead.
bool MayHoldSecret(const google::protobuf::Message& message,
                   absl::Span<const std::string> secrets) {
  using google::protobuf::FieldDescriptor;
  if (const auto* object =
          google::protobuf::DynamicCastToGenerated<google::protobuf::Struct>(&message)) {
    return StructMayHoldSecret(*object, secrets);
  }
  if (const auto* value =
          google::protobuf::DynamicCastToGenerated<google::protobuf::Value>(&message)) {
    return ValueMayHoldSecret(*value, secrets);
  }
  const google::protobuf::Reflection* reflection = message.GetReflection();
  std::vector<const FieldDescriptor*> fields;
  reflection->ListFields(message, &fields);
  for (const FieldDescriptor* field : fields) {
    if (field->cpp_type() == FieldDescriptor::CPPTYPE_STRING) {
      if (field->is_repeated()) {
        for (int i = 0; i < reflection->FieldSize(message, field); ++i) {
          std::string scratch;
          if (ContainsAny(reflection->GetRepeatedStringReference(message, field, i, &scratch),
                          secrets)) {
            return true;
          }
        }
      } else {
        std::string scratch;
        if (ContainsAny(reflection->GetStringReference(message, field, &scratch), secrets)) {
          return true;
        }
      }
    } else if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      if (field->is_repeated()) {
        for (int i = 0; i < reflection->FieldSize(message, field); ++i) {
          if (MayHoldSecret(reflection->GetRepeatedMessage(message, field, i), secrets)) {
            return true;
          }
        }
      } else if (MayHoldSecret(reflection->GetMessage(message, field), secrets)) {
        return true;
      }
    }
  }
  return false;
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
  // Every string RedactFields looks at (map keys and Struct values included) is in the message's
  // wire form byte for byte, so a secret that is not in it is in no field. On a chat
  // completion's answer MayHoldSecret's walk by reflection took ~12,400 instructions; with the
  // serialization and search instead the whole call went from 338,317 to 331,305
  // (tests/bench/instructions_per_call.sh). A larger message is walked instead of copied whole.
  const std::size_t size = message.ByteSizeLong();
  if (size <= kMaxWireCheckBytes) {
    std::string wire(size, '\0');
    message.SerializeWithCachedSizesToArray(reinterpret_cast<uint8_t*>(wire.data()));
    if (!ContainsAny(wire, secrets)) return false;
  } else if (!MayHoldSecret(message, secrets)) {
    return false;
  }
  return RedactFields(message, secrets);
}

}  // namespace copilot::gateway
