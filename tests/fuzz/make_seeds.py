#!/usr/bin/python3
"""Writes the seed corpora of the fuzz targets into tests/fuzz/corpus/<target>/seed-*.

Seeds are realistic inputs: the upstream's bodies as haufe-api.md and the emulator
(tests/emulator) give them, the gateway's own requests, its config files. Targets that read their
input with FuzzedDataProvider get it in that layout (Fdp below): control values taken from the
end of the input, byte strings from the front. Re-run after changing a target's input layout:
  /usr/bin/python3 tests/fuzz/make_seeds.py   (Debian python3-protobuf and protoc)
Inputs libFuzzer finds later live outside the repository (scripts/fuzz.sh); only seeds and
regression inputs are committed.
"""
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "fuzz" / "corpus"

UUID_T = "0b5a7e4c-2f1d-4c3a-9e8b-7a6f5d4c3b2a"
UUID_A = "3f2e1d0c-b9a8-4765-8432-10fedcba9876"
UUID_M = "6d5c4b3a-2918-4706-b5a4-93827160fedc"
TIME = "2025-01-01T00:00:00.000000Z"


class Fdp:
    """Builds an input that FuzzedDataProvider reads back as the values given, in order."""

    def __init__(self):
        self.front = bytearray()
        self.back = []  # bytes in the order they are consumed (from the end)

    def int_in_range(self, value, lo, hi, bits=64):
        span, offset, count = hi - lo, 0, 0
        while offset < bits and (span >> offset) > 0:
            offset += 8
            count += 1
        v = value - lo
        self.back += [(v >> (8 * (count - 1 - i))) & 0xFF for i in range(count)]
        return self

    def boolean(self, value):
        self.back.append(1 if value else 0)
        return self

    def raw_int(self, value, nbytes):  # ConsumeIntegral<T>() of an nbytes-wide T
        value &= (1 << (8 * nbytes)) - 1
        self.back += [(value >> (8 * (nbytes - 1 - i))) & 0xFF for i in range(nbytes)]
        return self

    def bytes(self, data):  # ConsumeBytes / ConsumeRemainingBytes
        self.front += data
        return self

    def random_length_string(self, data):  # ConsumeRandomLengthString, ended by "\\" + "x"
        self.front += data.replace(b"\\", b"\\\\") + b"\\x"
        return self

    def build(self):
        return bytes(self.front) + bytes(reversed(self.back))


def js(value):
    return json.dumps(value, separators=(",", ":")).encode()


MESSAGE = {
    "id": UUID_M, "thread_id": UUID_T, "role": "assistant", "created_at": TIME,
    "content": "Die Kündigungsfrist beträgt vier Wochen.",
    "meta_data": {"type": "answer", "legal_advice": False, "intent": "kündigung"},
    "sources": [{"content": "§ 622 BGB", "meta_data": {"document_title": "BGB", "section": "622"}}],
}
TOOL_MESSAGE = {
    "id": UUID_M, "thread_id": UUID_T, "role": "assistant", "created_at": "2025-03-15T09:12:33+01:00",
    "content": "", "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "lookup", "arguments": "{\"query\":\"urlaub\"}"}},
        {"id": "call_2", "type": "function", "function": {"name": "calc", "arguments": {"a": [1, 2.5]}}},
    ],
    "attachments": [{"file_id": "f-1", "user_id": UUID_A, "base_url": "https://files.test/"}],
}
ASSISTANT = {
    "id": UUID_A, "name": "Arbeitsrecht", "streaming": True,
    "meta_data_response_schema": {"type": "object", "properties": {"intent": {"type": "string"}}},
    "request_required_fields": {"licence": True},
}
THREAD = {"id": UUID_T, "assistant_id": UUID_A, "user_id": UUID_A, "title": "Urlaub",
          "created_at": TIME, "last_updated_at": "2025-01-01T10:00:00Z"}
PAGE = {"cursor": "eyJvZmZzZXQiOjJ9", "items": [MESSAGE, TOOL_MESSAGE]}


