#!/usr/bin/env node
// Compiles every contracts/*.sol and contracts/*/*.sol with the pinned solcjs (standard JSON, optimizer 200 runs)
// and writes contracts-abi/<ContractName>.json. Output is byte-stable (sorted keys, 2-space
// JSON, repo-relative source paths) so the committed artifacts can be drift-checked.
//
// Usage: node scripts/compile_contracts.js [--out DIR]
'use strict';

const fs = require('fs');
const path = require('path');

const repoRoot = path.resolve(__dirname, '..');
const solc = require(path.join(repoRoot, 'node_modules', 'solc'));

// Fixed settings: changing any of these changes the bytecode, so they are recorded in
// every artifact. cancun runs on anvil's default (latest) hardfork and on today's L1/L2s.
const SETTINGS = {
  evmVersion: 'cancun',
  optimizer: { enabled: true, runs: 200 },
};

function parseArgs(argv) {
  let out = path.join(repoRoot, 'contracts-abi');
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--out' && i + 1 < argv.length) {
      out = path.resolve(argv[++i]);
    } else {
      console.error(`unknown argument ${argv[i]}; usage: node scripts/compile_contracts.js [--out DIR]`);
      process.exit(2);
    }
  }
  return { out };
}

function sortKeys(value) {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value !== null && typeof value === 'object') {
    const sorted = {};
    for (const key of Object.keys(value).sort()) sorted[key] = sortKeys(value[key]);
    return sorted;
  }
  return value;
}

function main() {
  const { out } = parseArgs(process.argv.slice(2));
  const contractsDir = path.join(repoRoot, 'contracts');
  // contracts/*.sol and one level of subdirectories (contracts/test/ holds test-only contracts).
  const files = [];
  for (const entry of fs.readdirSync(contractsDir, { withFileTypes: true })) {
    if (entry.isFile() && entry.name.endsWith('.sol')) files.push(entry.name);
    if (entry.isDirectory()) {
      for (const f of fs.readdirSync(path.join(contractsDir, entry.name))) {
        if (f.endsWith('.sol')) files.push(`${entry.name}/${f}`);
      }
    }
  }
  files.sort();
  const sources = {};
  for (const file of files) {
    // Repo-relative keys: the metadata hash embedded in the bytecode covers source paths.
    sources[`contracts/${file}`] = { content: fs.readFileSync(path.join(contractsDir, file), 'utf8') };
  }
  const input = {
    language: 'Solidity',
    sources,
    settings: {
      ...SETTINGS,
      outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] } },
    },
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input)));
  const errors = (output.errors || []).filter((e) => e.severity === 'error');
  for (const diag of output.errors || []) console.error(diag.formattedMessage);
  if (errors.length > 0) process.exit(1);

  fs.mkdirSync(out, { recursive: true });
  const written = new Set();
  for (const sourceName of Object.keys(output.contracts).sort()) {
    for (const [name, contract] of Object.entries(output.contracts[sourceName])) {
      const artifact = sortKeys({
        contractName: name,
        abi: contract.abi,
        bytecode: '0x' + contract.evm.bytecode.object,
        deployedBytecode: '0x' + contract.evm.deployedBytecode.object,
        compiler: { version: solc.version(), settings: SETTINGS },
      });
      const file = `${name}.json`;
      fs.writeFileSync(path.join(out, file), JSON.stringify(artifact, null, 2) + '\n');
      written.add(file);
    }
  }
  // A contract that was deleted or renamed must not leave a stale artifact behind.
  for (const file of fs.readdirSync(out)) {
    if (file.endsWith('.json') && !written.has(file)) fs.unlinkSync(path.join(out, file));
  }
  console.log(`compiled ${files.length} source(s) into ${written.size} artifact(s) in ${path.relative(process.cwd(), out) || '.'}`);
}

main();
