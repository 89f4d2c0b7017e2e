#include "server/common/secrets.h"

#include <functional>
#include <string>
#include <vector>

#include "copilot/v1/resources.pb.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"

namespace copilot::gateway {
namespace {

TEST(RedactSecretsTest, ReplacesEveryOccurrenceOfEverySecret) {
  const std::vector<std::string> secrets = {"key-123", "PI42"};
  EXPECT_EQ(RedactSecrets("key-123 and PI42, again key-123", secrets),
            "[redacted] and [redacted], again [redacted]");
}

TEST(RedactSecretsTest, EmptySecretsAndTextWithoutSecretsAreLeftAlone) {
  const std::vector<std::string> secrets = {"", "PI42"};
  EXPECT_EQ(RedactSecrets("nothing here", secrets), "nothing here");
  EXPECT_EQ(RedactSecrets("", secrets), "");
  EXPECT_EQ(RedactSecrets("abc", {}), "abc");
}

TEST(RedactSecretsTest, KeepsJsonValidWhenTheSecretIsInAString) {
  EXPECT_EQ(RedactSecrets(R"({"detail":"licence PI42"})", std::vector<std::string>{"PI42"}),
            R"({"detail":"licence [redacted]"})");
}

// An answer with text in every kind of place: plain and repeated messages, a Struct's keys and
// values, lists and Structs nested in it.
copilot::v1::Message FullMessage() {
  copilot::v1::Message message;
  message.set_id("m1");
  message.set_content("the answer");
  auto* call = message.add_tool_calls();
  call->mutable_function()->set_name("lookup");
  call->mutable_function()->set_arguments(R"({"q":"x"})");
  auto* source = message.add_sources();
  source->set_content("a source");
  google::protobuf::Struct& meta = *source->mutable_meta_data();
  (*meta.mutable_fields())["title"].set_string_value("a title");
  google::protobuf::ListValue* list = (*meta.mutable_fields())["tags"].mutable_list_value();
  list->add_values()->set_string_value("tag");
  list->add_values()->mutable_struct_value();
  (*list->mutable_values(1)->mutable_struct_value()->mutable_fields())["deep"].set_string_value(
      "deep text");
  (*message.mutable_meta_data()->mutable_fields())["n"].set_number_value(42);
  return message;
}

// Wherever a secret sits, RedactSecretsInMessage finds and redacts it; with none anywhere it
// changes nothing and says so.
TEST(RedactSecretsInMessageTest, FindsASecretInEveryKindOfPlaceAndLeavesCleanMessagesAlone) {
  const std::vector<std::string> secrets = {"", "PI-SECRET"};
  copilot::v1::Message clean = FullMessage();
  EXPECT_FALSE(RedactSecretsInMessage(clean, secrets));
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(clean, FullMessage()));

