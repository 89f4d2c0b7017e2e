#!/usr/bin/python3
"""Example client of copilot.v1.CopilotService in Python.

Creates a thread, adds a question, streams the answer (StreamRun), asks the same question with
Complete, then provokes two errors and decodes their google.rpc details. Every call carries the
caller's bearer token (`authorization: Bearer <token>` metadata) and a deadline.

Environment:
  COPILOT_TARGET     gateway address, HOST:PORT (default 127.0.0.1:50051; plaintext)
  COPILOT_TOKEN      bearer token naming the caller (required)
  COPILOT_ASSISTANT  assistant UUID to talk to (required; see ListAssistants)
  COPILOT_TIMEOUT    deadline of each call in seconds (default 30)
  COPILOT_QUESTION   the question (default: a German tax question)

Run with the generated code on the path (client/python/generate.sh OUT_DIR first):
  PYTHONPATH=OUT_DIR /usr/bin/python3 client/python/copilot_example.py

Output is one `key: value` line per event (thread:, message:, chunk:, run:, complete:, error:).
Exit status: 0 when every step did what it should, 1 when a call failed unexpectedly (its
`error:` line says why), 2 on a usage error.
"""

import os
import sys

import grpc

from copilot.v1 import copilot_service_pb2 as pb
from copilot.v1 import copilot_service_pb2_grpc as pb_grpc
from copilot.v1 import resources_pb2
from google.rpc import error_details_pb2
from google.rpc import status_pb2

# A handle of the right shape that no gateway ever issued: NOT_FOUND, like any thread that is
# not the caller's.
MADE_UP_THREAD_ID = "th1_made-up-thread-id"
WRONG_TOKEN = "not-a-valid-token"


def one_line(text):
    """Keeps the output line-oriented: newlines in answer text are shown as \\n."""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


def format_duration(duration):
    if duration.nanos == 0:
        return f"{duration.seconds}s"
    return f"{duration.seconds}.{duration.nanos // 1_000_000:03d}s"


def describe_error(call, err):
    """`error: CODE reason=... [retry_delay=...] (call: message)` from a failed call.

    The details travel in the `grpc-status-details-bin` trailer as a serialized
    google.rpc.Status whose `details` are Any-packed ErrorInfo, RetryInfo, BadRequest, ...
    """
    words = [f"error: {err.code().name}"]
    for key, value in err.trailing_metadata() or ():
        if key != "grpc-status-details-bin":
            continue
        status = status_pb2.Status.FromString(value)
        info = error_details_pb2.ErrorInfo()
        retry = error_details_pb2.RetryInfo()
        bad_request = error_details_pb2.BadRequest()
        for detail in status.details:
            if detail.Unpack(info):
                words.append(f"reason={info.reason}")
            elif detail.Unpack(retry):
                words.append(f"retry_delay={format_duration(retry.retry_delay)}")
            elif detail.Unpack(bad_request):
                for violation in bad_request.field_violations:
                    words.append(f"field={violation.field}")
    words.append(f"({call}: {one_line(err.details() or '')})")
    return " ".join(words)


class Example:
    def __init__(self, target, token, timeout):
        self.channel = grpc.insecure_channel(target)
        self.stub = pb_grpc.CopilotServiceStub(self.channel)
        self.token = token
        self.timeout = timeout
        self.step = ""  # the call in progress, named in the error line if it fails

    def call_options(self, token=None):
        """The bearer token and the deadline that go with every call."""
        return {
            "metadata": (("authorization", f"Bearer {token or self.token}"),),
            "timeout": self.timeout,
        }

    def run(self, assistant, question):
        self.step = "CreateThread"
        thread = self.stub.CreateThread(
            pb.CreateThreadRequest(assistant_id=assistant, title="Python example"),
            **self.call_options(),
        ).thread
        print(f"thread: {thread.id}", flush=True)

        self.step = "AddMessage"
        message = self.stub.AddMessage(
            pb.AddMessageRequest(
                thread_id=thread.id,
                message=resources_pb2.MessageInput(role=resources_pb2.ROLE_USER, content=question),
            ),
            **self.call_options(),
        ).message
        print(f"message: {message.id}", flush=True)

        self.step = "StreamRun"
        chunks, message_id, answer = 0, "", []
        for response in self.stub.StreamRun(
            pb.StreamRunRequest(thread_id=thread.id), **self.call_options()
        ):
            chunks += 1
            message_id = response.chunk.message_id
            answer.append(response.chunk.delta.content)
            print(f"chunk: {one_line(response.chunk.delta.content)}", flush=True)
        print(f"run: chunks={chunks} message_id={message_id} chars={len(''.join(answer))}", flush=True)

        self.step = "Complete"
        completion = self.stub.Complete(
            pb.CompleteRequest(
                assistant_id=assistant,
                messages=[resources_pb2.MessageInput(role=resources_pb2.ROLE_USER, content=question)],
            ),
            **self.call_options(),
        ).message
        print(f"complete: {one_line(completion.content)}", flush=True)

    def expect_error(self, call, invoke):
        """Makes a call that must fail and prints its decoded error; False if it succeeded."""
        try:
            invoke()
        except grpc.RpcError as err:
            print(describe_error(call, err), flush=True)
            return True
        print(f"unexpected: {call} succeeded", flush=True)
        return False


def main():
    target = os.environ.get("COPILOT_TARGET", "127.0.0.1:50051")
    token = os.environ.get("COPILOT_TOKEN", "")
    assistant = os.environ.get("COPILOT_ASSISTANT", "")
    question = os.environ.get("COPILOT_QUESTION", "Wie hoch ist die Pendlerpauschale 2026?")
    try:
        timeout = float(os.environ.get("COPILOT_TIMEOUT", "30"))
    except ValueError:
        timeout = 0
    if not token or not assistant or timeout <= 0:
        print("usage: COPILOT_TOKEN=... COPILOT_ASSISTANT=UUID [COPILOT_TARGET=HOST:PORT] "
              "[COPILOT_TIMEOUT=SECONDS] copilot_example.py", file=sys.stderr)
        return 2

    example = Example(target, token, timeout)
    try:
        example.run(assistant, question)
    except grpc.RpcError as err:
        print(describe_error(example.step, err), flush=True)
        return 1

    ok = example.expect_error(
        "GetThread",
        lambda: example.stub.GetThread(
            pb.GetThreadRequest(thread_id=MADE_UP_THREAD_ID), **example.call_options()
        ),
    )
    ok = example.expect_error(
        "ListAssistants with a wrong token",
        lambda: example.stub.ListAssistants(
            pb.ListAssistantsRequest(), **example.call_options(token=WRONG_TOKEN)
        ),
    ) and ok
    example.channel.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
