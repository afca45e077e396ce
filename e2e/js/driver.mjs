#!/usr/bin/env node
// Tandem e2e client driver.
//
// A long-lived process that drives real Yjs clients (yjs + y-websocket's
// WebsocketProvider) on behalf of the Rust black-box tests. It is controlled
// over stdin/stdout with one JSON object per line:
//
//   request:  {"id": 1, "cmd": "connect", "client": "a", "url": "ws://127.0.0.1:1234", "room": "r"}
//   response: {"id": 1, "ok": true, "result": {"clientId": 123}}
//             {"id": 1, "ok": false, "error": "message"}
//
// Requests are handled concurrently: every line is dispatched as soon as it is
// read, and responses are written in completion order (match them by id).
// stdout carries protocol lines only; all diagnostics go to stderr.
// On stdin EOF every provider is destroyed and the process exits with 0.
//
// See README.md for the full command list.

import * as readline from 'node:readline'
import * as Y from 'yjs'
import { WebsocketProvider, messageAuth } from 'y-websocket'
import * as authProtocol from 'y-protocols/auth'
import WebSocket from 'ws'

// ---------------------------------------------------------------------------
// stdout hygiene: libraries must never write to stdout.

const writeLine = (obj) => {
  process.stdout.write(JSON.stringify(obj) + '\n')
}
const logErr = (...args) => {
  process.stderr.write('[driver] ' + args.map((a) => (typeof a === 'string' ? a : safeJson(a))).join(' ') + '\n')
}
console.log = logErr
console.info = logErr
console.debug = logErr
console.trace = logErr

function safeJson (v) {
  try {
    if (v instanceof Error) return v.stack || String(v)
    return JSON.stringify(v)
  } catch {
    return String(v)
  }
}

// every WebsocketProvider registers a process 'exit' listener
process.setMaxListeners(0)

process.on('uncaughtException', (err) => logErr('uncaught exception:', err))
process.on('unhandledRejection', (err) => logErr('unhandled rejection:', err))

// ---------------------------------------------------------------------------
// helpers

const DEFAULT_TIMEOUT_MS = 10000

/** Canonical JSON (sorted object keys) for deep equality. */
function canonical (v) {
  if (v === undefined) return 'null'
  if (v === null || typeof v !== 'object') return JSON.stringify(v)
  if (Array.isArray(v)) return '[' + v.map(canonical).join(',') + ']'
  const keys = Object.keys(v).filter((k) => v[k] !== undefined).sort()
  return '{' + keys.map((k) => JSON.stringify(k) + ':' + canonical(v[k])).join(',') + '}'
}

