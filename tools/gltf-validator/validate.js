#!/usr/bin/env node
// Validate glTF/GLB files with the Khronos glTF validator; print each report's summary as
// one JSON line per file (numErrors, numWarnings, numInfos, messages), exit 1 on any error.
// Usage: node tools/gltf-validator/validate.js FILE.glb [...]
'use strict';
const fs = require('fs');
const path = require('path');
const validator = require('gltf-validator');

async function main(files) {
  let failed = false;
  for (const file of files) {
    const report = await validator.validateBytes(new Uint8Array(fs.readFileSync(file)), {
      uri: path.basename(file),
      maxIssues: 100,
    });
    const issues = report.issues;
    console.log(JSON.stringify({
      file,
      validatorVersion: report.validatorVersion,
      numErrors: issues.numErrors,
      numWarnings: issues.numWarnings,
      numInfos: issues.numInfos,
      numHints: issues.numHints,
      messages: issues.messages.map((m) => `${m.code} ${m.pointer || ''} ${m.message}`),
      info: report.info,
    }));
    failed = failed || issues.numErrors > 0;
  }
  process.exit(failed ? 1 : 0);
}

main(process.argv.slice(2)).catch((err) => { console.error(String(err)); process.exit(2); });
