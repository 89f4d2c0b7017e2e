package com.copilotgateway.example;

import com.copilotgateway.copilot.v1.AddMessageRequest;
import com.copilotgateway.copilot.v1.CompleteRequest;
import com.copilotgateway.copilot.v1.CopilotServiceGrpc;
import com.copilotgateway.copilot.v1.CreateThreadRequest;
import com.copilotgateway.copilot.v1.GetThreadRequest;
import com.copilotgateway.copilot.v1.ListAssistantsRequest;
import com.copilotgateway.copilot.v1.Message;
import com.copilotgateway.copilot.v1.MessageInput;
import com.copilotgateway.copilot.v1.Role;
import com.copilotgateway.copilot.v1.StreamRunRequest;
import com.copilotgateway.copilot.v1.StreamRunResponse;
import com.copilotgateway.copilot.v1.Thread;
import com.google.protobuf.Any;
import com.google.protobuf.Duration;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.rpc.BadRequest;
import com.google.rpc.ErrorInfo;
import com.google.rpc.RetryInfo;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Metadata;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import io.grpc.stub.MetadataUtils;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * Example client of copilot.v1.CopilotService in Java.
 *
 * <p>Creates a thread, adds a question, streams the answer (StreamRun), asks the same question
 * with Complete, then provokes two errors and decodes their google.rpc details. Every call
 * carries the caller's bearer token ({@code authorization: Bearer <token>} metadata) and a
 * deadline.
 *
 * <p>Environment: COPILOT_TARGET (HOST:PORT, default 127.0.0.1:50051; plaintext), COPILOT_TOKEN
 * (required), COPILOT_ASSISTANT (assistant UUID, required), COPILOT_TIMEOUT (deadline of each
 * call in seconds, default 30), COPILOT_QUESTION.
 *
 * <p>Build it with client/java/generate.sh OUT_DIR, then run OUT_DIR/bin/copilot-example.
 * Output is one {@code key: value} line per event (thread:, message:, chunk:, run:, complete:,
 * error:). Exit status: 0 when every step did what it should, 1 when a call failed unexpectedly
 * (its {@code error:} line says why), 2 on a usage error.
 */
public final class CopilotExample {
  /** A handle of the right shape that no gateway ever issued: NOT_FOUND. */
  private static final String MADE_UP_THREAD_ID = "th1_made-up-thread-id";

  private static final String WRONG_TOKEN = "not-a-valid-token";

