// The emulator's data: seeded assistants, threads and their messages, with cursor paging.
#ifndef COPILOT_TESTS_EMULATOR_THREAD_STORE_H_
#define COPILOT_TESTS_EMULATOR_THREAD_STORE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"
#include "tests/emulator/clock.h"
#include "tests/emulator/stack_rules.h"
#include "tests/emulator/uuid.h"

namespace copilot::emulator {

inline constexpr absl::string_view kTaxAssistantId = "7c0e5d3a-4c1b-4f57-9a51-1f1f3e0a0001";
inline constexpr absl::string_view kHrAssistantId = "7c0e5d3a-4c1b-4f57-9a51-1f1f3e0a0002";
inline constexpr absl::string_view kLegacyAssistantId = "7c0e5d3a-4c1b-4f57-9a51-1f1f3e0a0003";
// The one tenant every API key belongs to.
inline constexpr absl::string_view kTenantId = "b0b0b0b0-0000-4000-8000-000000000001";

struct Assistant {
  std::string id;
  std::string name;
  bool requires_licence = false;
  bool streaming = true;

  // {"__root__": ["user_data"], "user_data": ["licence"]} or {}.
  nlohmann::json RequestRequiredFields() const;
  nlohmann::json ToJson() const;
};

struct Message {
  std::string id;
  std::string thread_id;
  std::string role;
  std::string content;
  std::string created_at;
  int64_t seq = 0;
  nlohmann::json tool_calls;   // null when absent
  std::string tool_call_id;    // tool messages
  nlohmann::json attachments;  // null when absent
  nlohmann::json meta_data;    // null when absent (assistant answers carry it)
  nlohmann::json sources;      // null when absent (assistant answers carry it)

  nlohmann::json ToJson() const;
  StackMessage ToStackMessage() const;
};

struct Thread {
  std::string id;
  std::string assistant_id;
  std::optional<std::string> user_id;
  nlohmann::json title;  // string or null
  std::string created_at;
  std::string last_updated_at;
  int64_t seq = 0;
  bool deleted = false;
  bool via_chat_completions = false;
  std::vector<Message> messages;  // oldest first

  nlohmann::json ToJson() const;
};

// One page of a newest-first listing; `cursor` is null on the last page.
struct Page {
  nlohmann::json items = nlohmann::json::array();
  nlohmann::json cursor;
  nlohmann::json ToJson() const { return {{"cursor", cursor}, {"items", items}}; }
};

// Owns assistants, threads and messages. IDs come from the injected generator, timestamps from
// the injected clock. Not thread-safe (loop thread only).
class ThreadStore {
 public:
  ThreadStore(Clock& clock, UuidGenerator& uuids);

  const std::vector<Assistant>& assistants() const { return assistants_; }
  const Assistant* FindAssistant(absl::string_view id) const;

  Thread& CreateThread(std::string assistant_id, std::optional<std::string> user_id,
                       nlohmann::json title, bool via_chat_completions);
  Thread* FindThread(absl::string_view id);
  // Fills in id, thread_id, created_at and seq, appends it and bumps last_updated_at.
  Message& AddMessage(Thread& thread, Message message);
  // A message with id and created_at set but not stored yet (a streamed answer in progress).
  Message NewMessage(const Thread& thread);
  bool DeleteMessage(Thread& thread, absl::string_view message_id);

  // Newest first. `cursor` is what an earlier page returned (validated by DecodeCursor).
  Page ListThreads(size_t limit, std::optional<int64_t> cursor,
                   const std::optional<std::string>& user_id, bool include_deleted) const;
  Page ListMessages(const Thread& thread, size_t limit, std::optional<int64_t> cursor) const;

  // Forgets every thread; assistants stay.
  void Clear();

 private:
  Clock& clock_;
  UuidGenerator& uuids_;
  int64_t next_seq_ = 1;
  std::vector<Assistant> assistants_;
  absl::flat_hash_map<std::string, std::unique_ptr<Thread>> threads_;
  std::vector<Thread*> thread_order_;  // oldest first
};

// Cursors are opaque strings wrapping the seq of the last item of the previous page.
std::string EncodeCursor(int64_t seq);
absl::StatusOr<int64_t> DecodeCursor(absl::string_view cursor);

}  // namespace copilot::emulator

#endif  // COPILOT_TESTS_EMULATOR_THREAD_STORE_H_
