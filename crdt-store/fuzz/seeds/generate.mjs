// Generates the fuzz corpus seeds from real yjs traffic: updates, sync and awareness frames
// and stored documents as yjs + y-protocols produce them, and a sample of the automerge-paper
// editing trace (the trace b4-update.bin encodes whole) replayed through Y.Text.
//
// Run from the repository root (the shared data folder beside it):
//
//   (cd e2e/js && npm ci) && node crdt-store/fuzz/seeds/generate.mjs [path/to/editing-traces]
//
// Deterministic: fixed client ids and content, so re-running changes nothing unless the
// library versions in e2e/js/package-lock.json change the encoding.

import { createRequire } from 'node:module'
import { mkdirSync, readFileSync, writeFileSync, rmSync } from 'node:fs'
import { gunzipSync } from 'node:zlib'
import { fileURLToPath } from 'node:url'
import { dirname, join } from 'node:path'

const require = createRequire(new URL('../../../e2e/js/package.json', import.meta.url))
const Y = require('yjs')
const syncProtocol = require('y-protocols/sync')
const awarenessProtocol = require('y-protocols/awareness')
const encoding = require('lib0/encoding')

const here = dirname(fileURLToPath(import.meta.url))
const traces = process.argv[2] ?? join(here, '../../../../shared/data/editing-traces')

const out = (target, name, bytes) => {
  mkdirSync(join(here, target), { recursive: true })
  writeFileSync(join(here, target, name), Buffer.from(bytes))
}
for (const target of ['frame', 'update', 'awareness', 'document']) {
  rmSync(join(here, target), { recursive: true, force: true })
}

const frame = (write) => {
  const enc = encoding.createEncoder()
  write(enc)
  return encoding.toUint8Array(enc)
}
const syncFrame = (type, payload) => frame((enc) => {
  encoding.writeVarUint(enc, 0)
  encoding.writeVarUint(enc, type)
  encoding.writeVarUint8Array(enc, payload)
})
const awarenessFrame = (payload) => frame((enc) => {
  encoding.writeVarUint(enc, 1)
  encoding.writeVarUint8Array(enc, payload)
})

const docWith = (clientID) => {
  const doc = new Y.Doc()
  doc.clientID = clientID
  return doc
}

// The document the update target pre-loads: nested maps 7 deep (the fuzzing limit is 8).
const preload = docWith(7)
preload.transact(() => {
  const files = preload.getMap('files')
  const main = new Y.Text()
  files.set('main.md', main)
  main.insert(0, '# Title\nhello world, with **bold** text')
  main.format(2, 5, { bold: true, link: { href: 'https://example.test', nested: [1, [2]] } })
  files.set('notes.txt', new Y.Text('short notes'))
  preload.getText('readme').insert(0, 'A root text é🌍')
  let map = preload.getMap('deep')
  for (let level = 0; level < 6; level++) {
    const inner = new Y.Map()
    map.set(`level${level}`, inner)
    map = inner
  }
  map.set('leaf', { values: [1, 2.5, 'three', null, true, { four: [4] }], big: 2n ** 60n })
  map.set('bytes', new Uint8Array([1, 2, 3]))
  const list = preload.getArray('list')
  list.insert(0, [1, 'two', { three: 3 }, [4, [5]]])
  list.push([new Y.Array(), new Y.Map()])
  const xml = preload.getXmlFragment('xml')
  const element = new Y.XmlElement('p')
  element.setAttribute('class', 'intro')
  element.insert(0, [new Y.XmlText('xml text')])
  xml.insert(0, [element])
  preload.getMap('comments').set('t1', new Y.Map())
})
const preloadState = Y.encodeStateAsUpdate(preload)
out('.', 'preload.bin', preloadState)
out('update', 'preload', preloadState)
out('document', 'preload', preloadState)
out('frame', 'step2-preload', syncFrame(1, preloadState))
out('frame', 'step1-preload', syncFrame(0, Y.encodeStateVector(preload)))

