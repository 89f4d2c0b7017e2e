#!/usr/bin/env node
// Example client of copilot.v1.CopilotService in Node.js (@grpc/grpc-js).
//
// Creates a thread, adds a question, streams the answer (StreamRun), asks the same question with
// Complete, then provokes two errors and decodes their google.rpc details. Every call carries the
// caller's bearer token (`authorization: Bearer <token>` metadata) and a deadline.
//
// Environment:
//   COPILOT_TARGET     gateway address, HOST:PORT (default 127.0.0.1:50051; plaintext)
//   COPILOT_TOKEN      bearer token naming the caller (required)
//   COPILOT_ASSISTANT  assistant UUID to talk to (required; see ListAssistants)
//   COPILOT_TIMEOUT    deadline of each call in seconds (default 30)
//   COPILOT_QUESTION   the question (default: a German tax question)
//   COPILOT_PROTO_DIR  the .proto files gathered by client/node/generate.sh
//                      (default: build/clients/node/proto)
//
// Output is one `key: value` line per event (thread:, message:, chunk:, run:, complete:,
// error:). Exit status: 0 when every step did what it should, 1 when a call failed unexpectedly
// (its `error:` line says why), 2 on a usage error.
'use strict';

const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
// protobufjs is what proto-loader is built on; take the copy it uses.
const protobuf = require(require.resolve('protobufjs', {
  paths: [path.dirname(require.resolve('@grpc/proto-loader'))],
}));

// A handle of the right shape that no gateway ever issued: NOT_FOUND, like any thread that is
// not the caller's.
const MADE_UP_THREAD_ID = 'th1_made-up-thread-id';
const WRONG_TOKEN = 'not-a-valid-token';
const STATUS_NAMES = Object.fromEntries(Object.entries(grpc.status).map(([k, v]) => [v, k]));

