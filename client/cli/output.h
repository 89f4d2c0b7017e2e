// How the `copilot` CLI prints responses and errors: concise human text, or
// JSON (the proto3 JSON mapping, one object per line) with --json.
#ifndef COPILOT_CLIENT_CLI_OUTPUT_H_
#define COPILOT_CLIENT_CLI_OUTPUT_H_

#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "copilot/v1/copilot_service.pb.h"
#include "google/protobuf/message.h"

namespace copilot::client::cli {

// Writes `message` as one line of JSON followed by "\n".
void PrintJsonLine(std::ostream& out, const google::protobuf::Message& message);

// Writes a failed call's error: "error: NOT_FOUND: Thread not found [...]" or,
// with `json`, one line {"error":{"code":5,"status":"NOT_FOUND","message":...,
// "details":[...]}} (the google.rpc.Status with the code's name added, as in
// Google's JSON error format).
void PrintError(std::ostream& err, const absl::Status& status, bool json);

// "<id>  <name>", plus "  (streaming)" when the assistant streams, one line
// per assistant.
void PrintAssistants(std::ostream& out, const v1::ListAssistantsResponse& response);

// "key: value" lines for the thread's set fields.
void PrintThread(std::ostream& out, const v1::Thread& thread);

// The tenant's usage: one line per period and figure, with its quota and what is left.
void PrintUsage(std::ostream& out, const v1::GetUsageResponse& response);

// Each message as a "<role> <id> <create time>" line followed by its content
// indented by two spaces; then "next page token: T" when there is one.
void PrintMessages(std::ostream& out, const v1::ListMessagesResponse& response);

// An answer: its content and a newline, the tool calls it asks for, then its
// sources.
void PrintAnswer(std::ostream& out, const v1::Message& message);

// "Sources:" and one "  [n] <title>" line per source; nothing when empty.
void PrintSources(std::ostream& out, const std::vector<v1::Source>& sources);

// Prints a streamed answer as it arrives: each chunk's content (human) or the
// chunk as a JSON line, flushing after each; Finish() ends the text with a
// newline and prints the sources collected from the chunks.
// Not thread-safe: feed it from one thread (CopilotClient runs stream
// callbacks on the calling thread).
class StreamPrinter {
 public:
  StreamPrinter(std::ostream& out, bool json) : out_(out), json_(json) {}

  void OnChunk(const v1::MessageChunk& chunk);
  void Finish();

  // The thread named by the chunks (empty until one arrives).
  const std::string& thread_id() const { return thread_id_; }

 private:
  std::ostream& out_;
  const bool json_;
  bool printed_text_ = false;
  std::string thread_id_;
  std::vector<v1::Source> sources_;
};

}  // namespace copilot::client::cli

#endif  // COPILOT_CLIENT_CLI_OUTPUT_H_