// Edits of the pre-loaded document by another client, one update each.
const editor = docWith(9)
Y.applyUpdate(editor, preloadState)
const edits = [
  ['insert', () => editor.getMap('files').get('main.md').insert(8, 'typed ')],
  ['delete', () => editor.getMap('files').get('main.md').delete(0, 4)],
  ['format', () => editor.getText('readme').format(0, 3, { italic: true })],
  ['new-file', () => editor.getMap('files').set('new.md', new Y.Text('new file'))],
  ['remove-file', () => editor.getMap('files').delete('notes.txt')],
  ['deeper-ok', () => {
    let map = editor.getMap('deep')
    for (let level = 0; level < 6; level++) map = map.get(`level${level}`)
    map.set('level6', new Y.Map())
  }],
  ['deeper-refused', () => {
    let map = editor.getMap('deep')
    for (let level = 0; level < 6; level++) map = map.get(`level${level}`)
    const a = new Y.Map()
    const b = new Y.Map()
    map.set('level6b', a)
    a.set('level7', b)
    b.set('level8', new Y.Map())
  }],
  ['array-edit', () => { const list = editor.getArray('list'); list.delete(1, 1); list.insert(0, [[[[[1]]]]]) }],
  ['xml-edit', () => editor.getXmlFragment('xml').get(0).setAttribute('id', 'x')],
  ['deep-value', () => editor.getMap('values').set('v', [[[[[[[[[[1]]]]]]]]]])],
]
for (const [name, edit] of edits) {
  const before = Y.encodeStateVector(editor)
  edit()
  const update = Y.encodeStateAsUpdate(editor, before)
  out('update', `edit-${name}`, update)
  if (name === 'insert' || name === 'deeper-refused' || name === 'remove-file') {
    out('frame', `update-${name}`, syncFrame(2, update))
  }
}
out('document', 'edited', Y.encodeStateAsUpdate(editor))
out('update', 'merged-edits', Y.mergeUpdates([preloadState, Y.encodeStateAsUpdate(editor, Y.encodeStateVector(preload))]))

// A sample of the automerge-paper trace: the first transactions replayed keystroke by
// keystroke, a few single-keystroke updates and the merged result.
const trace = JSON.parse(gunzipSync(readFileSync(join(traces, 'automerge-paper.json.gz'))))
const paper = docWith(11)
const text = paper.getText('text')
const keystrokes = []
paper.on('update', (update) => keystrokes.push(update))
const sample = 3000
for (const txn of trace.txns.slice(0, sample)) {
  paper.transact(() => {
    for (const [pos, del, ins] of txn.patches) {
      if (del > 0) text.delete(pos, del)
      if (ins) text.insert(pos, ins)
    }
  })
}
for (const index of [0, 1, 100, 1000, 2500]) {
  out('update', `trace-keystroke-${index}`, keystrokes[index])
}
out('frame', 'update-trace-keystroke', syncFrame(2, keystrokes[500]))
out('update', 'trace-merged-200', Y.mergeUpdates(keystrokes.slice(0, 200)))
out('document', 'trace-3000', Y.encodeStateAsUpdate(paper))
// The whole trace as one real update, as stored documents hold it, is too big for a seed
// (400 KB): its first transactions' state stands in for it, sampled above.

// A client's state vector and a step 1 with several clients.
out('frame', 'step1-paper', syncFrame(0, Y.encodeStateVector(paper)))
out('frame', 'step1-empty', syncFrame(0, Y.encodeStateVector(new Y.Doc())))
out('frame', 'step2-empty', syncFrame(1, Y.encodeStateAsUpdate(new Y.Doc())))
out('frame', 'query-awareness', frame((enc) => encoding.writeVarUint(enc, 3)))
out('frame', 'auth-denied', frame((enc) => {
  encoding.writeVarUint(enc, 2)
  encoding.writeVarUint(enc, 0)
  encoding.writeVarString(enc, 'permission denied')
}))

// Awareness as y-protocols encodes it: a local state, several clients, a removal, and a
// state that tries to pose as the assistant.
const presence = docWith(21)
const awareness = new awarenessProtocol.Awareness(presence)
awareness.setLocalState({ user: { id: 'someone-else', name: 'Mallory', color: '#f00' }, cursor: { anchor: 1, head: 4 } })
const single = awarenessProtocol.encodeAwarenessUpdate(awareness, [21])
out('awareness', 'single', single)
out('frame', 'awareness-single', awarenessFrame(single))
awareness.setLocalState({ user: 'not an object', assistant: true, selection: [[1, 2], [3, 4]] })
const assistant = awarenessProtocol.encodeAwarenessUpdate(awareness, [21])
out('awareness', 'assistant', assistant)
out('frame', 'awareness-assistant', awarenessFrame(assistant))
const other = new awarenessProtocol.Awareness(docWith(22))
other.setLocalState({ assistant: false, user: { name: 'Bob' }, nested: { a: { b: { c: [] } } } })
awarenessProtocol.applyAwarenessUpdate(awareness, awarenessProtocol.encodeAwarenessUpdate(other, [22]), 'remote')
const both = awarenessProtocol.encodeAwarenessUpdate(awareness, [21, 22])
out('awareness', 'two-clients', both)
out('frame', 'awareness-two-clients', awarenessFrame(both))
awareness.setLocalState(null)
const removal = awarenessProtocol.encodeAwarenessUpdate(awareness, [21])
out('awareness', 'removal', removal)
out('frame', 'awareness-removal', awarenessFrame(removal))
out('awareness', 'raw-state', new TextEncoder().encode('{"user":{"id":1,"name":["x"]},"assistant":true,"assistant":1}'))

awareness.destroy()
other.destroy()
console.log('seeds written under', here)
