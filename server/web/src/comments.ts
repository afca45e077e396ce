// Comment threads: the panel (read through the REST API, which says where each range is now)
// and the inline markers (from the document's `comments` mirror, whose anchors are Yjs
// relative positions, so markers follow the text as people type).

import * as Y from 'yjs'
import { ThreadView, call, currentSession, enc } from './api'
import { clear, confirmAction, errorText, h, timeAgo, toast } from './dom'
import { monaco } from './monaco'
import type { RoomContext } from './room'

/** A field of a mirrored entry, whether the entry arrived as a Y.Map or a plain object. */
export function field (entry: unknown, key: string): unknown {
  if (entry instanceof Y.Map) return entry.get(key)
  if (entry && typeof entry === 'object') return (entry as Record<string, unknown>)[key]
  return undefined
}

/** Where an encoded relative position points now in `text`, if it still does. */
export function resolve (doc: Y.Doc, text: Y.Text, encoded: unknown): number | null {
  if (!(encoded instanceof Uint8Array)) return null
  try {
    const abs = Y.createAbsolutePositionFromRelativePosition(Y.decodeRelativePosition(encoded), doc)
    return abs && abs.type === text ? abs.index : null
  } catch {
    return null
  }
}

export function renderCommentMarkers (room: RoomContext, decorations: monaco.editor.IEditorDecorationsCollection): void {
  const file = room.currentFile()
  const text = file === null ? undefined : room.files.get(file)
  const model = room.editor.getModel()
  if (!text || !model) {
    decorations.clear()
    return
  }
  const marks: monaco.editor.IModelDeltaDecoration[] = []
  room.doc.getMap('comments').forEach((thread, id) => {
    if (field(thread, 'file') !== file || field(thread, 'status') !== 'open') return
    const start = resolve(room.doc, text, field(thread, 'start'))
    const end = resolve(room.doc, text, field(thread, 'end'))
    if (start === null || end === null || end <= start) return
    const a = model.getPositionAt(start)
    const b = model.getPositionAt(end)
    const comments = field(thread, 'comments')
    const first = Array.isArray(comments) ? comments[0] as { author?: { name?: string }, body?: string } | undefined : undefined
    marks.push({
      range: new monaco.Range(a.lineNumber, a.column, b.lineNumber, b.column),
      options: {
        className: 'comment-range comment-' + id.replace(/[^a-zA-Z0-9_-]/g, ''),
        glyphMarginClassName: 'comment-glyph',
        stickiness: monaco.editor.TrackedRangeStickiness.NeverGrowsWhenTypingAtEdges,
        hoverMessage: first ? { value: `**${first.author?.name ?? 'Someone'}**: ${first.body ?? ''}` } : undefined
      }
    })
  })
  decorations.set(marks)
}

export class CommentsPanel {
  el = h('div', { class: 'comments stack' })
  private list = h('ul', { class: 'threads' })
  private showResolved = h('input', { type: 'checkbox', name: 'show_resolved' })
  private pending: ReturnType<typeof setTimeout> | null = null

  constructor (private room: RoomContext) {
    this.showResolved.addEventListener('change', () => this.refresh())
    this.el.append(
      room.shareToken ? h('p', { class: 'muted' }, 'Share links can read comments; log in to write them.') : h('p', { class: 'muted' }, 'Select text and press “Comment” (Ctrl/⌘+Alt+M).'),
      h('label', { class: 'row' }, this.showResolved, 'Show resolved'),
      this.list)
  }

  /** Re-reads the threads (coalescing bursts of mirror changes into one request). */
  refresh (): void {
    if (this.pending) clearTimeout(this.pending)
    this.pending = setTimeout(() => { void this.load() }, 120)
  }

  private async load (): Promise<void> {
    this.pending = null
    try {
      const status = this.showResolved.checked ? '' : '?status=open'
      const { threads } = await call<{ threads: ThreadView[] }>('GET', `/api/rooms/${enc(this.room.id)}/comments${status}`, undefined, { token: this.room.shareToken })
      clear(this.list)
      if (threads.length === 0) this.list.append(h('li', { class: 'muted empty' }, 'No comments.'))
      for (const t of threads) this.list.append(this.thread(t))
    } catch (err) {
      toast(errorText(err), 'error')
    }
  }

  private thread (t: ThreadView): HTMLElement {
    const me = currentSession()?.user.id
    const owner = this.room.role === 'owner'
    const canWrite = !this.room.shareToken
    const act = (label: string, run: () => Promise<unknown>): HTMLElement => h('button', {
      class: 'ghost small',
      onclick: async () => {
        try {
          await run()
        } catch (err) {
          toast(errorText(err), 'error')
        }
      }
    }, label)
    const base = `/api/rooms/${enc(this.room.id)}/comments/${enc(t.id)}`
    const reply = h('input', { type: 'text', name: 'reply', placeholder: 'Reply…', 'aria-label': 'Reply' })
    const quote = h('button', {
      class: 'quote',
      title: t.orphaned ? 'The text was deleted' : 'Show in the editor',
      disabled: t.orphaned,
      onclick: () => { if (t.start !== undefined && t.end !== undefined) this.room.reveal(t.file, t.start, t.end) }
    }, (t.text ?? t.quote).slice(0, 160))
    return h('li', { class: 'thread' + (t.status === 'resolved' ? ' resolved' : ''), 'data-thread': t.id },
      h('div', { class: 'row' }, h('span', { class: 'muted' }, t.file), t.orphaned ? h('span', { class: 'badge' }, 'orphaned') : null,
        t.status === 'resolved' ? h('span', { class: 'badge' }, 'resolved') : null),
      quote,
      ...t.comments.map(c => h('div', { class: 'comment' },
        h('div', { class: 'row' }, h('strong', {}, c.author.name), h('span', { class: 'muted' }, timeAgo(c.created_at_ms) + (c.edited_at_ms ? ' · edited' : '')),
          h('span', { class: 'spacer' }),
          c.author.id === me || owner ? act('Delete', async () => {
            if (await confirmAction('Delete comment', 'Delete this comment?', 'Delete')) {
              await call('DELETE', `${base}/replies/${enc(c.id)}`)
            }
          }) : null),
        h('p', {}, c.body))),
      canWrite
        ? h('form', {
          class: 'row',
          onsubmit: async (e: Event) => {
            e.preventDefault()
            const body = reply.value.trim()
            if (!body) return
            try {
              await call('POST', `${base}/replies`, { body })
              reply.value = ''
            } catch (err) {
              toast(errorText(err), 'error')
            }
          }
        }, reply, h('button', { type: 'submit', class: 'ghost small' }, 'Reply'))
        : null,
      canWrite && (this.room.role !== 'viewer' || t.author.id === me)
        ? h('div', { class: 'row' }, t.status === 'open' ? act('Resolve', () => call('POST', `${base}/resolve`)) : act('Reopen', () => call('POST', `${base}/reopen`)))
        : null)
  }

  destroy (): void {
    if (this.pending) clearTimeout(this.pending)
  }
}
