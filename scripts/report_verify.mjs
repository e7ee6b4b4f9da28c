// Verifying an attested report as the relayer network publishes it (the API's JSON form,
// docs/subscribers.md) against the on-chain committee: the EIP-712 report digest recomputed
// from the chain id and oracle address (as relayer/chain/codec.py and QuorumOracle compute
// it), each signer recovered and checked at its committee index, the config digest the
// oracle's current one, the distinct signers at least the threshold: ECDSA (scheme 0x0001).
// Under threshold Schnorr (scheme 0x0002) the one signature (R, z) must verify under the group
// key read from the oracle (`groupKey`), by the contract's rule (QuorumOracle._verifyReport).

import { secp256k1 } from '@noble/curves/secp256k1.js'
import { expand_message_xmd } from '@noble/curves/abstract/hash-to-curve.js'
import { sha256 } from '@noble/hashes/sha2.js'
import { keccak_256 as keccak } from '@noble/hashes/sha3.js'


export const REPORTS_TOPIC = 'quorum-relayer/reports/v1'
const ECDSA_SCHEME = 0x0001
const THRESHOLD_SCHNORR_SCHEME = 0x0002
const CURVE_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141n
const CURVE_P = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2Fn
// RFC 9591's H2 for FROST(secp256k1, SHA-256): 48 bytes of expand_message_xmd, reduced mod n.
const CHALLENGE_DST = new TextEncoder().encode('FROST-secp256k1-SHA256-v1chal')

// ---------------------------------------------------------------- bytes and hashing

const enc = new TextEncoder()
export const hex = (bytes) => '0x' + Buffer.from(bytes).toString('hex')
export function unhex (text, what) {
  if (typeof text !== 'string' || !/^0x([0-9a-fA-F]{2})*$/.test(text)) {
    throw new Error(`${what} must be 0x-prefixed hex, got ${String(text).slice(0, 40)}`)
  }
  return Uint8Array.from(Buffer.from(text.slice(2), 'hex'))
}
const concat = (...parts) => Uint8Array.from(Buffer.concat(parts.map((p) => Buffer.from(p))))
function word (value) {
  const out = new Uint8Array(32)
  let v = BigInt(value)
  for (let i = 31; i >= 0 && v > 0n; i--) { out[i] = Number(v & 0xffn); v >>= 8n }
  return out
}
const addressWord = (address) => concat(new Uint8Array(12), unhex(address, 'address'))
const addressOfPublicKey = (uncompressed) => hex(keccak(uncompressed.slice(1)).slice(12)).toLowerCase()

const DOMAIN_TYPEHASH = keccak(enc.encode(
  'EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)'))
const REPORT_TYPEHASH = keccak(enc.encode('Report(bytes32 configDigest,uint32 epoch,uint32 round,bytes updates)'))

// The digest the committee signs, as relayer/chain/codec.py and QuorumOracle compute it.
export function reportDigest (chainId, oracle, configDigest, epoch, round, updates) {
  const separator = keccak(concat(DOMAIN_TYPEHASH, keccak(enc.encode('QuorumOracle')), keccak(enc.encode('1')),
    word(chainId), addressWord(oracle)))
  const structHash = keccak(concat(REPORT_TYPEHASH, configDigest, word(epoch), word(round), keccak(updates)))
  return keccak(concat(Uint8Array.of(0x19, 0x01), separator, structHash))
}

export function recoverSigner (digest, signature) {
  if (signature.length !== 65) throw new Error(`signature must be 65 bytes, got ${signature.length}`)
  let v = signature[64]
  if (v === 27 || v === 28) v -= 27
  if (v !== 0 && v !== 1) throw new Error(`signature v must be 0, 1, 27 or 28, got ${signature[64]}`)
  const point = secp256k1.Signature.fromBytes(signature.slice(0, 64), 'compact').addRecoveryBit(v)
    .recoverPublicKey(digest)
  return addressOfPublicKey(point.toBytes(false))
}

const bigOf = (bytes) => BigInt(hex(bytes))

// Whether `signature` (R's x and y, z: 96 bytes) is the group's signature of `digest` under the
// group key (x, y parity), as the contract decides: z a nonzero scalar, R a curve point with
// coordinates below p, c = H2(R || PK || digest) nonzero, z*G - c*PK = R.
export function schnorrValid (groupKey, digest, signature) {
  if (signature.length !== 96) return false
  const [rx, ry, z] = [0, 32, 64].map((k) => bigOf(signature.slice(k, k + 32)))
  if (z === 0n || z >= CURVE_N || rx >= CURVE_P || ry >= CURVE_P) return false
  if ((ry * ry - rx * rx * rx - 7n) % CURVE_P !== 0n) return false
  const R = secp256k1.Point.fromAffine({ x: rx, y: ry })
  const PK = secp256k1.Point.fromHex(hex(concat(Uint8Array.of(2 + groupKey.yParity), word(groupKey.x))).slice(2))
  const c = bigOf(expand_message_xmd(concat(R.toBytes(true), PK.toBytes(true), digest), CHALLENGE_DST, 48, sha256)) %
    CURVE_N
  if (c === 0n) return false
  const expected = secp256k1.Point.BASE.multiply(z).subtract(PK.multiply(c))
  return !expected.equals(secp256k1.Point.ZERO) && expected.equals(R)
}