def chunk(content, sources=()):
    return js({"message_id": UUID_M, "thread_id": UUID_T, "created_at": TIME,
               "delta": {"role": "assistant", "content": content, "sources": list(sources)}})


STREAM = b"\n".join([chunk("Erster Teil "), chunk("zweiter Teil."),
                     chunk("", [{"content": "<excerpt>", "meta_data": {"document_title": "t"}}])]) + b"\n"
STREAM_CRLF = STREAM.replace(b"\n", b"\r\n") + b"\r\n"
STREAM_ERROR = chunk("Teil ") + b"\n" + js({"error_code": "api_timeout_error", "detail": "upstream timed out"}) + b"\n"
STREAM_UNTERMINATED = chunk("Teil ") + b"\n" + chunk("Ende")
STREAM_CUT = chunk("Teil ") + b"\n" + chunk("Ende")[:40]

ERRORS = {
    "validation-422": (422, js({"detail": [{"loc": ["body", "messages", 0, "content"], "msg": "field required",
                                             "type": "value_error.missing"}]})),
    "validation-old-400": (400, js({"error_code": "bad_request", "detail": [{"loc": "content", "message": "empty"}]})),
    "thread-not-found": (404, js({"error_code": "thread_not_found", "detail": "Thread not found"})),
    "deactivated": (400, js({"error_code": "thread_is_deactivated", "detail": "Thread is deactivated"})),
    "metadata": (422, js({"error_code": "request_metadata_missing_or_incomplete", "detail": "licence missing"})),
    "rate-limit": (429, js({"error_code": "rate_limit_gateway", "message": "Too many requests"})),
    "unauthorized": (401, js({"error_code": "unauthorized", "detail": "invalid api-key fuzz-api-key"})),
    "html-502": (502, b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>\r\n"),
    "truncated-500": (500, b'{"error_code":"internal_server_error","detail":"Something went wro'),
    "empty-503": (503, b""),
}

HTTP_REQUESTS = [
    b"POST /v1/threads/" + UUID_T.encode() + b"/run/stream HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
    b"api-key: fuzz-api-key\r\naccept: application/x-ndjson, application/json\r\n"
    b"content-type: application/json\r\nContent-Length: 2\r\n\r\n{}",
    b"GET /v1/threads/" + UUID_T.encode() + b"/messages?limit=10&cursor=eyJvZmZzZXQiOjJ9 HTTP/1.1\r\n"
    b"Host: localhost\r\nx-request-id: abc-123\r\n\r\n"
    b"DELETE /v1/threads/" + UUID_T.encode() + b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    b"\r\nPOST /v1/chat/completions?thread_id=" + UUID_T.encode() + b" HTTP/1.0\r\nConnection: keep-alive\r\n"
    b"Expect: 100-continue\r\nContent-Length: 58\r\n\r\n" + js({"assistant_id": UUID_A, "messages": [{"role": "user"}]})[:58],
    b"POST /_emulator/faults HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
]


def write(target, name, data):
    directory = CORPUS / target
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"seed-{name}").write_bytes(data)


def upstream_json():
    bodies = {
        "assistant-list": js([ASSISTANT, {"id": UUID_T, "name": "Steuern", "streaming": False}]),
        "assistant-items": js({"items": [ASSISTANT]}),
        "assistant": js(ASSISTANT), "thread": js(THREAD), "message": js(MESSAGE),
        "message-tool-calls": js(TOOL_MESSAGE), "message-page": js(PAGE),
        "message-page-last": js({"cursor": None, "items": []}),
        "chunk": chunk("Hallo"), "error-line": js({"error_code": "rate_limit_error", "detail": "slow down"}),
        "timestamp": b"2025-03-15T09:12:33.456789-05:30", "nested": js({"id": "x", "meta_data": {"a": [[{"b": [1]}]]}}),
    }
    for name, body in bodies.items():
        write("upstream_json", name, body)


