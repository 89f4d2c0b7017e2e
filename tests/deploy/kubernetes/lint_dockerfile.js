// Lints a Dockerfile with two linters from npm (Debian has no hadolint):
//  - dockerfilelint (replicatedhq): bugs and practices (tags, apt-get cache, ports, ...);
//  - dockerfile-utils (rcjsuen, the VS Code Docker extension's validator): syntax and
//    instruction arguments (flags, JSON forms, deprecated instructions, ...).
// Any issue from either fails.
//
//   node lint_dockerfile.js NPM_DIR DOCKERFILE
"use strict";
const fs = require("fs");
const path = require("path");

const npmDir = path.resolve(process.argv[2]);
const file = process.argv[3];
const text = fs.readFileSync(file, "utf8");
// dockerfilelint does not expand ARGs, so `FROM ${BASE_IMAGE}` would be a base image without a
// tag: its FROM lines get the global ARGs' defaults substituted, as a build without
// --build-arg resolves them (line numbers unchanged).
const globalArgs = {};
let seenFrom = false;
const expanded = text.split("\n").map((line) => {
  if (/^\s*FROM\s/i.test(line)) {
    seenFrom = true;
    return line.replace(/\$\{(\w+)\}|\$(\w+)/g, (whole, a, b) => globalArgs[a || b] ?? whole);
  }
  const arg = !seenFrom && line.match(/^\s*ARG\s+(\w+)=(\S+)\s*$/i);
  if (arg) globalArgs[arg[1]] = arg[2];
  return line;
}).join("\n");
const load = (name) => require(require.resolve(name, { paths: [npmDir] }));
let failed = 0;

// dockerfilelint: lib/index.js run(context, content) -> [{line, category, title, description}].
const dockerfilelint = load("dockerfilelint");
const issues = dockerfilelint.run(path.dirname(path.resolve(file)), expanded);
for (const i of issues) {
  console.log(`FAIL dockerfilelint line ${i.line}: ${i.title} (${i.category}): ${i.description}`);
}
console.log(`${issues.length ? "FAIL" : "ok  "} dockerfilelint: ${issues.length} issue(s)`);
failed += issues.length ? 1 : 0;

const utils = load("dockerfile-utils");
const diagnostics = utils.validate(text);
for (const d of diagnostics) {
  console.log(`FAIL dockerfile-utils line ${d.range.start.line + 1}: ${d.message}`);
}
console.log(`${diagnostics.length ? "FAIL" : "ok  "} dockerfile-utils: ${diagnostics.length} diagnostic(s)`);
failed += diagnostics.length ? 1 : 0;
console.log(`${2 - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
