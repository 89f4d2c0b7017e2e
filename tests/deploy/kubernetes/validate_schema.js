// Validates Kubernetes objects (a JSON array, from check_schema.py) against the Kubernetes API
// schema in two ways, with npm packages (tests/deploy/kubernetes/npm):
//  1. kubernetes-models / @kubernetes-models/prometheus-operator: each object's model validates
//     it against the JSON schema of its kind (types, required fields, formats, enums);
//  2. the TypeScript compiler on the same objects typed as those models' interfaces: excess
//     property checks find unknown (e.g. misspelt) fields at any depth, which the JSON schemas
//     let through and the API server's strict field validation would reject.
// An object of a kind without a model is an error.
//
//   node validate_schema.js NPM_DIR OBJECTS.json
"use strict";
const fs = require("fs");
const os = require("os");
const path = require("path");
const { execFileSync } = require("child_process");

const npmDir = path.resolve(process.argv[2]);
const input = process.argv[3];
const objects = JSON.parse(fs.readFileSync(input, "utf8"));
const modulesDir = path.join(npmDir, "node_modules");

function modelModule(apiVersion, kind) {
  if (apiVersion.startsWith("monitoring.coreos.com/")) {
    return `@kubernetes-models/prometheus-operator/${apiVersion}/${kind}`;
  }
  return `kubernetes-models/${apiVersion}/${kind}`;
}

function describe(o) {
  return `${o.kind} ${(o.metadata || {}).namespace || ""}/${(o.metadata || {}).name || "?"}`;
}

const failed = new Set();
let failures = 0;
const declarations = [];
objects.forEach((o, i) => {
  const spec = modelModule(o.apiVersion || "", o.kind || "");
  let Model;
  try {
    Model = require(require.resolve(spec, { paths: [npmDir] }))[o.kind];
  } catch (e) {
    Model = undefined;
  }
  if (typeof Model !== "function") {
    console.log(`FAIL ${describe(o)}: no schema model ${spec}`);
    failed.add(describe(o));
    failures++;
    return;
  }
  try {
    new Model(o).validate();
    console.log(`ok   ${describe(o)}: ${o.apiVersion} schema (${spec})`);
  } catch (e) {
    console.log(`FAIL ${describe(o)}: ${e.message}`);
    failed.add(describe(o));
    failures++;
  }
  declarations.push({ i, o, spec, iface: `I${o.kind}` });
});

// Unknown fields: one `const oN: IKind = {...};` per line, compiled with tsc --noEmit.
const work = fs.mkdtempSync(path.join(npmDir, "tscheck-"));
try {
  const lines = declarations.map(
    (d) => `import { ${d.iface} as T${d.i} } from "${d.spec}";`);
  const first = lines.length + 1;
  declarations.forEach((d) => lines.push(`export const o${d.i}: T${d.i} = ${JSON.stringify(d.o)};`));
  const file = path.join(work, "objects.ts");
  fs.writeFileSync(file, lines.join("\n") + "\n");
  const tsc = path.join(modulesDir, "typescript", "bin", "tsc");
  let output = "";
  try {
    execFileSync(process.execPath, [tsc, "--noEmit", "--strict", "--skipLibCheck",
      "--moduleResolution", "node", "--module", "commonjs", "--target", "es2020",
      file], { cwd: npmDir, encoding: "utf8" });
  } catch (e) {
    output = (e.stdout || "") + (e.stderr || "");
  }
  const errors = output.split("\n").filter((l) => /error TS\d+/.test(l));
  const byObject = new Map();
  for (const line of errors) {
    const m = /\((\d+),(\d+)\): (error TS\d+: .*)$/.exec(line);
    const d = m ? declarations[Number(m[1]) - first] : undefined;
    const what = d ? describe(d.o) : "objects.ts";
    if (!byObject.has(what)) byObject.set(what, []);
    byObject.get(what).push(m ? m[3] : line);
  }
  if (errors.length === 0 && output.trim()) {
    console.log(`FAIL tsc: ${output.trim()}`);
    failed.add("tsc");
    failures++;
  }
  for (const [what, messages] of byObject) {
    console.log(`FAIL ${what}: unknown or mistyped fields:\n  ${messages.join("\n  ")}`);
    failed.add(what);
    failures++;
  }
  if (byObject.size === 0 && !output.trim()) {
    console.log(`ok   no unknown fields in ${declarations.length} objects (TypeScript excess property checks)`);
  }
} finally {
  fs.rmSync(work, { recursive: true, force: true });
}
console.log(`${Math.max(objects.length - failed.size, 0)} passed, ${failed.size} failed`);
process.exit(failures ? 1 : 0);