def ndjson_splitter():
    for name, body, limit in [("stream", STREAM, 300), ("crlf", STREAM_CRLF, 300),
                              ("unterminated", STREAM_UNTERMINATED, 300), ("cut", STREAM_CUT, 300),
                              ("blank-lines", b"\n \n" + chunk("a") + b"\r\n\t\r\n", 200),
                              ("too-long", chunk("x" * 60) + b"\n", 40)]:
        fdp = Fdp().int_in_range(limit, 1, 300)
        for start in range(0, len(body), 37):
            piece = body[start:start + 37]
            fdp.int_in_range(len(piece), 0, 80).bytes(piece)
        write("ndjson_splitter", name, fdp.build())


def stream_decoder():
    def seed(body, status=200, run=True, small_lines=None):
        fdp = Fdp()
        fdp.boolean(small_lines is not None)
        if small_lines is not None:
            fdp.int_in_range(small_lines, 1, 512)
        fdp.boolean(run)
        if status == 200:
            fdp.int_in_range(1, 0, 7)
        else:
            fdp.int_in_range(0, 0, 7).int_in_range(status, 0, 599)
        fdp.boolean(status == 429)
        for line in body.splitlines(keepends=True):
            for start in range(0, len(line), 128):
                piece = line[start:start + 128]
                fdp.int_in_range(len(piece), 0, 128).bytes(piece)
                if status == 200 and piece.endswith(b"\n") and piece.strip():
                    fdp.int_in_range(1, 0, 3)  # the sink takes the chunk without pausing
        fdp.int_in_range(1, 0, 15)  # the transfer ends normally
        return fdp.build()

    write("stream_decoder", "run", seed(STREAM))
    write("stream_decoder", "complete-crlf", seed(STREAM_CRLF, run=False))
    write("stream_decoder", "error-line", seed(STREAM_ERROR))
    write("stream_decoder", "unterminated", seed(STREAM_UNTERMINATED))
    write("stream_decoder", "cut", seed(STREAM_CUT))
    write("stream_decoder", "small-lines", seed(STREAM, small_lines=100))
    for name, (status, body) in ERRORS.items():
        write("stream_decoder", f"http-{name}", seed(body, status=status))


def buffered_call():
    def seed(which, body, status=None, retry_after=None, ending=1):
        fdp = Fdp().int_in_range(which, 0, 8)
        if status is None:
            fdp.int_in_range(2, 0, 3)
        else:
            fdp.int_in_range(0, 0, 3).int_in_range(status, 0, 999)
        fdp.boolean(retry_after is not None)
        if retry_after is not None:
            fdp.random_length_string(retry_after)
        fdp.int_in_range(ending, 0, 15)
        for start in range(0, len(body), 256):
            piece = body[start:start + 256]
            fdp.int_in_range(len(piece), 0, 256).bytes(piece)
        return fdp.build()

    ok = [js([ASSISTANT]), js(ASSISTANT), js(THREAD), js(THREAD), b"", js(MESSAGE), js(PAGE),
          js(TOOL_MESSAGE), js(MESSAGE)]
    for which, body in enumerate(ok):
        write("buffered_call", f"ok-{which}", seed(which, body))
    for index, (name, (status, body)) in enumerate(ERRORS.items()):
        write("buffered_call", f"error-{name}", seed(index % 9, body, status,
                                                      b"120" if status == 429 else None))
    write("buffered_call", "retry-after-date",
          seed(6, ERRORS["rate-limit"][1], 429, b"Wed, 21 Oct 2035 07:28:00 GMT"))
    write("buffered_call", "transport-failure", seed(7, js(MESSAGE)[:30], ending=0))