  private static final Metadata.Key<String> AUTHORIZATION =
      Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);

  private final ManagedChannel channel;
  private final String token;
  private final long timeoutMillis;
  /** The call in progress, named in the error line if it fails. */
  private String step = "";

  private CopilotExample(ManagedChannel channel, String token, long timeoutMillis) {
    this.channel = channel;
    this.token = token;
    this.timeoutMillis = timeoutMillis;
  }

  /** A stub for one call: the bearer token as metadata, and the deadline counting from now. */
  private CopilotServiceGrpc.CopilotServiceBlockingStub stub(String bearerToken) {
    Metadata headers = new Metadata();
    headers.put(AUTHORIZATION, "Bearer " + bearerToken);
    return CopilotServiceGrpc.newBlockingStub(channel)
        .withInterceptors(MetadataUtils.newAttachHeadersInterceptor(headers))
        .withDeadlineAfter(timeoutMillis, TimeUnit.MILLISECONDS);
  }

  /** Keeps the output line-oriented: newlines in answer text are shown as \n. */
  private static String oneLine(String text) {
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r");
  }

  private static String formatDuration(Duration d) {
    if (d.getNanos() == 0) {
      return d.getSeconds() + "s";
    }
    return String.format("%d.%03ds", d.getSeconds(), d.getNanos() / 1_000_000);
  }

  /**
   * Renders a failed call as {@code error: CODE reason=... [retry_delay=...] (call: message)}.
   *
   * <p>StatusProto.fromThrowable parses the {@code grpc-status-details-bin} trailer as a
   * google.rpc.Status; its details are Any-packed ErrorInfo, RetryInfo, BadRequest, ...
   */
  static String describeError(String call, StatusRuntimeException e) {
    List<String> words = new ArrayList<>();
    words.add("error: " + e.getStatus().getCode().name());
    com.google.rpc.Status status = StatusProto.fromThrowable(e);
    if (status != null) {
      for (Any detail : status.getDetailsList()) {
        try {
          if (detail.is(ErrorInfo.class)) {
            words.add("reason=" + detail.unpack(ErrorInfo.class).getReason());
          } else if (detail.is(RetryInfo.class)) {
            words.add(
                "retry_delay=" + formatDuration(detail.unpack(RetryInfo.class).getRetryDelay()));
          } else if (detail.is(BadRequest.class)) {
            for (BadRequest.FieldViolation v :
                detail.unpack(BadRequest.class).getFieldViolationsList()) {
              words.add("field=" + v.getField());
            }
          }
        } catch (InvalidProtocolBufferException bad) {
          words.add("undecodable_detail=" + detail.getTypeUrl());
        }
      }
    }
    String message = e.getStatus().getDescription();
    words.add("(" + call + ": " + oneLine(message == null ? "" : message) + ")");
    return String.join(" ", words);
  }

  private void run(String assistant, String question) {
    step = "CreateThread";
    Thread thread =
        stub(token)
            .createThread(
                CreateThreadRequest.newBuilder()
                    .setAssistantId(assistant)
                    .setTitle("Java example")
                    .build())
            .getThread();
    System.out.println("thread: " + thread.getId());

    step = "AddMessage";
    MessageInput input =
        MessageInput.newBuilder().setRole(Role.ROLE_USER).setContent(question).build();
    Message message =
        stub(token)
            .addMessage(
                AddMessageRequest.newBuilder()
                    .setThreadId(thread.getId())
                    .setMessage(input)
                    .build())
            .getMessage();
    System.out.println("message: " + message.getId());

    step = "StreamRun";
    int chunks = 0;
    long chars = 0;
    String messageId = "";
    Iterator<StreamRunResponse> stream =
        stub(token).streamRun(StreamRunRequest.newBuilder().setThreadId(thread.getId()).build());
    while (stream.hasNext()) {
      StreamRunResponse response = stream.next();
      String content = response.getChunk().getDelta().getContent();
      chunks++;
      chars += content.codePointCount(0, content.length());
      messageId = response.getChunk().getMessageId();
      System.out.println("chunk: " + oneLine(content));
      System.out.flush();
    }
    System.out.printf("run: chunks=%d message_id=%s chars=%d%n", chunks, messageId, chars);

    step = "Complete";
    Message answer =
        stub(token)
            .complete(
                CompleteRequest.newBuilder().setAssistantId(assistant).addMessages(input).build())
            .getMessage();
    System.out.println("complete: " + oneLine(answer.getContent()));
  }

  /** Makes a call that must fail and prints its decoded error; false if it succeeded. */
  private static boolean expectError(String call, Runnable invoke) {
    try {
      invoke.run();
    } catch (StatusRuntimeException e) {
      System.out.println(describeError(call, e));
      return true;
    }
    System.out.println("unexpected: " + call + " succeeded");
    return false;
  }

  private static String env(String name, String fallback) {
    String value = System.getenv(name);
    return value == null || value.isEmpty() ? fallback : value;
  }

  public static void main(String[] args) throws InterruptedException {
    String target = env("COPILOT_TARGET", "127.0.0.1:50051");
    String token = env("COPILOT_TOKEN", "");
    String assistant = env("COPILOT_ASSISTANT", "");
    String question = env("COPILOT_QUESTION", "Wie hoch ist die Pendlerpauschale 2026?");
    double seconds;
    try {
      seconds = Double.parseDouble(env("COPILOT_TIMEOUT", "30"));
    } catch (NumberFormatException e) {
      seconds = 0;
    }
    if (token.isEmpty() || assistant.isEmpty() || !(seconds > 0)) {
      System.err.println(
          "usage: COPILOT_TOKEN=... COPILOT_ASSISTANT=UUID [COPILOT_TARGET=HOST:PORT]"
              + " [COPILOT_TIMEOUT=SECONDS] copilot-example");
      System.exit(2);
    }

    // Plaintext, as the gateway's development listener; useTransportSecurity() for its TLS one.
    ManagedChannel channel = ManagedChannelBuilder.forTarget(target).usePlaintext().build();
    CopilotExample example = new CopilotExample(channel, token, (long) (seconds * 1000));
    int exitCode = 0;
    try {
      example.run(assistant, question);
      boolean ok =
          expectError(
              "GetThread",
              () ->
                  example
                      .stub(token)
                      .getThread(
                          GetThreadRequest.newBuilder().setThreadId(MADE_UP_THREAD_ID).build()));
      ok =
          expectError(
                  "ListAssistants with a wrong token",
                  () ->
                      example
                          .stub(WRONG_TOKEN)
                          .listAssistants(ListAssistantsRequest.getDefaultInstance()))
              && ok;
      exitCode = ok ? 0 : 1;
    } catch (StatusRuntimeException e) {
      System.out.println(describeError(example.step, e));
      exitCode = 1;
    } finally {
      System.out.flush();
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
    System.exit(exitCode);
  }
}