/** Loads the service (proto-loader) and the google.rpc error types (protobufjs). */
function loadProtos(protoDir) {
  const packageDefinition = protoLoader.loadSync(['copilot/v1/copilot_service.proto'], {
    includeDirs: [protoDir],
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const copilot = grpc.loadPackageDefinition(packageDefinition).copilot.v1;
  const rpc = protobuf.loadSync(
    ['google/rpc/status.proto', 'google/rpc/error_details.proto'].map((p) => path.join(protoDir, p)),
  );
  return {
    CopilotService: copilot.CopilotService,
    Status: rpc.lookupType('google.rpc.Status'),
    // Detail types by their Any type URL.
    details: Object.fromEntries(
      ['ErrorInfo', 'RetryInfo', 'BadRequest'].map((name) => [
        `type.googleapis.com/google.rpc.${name}`,
        rpc.lookupType(`google.rpc.${name}`),
      ]),
    ),
  };
}

/** Keeps the output line-oriented: newlines in answer text are shown as \n. */
function oneLine(text) {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/\r/g, '\\r');
}

function formatDuration(d) {
  const seconds = String(d.seconds || 0);
  const nanos = d.nanos || 0;
  return nanos === 0 ? `${seconds}s` : `${seconds}.${String(Math.floor(nanos / 1e6)).padStart(3, '0')}s`;
}

/**
 * Renders a failed call as `error: CODE reason=... [retry_delay=...] (call: message)`.
 *
 * The details travel in the `grpc-status-details-bin` trailer as a serialized google.rpc.Status
 * whose `details` are Any-packed ErrorInfo, RetryInfo, BadRequest, ...
 */
function describeError(protos, call, err) {
  const words = [`error: ${STATUS_NAMES[err.code] || err.code}`];
  const [bin] = err.metadata ? err.metadata.get('grpc-status-details-bin') : [];
  if (bin) {
    const status = protos.Status.decode(bin);
    for (const any of status.details) {
      const typeUrl = any.type_url || any.typeUrl;
      const type = protos.details[typeUrl];
      if (!type) continue;
      const detail = type.decode(any.value);
      if (type.name === 'ErrorInfo') words.push(`reason=${detail.reason}`);
      if (type.name === 'RetryInfo') words.push(`retry_delay=${formatDuration(detail.retryDelay || {})}`);
      if (type.name === 'BadRequest') {
        for (const v of detail.fieldViolations) words.push(`field=${v.field}`);
      }
    }
  }
  words.push(`(${call}: ${oneLine(err.details || '')})`);
  return words.join(' ');
}

class Example {
  constructor(protos, target, token, timeoutMs) {
    this.protos = protos;
    // Plaintext, as the gateway's development listener; grpc.credentials.createSsl() for TLS.
    this.client = new protos.CopilotService(target, grpc.credentials.createInsecure());
    this.token = token;
    this.timeoutMs = timeoutMs;
    this.step = ''; // the call in progress, named in the error line if it fails
  }

  /** The bearer token as metadata and the deadline, for one call. */
  callArgs(token = this.token) {
    const metadata = new grpc.Metadata();
    metadata.set('authorization', `Bearer ${token}`);
    return [metadata, { deadline: new Date(Date.now() + this.timeoutMs) }];
  }

  unary(method, request, token) {
    return new Promise((resolve, reject) => {
      this.client[method](request, ...this.callArgs(token), (err, response) =>
        err ? reject(err) : resolve(response),
      );
    });
  }

  async run(assistantId, question) {
    this.step = 'CreateThread';
    const { thread } = await this.unary('CreateThread', { assistantId, title: 'Node.js example' });
    console.log(`thread: ${thread.id}`);

    this.step = 'AddMessage';
    const input = { role: 'ROLE_USER', content: question };
    const { message } = await this.unary('AddMessage', { threadId: thread.id, message: input });
    console.log(`message: ${message.id}`);

    this.step = 'StreamRun';
    let chunks = 0;
    let chars = 0;
    let messageId = '';
    for await (const { chunk } of this.client.StreamRun({ threadId: thread.id }, ...this.callArgs())) {
      chunks += 1;
      chars += [...chunk.delta.content].length;
      messageId = chunk.messageId;
      console.log(`chunk: ${oneLine(chunk.delta.content)}`);
    }
    console.log(`run: chunks=${chunks} message_id=${messageId} chars=${chars}`);

    this.step = 'Complete';
    const answer = await this.unary('Complete', { assistantId, messages: [input] });
    console.log(`complete: ${oneLine(answer.message.content)}`);
  }

  /** Makes a call that must fail and prints its decoded error; false if it succeeded. */
  async expectError(call, invoke) {
    try {
      await invoke();
    } catch (err) {
      if (err.code === undefined) throw err;
      console.log(describeError(this.protos, call, err));
      return true;
    }
    console.log(`unexpected: ${call} succeeded`);
    return false;
  }
}

async function main() {
  const env = process.env;
  const target = env.COPILOT_TARGET || '127.0.0.1:50051';
  const token = env.COPILOT_TOKEN || '';
  const assistant = env.COPILOT_ASSISTANT || '';
  const question = env.COPILOT_QUESTION || 'Wie hoch ist die Pendlerpauschale 2026?';
  const seconds = Number(env.COPILOT_TIMEOUT || '30');
  const protoDir =
    env.COPILOT_PROTO_DIR || path.join(__dirname, '..', '..', 'build', 'clients', 'node', 'proto');
  if (!token || !assistant || !(seconds > 0)) {
    console.error(
      'usage: COPILOT_TOKEN=... COPILOT_ASSISTANT=UUID [COPILOT_TARGET=HOST:PORT] ' +
        '[COPILOT_TIMEOUT=SECONDS] [COPILOT_PROTO_DIR=DIR] node copilot_example.js',
    );
    return 2;
  }

  const example = new Example(loadProtos(protoDir), target, token, seconds * 1000);
  try {
    try {
      await example.run(assistant, question);
    } catch (err) {
      if (err.code === undefined) throw err;
      console.log(describeError(example.protos, example.step, err));
      return 1;
    }
    let ok = await example.expectError('GetThread', () =>
      example.unary('GetThread', { threadId: MADE_UP_THREAD_ID }),
    );
    ok =
      (await example.expectError('ListAssistants with a wrong token', () =>
        example.unary('ListAssistants', {}, WRONG_TOKEN),
      )) && ok;
    return ok ? 0 : 1;
  } finally {
    example.client.close();
  }
}

module.exports = { loadProtos, describeError };

if (require.main === module) {
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (err) => {
      console.error(err);
      process.exitCode = 1;
    },
  );
}