def http_status():
    for name, (status, body) in ERRORS.items():
        fdp = Fdp().boolean(True).int_in_range(status, 100, 599)
        fdp.random_length_string(b"Wed, 21 Oct 2015 07:28:00 GMT" if status == 429 else b"")
        write("http_status", name, fdp.bytes(body).build())
    for name, value in [("retry-seconds", b"120"), ("retry-rfc850", b"Sunday, 06-Nov-94 08:49:37 GMT"),
                        ("retry-asctime", b"Sun Nov  6 08:49:37 1994")]:
        fdp = Fdp().boolean(True).int_in_range(429, 100, 599).random_length_string(value)
        write("http_status", name, fdp.bytes(ERRORS["rate-limit"][1]).build())
    fdp = Fdp().boolean(False).raw_int(-1, 4).random_length_string(b"")
    write("http_status", "odd-status", fdp.bytes(b"{}").build())


def config_yaml():
    for path in ["deploy/gateway.example.yaml", "deploy/kubernetes/base/gateway.yaml",
                 "deploy/kubernetes/overlays/ha/gateway.yaml"]:
        write("config_yaml", pathlib.Path(path).parent.name + "-" + pathlib.Path(path).stem,
              (ROOT / path).read_bytes())
    write("config_yaml", "minimal", b"upstream:\n  base_url: http://127.0.0.1:8080\n  api_key_env: KEY\n")
    write("config_yaml", "flow", b"{listen: '127.0.0.1:0', upstream: {base_url: 'https://x', api_key_file: /k},"
                                 b" tenants: [{id: acme, tokens_file: /t, assistants: [{id: '*'}]}]}\n")


# A handle that verifies for tenant "acme" under the target's signing key (SignedThreadHandles::
# ToCaller for thread "t12", assistant "a1"): without one the target never reaches a verified
# handle, whose tag it cannot guess.
VALID_HANDLE = b"th2_6GAkvQMDdDEyAmExskVqt0QZHkbI1oiErCCzRw"


def thread_handles():
    write("thread_handles", "handle", Fdp().random_length_string(b"acme").int_in_range(0, 0, 2)
          .bytes(VALID_HANDLE).build())
    write("thread_handles", "thread-uuids", Fdp().random_length_string(b"acme").int_in_range(1, 0, 2)
          .random_length_string(UUID_T.encode()).bytes(UUID_A.encode()).build())
    write("thread_handles", "thread-raw", Fdp().random_length_string(b"beta").int_in_range(1, 0, 2)
          .random_length_string(b"thread_abc").bytes(b"").build())
    write("thread_handles", "user-uuid", Fdp().random_length_string(b"acme").int_in_range(2, 0, 2)
          .bytes(UUID_A.upper().encode()).build())


