// Command copilot-example is an example client of copilot.v1.CopilotService in Go.
//
// It creates a thread, adds a question, streams the answer (StreamRun), asks the same question
// with Complete, then provokes two errors and decodes their google.rpc details. Every call
// carries the caller's bearer token (`authorization: Bearer <token>` metadata) and a deadline.
//
// Environment:
//
//	COPILOT_TARGET     gateway address, HOST:PORT (default 127.0.0.1:50051; plaintext)
//	COPILOT_TOKEN      bearer token naming the caller (required)
//	COPILOT_ASSISTANT  assistant UUID to talk to (required; see ListAssistants)
//	COPILOT_TIMEOUT    deadline of each call in seconds (default 30)
//	COPILOT_QUESTION   the question (default: a German tax question)
//
// Build it with client/go/generate.sh OUT_DIR, then run OUT_DIR/bin/copilot-example.
//
// Output is one `key: value` line per event (thread:, message:, chunk:, run:, complete:,
// error:). Exit status: 0 when every step did what it should, 1 when a call failed unexpectedly
// (its `error:` line says why), 2 on a usage error.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	copilotv1 "copilotgateway/gen/go/copilot/v1"

	"github.com/golang/protobuf/ptypes/duration"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

const (
	// A handle of the right shape that no gateway ever issued: NOT_FOUND, like any thread
	// that is not the caller's.
	madeUpThreadID = "th1_made-up-thread-id"
	wrongToken     = "not-a-valid-token"
)

// codeNames are the canonical status code names (codes.Code.String() says "NotFound").
var codeNames = map[codes.Code]string{
	codes.OK: "OK", codes.Canceled: "CANCELLED", codes.Unknown: "UNKNOWN",
	codes.InvalidArgument: "INVALID_ARGUMENT", codes.DeadlineExceeded: "DEADLINE_EXCEEDED",
	codes.NotFound: "NOT_FOUND", codes.AlreadyExists: "ALREADY_EXISTS",
	codes.PermissionDenied: "PERMISSION_DENIED", codes.ResourceExhausted: "RESOURCE_EXHAUSTED",
	codes.FailedPrecondition: "FAILED_PRECONDITION", codes.Aborted: "ABORTED",
	codes.OutOfRange: "OUT_OF_RANGE", codes.Unimplemented: "UNIMPLEMENTED",
	codes.Internal: "INTERNAL", codes.Unavailable: "UNAVAILABLE", codes.DataLoss: "DATA_LOSS",
	codes.Unauthenticated: "UNAUTHENTICATED",
}

