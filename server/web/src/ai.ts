// The AI assistant: a chat whose answers stream in (Server-Sent Events over a POST, read
// with fetch), action buttons, and the assistant's suggestions shown inline as a diff with
// Accept / Reject.

import * as Y from 'yjs'
import { call, enc, send } from './api'
import { clear, errorText, h, toast } from './dom'
import { monaco } from './monaco'
import { field, resolve } from './comments'
import type { RoomContext } from './room'

type Action = 'explain' | 'find_bugs' | 'refactor' | 'add_comments' | 'free'

const ACTIONS: Array<{ action: Action, label: string, message: string }> = [
  { action: 'explain', label: 'Explain', message: 'Explain this code.' },
  { action: 'find_bugs', label: 'Find bugs', message: 'Find bugs in this code.' },
  { action: 'refactor', label: 'Refactor', message: 'Refactor this code.' },
  { action: 'add_comments', label: 'Add comments', message: 'Add comments to this code.' }
]

export interface Suggestion {
  id: string
  file: string
  original: string
  replacement: string
  explanation: string
  status: string
  start: unknown
  end: unknown
}

function readSuggestion (id: string, entry: unknown): Suggestion {
  const str = (key: string): string => {
    const v = field(entry, key)
    return typeof v === 'string' ? v : ''
  }
  return {
    id,
    file: str('file'),
    original: str('original'),
    replacement: str('replacement'),
    explanation: str('explanation'),
    status: str('status'),
    start: field(entry, 'start'),
    end: field(entry, 'end')
  }
}

function lines (text: string): string[] {
  const out = text.split('\n')
  if (out.length > 1 && out[out.length - 1] === '') out.pop()
  return out
}

/** The pending suggestions of the document, drawn inline in the editor's current file. */
export class SuggestionsView {
  private zones: string[] = []
  private decorations: monaco.editor.IEditorDecorationsCollection
  private listeners = new Set<() => void>()
  private scheduled: ReturnType<typeof setTimeout> | null = null
  private map: Y.Map<unknown>
  private onDocChange = (): void => this.schedule()

  constructor (private room: RoomContext) {
    this.map = room.doc.getMap('suggestions')
    this.decorations = room.editor.createDecorationsCollection([])
    this.map.observeDeep(() => {
      this.render()
      this.listeners.forEach(l => l())
    })
    // Anchors follow the text; redraw after edits so zones sit under their range.
    room.doc.on('update', this.onDocChange)
  }

  onChange (listener: () => void): void {
    this.listeners.add(listener)
  }

  pending (): Suggestion[] {
    const out: Suggestion[] = []
    this.map.forEach((entry, id) => {
      const s = readSuggestion(id, entry)
      if (s.status === 'pending') out.push(s)
    })
    return out
  }

  private schedule (): void {
    if (this.scheduled) return
    this.scheduled = setTimeout(() => {
      this.scheduled = null
      this.render()
    }, 150)
  }

  render (): void {
    const editor = this.room.editor
    const file = this.room.currentFile()
    const text = file === null ? undefined : this.room.files.get(file)
    const model = editor.getModel()
    const marks: monaco.editor.IModelDeltaDecoration[] = []
    const zones: monaco.editor.IViewZone[] = []
    if (text && model) {
      for (const s of this.pending()) {
        if (s.file !== file) continue
        const start = resolve(this.room.doc, text, s.start)
        const end = resolve(this.room.doc, text, s.end)
        if (start === null || end === null) continue
        const a = model.getPositionAt(start)
        const b = model.getPositionAt(Math.max(start, end))
        marks.push({
          range: new monaco.Range(a.lineNumber, a.column, b.lineNumber, b.column),
          options: { className: 'suggestion-range', isWholeLine: false, glyphMarginClassName: 'suggestion-glyph' }
        })
        const removed = lines(s.original)
        const added = lines(s.replacement)
        zones.push({
          afterLineNumber: b.lineNumber,
          heightInLines: removed.length + added.length + 1.6,
          domNode: this.zone(s, removed, added)
        })
      }
    }
    this.decorations.set(marks)
    editor.changeViewZones(acc => {
      this.zones.forEach(id => acc.removeZone(id))
      this.zones = zones.map(z => acc.addZone(z))
    })
  }