def caller_metadata():
    for name, value in [("bearer", b"Bearer alpha-token-0123456789"), ("bearer-case", b"  bEaReR   beta-token-9876543210 "),
                        ("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
                        ("request-id", b"req-2025.01:01/abc+def=="), ("spiffe", b"spiffe://fuzz/alpha\nspiffe://other")]:
        fdp = Fdp().boolean(True).boolean(True).boolean(False).int_in_range(1, 0, 7)
        write("caller_metadata", name, fdp.bytes(value).build())


def caller_proto():
    with tempfile.TemporaryDirectory() as out:
        subprocess.run(["protoc", f"--python_out={out}", "-I", str(ROOT / "proto"), "-I", "/usr/include",
                        "copilot/v1/resources.proto", "copilot/v1/copilot_service.proto"], check=True)
        sys.path.insert(0, out)
        from copilot.v1 import copilot_service_pb2 as svc, resources_pb2 as res
        from google.protobuf import struct_pb2
        tool = struct_pb2.Struct()
        tool.update({"type": "function", "function": {"name": "lookup", "parameters": {
            "type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}})
        user = res.MessageInput(role=res.ROLE_USER, content="Wie lange ist die Kündigungsfrist?")
        assistant = res.MessageInput(role=res.ROLE_ASSISTANT, tool_calls=[res.ToolCall(
            id="call_1", type="function", function=res.FunctionCall(name="lookup", arguments='{"query":"frist"}'))])
        tool_answer = res.MessageInput(role=res.ROLE_TOOL, content="vier Wochen", tool_call_id="call_1")
        handle = "th1_AQsKfkwvHUw6nouHpvXUw7Kj8uHQy5qEdlhDIQ"
        requests = [
            svc.ListAssistantsRequest(),
            svc.CreateThreadRequest(assistant_id=UUID_A, user_id=UUID_T, title="Urlaub", request_id=UUID_M),
            svc.GetThreadRequest(thread_id=handle),
            svc.DeleteThreadRequest(thread_id=handle),
            svc.AddMessageRequest(thread_id=handle, message=user, request_id=UUID_M),
            svc.ListMessagesRequest(thread_id=handle, page_size=20, page_token="eyJvZmZzZXQiOjJ9"),
            svc.RunRequest(thread_id=handle, tools=[tool], request_id=UUID_M),
            svc.StreamRunRequest(thread_id=handle, tools=[tool]),
            svc.CompleteRequest(assistant_id=UUID_A, messages=[user, assistant, tool_answer], user_id=UUID_T,
                                tools=[tool]),
            svc.StreamCompleteRequest(assistant_id=UUID_A, messages=[user], thread_id=handle),
        ]
        for which, request in enumerate(requests):
            write("caller_proto", f"{which}-{type(request).__name__}", bytes([which]) + request.SerializeToString())


def redis():
    for name, url in [("plain", b"redis://127.0.0.1:6379"), ("auth", b"redis://:s3cr%40t@redis.internal:6380/2"),
                      ("acl", b"redis://gateway:p%3Aw@[::1]:6379/0"), ("host-only", b"redis://copilot-redis"),
                      ("tls", b"rediss://user:p%40ss@[::1]:6380/2")]:
        write("redis_url", name, url)
    replies = {
        "step-allowed": b"*2\r\n:1\r\n:0\r\n", "step-refused": b"*2\r\n:0\r\n:250000\r\n",
        "slot": b":1\r\n:0\r\n", "noscript": b"-NOSCRIPT No matching script. Please use EVAL.\r\n",
        "readonly": b"-READONLY You can't write against a read only replica.\r\n",
        "sha": b"$40\r\n" + b"e0e1f9fabfc9d4800c877a703b823ac0578ff831" + b"\r\n+OK\r\n",
        "nested": b"*3\r\n*2\r\n:1\r\n$-1\r\n*-1\r\n+PONG\r\n",
        # The quota counters script: added (1, the group's values) or refused (0, the index of
        # the refusing counter, the values).
        "counters-added": b"*4\r\n:1\r\n:-1\r\n:3\r\n:40\r\n",
        "counters-refused": b"*6\r\n:0\r\n:2\r\n:1\r\n:5\r\n:25\r\n:0\r\n",
        # The request_id claim script: claimed, a result (binary), another replica's attempt.
        "claim-start": b"*1\r\n$5\r\nstart\r\n",
        "claim-done": b"*2\r\n$4\r\ndone\r\n$6\r\n\x0a\x02m1\x00\xff\r\n",
        "claim-inflight": b"*2\r\n$8\r\ninflight\r\n$4\r\n1500\r\n",
    }
    for name, reply in replies.items():
        fdp = Fdp()
        for start in range(0, len(reply), 16):
            piece = reply[start:start + 16]
            fdp.int_in_range(len(piece), 1, 64).bytes(piece)
        write("redis_reply", name, fdp.build())


def emulator_http_request():
    for index, request in enumerate(HTTP_REQUESTS):
        fdp = Fdp().boolean(True).boolean(True)
        for start in range(0, len(request), 50):
            piece = request[start:start + 50]
            fdp.int_in_range(len(piece), 1, 64).bytes(piece)
        write("emulator_http_request", f"request-{index}", fdp.build())


def main():
    for directory in CORPUS.glob("*"):
        for seed in directory.glob("seed-*"):
            seed.unlink()
    for make in [upstream_json, ndjson_splitter, stream_decoder, buffered_call, http_status, config_yaml,
                 thread_handles, caller_metadata, caller_proto, redis, emulator_http_request]:
        make()


if __name__ == "__main__":
    main()