// oneLine keeps the output line-oriented: newlines in answer text are shown as \n.
func oneLine(text string) string {
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`, "\r", `\r`).Replace(text)
}

func formatDuration(d *duration.Duration) string {
	if d.GetNanos() == 0 {
		return fmt.Sprintf("%ds", d.GetSeconds())
	}
	return fmt.Sprintf("%d.%03ds", d.GetSeconds(), d.GetNanos()/1000000)
}

// describeError renders a failed call as `error: CODE reason=... [retry_delay=...] (call: msg)`.
//
// grpc-go decodes the `grpc-status-details-bin` trailer, a serialized google.rpc.Status, into
// the error's *status.Status; Details() unpacks its Any-packed ErrorInfo, RetryInfo, ...
func describeError(call string, err error) string {
	st := status.Convert(err)
	words := []string{"error: " + codeNames[st.Code()]}
	for _, detail := range st.Details() {
		switch d := detail.(type) {
		case *errdetails.ErrorInfo:
			words = append(words, "reason="+d.GetReason())
		case *errdetails.RetryInfo:
			words = append(words, "retry_delay="+formatDuration(d.GetRetryDelay()))
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				words = append(words, "field="+v.GetField())
			}
		}
	}
	words = append(words, fmt.Sprintf("(%s: %s)", call, oneLine(st.Message())))
	return strings.Join(words, " ")
}

type example struct {
	client  copilotv1.CopilotServiceClient
	token   string
	timeout time.Duration
	step    string // the call in progress, named in the error line if it fails
}

// callContext is the context of one call: the bearer token as metadata and the deadline.
func (e *example) callContext(token string) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), e.timeout)
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token), cancel
}

func (e *example) createThread(assistant string) (*copilotv1.Thread, error) {
	e.step = "CreateThread"
	ctx, cancel := e.callContext(e.token)
	defer cancel()
	resp, err := e.client.CreateThread(ctx, &copilotv1.CreateThreadRequest{
		AssistantId: assistant, Title: "Go example"})
	return resp.GetThread(), err
}

func (e *example) addMessage(threadID, question string) (*copilotv1.Message, error) {
	e.step = "AddMessage"
	ctx, cancel := e.callContext(e.token)
	defer cancel()
	resp, err := e.client.AddMessage(ctx, &copilotv1.AddMessageRequest{
		ThreadId: threadID,
		Message:  &copilotv1.MessageInput{Role: copilotv1.Role_ROLE_USER, Content: question},
	})
	return resp.GetMessage(), err
}

func (e *example) streamRun(threadID string) error {
	e.step = "StreamRun"
	ctx, cancel := e.callContext(e.token)
	defer cancel()
	stream, err := e.client.StreamRun(ctx, &copilotv1.StreamRunRequest{ThreadId: threadID})
	if err != nil {
		return err
	}
	chunks, chars, messageID := 0, 0, ""
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		chunks++
		messageID = resp.GetChunk().GetMessageId()
		content := resp.GetChunk().GetDelta().GetContent()
		chars += len([]rune(content))
		fmt.Printf("chunk: %s\n", oneLine(content))
	}
	fmt.Printf("run: chunks=%d message_id=%s chars=%d\n", chunks, messageID, chars)
	return nil
}

func (e *example) complete(assistant, question string) (*copilotv1.Message, error) {
	e.step = "Complete"
	ctx, cancel := e.callContext(e.token)
	defer cancel()
	resp, err := e.client.Complete(ctx, &copilotv1.CompleteRequest{
		AssistantId: assistant,
		Messages: []*copilotv1.MessageInput{
			{Role: copilotv1.Role_ROLE_USER, Content: question}},
	})
	return resp.GetMessage(), err
}

func (e *example) run(assistant, question string) error {
	thread, err := e.createThread(assistant)
	if err != nil {
		return err
	}
	fmt.Printf("thread: %s\n", thread.GetId())
	message, err := e.addMessage(thread.GetId(), question)
	if err != nil {
		return err
	}
	fmt.Printf("message: %s\n", message.GetId())
	if err := e.streamRun(thread.GetId()); err != nil {
		return err
	}
	answer, err := e.complete(assistant, question)
	if err != nil {
		return err
	}
	fmt.Printf("complete: %s\n", oneLine(answer.GetContent()))
	return nil
}

// expectError makes a call that must fail and prints its decoded error; false if it succeeded.
func expectError(call string, err error) bool {
	if err == nil {
		fmt.Printf("unexpected: %s succeeded\n", call)
		return false
	}
	fmt.Println(describeError(call, err))
	return true
}

func main() {
	target := os.Getenv("COPILOT_TARGET")
	if target == "" {
		target = "127.0.0.1:50051"
	}
	token, assistant := os.Getenv("COPILOT_TOKEN"), os.Getenv("COPILOT_ASSISTANT")
	question := os.Getenv("COPILOT_QUESTION")
	if question == "" {
		question = "Wie hoch ist die Pendlerpauschale 2026?"
	}
	seconds := 30.0
	if s := os.Getenv("COPILOT_TIMEOUT"); s != "" {
		var err error
		if seconds, err = strconv.ParseFloat(s, 64); err != nil {
			seconds = 0
		}
	}
	if token == "" || assistant == "" || seconds <= 0 {
		fmt.Fprintln(os.Stderr, "usage: COPILOT_TOKEN=... COPILOT_ASSISTANT=UUID "+
			"[COPILOT_TARGET=HOST:PORT] [COPILOT_TIMEOUT=SECONDS] copilot-example")
		os.Exit(2)
	}

	// Plaintext, as the gateway's development listener; use grpc.WithTransportCredentials
	// (credentials.NewTLS) for its TLS listener.
	conn, err := grpc.Dial(target, grpc.WithInsecure())
	if err != nil {
		fmt.Printf("error: cannot dial %s: %v\n", target, err)
		os.Exit(1)
	}
	defer conn.Close()
	e := &example{
		client:  copilotv1.NewCopilotServiceClient(conn),
		token:   token,
		timeout: time.Duration(seconds * float64(time.Second)),
	}
	if err := e.run(assistant, question); err != nil {
		fmt.Println(describeError(e.step, err))
		conn.Close()
		os.Exit(1)
	}

	ctx, cancel := e.callContext(token)
	_, err = e.client.GetThread(ctx, &copilotv1.GetThreadRequest{ThreadId: madeUpThreadID})
	cancel()
	ok := expectError("GetThread", err)

	ctx, cancel = e.callContext(wrongToken)
	_, err = e.client.ListAssistants(ctx, &copilotv1.ListAssistantsRequest{})
	cancel()
	ok = expectError("ListAssistants with a wrong token", err) && ok
	if !ok {
		conn.Close()
		os.Exit(1)
	}
}