  private zone (s: Suggestion, removed: string[], added: string[]): HTMLElement {
    const canDecide = !this.room.readOnly
    const node = h('div', { class: 'suggestion-zone', 'data-suggestion': s.id },
      h('div', { class: 'suggestion-head' },
        h('span', { class: 'suggestion-title' }, 'AI suggestion'),
        canDecide ? h('button', { class: 'accept', onclick: () => { void decide(this.room, s.id, 'accept') } }, 'Accept') : null,
        canDecide ? h('button', { class: 'reject', onclick: () => { void decide(this.room, s.id, 'reject') } }, 'Reject') : null,
        h('span', { class: 'suggestion-why', title: s.explanation }, s.explanation.split('\n')[0].slice(0, 140))),
      h('pre', { class: 'suggestion-diff' },
        ...removed.map(l => h('div', { class: 'del' }, '− ' + l)),
        ...added.map(l => h('div', { class: 'add' }, '+ ' + l))))
    // Keep the editor from treating clicks on the zone as clicks into the text.
    node.addEventListener('mousedown', e => e.stopPropagation())
    return node
  }

  destroy (): void {
    this.room.doc.off('update', this.onDocChange)
    if (this.scheduled) clearTimeout(this.scheduled)
  }
}

async function decide (room: RoomContext, id: string, verdict: 'accept' | 'reject'): Promise<void> {
  try {
    await call('POST', `/api/rooms/${enc(room.id)}/suggestions/${enc(id)}/${verdict}`)
  } catch (err) {
    toast(verdict === 'accept' && /conflict/i.test(errorText(err))
      ? 'The text changed since the suggestion was made; it was not applied.'
      : errorText(err), 'error')
  }
}

/** Shows an answer's text with its fenced code blocks as code (an unclosed fence, still
 *  streaming, shows as code too). */
