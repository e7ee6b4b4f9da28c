// One js-libp2p node as an observer of the relayer network needs it: TCP, Noise, Yamux,
// identify and gossipsub (signed messages only), the stack py-libp2p's relay speaks.

// js-libp2p 3 calls Promise.withResolvers (Node 22+); Node 20 needs this before it loads.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers () {
    let resolve, reject
    const promise = new Promise((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}

const { createLibp2p } = await import('libp2p')
const { tcp } = await import('@libp2p/tcp')
const { noise } = await import('@chainsafe/libp2p-noise')
const { yamux } = await import('@chainsafe/libp2p-yamux')
const { identify } = await import('@libp2p/identify')
const { gossipsub } = await import('@libp2p/gossipsub')

export { REPORTS_TOPIC } from './report_verify.mjs'

// privateKey: a libp2p PrivateKey (a fixed peer id, for relays with an allow-list), or a fresh one.
export async function createObserverNode (privateKey) {
  return createLibp2p({
    ...(privateKey ? { privateKey } : {}),
    addresses: { listen: [] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: {
      identify: identify(),
      pubsub: gossipsub({ globalSignaturePolicy: 'StrictSign' })
    }
  })
}