function bytesEqual (a, b) {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

function truncate (s, n = 300) {
  s = String(s)
  return s.length > n ? s.slice(0, n) + `...(${s.length} chars)` : s
}

/** mulberry32: tiny deterministic PRNG; returns floats in [0, 1). */
function mulberry32 (seed) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function req (args, name, type) {
  const v = args[name]
  if (v === undefined || v === null) throw new Error(`missing argument "${name}"`)
  if (type && typeof v !== type) throw new Error(`argument "${name}" must be a ${type}`)
  return v
}

function timeoutOf (args) {
  const t = args.timeoutMs
  return typeof t === 'number' && t >= 0 ? t : DEFAULT_TIMEOUT_MS
}

// ---------------------------------------------------------------------------
// clients

/**
 * @typedef {object} Client
 * @property {string} name
 * @property {Y.Doc} doc
 * @property {WebsocketProvider} provider
 * @property {Array<{code: number|null, reason: string|null, local?: boolean}>} closes  every connection-close, in order
 * @property {{code: number, reason: string}|null} lastClose  last close reported by the socket
 * @property {string|null} lastError  last connection-error message
 * @property {{code: number, reason: string}|null} terminalClose  set when the provider gave up reconnecting
 * @property {string|null} permissionDenied  reason of the last messageAuth permission-denied
 * @property {Set<Function>} waiters  cancel functions of pending waits
 */

/** @type {Map<string, Client>} */
const clients = new Map()

function getClient (args) {
  const name = req(args, 'client', 'string')
  const c = clients.get(name)
  if (!c) throw new Error(`unknown client "${name}"`)
  return c
}

function describeConn (c) {
  const p = c.provider
  const parts = [`wsconnected=${p.wsconnected}`, `synced=${p.synced}`]
  parts.push(c.lastClose ? `lastClose=${c.lastClose.code} ${JSON.stringify(c.lastClose.reason)}` : 'lastClose=none')
  if (c.lastError) parts.push(`lastError=${JSON.stringify(c.lastError)}`)
  if (c.permissionDenied !== null) parts.push(`permissionDenied=${JSON.stringify(c.permissionDenied)}`)
  return parts.join(' ')
}

/**
 * Generic event-driven wait.
 * @param {object} o
 * @param {Client[]} o.clients   clients whose destruction aborts the wait
 * @param {Array<[any, string]>} o.events   [emitter, eventName] pairs that trigger a re-check
 * @param {() => {done: boolean, value?: any, fail?: string}} o.check
 * @param {number} o.timeoutMs
 * @param {() => string} o.describe   current observed state, used in the timeout error
 * @param {string} o.what
 */
function waitFor ({ clients: cs, events, check, timeoutMs, describe, what }) {
  return new Promise((resolve, reject) => {
    let finished = false
    let timer = null
    const handler = () => {
      if (finished) return
      let r
      try {
        r = check()
      } catch (e) {
        finish()
        reject(e)
        return
      }
      if (r.fail) {
        finish()
        reject(new Error(`${what}: ${r.fail}`))
      } else if (r.done) {
        finish()
        resolve(r.value === undefined ? null : r.value)
      }
    }
    const cancel = (reason) => {
      if (finished) return
      finish()
      reject(new Error(`${what}: ${reason}`))
    }
    function finish () {
      finished = true
      if (timer !== null) clearTimeout(timer)
      for (const [em, ev] of events) em.off(ev, handler)
      for (const c of cs) c.waiters.delete(cancel)
    }
    for (const [em, ev] of events) em.on(ev, handler)
    for (const c of cs) c.waiters.add(cancel)
    timer = setTimeout(() => {
      if (finished) return
      let state
      try {
        state = describe()
      } catch (e) {
        state = `<unavailable: ${e.message}>`
      }
      finish()
      reject(new Error(`${what}: timed out after ${timeoutMs}ms; observed: ${state}`))
    }, timeoutMs)
    handler() // check the current state immediately
  })
}

/** Wait until the provider has (re)synced; fail fast if it gave up reconnecting. */
function waitSynced (c, timeoutMs, what) {
  const p = c.provider
  return waitFor({
    clients: [c],
    events: [[p, 'sync'], [p, 'closed']],
    check: () => {
      if (p.synced && p.wsconnected) return { done: true }
      if (!p.shouldConnect && c.terminalClose) {
        return { fail: `server closed the connection permanently (code ${c.terminalClose.code}, reason ${JSON.stringify(c.terminalClose.reason)}); ${describeConn(c)}` }
      }
      return { done: false }
    },
    timeoutMs,
    describe: () => describeConn(c),
    what
  })
}

function createClient (args) {
  const name = req(args, 'client', 'string')
  const url = req(args, 'url', 'string')
  const room = req(args, 'room', 'string')
  if (clients.has(name)) throw new Error(`client "${name}" already exists`)
  const params = {}
  if (args.params && typeof args.params === 'object') {
    for (const [k, v] of Object.entries(args.params)) params[k] = String(v)
  }
  const doc = new Y.Doc()
  if (typeof args.clientId === 'number') doc.clientID = args.clientId
  /** @type {Client} */
  const c = {
    name,
    doc,
    provider: /** @type {any} */ (null),
    closes: [],
    lastClose: null,
    lastError: null,
    terminalClose: null,
    permissionDenied: null,
    waiters: new Set()
  }
  clients.set(name, c)
  const provider = new WebsocketProvider(url, room, doc, {
    WebSocketPolyfill: /** @type {any} */ (WebSocket),
    disableBc: true,
    params,
    connect: false
  })
  c.provider = provider
  // Record messageAuth permission-denied (the stock handler only console.warn's).
  provider.messageHandlers[messageAuth] = (_encoder, decoder, prov) => {
    authProtocol.readAuthMessage(decoder, prov.doc, (_ydoc, reason) => {
      c.permissionDenied = reason
      logErr(`client ${name}: permission denied: ${reason}`)
      provider.emit('tandem-permission-denied', [reason])
    })
  }
  provider.on('connection-close', (event) => {
    if (event == null) {
      c.closes.push({ code: null, reason: null, local: true })
    } else {
      const rec = { code: event.code, reason: event.reason == null ? '' : String(event.reason) }
      c.lastClose = rec
      c.closes.push(rec)
    }
    provider.emit('tandem-close', [])
  })
  provider.on('connection-error', (event) => {
    c.lastError = (event && (event.message || (event.error && event.error.message))) || 'connection error'
  })
  provider.on('closed', (ev) => {
    c.terminalClose = { code: ev.code, reason: ev.reason }
  })
  provider.on('status', ({ status }) => {
    if (status === 'connected') c.terminalClose = null
  })
  try {
    provider.connect()
  } catch (e) {
    // e.g. the WebSocket constructor rejected the URL
    destroyClient(c)
    throw e
  }
  return c
}

function destroyClient (c) {
  clients.delete(c.name)
  for (const cancel of [...c.waiters]) cancel(`client "${c.name}" destroyed`)
  try {
    c.provider.destroy()
  } catch (e) {
    logErr(`destroy provider ${c.name}:`, e)
  }
  try {
    c.doc.destroy()
  } catch (e) {
    logErr(`destroy doc ${c.name}:`, e)
  }
}

function randomEdit (ytext, rand, maxInsert) {
  const len = ytext.length
  const alphabet = 'abcdefghijklmnopqrstuvwxyz '
  if (len > 0 && rand() < 0.35) {
    const index = Math.floor(rand() * len)
    const n = Math.min(1 + Math.floor(rand() * 5), len - index)
    ytext.delete(index, n)
  } else {
    const index = Math.floor(rand() * (len + 1))
    const n = 1 + Math.floor(rand() * maxInsert)
    let s = ''
    for (let i = 0; i < n; i++) s += alphabet[Math.floor(rand() * alphabet.length)]
    ytext.insert(index, s)
  }
}

// ---------------------------------------------------------------------------
// commands

const commands = {
  ping: async () => 'pong',

  connect: async (args) => {
    const c = createClient(args)
    if (args.waitSync === false) return { clientId: c.doc.clientID }
    await waitSynced(c, timeoutOf(args), `connect ${c.name}`)
    return { clientId: c.doc.clientID }
  },

  disconnect: async (args) => {
    getClient(args).provider.disconnect()
    return null
  },

  reconnect: async (args) => {
    const c = getClient(args)
    const p = c.provider
    c.terminalClose = null
    p.connect()
    await waitSynced(c, timeoutOf(args), `reconnect ${c.name}`)
    return null
  },

  destroy: async (args) => {
    destroyClient(getClient(args))
    return null
  },

  insert: async (args) => {
    const c = getClient(args)
    const text = req(args, 'text', 'string')
    const index = req(args, 'index', 'number')
    const value = req(args, 'value', 'string')
    c.doc.getText(text).insert(index, value)
    return null
  },

  delete: async (args) => {
    const c = getClient(args)
    const text = req(args, 'text', 'string')
    const index = req(args, 'index', 'number')
    const length = req(args, 'length', 'number')
    c.doc.getText(text).delete(index, length)
    return null
  },

  getText: async (args) => {
    const c = getClient(args)
    return c.doc.getText(req(args, 'text', 'string')).toString()
  },

  randomEdits: async (args) => {
    const c = getClient(args)
    const ytext = c.doc.getText(req(args, 'text', 'string'))
    const seed = req(args, 'seed', 'number')
    const count = req(args, 'count', 'number')
    const maxInsert = typeof args.maxInsert === 'number' && args.maxInsert >= 1 ? Math.floor(args.maxInsert) : 8
    const rand = mulberry32(seed)
    for (let i = 0; i < count; i++) {
      c.doc.transact(() => randomEdit(ytext, rand, maxInsert))
    }
    return { length: ytext.length }
  },

  waitText: async (args) => {
    const c = getClient(args)
    const name = req(args, 'text', 'string')
    const equals = req(args, 'equals', 'string')
    const ytext = c.doc.getText(name)
    return waitFor({
      clients: [c],
      events: [[c.doc, 'update']],
      check: () => (ytext.toString() === equals ? { done: true, value: equals } : { done: false }),
      timeoutMs: timeoutOf(args),
      describe: () => `text ${JSON.stringify(truncate(ytext.toString()))} (expected ${JSON.stringify(truncate(equals))}); ${describeConn(c)}`,
      what: `waitText ${c.name}`
    })
  },

  waitConverged: async (args) => {
    const names = req(args, 'clients')
    if (!Array.isArray(names) || names.length === 0) throw new Error('argument "clients" must be a non-empty array')
    const cs = names.map((n) => getClient({ client: n }))
    const name = req(args, 'text', 'string')
    const snapshot = () => cs.map((c) => ({
      text: c.doc.getText(name).toString(),
      sv: Y.encodeStateVector(c.doc)
    }))
    return waitFor({
      clients: cs,
      events: cs.map((c) => [c.doc, 'update']),
      check: () => {
        const s = snapshot()
        const ok = s.every((x) => x.text === s[0].text && bytesEqual(x.sv, s[0].sv))
        return ok ? { done: true, value: s[0].text } : { done: false }
      },
      timeoutMs: timeoutOf(args),
      describe: () => snapshot().map((x, i) => {
        const sv = Object.fromEntries(Y.decodeStateVector(x.sv))
        return `${cs[i].name}: len=${x.text.length} text=${JSON.stringify(truncate(x.text, 120))} sv=${JSON.stringify(sv)} [${describeConn(cs[i])}]`
      }).join('; '),
      what: `waitConverged ${names.join(',')}`
    })
  },

  setAwareness: async (args) => {
    const c = getClient(args)
    c.provider.awareness.setLocalState(args.state === undefined ? null : args.state)
    return null
  },

  getAwareness: async (args) => {
    const c = getClient(args)
    return [...c.provider.awareness.getStates().entries()].map(([clientId, state]) => ({ clientId, state }))
  },

  waitAwareness: async (args) => {
    const c = getClient(args)
    const clientId = req(args, 'clientId', 'number')
    const present = req(args, 'present', 'boolean')
    const hasEquals = Object.prototype.hasOwnProperty.call(args, 'equals') && args.equals !== undefined
    const want = hasEquals ? canonical(args.equals) : null
    const aw = c.provider.awareness
    return waitFor({
      clients: [c],
      events: [[aw, 'change']],
      check: () => {
        const st = aw.getStates().get(clientId)
        const isPresent = st != null
        if (!present) return isPresent ? { done: false } : { done: true }
        if (!isPresent) return { done: false }
        if (hasEquals && canonical(st) !== want) return { done: false }
        return { done: true, value: st }
      },
      timeoutMs: timeoutOf(args),
      describe: () => {
        const st = aw.getStates().get(clientId)
        return `state of ${clientId} = ${st === undefined ? 'absent' : JSON.stringify(st)}` +
          (hasEquals ? ` (expected ${JSON.stringify(args.equals)})` : '') +
          `; known clients ${JSON.stringify([...aw.getStates().keys()])}; ${describeConn(c)}`
      },
      what: `waitAwareness ${c.name} ${clientId} present=${present}`
    })
  },

  // Waits until some client's awareness state has `field` (a dotted path such as
  // "user.name") equal to `equals`; answers {clientId, state}.
  waitAwarenessWhere: async (args) => {
    const c = getClient(args)
    const path = req(args, 'field', 'string').split('.')
    const want = canonical(args.equals)
    const aw = c.provider.awareness
    const lookup = (state) => path.reduce((v, key) => (v == null ? undefined : v[key]), state)
    return waitFor({
      clients: [c],
      events: [[aw, 'change']],
      check: () => {
        for (const [clientId, state] of aw.getStates().entries()) {
          if (canonical(lookup(state)) === want) return { done: true, value: { clientId, state } }
        }
        return { done: false }
      },
      timeoutMs: timeoutOf(args),
      describe: () => `states ${JSON.stringify([...aw.getStates().entries()])}; ${describeConn(c)}`,
      what: `waitAwarenessWhere ${c.name} ${args.field}=${JSON.stringify(args.equals)}`
    })
  },

  // The JSON of root map `name` (an empty object when absent).
  getMap: async (args) => {
    const c = getClient(args)
    return c.doc.getMap(req(args, 'name', 'string')).toJSON()
  },

  // Waits until root map `name` has `key` whose `field` equals `equals` (or just has `key`).
  waitMapEntry: async (args) => {
    const c = getClient(args)
    const map = c.doc.getMap(req(args, 'name', 'string'))
    const key = args.key
    return waitFor({
      clients: [c],
      events: [[c.doc, 'update']],
      check: () => {
        const json = map.toJSON()
        const entries = key === undefined ? Object.entries(json) : (key in json ? [[key, json[key]]] : [])
        for (const [k, v] of entries) {
          if (args.field === undefined || canonical(v?.[args.field]) === canonical(args.equals)) {
            return { done: true, value: { key: k, value: v } }
          }
        }
        return { done: false }
      },
      timeoutMs: timeoutOf(args),
      describe: () => `map ${JSON.stringify(map.toJSON())}`,
      what: `waitMapEntry ${c.name} ${args.name}`
    })
  },

  // Waits until the JSON of root map `name` equals `equals` (texts read as strings).
  waitMapJson: async (args) => {
    const c = getClient(args)
    const map = c.doc.getMap(req(args, 'name', 'string'))
    const wanted = canonical(args.equals)
    return waitFor({
      clients: [c],
      events: [[c.doc, 'update']],
      check: () => (canonical(map.toJSON()) === wanted ? { done: true, value: map.toJSON() } : { done: false }),
      timeoutMs: timeoutOf(args),
      describe: () => `map ${JSON.stringify(map.toJSON())} (expected ${wanted})`,
      what: `waitMapJson ${c.name} ${args.name}`
    })
  },

  // The text a thread or suggestion in root map `name` covers now, resolved on this client
  // from the entry's `start`/`end` relative positions over the root text `text` (null when
  // an end no longer resolves).
  resolveRange: async (args) => {
    const c = getClient(args)
    const entry = c.doc.getMap(req(args, 'name', 'string')).get(req(args, 'key', 'string'))
    if (entry === undefined) throw new Error(`no map entry ${args.key}`)
    const get = (field) => (typeof entry.get === 'function' ? entry.get(field) : entry[field])
    const position = (field) =>
      Y.createAbsolutePositionFromRelativePosition(Y.decodeRelativePosition(get(field)), c.doc)
    const start = position('start')
    const end = position('end')
    if (start === null || end === null) return null
    const text = c.doc.getText(req(args, 'text', 'string')).toString()
    return { start: start.index, end: end.index, text: text.slice(start.index, Math.max(start.index, end.index)) }
  },

  // Sets `field` of the nested map `key` of root map `name` (as an editor's client would).
  setMapField: async (args) => {
    const c = getClient(args)
    const entry = c.doc.getMap(req(args, 'name', 'string')).get(req(args, 'key', 'string'))
    if (entry === undefined || typeof entry.set !== 'function') throw new Error(`no map entry ${args.key}`)
    entry.set(req(args, 'field', 'string'), args.value)
    return null
  },

  // Sets `key` of root map `name` to a new nested map holding `value`'s fields (an object).
  setMapEntry: async (args) => {
    const c = getClient(args)
    const value = args.value
    if (value === null || typeof value !== 'object') throw new Error('setMapEntry needs an object value')
    c.doc.getMap(req(args, 'name', 'string')).set(req(args, 'key', 'string'), new Y.Map(Object.entries(value)))
    return null
  },

  waitClose: async (args) => {
    const c = getClient(args)
    const index = typeof args.index === 'number' ? args.index : c.closes.length
    return waitFor({
      clients: [c],
      events: [[c.provider, 'tandem-close']],
      check: () => (c.closes.length > index ? { done: true, value: c.closes[index] } : { done: false }),
      timeoutMs: timeoutOf(args),
      describe: () => `${c.closes.length} close(s) seen, waiting for #${index}; ${describeConn(c)}`,
      what: `waitClose ${c.name}`
    })
  },

  waitPermissionDenied: async (args) => {
    const c = getClient(args)
    return waitFor({
      clients: [c],
      events: [[c.provider, 'tandem-permission-denied']],
      check: () => (c.permissionDenied !== null ? { done: true, value: c.permissionDenied } : { done: false }),
      timeoutMs: timeoutOf(args),
      describe: () => describeConn(c),
      what: `waitPermissionDenied ${c.name}`
    })
  },

  status: async (args) => {
    const c = getClient(args)
    const p = c.provider
    return {
      wsconnected: p.wsconnected,
      wsconnecting: p.wsconnecting,
      synced: p.synced,
      shouldConnect: p.shouldConnect,
      lastClose: c.lastClose,
      closeCount: c.closes.length,
      terminalClose: c.terminalClose,
      lastError: c.lastError,
      permissionDenied: c.permissionDenied
    }
  },

  encodeState: async (args) => {
    const c = getClient(args)
    return Buffer.from(Y.encodeStateAsUpdate(c.doc)).toString('base64')
  }
}

// ---------------------------------------------------------------------------
// main loop

async function handle (line) {
  let msg
  try {
    msg = JSON.parse(line)
  } catch (e) {
    writeLine({ id: null, ok: false, error: `invalid JSON: ${e.message}` })
    return
  }
  const id = msg && typeof msg === 'object' && 'id' in msg ? msg.id : null
  try {
    if (!msg || typeof msg !== 'object') throw new Error('request must be a JSON object')
    const fn = Object.prototype.hasOwnProperty.call(commands, msg.cmd) ? commands[msg.cmd] : null
    if (!fn) throw new Error(`unknown command ${JSON.stringify(msg.cmd)}`)
    const result = await fn(msg)
    writeLine({ id, ok: true, result: result === undefined ? null : result })
  } catch (e) {
    writeLine({ id, ok: false, error: e && e.message ? e.message : String(e) })
  }
}

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity, terminal: false })
rl.on('line', (line) => {
  if (line.trim() === '') return
  handle(line) // deliberately not awaited: requests run concurrently
})
rl.on('close', () => {
  for (const c of [...clients.values()]) destroyClient(c)
  process.exit(0)
})
