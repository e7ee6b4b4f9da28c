// N js-libp2p observers in one process, each subscribed to the reports topic and connected to
// every given relay: the load bench/observers.py puts on a devnet. Prints "ready <n>" once
// every observer is connected, and on SIGTERM/SIGINT one JSON line with what they received.
//
//   node bench/observer_swarm.mjs --n 50 --relay MULTIADDR [--relay ...]

import { parseArgs } from 'node:util'

const { createObserverNode } = await import('../scripts/observer_node.mjs')
const { REPORTS_TOPIC } = await import('../scripts/report_verify.mjs')
const { multiaddr } = await import('@multiformats/multiaddr')

const { values } = parseArgs({ options: { n: { type: 'string', default: '50' }, relay: { type: 'string', multiple: true } } })
const relays = values.relay ?? []
let received = 0
let dialFailures = 0
const nodes = await Promise.all(Array.from({ length: Number(values.n) }, async () => {
  const node = await createObserverNode()
  node.services.pubsub.addEventListener('message', () => { received += 1 })
  node.services.pubsub.subscribe(REPORTS_TOPIC)
  for (const addr of relays) {
    try {
      await node.dial(multiaddr(addr))
    } catch (err) {
      if (dialFailures++ < 3) console.error(`observer_swarm: dial ${addr} failed: ${err.message}`)
    }
  }
  return node
}))
console.log(`ready ${nodes.length}`)

const stop = async () => {
  await Promise.all(nodes.map((n) => n.stop()))
  console.log(JSON.stringify({ observers: nodes.length, relays: relays.length, received, dial_failures: dialFailures }))
  process.exit(0)
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