// ---------------------------------------------------------------- the on-chain committee

async function ethCall (rpcUrl, to, selectorText) {
  const data = hex(keccak(enc.encode(selectorText)).slice(0, 4))
  const response = await fetch(rpcUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'eth_call', params: [{ to, data }, 'latest'] }),
    signal: AbortSignal.timeout(5000)
  })
  const body = await response.json()
  if (body.error) throw new Error(`${selectorText} on ${to}: ${body.error.message}`)
  return unhex(body.result, selectorText)
}

const readWord = (data, offset) => BigInt(hex(data.slice(offset, offset + 32)))

export async function readCommittee (rpcUrl, oracle) {
  const details = await ethCall(rpcUrl, oracle, 'latestConfigDetails()')
  const config = await ethCall(rpcUrl, oracle, 'getConfig()')
  // getConfig() returns (address[] signers, address[] transmitters, uint8 f, uint8 threshold, bytes).
  const signersAt = Number(readWord(config, 0))
  const count = Number(readWord(config, signersAt))
  const signers = []
  for (let i = 0; i < count; i++) {
    signers.push(hex(config.slice(signersAt + 32 + 32 * i + 12, signersAt + 64 + 32 * i)).toLowerCase())
  }
  const key = await ethCall(rpcUrl, oracle, 'groupKey()')  // (uint256 x, uint8 yParity, bytes32); x = 0 under 0x0001
  const groupKey = readWord(key, 0) === 0n ? null : { x: readWord(key, 0), yParity: Number(readWord(key, 32)) }
  return { digest: hex(details.slice(64, 96)), signers, threshold: Number(readWord(config, 96)), groupKey }
}

// ---------------------------------------------------------------- verification

export class Verifier {
  // readCommitteeNow: () => Promise<{digest, signers, threshold}>, the oracle's current committee.
  constructor (chainId, oracle, readCommitteeNow) {
    Object.assign(this, { chainId, oracle, readCommitteeNow, committee: null })
  }

  async verify (report) {
    const configDigest = unhex(report.config_digest, 'config_digest')
    if (configDigest.length !== 32) throw new Error('config_digest must be 32 bytes')
    const scheme = (configDigest[0] << 8) | configDigest[1]
    if (scheme !== ECDSA_SCHEME && scheme !== THRESHOLD_SCHNORR_SCHEME) {
      throw new Error(`signature scheme 0x${scheme.toString(16).padStart(4, '0')} is not verified here (0x0001 and 0x0002 only)`)
    }
    if (this.committee === null || this.committee.digest !== report.config_digest.toLowerCase()) {
      this.committee = await this.readCommitteeNow()  // a new committee, or a first look
    }
    const committee = this.committee
    if (committee.digest !== report.config_digest.toLowerCase()) {
      throw new Error(`config digest ${report.config_digest.slice(0, 12)} is not the oracle's current ${committee.digest.slice(0, 12)}`)
    }
    const { epoch, round } = report
    if (!Number.isInteger(epoch) || !Number.isInteger(round) || epoch < 0 || round < 0 || epoch > 0xffffffff || round > 0xffffffff) {
      throw new Error('epoch and round must be uint32')
    }
    const digest = reportDigest(this.chainId, this.oracle, configDigest, epoch, round, unhex(report.updates, 'updates'))
    if (report.report_digest != null && report.report_digest.toLowerCase() !== hex(digest)) {
      throw new Error('the relay\'s report_digest differs from the one computed here (another chain or oracle)')
    }
    if (scheme === THRESHOLD_SCHNORR_SCHEME) {
      if ((report.signatures ?? []).length !== 0 || report.schnorr_signature == null) {
        throw new Error('scheme 0x0002 takes one Schnorr signature (schnorr_signature) and no members\' signatures')
      }
      if (committee.groupKey == null || !schnorrValid(committee.groupKey, digest, unhex(report.schnorr_signature, 'schnorr_signature'))) {
        throw new Error('the Schnorr signature does not verify under the oracle\'s group key')
      }
      return { signers: [], committee }
    }
    if (report.schnorr_signature != null) throw new Error('a Schnorr signature under scheme 0x0001')
    const signers = new Set()
    for (const { index, signature } of report.signatures ?? []) {
      const signer = recoverSigner(digest, unhex(signature, 'signature'))
      if (committee.signers[index] !== signer) {
        throw new Error(`signature ${index} recovers to ${signer}, not committee member ${index} (${committee.signers[index] ?? 'none'})`)
      }
      signers.add(signer)
    }
    if (signers.size < committee.threshold) {
      throw new Error(`${signers.size} distinct committee signers, threshold ${committee.threshold}`)
    }
    return { signers: [...signers], committee }
  }
}