function renderAnswer (el: HTMLElement, text: string): void {
  clear(el)
  const parts = text.split(/^```[^\n]*\n?/m)
  parts.forEach((part, i) => {
    if (i % 2 === 1) el.append(h('pre', { class: 'code' }, part.replace(/\n$/, '')))
    else if (part.trim()) el.append(h('div', {}, part.replace(/^\n+|\n+$/g, '')))
  })
}

/** Reads a Server-Sent Events body, calling `on` for each event. */
async function readEvents (body: ReadableStream<Uint8Array>, on: (event: string, data: unknown) => void): Promise<void> {
  const reader = body.getReader()
  const decoder = new TextDecoder()
  let buffer = ''
  for (;;) {
    const { done, value } = await reader.read()
    if (value) buffer += decoder.decode(value, { stream: true })
    let cut: number
    while ((cut = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, cut)
      buffer = buffer.slice(cut + 2)
      let event = 'message'
      const data: string[] = []
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim()
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''))
      }
      let parsed: unknown = data.join('\n')
      try {
        parsed = JSON.parse(parsed as string)
      } catch {
        // Plain text data.
      }
      on(event, parsed)
    }
    if (done) return
  }
}

export class AiPanel {
  el = h('div', { class: 'ai stack' })
  private log = h('div', { class: 'chat', 'aria-live': 'polite' })
  private input = h('textarea', { name: 'message', rows: 2, placeholder: 'Ask about the code… (Enter to send)', 'aria-label': 'Message to the assistant' })
  private suggestionList = h('ul', { class: 'suggestion-list' })
  private status = h('span', { class: 'muted ai-status' })
  private conversation: string | null = null
  private busy = false
  private buttons: HTMLButtonElement[] = []

  constructor (private room: RoomContext, private suggestions: SuggestionsView) {
    const actions = h('div', { class: 'row wrap' })
    for (const a of ACTIONS) {
      const b = h('button', { class: 'ghost small', 'data-action': a.action, onclick: () => { void this.ask(a.message, a.action) } }, a.label)
      this.buttons.push(b)
      actions.append(b)
    }
    const sendButton = h('button', { type: 'submit', class: 'primary' }, 'Send')
    this.buttons.push(sendButton)
    this.input.addEventListener('keydown', e => {
      if (e.key === 'Enter' && !e.shiftKey) {
        e.preventDefault()
        form.requestSubmit()
      }
    })
    const form = h('form', {
      class: 'row chat-form',
      onsubmit: (e: Event) => {
        e.preventDefault()
        const message = this.input.value.trim()
        if (message) void this.ask(message, 'free')
      }
    }, this.input, sendButton)
    this.el.append(
      h('p', { class: 'muted' }, 'Actions work on the selection (or the whole file when nothing is selected).'),
      actions, this.log, form, this.status,
      h('h3', {}, 'Suggestions'), this.suggestionList)
    suggestions.onChange(() => this.renderSuggestions())
    room.awareness.on('change', () => this.renderStatus())
  }

  refresh (): void {
    this.renderSuggestions()
    this.renderStatus()
  }

  private renderStatus (): void {
    let text = ''
    this.room.awareness.getStates().forEach(state => {
      if (state.assistant === true && (state.status === 'thinking' || state.status === 'writing')) {
        text = `The assistant is ${state.status}…`
      }
    })
    this.status.textContent = text
  }

  private renderSuggestions (): void {
    clear(this.suggestionList)
    const pending = this.suggestions.pending()
    if (pending.length === 0) this.suggestionList.append(h('li', { class: 'muted empty' }, 'No pending suggestions.'))
    for (const s of pending) {
      this.suggestionList.append(h('li', { class: 'suggestion-item' },
        h('div', { class: 'row' }, h('button', { class: 'link', onclick: () => this.room.openFile(s.file) }, s.file),
          h('span', { class: 'muted ellipsis' }, s.explanation.split('\n')[0])),
        h('div', { class: 'row' },
          h('button', { class: 'ghost small', onclick: () => { void decide(this.room, s.id, 'accept') } }, 'Accept'),
          h('button', { class: 'ghost small', onclick: () => { void decide(this.room, s.id, 'reject') } }, 'Reject'))))
    }
  }

  private bubble (who: 'me' | 'assistant' | 'error', text: string): HTMLElement {
    const el = h('div', { class: 'msg ' + who }, text)
    this.log.append(el)
    this.log.scrollTop = this.log.scrollHeight
    return el
  }

  private async ask (message: string, action: Action): Promise<void> {
    if (this.busy) return
    const file = this.room.currentFile()
    const sel = this.room.selection()
    const body: Record<string, unknown> = { message, action }
    if (file !== null && sel) {
      body.file = file
      if (sel.start !== sel.end) body.selection = { start: sel.start, end: sel.end }
      else if (action !== 'free') body.selection = { start: 0, end: this.room.files.get(file)?.length ?? 0 }
      else body.cursor = sel.start
    }
    if (this.conversation) body.conversation_id = this.conversation
    this.busy = true
    this.buttons.forEach(b => { b.disabled = true })
    this.input.value = ''
    this.bubble('me', message)
    const answer = this.bubble('assistant', '')
    answer.classList.add('streaming')
    let text = ''
    try {
      const res = await send('POST', `/api/rooms/${enc(this.room.id)}/ai/chat`, body)
      if (!res.body) throw new Error('the answer has no body')
      await readEvents(res.body, (event, data) => {
        const d = data as Record<string, unknown>
        if (event === 'token' && typeof d.text === 'string') {
          text += d.text
          renderAnswer(answer, text)
          this.log.scrollTop = this.log.scrollHeight
        } else if (event === 'done') {
          if (typeof d.conversation_id === 'string') this.conversation = d.conversation_id
          const made = Array.isArray(d.suggestion_ids) ? d.suggestion_ids.length : 0
          if (made > 0) answer.append(h('div', { class: 'muted' }, made === 1 ? 'A suggestion is shown in the editor.' : `${made} suggestions are shown in the editor.`))
        } else if (event === 'error') {
          this.bubble('error', String(d.message ?? 'the assistant failed'))
        }
      })
    } catch (err) {
      this.bubble('error', errorText(err))
    } finally {
      answer.classList.remove('streaming')
      if (!answer.textContent) answer.remove()
      this.busy = false
      this.buttons.forEach(b => { b.disabled = false })
    }
  }
}
