// N js-libp2p observers in one process, each subscribed to the reports topic: the load
// bench/observers.py puts on a devnet. `--each all` connects every observer to every relay;
// `--each one` connects observer i to relay i mod R. Dials go one observer at a time (a burst
// of Noise handshakes on a busy 2-core machine times out). Prints "ready <n>" once dialed, and
// on SIGTERM/SIGINT one JSON line with what they received and the CPU time this process used.
//
//   node bench/observer_swarm.mjs --n 50 --each all --relay MULTIADDR [--relay ...]

import { parseArgs } from 'node:util'

const { createObserverNode } = await import('../scripts/observer_node.mjs')
const { REPORTS_TOPIC } = await import('../scripts/report_verify.mjs')
const { multiaddr } = await import('@multiformats/multiaddr')

const { values } = parseArgs({
  options: { n: { type: 'string', default: '50' }, each: { type: 'string', default: 'all' }, relay: { type: 'string', multiple: true } }
})
const relays = values.relay ?? []
let received = 0
let dialFailures = 0
const nodes = []
for (let i = 0; i < Number(values.n); i++) {
  const node = await createObserverNode()
  node.services.pubsub.addEventListener('message', () => { received += 1 })
  node.services.pubsub.subscribe(REPORTS_TOPIC)
  const targets = values.each === 'all' ? relays : [relays[i % relays.length]]
  await Promise.all(targets.map(async (addr) => {
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        await node.dial(multiaddr(addr))
        return
      } catch (err) {
        if (attempt === 1 && dialFailures++ < 3) console.error(`observer_swarm: dial ${addr} failed: ${err.message}`)
      }
    }
  }))
  nodes.push(node)
}
console.log(`ready ${nodes.length}`)
const cpuAtReady = process.cpuUsage()
received = 0

const stop = async () => {
  const cpu = process.cpuUsage(cpuAtReady)
  await Promise.all(nodes.map((n) => n.stop()))
  console.log(JSON.stringify({
    observers: nodes.length, each: values.each, received, dial_failures: dialFailures,
    cpu_s: Math.round((cpu.user + cpu.system) / 1e4) / 100
  }))
  process.exit(0)
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
