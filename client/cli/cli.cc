#include "client/cli/cli.h"

#include <cmath>
#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "client/cli/arg_parser.h"
#include "client/cli/output.h"
#include "client/copilot_client.h"
#include "client/read_file.h"

namespace copilot::client::cli {
namespace {

constexpr char kDefaultTarget[] = "127.0.0.1:50051";
constexpr absl::Duration kDefaultTimeout = absl::Seconds(120);

// What a command works with once its arguments are checked and a client
// exists. Not thread-safe; one per RunCli call.
struct Session {
  const CopilotClient& client;
  std::ostream& out;
  std::ostream& err;
  bool json;
};
using Action = std::function<absl::Status(Session&)>;

// Checks a command's arguments and returns what to run; an error is a usage
// error (exit 64), decided before any call is made.
using Prepare = absl::StatusOr<Action> (*)(const ParsedArgs&);

// One subcommand: its name, usage text, flags and argument check. Immutable
// after construction.
struct Command {
  absl::string_view name;  // One or two words, e.g. "thread create".
  absl::string_view arguments;
  absl::string_view summary;
  std::vector<FlagSpec> flags;
  Prepare prepare;
};

const std::vector<FlagSpec>& GlobalFlags() {
  static const auto* const kFlags = new std::vector<FlagSpec>{
      {"target"}, {"token"},     {"token-file"}, {"timeout"}, {"json", false},     {"tls", false},
      {"tls-ca"}, {"tls-roots"}, {"tls-cert"},   {"tls-key"}, {"tls-server-name"}, {"help", false},
  };
  return *kFlags;
}

// ---- argument helpers -------------------------------------------------------

absl::Status ExpectPositionals(const ParsedArgs& args, size_t min, size_t max,
                               absl::string_view what) {
  if (args.positionals.size() < min)
    return absl::InvalidArgumentError(absl::StrCat("missing ", what));
  if (args.positionals.size() > max) {
    return absl::InvalidArgumentError(
        absl::StrCat("unexpected argument '", args.positionals[max], "'"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> RequiredFlag(const ParsedArgs& args, absl::string_view name,
                                         absl::string_view what) {
  std::optional<std::string> value = args.Get(name);
  if (!value.has_value() || value->empty()) {
    return absl::InvalidArgumentError(absl::StrCat("missing --", name, " ", what));
  }
  return *std::move(value);
}

std::string OptionalFlag(const ParsedArgs& args, absl::string_view name) {
  return args.Get(name).value_or("");
}

absl::StatusOr<v1::Role> ParseRole(absl::string_view text) {
  if (text == "user") return v1::ROLE_USER;
  if (text == "system") return v1::ROLE_SYSTEM;
  if (text == "assistant") return v1::ROLE_ASSISTANT;
  if (text == "tool") return v1::ROLE_TOOL;
  return absl::InvalidArgumentError(
      absl::StrCat("--role must be user, system, assistant or tool, not '", text, "'"));
}

absl::StatusOr<absl::Duration> ParseTimeout(absl::string_view text) {
  absl::Duration timeout;
  double seconds = 0;
  if (absl::SimpleAtod(text, &seconds) && std::isfinite(seconds)) {
    timeout = absl::Seconds(seconds);
  } else if (!absl::ParseDuration(text, &timeout)) {
    timeout = absl::ZeroDuration();
  }
  if (timeout <= absl::ZeroDuration() || timeout == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--timeout must be a positive number of seconds (or a duration like 500ms), not '", text,
        "'"));
  }
  return timeout;
}

// Prints a unary response as JSON or, without --json, with `human`.
template <typename Response, typename Human>
absl::Status Emit(Session& session, absl::StatusOr<Response> response, Human human) {
  if (!response.ok()) return response.status();
  if (session.json) {
    PrintJsonLine(session.out, *response);
  } else {
    human(*response);
  }
  return absl::OkStatus();
}

// ---- commands ---------------------------------------------------------------

absl::StatusOr<Action> PrepareAssistants(const ParsedArgs& args) {
  if (absl::Status s = ExpectPositionals(args, 0, 0, ""); !s.ok()) return s;
  return Action([](Session& s) {
    return Emit(s, s.client.ListAssistants({}),
                [&](const v1::ListAssistantsResponse& r) { PrintAssistants(s.out, r); });
  });
}

absl::StatusOr<Action> PrepareUsage(const ParsedArgs& args) {
  if (absl::Status s = ExpectPositionals(args, 0, 0, ""); !s.ok()) return s;
  return Action([](Session& s) {
    return Emit(s, s.client.GetUsage({}),
                [&](const v1::GetUsageResponse& r) { PrintUsage(s.out, r); });
  });
}

absl::StatusOr<Action> PrepareThreadCreate(const ParsedArgs& args) {
  if (absl::Status s = ExpectPositionals(args, 0, 0, ""); !s.ok()) return s;
  absl::StatusOr<std::string> assistant = RequiredFlag(args, "assistant", "ID");
  if (!assistant.ok()) return assistant.status();
  v1::CreateThreadRequest request;
  request.set_assistant_id(*assistant);
  request.set_user_id(OptionalFlag(args, "user"));
  request.set_title(OptionalFlag(args, "title"));
  request.set_request_id(OptionalFlag(args, "request-id"));
  return Action([request](Session& s) {
    return Emit(s, s.client.CreateThread(request),
                [&](const v1::CreateThreadResponse& r) { s.out << r.thread().id() << "\n"; });
  });
}

absl::StatusOr<Action> PrepareThreadGet(const ParsedArgs& args) {
  if (absl::Status s = ExpectPositionals(args, 1, 1, "THREAD"); !s.ok()) return s;
  v1::GetThreadRequest request;
  request.set_thread_id(args.positionals[0]);
  return Action([request](Session& s) {
    return Emit(s, s.client.GetThread(request),
                [&](const v1::GetThreadResponse& r) { PrintThread(s.out, r.thread()); });
  });
}

absl::StatusOr<Action> PrepareThreadDelete(const ParsedArgs& args) {
  if (absl::Status s = ExpectPositionals(args, 1, 1, "THREAD"); !s.ok()) return s;
  v1::DeleteThreadRequest request;
  request.set_thread_id(args.positionals[0]);
  return Action([request](Session& s) {
    return Emit(s, s.client.DeleteThread(request), [&](const v1::DeleteThreadResponse&) {
      s.out << "deleted " << request.thread_id() << "\n";
    });
  });
}

absl::StatusOr<Action> PrepareMessageAdd(const ParsedArgs& args) {
  if (absl::Status s = ExpectPositionals(args, 1, SIZE_MAX, "TEXT"); !s.ok()) return s;
  absl::StatusOr<std::string> thread = RequiredFlag(args, "thread", "THREAD");
  if (!thread.ok()) return thread.status();
  absl::StatusOr<v1::Role> role = ParseRole(args.Get("role").value_or("user"));
  if (!role.ok()) return role.status();
  v1::AddMessageRequest request;
  request.set_thread_id(*thread);
  request.set_request_id(OptionalFlag(args, "request-id"));
  v1::MessageInput& message = *request.mutable_message();
  message.set_role(*role);
  message.set_content(absl::StrJoin(args.positionals, " "));
  message.set_tool_call_id(OptionalFlag(args, "tool-call-id"));
  return Action([request](Session& s) {
    return Emit(s, s.client.AddMessage(request),
                [&](const v1::AddMessageResponse& r) { s.out << r.message().id() << "\n"; });
  });
}

absl::StatusOr<Action> PrepareMessagesList(const ParsedArgs& args) {
  if (absl::Status s = ExpectPositionals(args, 0, 0, ""); !s.ok()) return s;
  absl::StatusOr<std::string> thread = RequiredFlag(args, "thread", "THREAD");
  if (!thread.ok()) return thread.status();
  v1::ListMessagesRequest request;
  request.set_thread_id(*thread);
  if (std::optional<std::string> size = args.Get("page-size"); size.has_value()) {
    int page_size = 0;
    if (!absl::SimpleAtoi(*size, &page_size) || page_size < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--page-size must be a non-negative integer, not '", *size, "'"));
    }
    request.set_page_size(page_size);
  }
  request.set_page_token(OptionalFlag(args, "page-token"));
  return Action([request](Session& s) {
    return Emit(s, s.client.ListMessages(request),
                [&](const v1::ListMessagesResponse& r) { PrintMessages(s.out, r); });
  });
}

// Streams a thread's answer with `printer`, or runs it unary with --no-stream.
absl::Status RunThread(Session& s, const std::string& thread_id, bool stream,
                       const std::string& request_id) {
  if (!stream) {
    v1::RunRequest request;
    request.set_thread_id(thread_id);
    request.set_request_id(request_id);
    return Emit(s, s.client.Run(request),
                [&](const v1::RunResponse& r) { PrintAnswer(s.out, r.message()); });
  }
  v1::StreamRunRequest request;
  request.set_thread_id(thread_id);
  StreamPrinter printer(s.out, s.json);
  absl::Status status =
      s.client.StreamRun(request, [&](const v1::MessageChunk& chunk) { printer.OnChunk(chunk); });
  printer.Finish();
  return status;
}

absl::Status RequestIdNeedsNoStream(const ParsedArgs& args) {
  if (args.Has("request-id") && !args.Has("no-stream")) {
    return absl::InvalidArgumentError(
        "--request-id needs --no-stream (streaming calls are not deduplicated)");
  }
  return absl::OkStatus();
}

absl::StatusOr<Action> PrepareRun(const ParsedArgs& args) {
  if (absl::Status s = ExpectPositionals(args, 0, 0, ""); !s.ok()) return s;
  if (absl::Status s = RequestIdNeedsNoStream(args); !s.ok()) return s;
  absl::StatusOr<std::string> thread = RequiredFlag(args, "thread", "THREAD");
  if (!thread.ok()) return thread.status();
  const bool stream = !args.Has("no-stream");
  std::string request_id = OptionalFlag(args, "request-id");
  return Action([thread = *thread, stream, request_id](Session& s) {
    return RunThread(s, thread, stream, request_id);
  });
}

absl::StatusOr<Action> PrepareComplete(const ParsedArgs& args) {
  if (absl::Status s = ExpectPositionals(args, 1, SIZE_MAX, "QUESTION"); !s.ok()) return s;
  if (absl::Status s = RequestIdNeedsNoStream(args); !s.ok()) return s;
  absl::StatusOr<std::string> assistant = RequiredFlag(args, "assistant", "ID");
  if (!assistant.ok()) return assistant.status();
  std::vector<v1::MessageInput> messages;
  if (std::optional<std::string> system = args.Get("system"); system.has_value()) {
    v1::MessageInput& m = messages.emplace_back();
    m.set_role(v1::ROLE_SYSTEM);
    m.set_content(*system);
  }
  v1::MessageInput& question = messages.emplace_back();
  question.set_role(v1::ROLE_USER);
  question.set_content(absl::StrJoin(args.positionals, " "));
  const std::string user = OptionalFlag(args, "user");
  const std::string thread = OptionalFlag(args, "thread");

  if (args.Has("no-stream")) {
    v1::CompleteRequest request;
    request.set_assistant_id(*assistant);
    request.mutable_messages()->Add(messages.begin(), messages.end());
    request.set_user_id(user);
    request.set_thread_id(thread);
    request.set_request_id(OptionalFlag(args, "request-id"));
    return Action([request](Session& s) {
      return Emit(s, s.client.Complete(request), [&](const v1::CompleteResponse& r) {
        PrintAnswer(s.out, r.message());
        if (!r.message().thread_id().empty())
          s.err << "thread: " << r.message().thread_id() << "\n";
      });
    });
  }
  v1::StreamCompleteRequest request;
  request.set_assistant_id(*assistant);
  request.mutable_messages()->Add(messages.begin(), messages.end());
  request.set_user_id(user);
  request.set_thread_id(thread);
  return Action([request](Session& s) {
    StreamPrinter printer(s.out, s.json);
    absl::Status status = s.client.StreamComplete(
        request, [&](const v1::MessageChunk& chunk) { printer.OnChunk(chunk); });
    printer.Finish();
    if (!s.json && !printer.thread_id().empty()) s.err << "thread: " << printer.thread_id() << "\n";
    return status;
  });
}

absl::StatusOr<Action> PrepareAsk(const ParsedArgs& args) {
  if (absl::Status s = ExpectPositionals(args, 1, SIZE_MAX, "QUESTION"); !s.ok()) return s;
  absl::StatusOr<std::string> assistant = RequiredFlag(args, "assistant", "ID");
  if (!assistant.ok()) return assistant.status();
  v1::CreateThreadRequest create;
  create.set_assistant_id(*assistant);
  create.set_user_id(OptionalFlag(args, "user"));
  create.set_title(OptionalFlag(args, "title"));
  v1::AddMessageRequest add;
  add.mutable_message()->set_role(v1::ROLE_USER);
  add.mutable_message()->set_content(absl::StrJoin(args.positionals, " "));
  const bool stream = !args.Has("no-stream");
  return Action([create, add, stream](Session& s) mutable -> absl::Status {
    absl::StatusOr<v1::CreateThreadResponse> thread = s.client.CreateThread(create);
    if (!thread.ok()) return thread.status();
    const std::string& thread_id = thread->thread().id();
    // stderr, so that stdout holds only the answer.
    if (!s.json) s.err << "thread: " << thread_id << "\n";
    add.set_thread_id(thread_id);
    if (absl::StatusOr<v1::AddMessageResponse> added = s.client.AddMessage(add); !added.ok()) {
      return added.status();
    }
    return RunThread(s, thread_id, stream, "");
  });
}

const std::vector<Command>& Commands() {
  static const auto* const kCommands = new std::vector<Command>{
      {"assistants",
       "",
       "List the assistants you may use: ID, name, whether it streams.",
       {},
       &PrepareAssistants},
      {"usage", "", "Show your usage and quotas for the current day and month.", {}, &PrepareUsage},
      {"thread create",
       "--assistant ID [--user UUID] [--title T] [--request-id ID]",
       "Create a thread; prints its ID alone on a line (T=$(copilot thread create ...)).",
       {{"assistant"}, {"user"}, {"title"}, {"request-id"}},
       &PrepareThreadCreate},
      {"thread get", "THREAD", "Show a thread.", {}, &PrepareThreadGet},
      {"thread delete", "THREAD", "Delete a thread.", {}, &PrepareThreadDelete},
      {"message add",
       "--thread THREAD [--role ROLE] [--tool-call-id ID] [--request-id ID] TEXT...",
       "Append a message; ROLE is user (default), system, assistant or tool. Prints its ID.",
       {{"thread"}, {"role"}, {"tool-call-id"}, {"request-id"}},
       &PrepareMessageAdd},
      {"messages list",
       "--thread THREAD [--page-size N] [--page-token T]",
       "List a thread's messages, newest first.",
       {{"thread"}, {"page-size"}, {"page-token"}},
       &PrepareMessagesList},
      {"run",
       "--thread THREAD [--no-stream [--request-id ID]]",
       "Answer the thread's last message, printing tokens as they arrive (--no-stream:\n"
       "      all at once), then the sources.",
       {{"thread"}, {"no-stream", false}, {"request-id"}},
       &PrepareRun},
      {"complete",
       "--assistant ID [--user UUID] [--system TEXT] [--thread THREAD]\n"
       "      [--no-stream [--request-id ID]] QUESTION...",
       "Answer a question without a thread of yours (the upstream's thread ID goes to\n"
       "      stderr; pass it as --thread to continue).",
       {{"assistant"}, {"user"}, {"system"}, {"thread"}, {"no-stream", false}, {"request-id"}},
       &PrepareComplete},
      {"ask",
       "--assistant ID [--user UUID] [--title T] [--no-stream] QUESTION...",
       "Create a thread, add QUESTION and stream the answer (thread ID on stderr).",
       {{"assistant"}, {"user"}, {"title"}, {"no-stream", false}},
       &PrepareAsk},
  };
  return *kCommands;
}

// ---- usage ------------------------------------------------------------------

void PrintCommandUsage(std::ostream& out, const Command& command) {
  out << "  copilot " << command.name;
  if (!command.arguments.empty()) out << " " << command.arguments;
  out << "\n      " << command.summary << "\n";
}

void PrintUsage(std::ostream& out) {
  out << "Usage: copilot [global flags] <command> [flags] [args]\n"
         "\n"
         "A client of the Copilot gateway (copilot.v1.CopilotService).\n"
         "\n"
         "Commands:\n";
  for (const Command& command : Commands()) PrintCommandUsage(out, command);
  out << "\n"
         "Global flags (before or after the command):\n"
         "  --target HOST:PORT  gateway address (default: $COPILOT_TARGET, else "
      << kDefaultTarget
      << ")\n"
         "  --token-file FILE   bearer token naming the caller (the tenant): the whole file,\n"
         "                      surrounding whitespace trimmed (default: $COPILOT_TOKEN)\n"
         "  --token TOKEN       the token itself; other local users can see it in the\n"
         "                      process list, so prefer --token-file or $COPILOT_TOKEN\n"
         "  --timeout SECONDS   deadline of each call, e.g. 30, 0.5 or 2m (default: 120)\n"
         "  --json              print responses as JSON, one object per line; streams print\n"
         "                      one MessageChunk per line; errors go to stderr as\n"
         "                      {\"error\":{\"code\":..,\"status\":..,\"message\":..,"
         "\"details\":[..]}}\n"
         "  --tls               use TLS, trusting the system's root certificates\n"
         "  --tls-ca FILE       use TLS, trusting the root certificates in FILE (PEM)\n"
         "                      instead (--tls-roots FILE is the same)\n"
         "  --tls-cert FILE     client certificate chain (PEM) for mutual TLS; needs\n"
         "  --tls-key FILE        its private key (PEM); both imply --tls\n"
         "  --tls-server-name NAME\n"
         "                      the name the server's certificate must carry (and SNI),\n"
         "                      e.g. localhost when --target is 127.0.0.1:PORT; implies --tls\n"
         "  -h, --help          show this help (after a command: that command's)\n"
         "\n"
         "Exit codes:\n"
         "  0       success\n"
         "  1..16   the gRPC status code of the failed call:\n";
  for (int code = 1; code <= 16; ++code) {
    out << (code % 4 == 1 ? "         " : "")
        << absl::StrCat(" ", code, " ",
                        absl::StatusCodeToString(static_cast<absl::StatusCode>(code)))
        << (code % 4 == 0 ? "\n" : "");
  }
  out << "  64      usage error (unknown command or flag, missing or bad argument)\n"
         "  66      a --token-file, --tls-ca, --tls-cert or --tls-key file cannot be read\n";
}

int UsageError(std::ostream& err, absl::string_view message, const Command* command = nullptr) {
  err << "copilot: " << message << "\n";
  if (command != nullptr) {
    err << "Usage:\n";
    PrintCommandUsage(err, *command);
  } else {
    err << "Run 'copilot --help' for usage.\n";
  }
  return kExitUsage;
}

int ExitCodeFor(const absl::Status& status) {
  const int code = static_cast<int>(status.code());
  if (code >= 1 && code <= 16) return code;
  return static_cast<int>(absl::StatusCode::kUnknown);
}

// The bearer token: --token-file's contents, --token, or the environment's,
// with surrounding whitespace trimmed. NOT_FOUND when the file cannot be
// read; INVALID_ARGUMENT (a usage error) for anything else. Messages name
// where the token came from, never the token.
absl::StatusOr<std::string> TokenFrom(const ParsedArgs& args, const CliEnvironment& env) {
  std::string token;
  std::string source;
  if (args.Has("token-file")) {
    if (args.Has("token")) {
      return absl::InvalidArgumentError("give --token or --token-file, not both");
    }
    const std::string path = OptionalFlag(args, "token-file");
    if (path.empty()) return absl::InvalidArgumentError("--token-file needs a FILE");
    absl::StatusOr<std::string> contents = ReadWholeFile(path);
    if (!contents.ok()) {
      return absl::NotFoundError(
          absl::StrCat("cannot read --token-file ", path, ": ", contents.status().message()));
    }
    token = std::string(absl::StripAsciiWhitespace(*contents));
    if (token.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("--token-file ", path, " is empty"));
    }
    source = absl::StrCat("--token-file ", path);
  } else if (args.Has("token")) {
    token = std::string(absl::StripAsciiWhitespace(OptionalFlag(args, "token")));
    source = "--token";
  } else {
    token = std::string(absl::StripAsciiWhitespace(env.token));
    source = "$COPILOT_TOKEN";
  }
  if (absl::Status valid = CheckBearerToken(token); !valid.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", valid.message()));
  }
  return token;
}

absl::StatusOr<ClientOptions> ClientOptionsFrom(const ParsedArgs& args, const CliEnvironment& env) {
  ClientOptions options;
  options.target = args.Get("target").value_or(env.target.empty() ? kDefaultTarget : env.target);
  options.timeout = kDefaultTimeout;
  if (std::optional<std::string> timeout = args.Get("timeout"); timeout.has_value()) {
    absl::StatusOr<absl::Duration> parsed = ParseTimeout(*timeout);
    if (!parsed.ok()) return parsed.status();
    options.timeout = *parsed;
  }
  options.use_tls = args.Has("tls");
  for (const char* flag : {"tls-ca", "tls-roots", "tls-cert", "tls-key", "tls-server-name"}) {
    if (args.Has(flag) && OptionalFlag(args, flag).empty()) {
      return absl::InvalidArgumentError(absl::StrCat("--", flag, " needs a value"));
    }
  }
  if (args.Has("tls-ca") && args.Has("tls-roots")) {
    return absl::InvalidArgumentError("give --tls-ca or --tls-roots, not both (they are the same)");
  }
  options.tls_root_certs_path = args.Get("tls-ca").value_or(OptionalFlag(args, "tls-roots"));
  options.tls_cert_chain_path = OptionalFlag(args, "tls-cert");
  options.tls_private_key_path = OptionalFlag(args, "tls-key");
  if (options.tls_cert_chain_path.empty() != options.tls_private_key_path.empty()) {
    return absl::InvalidArgumentError(
        "--tls-cert and --tls-key go together: give both (client certificate and its key) or "
        "neither");
  }
  options.tls_server_name = OptionalFlag(args, "tls-server-name");
  // Last: reading the token file comes after every check of the flags.
  absl::StatusOr<std::string> token = TokenFrom(args, env);
  if (!token.ok()) return token.status();
  options.token = *std::move(token);
  return options;
}

// Exit code and message for options that cannot make a client: 66 for a file
// that cannot be read, 64 otherwise.
int OptionsError(std::ostream& err, const absl::Status& status) {
  if (status.code() == absl::StatusCode::kNotFound) {
    err << "copilot: " << status.message() << "\n";
    return kExitNoInput;
  }
  return UsageError(err, status.message());
}

// The command named by the first one or two `words`, and how many it used.
std::pair<const Command*, size_t> FindCommand(const std::vector<std::string>& words) {
  for (const Command& command : Commands()) {
    std::vector<absl::string_view> parts = absl::StrSplit(command.name, ' ');
    if (words.size() < parts.size()) continue;
    bool match = true;
    for (size_t i = 0; i < parts.size(); ++i) match = match && words[i] == parts[i];
    if (match) return {&command, parts.size()};
  }
  return {nullptr, 0};
}

// Handles "thread", "thread --help", "message bogus", ...: a command group
// without a known subcommand. Returns -1 when `words` is no group.
int HandleGroup(const std::vector<std::string>& words, std::ostream& out, std::ostream& err) {
  std::vector<const Command*> group;
  for (const Command& command : Commands()) {
    if (absl::StartsWith(command.name, absl::StrCat(words[0], " "))) group.push_back(&command);
  }
  if (group.empty()) return -1;
  const bool help = words.size() > 1 && (words[1] == "--help" || words[1] == "-h");
  std::ostream& stream = help ? out : err;
  if (!help) {
    err << "copilot: "
        << (words.size() > 1 ? absl::StrCat("unknown command '", words[0], " ", words[1], "'")
                             : absl::StrCat("'", words[0], "' needs a subcommand"))
        << "\n";
  }
  stream << "Usage:\n";
  for (const Command* command : group) PrintCommandUsage(stream, *command);
  return help ? kExitOk : kExitUsage;
}

}  // namespace

int RunCli(const std::vector<std::string>& args, std::ostream& out, std::ostream& err,
           const CliEnvironment& env) {
  absl::StatusOr<ParsedArgs> global = ParseArgs(args, GlobalFlags(), /*stop_at_positional=*/true);
  if (!global.ok()) return UsageError(err, global.status().message());
  const std::vector<std::string>& words = global->positionals;
  if (words.empty() || words[0] == "help") {
    if (global->Has("help") || !words.empty()) {
      PrintUsage(out);
      return kExitOk;
    }
    return UsageError(err, "no command given");
  }

  auto [command, used] = FindCommand(words);
  if (command == nullptr) {
    if (int code = HandleGroup(words, out, err); code >= 0) return code;
    return UsageError(err, absl::StrCat("unknown command '", words[0], "'"));
  }
  std::vector<FlagSpec> specs = command->flags;
  specs.insert(specs.end(), GlobalFlags().begin(), GlobalFlags().end());
  absl::StatusOr<ParsedArgs> parsed = ParseArgs(absl::MakeConstSpan(words).subspan(used), specs);
  if (!parsed.ok()) return UsageError(err, parsed.status().message(), command);
  // Global flags given before the command, unless given again after it.
  for (const auto& [name, value] : global->flags) parsed->flags.try_emplace(name, value);
  if (parsed->Has("help")) {
    out << "Usage:\n";
    PrintCommandUsage(out, *command);
    return kExitOk;
  }

  absl::StatusOr<Action> action = command->prepare(*parsed);
  if (!action.ok()) return UsageError(err, action.status().message(), command);
  absl::StatusOr<ClientOptions> options = ClientOptionsFrom(*parsed, env);
  if (!options.ok()) return OptionsError(err, options.status());
  absl::StatusOr<CopilotClient> client = MakeCopilotClient(*options);
  if (!client.ok()) return OptionsError(err, client.status());

  const bool json = parsed->Has("json");
  Session session{*client, out, err, json};
  absl::Status status = (*action)(session);
  out.flush();
  if (status.ok()) return kExitOk;
  PrintError(err, status, json);
  return ExitCodeFor(status);
}

}  // namespace copilot::client::cli