  const std::vector<std::function<void(copilot::v1::Message&)>> places = {
      [](copilot::v1::Message& m) { m.set_content("is PI-SECRET here"); },
      [](copilot::v1::Message& m) { m.set_id("PI-SECRET"); },
      [](copilot::v1::Message& m) {
        m.mutable_tool_calls(0)->mutable_function()->set_arguments(R"({"l":"PI-SECRET"})");
      },
      [](copilot::v1::Message& m) { m.mutable_sources(0)->set_content("PI-SECRET"); },
      [](copilot::v1::Message& m) {
        (*m.mutable_sources(0)->mutable_meta_data()->mutable_fields())["title"].set_string_value(
            "x PI-SECRET");
      },
      [](copilot::v1::Message& m) {
        (*m.mutable_sources(0)->mutable_meta_data()->mutable_fields())["PI-SECRET"].set_bool_value(
            true);
      },
      [](copilot::v1::Message& m) {
        (*m.mutable_sources(0)->mutable_meta_data()->mutable_fields())["tags"]
            .mutable_list_value()
            ->mutable_values(0)
            ->set_string_value("PI-SECRET");
      },
      [](copilot::v1::Message& m) {
        (*(*m.mutable_sources(0)->mutable_meta_data()->mutable_fields())["tags"]
              .mutable_list_value()
              ->mutable_values(1)
              ->mutable_struct_value()
              ->mutable_fields())["deep"]
            .set_string_value("PI-SECRET deep");
      },
      [](copilot::v1::Message& m) {
        (*m.mutable_meta_data()->mutable_fields())["licence"].set_string_value("PI-SECRET");
      },
  };
  // Up to 64 KiB a message is looked for secrets in its wire form first; a larger one is
  // walked field by field (not copied whole).
  for (const std::size_t bulk : {std::size_t{0}, std::size_t{70 * 1024}}) {
    copilot::v1::Message large_clean = FullMessage();
    large_clean.set_thread_id(std::string(bulk, 'x'));
    EXPECT_FALSE(RedactSecretsInMessage(large_clean, secrets)) << bulk;
    for (std::size_t i = 0; i < places.size(); ++i) {
      copilot::v1::Message message = FullMessage();
      message.set_thread_id(std::string(bulk, 'x'));
      places[i](message);
      EXPECT_TRUE(RedactSecretsInMessage(message, secrets)) << "place " << i << ", " << bulk;
      const std::string text = message.DebugString();
      EXPECT_EQ(text.find("PI-SECRET"), std::string::npos) << "place " << i << ", " << bulk;
      EXPECT_NE(text.find("[redacted]"), std::string::npos) << "place " << i << ", " << bulk;
    }
  }
}

// A Struct, Value or ListValue on its own (not inside a Message) is read the same way.
TEST(RedactSecretsInMessageTest, StructValueAndListValueOnTheirOwn) {
  const std::vector<std::string> secrets = {"PI-SECRET"};
  google::protobuf::Struct object;
  (*object.mutable_fields())["a"].set_string_value("clean");
  EXPECT_FALSE(RedactSecretsInMessage(object, secrets));
  (*object.mutable_fields())["b"].mutable_list_value()->add_values()->set_string_value(
      "has PI-SECRET");
  EXPECT_TRUE(RedactSecretsInMessage(object, secrets));
  EXPECT_EQ(object.fields().at("b").list_value().values(0).string_value(), "has [redacted]");

  google::protobuf::Value value;
  value.set_string_value("PI-SECRET");
  EXPECT_TRUE(RedactSecretsInMessage(value, secrets));
  EXPECT_EQ(value.string_value(), "[redacted]");
  value.set_number_value(3);
  EXPECT_FALSE(RedactSecretsInMessage(value, secrets));

  google::protobuf::ListValue list;
  list.add_values()->set_bool_value(true);
  EXPECT_FALSE(RedactSecretsInMessage(list, secrets));
  (*list.add_values()->mutable_struct_value()->mutable_fields())["PI-SECRET"].set_null_value(
      google::protobuf::NULL_VALUE);
  EXPECT_TRUE(RedactSecretsInMessage(list, secrets));
  EXPECT_TRUE(list.values(1).struct_value().fields().contains("[redacted]"));
}

TEST(SecretPrefixAtEndTest, TheLongestEndThatBeginsASecretButIsNotAllOfIt) {
  const std::vector<std::string> secrets = {"", "PI42", "key-123"};
  EXPECT_EQ(SecretPrefixAtEnd("licence P", secrets), 1u);
  EXPECT_EQ(SecretPrefixAtEnd("licence PI4", secrets), 3u);
  EXPECT_EQ(SecretPrefixAtEnd("key: key-12", secrets), 6u);
  EXPECT_EQ(SecretPrefixAtEnd("ke", secrets), 2u);
  EXPECT_EQ(SecretPrefixAtEnd("licence PI42", secrets), 0u);  // Whole: RedactSecrets' job.
  EXPECT_EQ(SecretPrefixAtEnd("PIE", secrets), 0u);
  EXPECT_EQ(SecretPrefixAtEnd("", secrets), 0u);
  EXPECT_EQ(SecretPrefixAtEnd("P", {}), 0u);
}

}  // namespace
}  // namespace copilot::gateway
