#!/usr/bin/env node
// A js-libp2p observer of the relayer network: it dials nodes' observer relays, subscribes to
// the read-only reports topic, and prints one line per report whose signatures it verified
// against the on-chain committee. It trusts nothing the relay says: the EIP-712 report
// digest is recomputed from the chain id and oracle address, every signer is recovered from
// its signature and must sit at its index in the committee read from the oracle
// (`getConfig`), the report's config digest must be the oracle's current one, and the
// distinct signers must reach its threshold; under scheme 0x0002 the one Schnorr signature
// must verify under the oracle's group key (`groupKey`). Reports failing any check are printed to
// stderr, with the reason, and never to stdout.
//
//   node scripts/observer.mjs --devnet .devnet [--count N] [--timeout S] [--json] [--key-file F]
//   node scripts/observer.mjs --relay /ip4/.../tcp/.../p2p/16Uiu2... --rpc-url URL --oracle 0x...
//
// --key-file: a 32-byte hex secp256k1 key for this observer's peer id (written when missing),
// for relays that admit only listed peer ids (`observer_peers`); the peer id goes to stderr.

import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { randomBytes } from 'node:crypto'

const { createObserverNode } = await import('./observer_node.mjs')
const { privateKeyFromRaw } = await import('@libp2p/crypto/keys')
const { multiaddr } = await import('@multiformats/multiaddr')
const { REPORTS_TOPIC, Verifier, readCommittee, unhex } = await import('./report_verify.mjs')

// ---------------------------------------------------------------- the observer

function parseOptions () {
  const { values } = parseArgs({
    options: {
      devnet: { type: 'string' },
      relay: { type: 'string', multiple: true },
      'rpc-url': { type: 'string' },
      oracle: { type: 'string' },
      'chain-id': { type: 'string' },
      count: { type: 'string' },
      timeout: { type: 'string' },
      json: { type: 'boolean', default: false },
      'key-file': { type: 'string' }
    }
  })
  const devnet = values.devnet ? JSON.parse(readFileSync(join(values.devnet, 'devnet.json'), 'utf8')) : {}
  const options = {
    relays: values.relay ?? devnet.observer_relays ?? [],
    rpcUrl: values['rpc-url'] ?? devnet.rpc_url,
    oracle: (values.oracle ?? devnet.oracle ?? '').toLowerCase(),
    chainId: values['chain-id'] ?? devnet.chain_id,
    count: values.count ? Number(values.count) : Infinity,
    timeout: values.timeout ? Number(values.timeout) : Infinity,
    json: values.json,
    keyFile: values['key-file']
  }
  if (options.relays.length === 0 || !options.rpcUrl || !/^0x[0-9a-f]{40}$/.test(options.oracle)) {
    throw new Error('give --devnet DIR, or --relay MULTIADDR (repeatable) with --rpc-url URL and --oracle 0x...')
  }
  return options
}

function loadKey (path) {
  if (!existsSync(path)) writeFileSync(path, randomBytes(32).toString('hex'), { mode: 0o600 })
  return privateKeyFromRaw(unhex('0x' + readFileSync(path, 'utf8').trim().replace(/^0x/, ''), 'key file'))
}

async function chainIdOf (rpcUrl) {
  const response = await fetch(rpcUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'eth_chainId', params: [] }),
    signal: AbortSignal.timeout(5000)
  })
  return Number(BigInt((await response.json()).result))
}

async function main () {
  const options = parseOptions()
  const chainId = options.chainId != null ? Number(options.chainId) : await chainIdOf(options.rpcUrl)
  const verifier = new Verifier(chainId, options.oracle, () => readCommittee(options.rpcUrl, options.oracle))
  const node = await createObserverNode(options.keyFile ? loadKey(options.keyFile) : undefined)
  console.error(`observer: peer id ${node.peerId}`)
  const seen = new Set()
  let verified = 0
  let stopping = false
  const done = Promise.withResolvers()
  const stop = () => { if (!stopping) { stopping = true; done.resolve() } }

  // One report at a time, in arrival order: a committee read is awaited once, not per report.
  let queue = Promise.resolve()
  node.services.pubsub.addEventListener('message', (event) => {
    queue = queue.then(() => handle(event.detail))
  })
  const handle = async (msg) => {
    if (msg.topic !== REPORTS_TOPIC || stopping) return
    let report
    try {
      report = JSON.parse(new TextDecoder().decode(msg.data))
    } catch {
      console.error('observer: refused a message that is not JSON')
      return
    }
    const key = `${report.config_digest}:${report.epoch}:${report.round}`
    if (seen.has(key)) return  // the same report from another relay
    try {
      const { signers, committee } = await verifier.verify(report)
      if (seen.has(key) || stopping) return
      seen.add(key)
      verified += 1
      const feeds = (report.feeds ?? []).map((f) => `${f.feed_id ?? f.feed_index}=${f.value ?? f.raw_value}`)
      if (options.json) {
        console.log(JSON.stringify({ verified: true, epoch: report.epoch, round: report.round, config_digest: report.config_digest, signers, threshold: committee.threshold, n: committee.signers.length, feeds: (report.feeds ?? []).length, relay: msg.from?.toString() }))
      } else {
        const signedBy = report.schnorr_signature != null ? `threshold signature (${committee.threshold} of ${committee.signers.length})` : `signers ${signers.length}/${committee.signers.length} (threshold ${committee.threshold})`
        console.log(`verified epoch ${report.epoch} round ${String(report.round).padStart(3)}  ${signedBy}  ${feeds.slice(0, 3).join('  ')}${feeds.length > 3 ? `  ... ${feeds.length} feeds` : ''}`)
      }
      if (verified >= options.count) stop()
    } catch (err) {
      console.error(`observer: refused epoch ${report.epoch} round ${report.round}: ${err.message}`)
    }
  }
  node.services.pubsub.subscribe(REPORTS_TOPIC)

  let connected = 0
  await Promise.all(options.relays.map(async (addr) => {
    try {
      await node.dial(multiaddr(addr))
      connected += 1
    } catch (err) {
      console.error(`observer: cannot dial ${addr}: ${err.message}`)
    }
  }))
  if (connected === 0) {
    await node.stop()
    throw new Error('no observer relay could be dialed; check the multiaddrs and that the nodes run')
  }
  console.error(`observer: connected to ${connected} of ${options.relays.length} relays, topic ${REPORTS_TOPIC}`)
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
  const timer = Number.isFinite(options.timeout) ? setTimeout(stop, options.timeout * 1000) : null
  await done.promise
  if (timer) clearTimeout(timer)
  await node.stop()
  if (verified < options.count && Number.isFinite(options.count)) {
    console.error(`observer: ${verified} of ${options.count} reports verified before the timeout`)
    process.exitCode = 1
  }
}

main().catch((err) => {
  console.error(`observer: ${err.message}`)
  process.exit(2)
})
