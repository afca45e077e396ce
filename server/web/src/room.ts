// One room: the editor bound to the document, its files, presence and the side panels.
//
// The document follows the server's convention: the root Y.Map `files` maps a path to a
// Y.Text. Every file operation goes through that map, so everyone sees it at once. The AI
// assistant's suggestions (root map `suggestions`) and the comment threads' mirror (root map
// `comments`) are read from the document too, and shown inline.

import * as Y from 'yjs'
import { WebsocketProvider, messageAuth } from 'y-websocket'
import * as authProtocol from 'y-protocols/auth'
import { MonacoBinding } from 'y-monaco'
import { Role, RoomView, call, currentSession, enc, freshAccessToken } from './api'
import { clear, confirmAction, askText, errorText, h, modal, toast } from './dom'
import { monaco, languageOf } from './monaco'
import { HistoryPanel } from './history'
import { CommentsPanel, renderCommentMarkers, resolve } from './comments'
import { AiPanel, SuggestionsView } from './ai'
import { ShareDialog } from './share'

/** When the room last reloaded because its edits were refused (sessionStorage). */
const ROLE_RELOAD_KEY = 'tandem-role-reload'
/** The close code of a socket whose viewer was made an editor (see the server's `routes/ws.rs`). */
const ROLE_RAISED_CLOSE = 4205
/** A notice to show once the app starts again after a reload (sessionStorage). */
export const NOTICE_KEY = 'tandem-notice'

export interface RoomOptions {
  /** Open the room through a read-only share link instead of the session. */
  shareToken?: string
  onLeave: () => void
}

type PanelName = 'history' | 'comments' | 'ai' | 'people'

const PALETTE = ['#e5484d', '#f76b15', '#ffc53d', '#46a758', '#12a594', '#00a2c7', '#3e63dd', '#8e4ec6', '#d6409f', '#ad7f58']

export function colorFor (seed: string): string {
  let hash = 0
  for (const ch of seed) hash = (hash * 31 + ch.charCodeAt(0)) >>> 0
  return PALETTE[hash % PALETTE.length]
}

/** A CSS string literal holding `text`. */
function cssString (text: string): string {
  return '"' + text.replace(/[\\"]/g, '\\$&').replace(/[\n\r]/g, ' ') + '"'
}

export type ConnectionState = 'connecting' | 'connected' | 'reconnecting' | 'offline' | 'closed'

/** What the panels need from the room. */
export interface RoomContext {
  id: string
  name: string
  role: Role
  readOnly: boolean
  shareToken?: string
  doc: Y.Doc
  files: Y.Map<Y.Text>
  editor: monaco.editor.IStandaloneCodeEditor
  currentFile: () => string | null
  openFile: (path: string) => void
  /** The current selection as UTF-16 offsets of the current file. */
  selection: () => { file: string, start: number, end: number } | null
  reveal: (file: string, start: number, end: number) => void
  awareness: WebsocketProvider['awareness']
}

export class RoomPage implements RoomContext {
  id: string
  name = ''
  role: Role = 'viewer'
  readOnly = true
  shareToken?: string
  doc = new Y.Doc()
  files: Y.Map<Y.Text>
  editor!: monaco.editor.IStandaloneCodeEditor
  awareness!: WebsocketProvider['awareness']
  private provider: WebsocketProvider | null = null
  private model: monaco.editor.ITextModel | null = null
  private binding: MonacoBinding | null = null
  private file: string | null = null
  private state: ConnectionState = 'connecting'
  private closedReason = ''
  private destroyed = false
  private cleanups: Array<() => void> = []
  private panel: PanelName | null = null
  private panels: Partial<Record<PanelName, { el: HTMLElement, refresh?: () => void, destroy?: () => void }>> = {}

  // Parts of the page.
  private root: HTMLElement
  private els = {
    title: h('h1', { class: 'room-title' }),
    status: h('span', { class: 'conn', 'data-state': 'connecting', role: 'status', 'aria-live': 'polite' }),
    presence: h('div', { class: 'presence', 'aria-label': 'People here' }),
    tree: h('ul', { class: 'tree', 'aria-label': 'Files' }),
    filesAside: h('aside', { class: 'files' }),
    fileLabel: h('span', { class: 'file-label' }),
    editorHost: h('div', { class: 'editor', 'data-testid': 'editor' }),
    empty: h('div', { class: 'editor-empty', hidden: true }),
    banner: h('div', { class: 'banner', hidden: true }),
    panelHost: h('aside', { class: 'panel', hidden: true }),
    toolbar: h('nav', { class: 'room-actions' }),
    cursorStyle: h('style', { id: 'remote-cursors' }),
    commentButton: h('button', { class: 'ghost small', title: 'Comment on the selection (Ctrl/⌘+Alt+M)' }, 'Comment')
  }

  private suggestions: SuggestionsView | null = null
  private commentDecorations: monaco.editor.IEditorDecorationsCollection | null = null
  private assistantDecorations: monaco.editor.IEditorDecorationsCollection | null = null

  constructor (host: HTMLElement, id: string, private options: RoomOptions) {
    this.id = id
    this.shareToken = options.shareToken
    this.files = this.doc.getMap('files')
    this.root = h('div', { class: 'page room-page' })
    host.append(this.root)
    ;(window as unknown as { tandem: unknown }).tandem = this.probe()
    void this.start()
  }

  /** A handle for debugging from the console (and for the end-to-end tests). */
  private probe (): Record<string, unknown> {
    return {
      doc: this.doc,
      room: () => this.id,
      role: () => this.role,
      file: () => this.file,
      text: () => this.model?.getValue() ?? null,
      connection: () => this.state,
      socketOpen: () => this.provider?.wsconnected ?? false,
      editor: () => this.editor
    }
  }

  private async start (): Promise<void> {
    let detail: RoomView
    try {
      detail = await call<RoomView>('GET', `/api/rooms/${enc(this.id)}`, undefined, { token: this.shareToken })
    } catch (err) {
      this.root.append(h('main', { class: 'center' }, h('div', { class: 'card stack' },
        h('h1', {}, 'Room not available'), h('p', {}, errorText(err)),
        h('button', { class: 'primary', onclick: () => this.options.onLeave() }, 'My rooms'))))
      return
    }
    if (this.destroyed) return
    this.name = detail.name
    this.role = this.shareToken ? 'viewer' : detail.role
    this.readOnly = this.role === 'viewer'
    document.title = `${this.name} · Tandem`
    this.layout()
    await this.connect()
  }

  private layout (): void {
    const e = this.els
    e.title.textContent = this.name
    e.title.title = this.name
    const back = h('button', { class: 'ghost', 'aria-label': 'My rooms', title: 'My rooms', onclick: () => this.options.onLeave() }, '←')
    const filesToggle = h('button', { class: 'ghost only-narrow', 'aria-label': 'Files', onclick: () => this.root.classList.toggle('show-files') }, '☰')
    const button = (name: PanelName, label: string, title: string): HTMLElement => {
      const b = h('button', { class: 'ghost', 'data-panel': name, title, 'aria-pressed': 'false', onclick: () => this.togglePanel(name) }, label)
      return b
    }
    e.toolbar.append(
      button('history', 'History', 'Version history'),
      button('comments', 'Comments', 'Comments'))
    if (!this.readOnly && !this.shareToken) e.toolbar.append(button('ai', 'AI', 'AI assistant (Ctrl/⌘+K)'))
    e.toolbar.append(button('people', 'People', 'People'))
    if (this.role === 'owner') {
      e.toolbar.append(h('button', { class: 'primary', onclick: () => new ShareDialog(this) }, 'Share'))
    }
    e.toolbar.append(h('button', { class: 'ghost', 'aria-label': 'Keyboard shortcuts', title: 'Keyboard shortcuts', onclick: () => shortcutsHelp() }, '?'))

    const newFile = h('button', { class: 'ghost small', title: 'New file', onclick: () => { void this.createFile() } }, '+ New file')
    e.filesAside.append(h('div', { class: 'files-head' }, h('span', {}, 'Files'), this.readOnly ? null : newFile), e.tree)

    e.banner.hidden = !this.readOnly
    e.banner.textContent = this.shareToken
      ? 'Read-only: you opened this room through a share link.'
      : 'Read-only: you are a viewer in this room.'
    e.commentButton.addEventListener('click', () => { void this.commentOnSelection() })
    const canComment = !this.shareToken

    this.root.append(
      h('header', { class: 'topbar room-bar' }, back, filesToggle, e.title, e.status, e.presence, h('div', { class: 'spacer' }), e.toolbar),
      h('div', { class: 'room-body' },
        e.filesAside,
        h('main', { class: 'editor-column' },
          e.banner,
          h('div', { class: 'editor-head' }, e.fileLabel, h('span', { class: 'spacer' }), canComment ? e.commentButton : null),
          h('div', { class: 'editor-stack' }, e.editorHost, e.empty)),
        e.panelHost),
      e.cursorStyle)

    this.editor = monaco.editor.create(e.editorHost, {
      theme: 'vs-dark',
      automaticLayout: true,
      readOnly: this.readOnly,
      readOnlyMessage: { value: this.shareToken ? 'This share link is read-only.' : 'You are a viewer in this room: read-only.' },
      minimap: { enabled: window.innerWidth > 900 },
      fontSize: 14,
      glyphMargin: true,
      scrollBeyondLastLine: false,
      // Room above the first line for the name labels over remote cursors.
      padding: { top: 16 },
      wordWrap: window.innerWidth < 700 ? 'on' : 'off',
      model: null
    })
    // Monaco fetches its icon font the first time an icon shows; fetch it now, while online,
    // so the editor keeps its icons when the network goes away later.
    void document.fonts.load('16px codicon').catch(() => {})
    this.commentDecorations = this.editor.createDecorationsCollection([])
    this.assistantDecorations = this.editor.createDecorationsCollection([])
    this.suggestions = new SuggestionsView(this)

    const onKey = (ev: KeyboardEvent): void => {
      if (!(ev.ctrlKey || ev.metaKey)) return
      const key = ev.key.toLowerCase()
      if (key === 's' && !ev.altKey) {
        ev.preventDefault()
        ev.stopPropagation()
        if (!this.readOnly) void HistoryPanel.checkpoint(this, () => this.panels.history?.refresh?.())
      } else if (key === 'k' && !ev.altKey && !ev.shiftKey) {
        ev.preventDefault()
        ev.stopPropagation()
        if (!this.readOnly && !this.shareToken) this.togglePanel('ai', true)
      } else if (ev.altKey && (key === 'm' || ev.code === 'KeyM')) {
        ev.preventDefault()
        ev.stopPropagation()
        if (!this.shareToken) void this.commentOnSelection()
      }
    }
    window.addEventListener('keydown', onKey, true)
    this.cleanups.push(() => window.removeEventListener('keydown', onKey, true))

    this.files.observe(() => this.renderFiles())
    this.doc.getMap('comments').observeDeep(() => {
      this.renderCommentMarkers()
      this.panels.comments?.refresh?.()
    })
    this.renderFiles()
  }

  /**
   * This person's edits are refused: their role changed. Reload the room, so the editor shows
   * the server's text (not the refused edits) and opens read-only; at most once in a while,
   * so a disagreement between the role the API reports and the socket's cannot loop.
   */
  private lostWriteAccess (): void {
    if (this.destroyed) return
    const last = Number(sessionStorage.getItem(ROLE_RELOAD_KEY) ?? 0)
    if (Date.now() - last > 10_000) {
      sessionStorage.setItem(ROLE_RELOAD_KEY, String(Date.now()))
      sessionStorage.setItem(NOTICE_KEY, 'Your role in this room changed: it is read-only for you now.')
      location.reload()
      return
    }
    this.readOnly = true
    this.editor.updateOptions({ readOnly: true })
    this.els.banner.textContent = 'Read-only: your role in this room changed; edits since then were not saved.'
    this.els.banner.hidden = false
  }

  /**
   * This viewer was made an editor: the server closed the socket so that the new role takes
   * effect. Reload the room, which opens editable. The server closes this way only when the
   * role changes, so this cannot loop.
   */
  private gainedWriteAccess (): void {
    if (this.destroyed) return
    sessionStorage.setItem(NOTICE_KEY, 'Your role in this room changed: you can edit now.')
    location.reload()
  }

  private async connect (): Promise<void> {
    const token = this.shareToken ?? (await freshAccessToken()) ?? ''
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws'
    const provider = new WebsocketProvider(`${scheme}://${location.host}/ws`, this.id, this.doc, {
      params: { token },
      // Only the server relays edits, so the indicator tells the truth about them.
      disableBc: true,
      connect: navigator.onLine
    })
    this.provider = provider
    this.awareness = provider.awareness
    const session = currentSession()
    const me = session?.user
    // The server overwrites `user.name` and `user.id` with the connection's real identity;
    // the colour is ours to choose.
    this.awareness.setLocalStateField('user', {
      name: me?.display_name ?? 'Guest',
      color: colorFor(me?.id ?? String(this.doc.clientID))
    })

    // The server refuses an edit with y-protocols' permission-denied message when this
    // person may no longer write (an owner made them a viewer); the stock handler only warns.
    provider.messageHandlers[messageAuth] = (_encoder, decoder, prov) => {
      authProtocol.readAuthMessage(decoder, prov.doc, () => this.lostWriteAccess())
    }
    provider.on('status', () => this.updateConnection())
    provider.on('sync', () => this.updateConnection())
    provider.on('connection-close', (event: CloseEvent | null) => {
      if (event?.code === ROLE_RAISED_CLOSE) {
        this.gainedWriteAccess()
        return
      }
      this.updateConnection()
      // An access token expires after minutes; reconnect with a fresh one.
      if (!this.shareToken) {
        void freshAccessToken().then(t => { if (t) provider.params.token = t })
      }
    })
    provider.on('closed', (event: { code: number, reason: string }) => {
      this.closedReason = event.code === 4403
        ? 'You were removed from this room.'
        : event.code === 4404
          ? 'This room was deleted.'
          : event.code === 4401
            ? 'Your access was revoked; log in again.'
            : `The server closed the connection (${event.code}).`
      this.state = 'closed'
      this.renderConnection()
    })
    provider.once('sync', () => this.afterFirstSync())
    this.awareness.on('change', () => {
      this.renderPresence()
      this.renderCursorStyles()
      this.renderAssistantCursor()
    })

    const offline = (): void => {
      // Browsers do not always close open sockets when the network goes away; close it
      // ourselves so the indicator is honest. Edits stay in the document meanwhile and the
      // provider's sync on reconnect sends them.
      provider.disconnect()
      this.updateConnection()
    }
    const online = (): void => {
      if (this.state !== 'closed') provider.connect()
      this.updateConnection()
    }
    window.addEventListener('offline', offline)
    window.addEventListener('online', online)
    this.cleanups.push(() => {
      window.removeEventListener('offline', offline)
      window.removeEventListener('online', online)
    })
    this.updateConnection()
    this.renderPresence()
  }

  private afterFirstSync (): void {
    if (this.file === null) {
      const first = this.sortedFiles()[0]
      if (first !== undefined) this.openFile(first)
      else if (!this.readOnly) {
        // A new room starts with one file, so there is something to type into.
        this.files.set('main.js', new Y.Text())
        this.openFile('main.js')
      }
    }
    this.renderFiles()
  }

  private updateConnection (): void {
    if (this.state === 'closed') return
    const p = this.provider
    let next: ConnectionState
    if (!navigator.onLine) next = 'offline'
    else if (p?.wsconnected && p.synced) next = 'connected'
    else if (p?.wsconnected || this.state === 'connecting') next = this.state === 'connecting' ? 'connecting' : 'reconnecting'
    else next = 'reconnecting'
    this.state = next
    this.renderConnection()
  }

  private renderConnection (): void {
    const labels: Record<ConnectionState, string> = {
      connecting: 'Connecting…',
      connected: 'Connected',
      reconnecting: 'Reconnecting…',
      offline: 'Offline: edits are kept',
      closed: 'Disconnected'
    }
    const s = this.els.status
    s.dataset.state = this.state
    s.textContent = labels[this.state]
    s.title = this.state === 'closed' ? this.closedReason : labels[this.state]
    if (this.state === 'closed') toast(this.closedReason, 'error')
  }

  private renderPresence (): void {
    const box = this.els.presence
    clear(box)
    const states = [...this.awareness.getStates().entries()]
    for (const [clientId, state] of states) {
      const user = (state.user ?? {}) as { name?: string, color?: string }
      const name = user.name ?? 'Someone'
      const mine = clientId === this.doc.clientID
      const assistant = state.assistant === true
      const status = assistant && typeof state.status === 'string' && state.status !== 'idle' ? ` (${state.status})` : ''
      box.append(h('span', {
        class: 'avatar' + (mine ? ' me' : ''),
        style: `--c: ${user.color ?? '#888'}`,
        title: `${name}${mine ? ' (you)' : ''}${status}${typeof state.file === 'string' ? ' · ' + state.file : ''}`,
        'data-name': name
      }, assistant ? 'AI' : initials(name)))
    }
    this.panels.people?.refresh?.()
  }

  /** Each remote client's selection colour and name label (y-monaco adds the classes). */
  private renderCursorStyles (): void {
    const rules: string[] = []
    this.awareness.getStates().forEach((state, clientId) => {
      if (clientId === this.doc.clientID) return
      const user = (state.user ?? {}) as { name?: string, color?: string }
      const color = /^#[0-9a-f]{3,8}$/i.test(user.color ?? '') ? user.color! : '#888888'
      rules.push(
        `.yRemoteSelection-${clientId} { background-color: ${color}44; }`,
        `.yRemoteSelectionHead-${clientId} { border-left: 2px solid ${color}; }`,
        `.yRemoteSelectionHead-${clientId}::after { content: ${cssString(user.name ?? 'Someone')}; background: ${color}; }`)
    })
    this.els.cursorStyle.textContent = rules.join('\n')
  }

  /** The range the AI assistant works on, while it works (its awareness `cursor` holds
   *  base64-encoded relative positions, not y-monaco's `selection`). */
  private renderAssistantCursor (): void {
    const model = this.model
    const text = this.file === null ? undefined : this.files.get(this.file)
    const marks: monaco.editor.IModelDeltaDecoration[] = []
    if (model && text) {
      this.awareness.getStates().forEach(state => {
        const cursor = state.cursor as { file?: unknown, anchor?: unknown, head?: unknown } | undefined
        if (state.assistant !== true || (state.status !== 'thinking' && state.status !== 'writing')) return
        if (!cursor || cursor.file !== this.file || typeof cursor.anchor !== 'string' || typeof cursor.head !== 'string') return
        const at = (encoded: string): number | null => {
          try {
            const bytes = Uint8Array.from(atob(encoded), c => c.charCodeAt(0))
            return resolve(this.doc, text, bytes)
          } catch {
            return null
          }
        }
        const anchor = at(cursor.anchor)
        const head = at(cursor.head)
        if (anchor === null || head === null) return
        const a = model.getPositionAt(Math.min(anchor, head))
        const b = model.getPositionAt(Math.max(anchor, head))
        marks.push({
          range: new monaco.Range(a.lineNumber, a.column, b.lineNumber, b.column),
          options: { className: 'ai-working', afterContentClassName: 'ai-working-label', stickiness: monaco.editor.TrackedRangeStickiness.NeverGrowsWhenTypingAtEdges }
        })
      })
    }
    this.assistantDecorations?.set(marks)
  }

  private sortedFiles (): string[] {
    return [...this.files.keys()].sort((a, b) => a.localeCompare(b))
  }

  private renderFiles (): void {
    const tree = this.els.tree
    clear(tree)
    const paths = this.sortedFiles()
    if (paths.length === 0) {
      tree.append(h('li', { class: 'muted empty' }, this.readOnly ? 'No files.' : 'No files yet.'))
    }
    // Paths are shown as a tree: each folder once, its files indented under it.
    let shown: string[] = []
    for (const path of paths) {
      const active = path === this.file
      const folders = path.split('/').slice(0, -1)
      let depth = 0
      while (depth < folders.length && folders[depth] === shown[depth]) depth++
      for (let d = depth; d < folders.length; d++) {
        tree.append(h('li', { class: 'folder', style: `--depth: ${d}` }, h('span', { class: 'folder-name' }, folders[d] + '/')))
      }
      shown = folders
      const name = path.split('/').pop() || path
      const row = h('li', { class: active ? 'active' : '', 'data-path': path, style: `--depth: ${folders.length}` },
        h('button', { class: 'file', title: path, onclick: () => { this.openFile(path); this.root.classList.remove('show-files') } }, name))
      if (!this.readOnly) {
        row.append(
          h('button', { class: 'icon', title: `Rename ${path}`, 'aria-label': `Rename ${path}`, onclick: () => { void this.renameFile(path) } }, '✎'),
          h('button', { class: 'icon', title: `Delete ${path}`, 'aria-label': `Delete ${path}`, onclick: () => { void this.deleteFile(path) } }, '✕'))
      }
      tree.append(row)
    }
    // The open file was deleted or renamed by someone: move to another one.
    if (this.file !== null && !this.files.has(this.file)) {
      const next = paths[0]
      if (next !== undefined) this.openFile(next)
      else this.closeFile()
    }
  }

  private validPath (path: string): string | null {
    if (path.length > 255) return 'A path has at most 255 characters.'
    if (/[\u0000-\u001f]/.test(path)) return 'A path has no control characters.'
    if (this.files.has(path)) return `“${path}” already exists.`
    return null
  }

  private async createFile (): Promise<void> {
    const path = await askText('New file', 'Path', '', 'Create')
    if (!path) return
    const problem = this.validPath(path)
    if (problem) return toast(problem, 'error')
    this.files.set(path, new Y.Text())
    this.openFile(path)
  }

  private async renameFile (from: string): Promise<void> {
    const to = await askText('Rename file', 'New path', from, 'Rename')
    if (!to || to === from) return
    const problem = this.validPath(to)
    if (problem) return toast(problem, 'error')
    const reopen = this.file === from
    // Copy and delete in one transaction: everyone sees a rename, never two files or none.
    this.doc.transact(() => {
      const text = this.files.get(from)
      this.files.set(to, new Y.Text(text?.toString() ?? ''))
      this.files.delete(from)
    })
    if (reopen) this.openFile(to)
  }

  private async deleteFile (path: string): Promise<void> {
    if (!(await confirmAction('Delete file', `Delete “${path}” for everyone? A version restore brings it back.`, 'Delete'))) return
    this.files.delete(path)
  }

  openFile (path: string): void {
    const text = this.files.get(path)
    if (!(text instanceof Y.Text)) return
    if (path === this.file && this.model) return
    this.closeFile()
    this.file = path
    this.model = monaco.editor.createModel('', languageOf(path))
    this.editor.setModel(this.model)
    this.binding = new MonacoBinding(text, this.model, new Set([this.editor]), this.awareness)
    this.awareness.setLocalStateField('file', path)
    this.els.fileLabel.textContent = path
    this.els.empty.hidden = true
    this.renderFiles()
    this.renderCommentMarkers()
    this.renderAssistantCursor()
    this.suggestions?.render()
  }

  private closeFile (): void {
    this.binding?.destroy()
    this.binding = null
    this.editor.setModel(null)
    this.model?.dispose()
    this.model = null
    this.file = null
    this.els.fileLabel.textContent = ''
    this.els.empty.hidden = false
    this.els.empty.textContent = this.readOnly ? 'This room has no files yet.' : 'No file open: create one in the file list.'
    this.awareness?.setLocalStateField('selection', null)
  }

  currentFile (): string | null {
    return this.file
  }

  selection (): { file: string, start: number, end: number } | null {
    const sel = this.editor.getSelection()
    if (!sel || !this.model || this.file === null) return null
    return {
      file: this.file,
      start: this.model.getOffsetAt(sel.getStartPosition()),
      end: this.model.getOffsetAt(sel.getEndPosition())
    }
  }

  reveal (file: string, start: number, end: number): void {
    if (file !== this.file) this.openFile(file)
    if (!this.model) return
    const a = this.model.getPositionAt(start)
    const b = this.model.getPositionAt(end)
    const range = new monaco.Range(a.lineNumber, a.column, b.lineNumber, b.column)
    this.editor.setSelection(range)
    this.editor.revealRangeInCenter(range)
    this.editor.focus()
  }

  private renderCommentMarkers (): void {
    if (!this.commentDecorations) return
    renderCommentMarkers(this, this.commentDecorations)
  }

  private async commentOnSelection (): Promise<void> {
    const sel = this.selection()
    if (!sel || sel.start === sel.end) {
      toast('Select some text to comment on first.')
      return
    }
    const body = await askText('New comment', 'Comment', '', 'Comment')
    if (!body) return
    try {
      await call('POST', `/api/rooms/${enc(this.id)}/comments`, { file: sel.file, start: sel.start, end: sel.end, body })
      this.togglePanel('comments', true)
    } catch (err) {
      toast(errorText(err), 'error')
    }
  }

  togglePanel (name: PanelName, open?: boolean): void {
    const show = open ?? this.panel !== name
    this.root.querySelectorAll<HTMLElement>('[data-panel]').forEach(b => b.setAttribute('aria-pressed', String(show && b.dataset.panel === name)))
    const host = this.els.panelHost
    if (!show) {
      host.hidden = true
      this.panel = null
      this.root.classList.remove('panel-open')
      return
    }
    this.panel = name
    let panel = this.panels[name]
    if (!panel) {
      panel = name === 'history'
        ? new HistoryPanel(this)
        : name === 'comments'
          ? new CommentsPanel(this)
          : name === 'ai'
            ? new AiPanel(this, this.suggestions!)
            : this.peoplePanel()
      this.panels[name] = panel
    }
    clear(host)
    host.append(h('div', { class: 'panel-head' },
      h('h2', {}, { history: 'History', comments: 'Comments', ai: 'AI assistant', people: 'People' }[name]),
      h('button', { class: 'icon', 'aria-label': 'Close panel', onclick: () => this.togglePanel(name, false) }, '×')), panel.el)
    host.hidden = false
    this.root.classList.add('panel-open')
    panel.refresh?.()
    if (name === 'ai') host.querySelector<HTMLTextAreaElement>('textarea')?.focus()
  }

  private peoplePanel (): { el: HTMLElement, refresh: () => void } {
    const el = h('ul', { class: 'people' })
    const refresh = (): void => {
      clear(el)
      this.awareness.getStates().forEach((state, clientId) => {
        const user = (state.user ?? {}) as { name?: string, color?: string }
        const mine = clientId === this.doc.clientID
        el.append(h('li', {},
          h('span', { class: 'dot', style: `background: ${user.color ?? '#888'}` }),
          h('span', { class: 'who' }, (user.name ?? 'Someone') + (mine ? ' (you)' : '')),
          h('span', { class: 'muted' }, state.assistant === true ? String(state.status ?? '') : typeof state.file === 'string' ? state.file : '')))
      })
    }
    return { el, refresh }
  }

  destroy (): void {
    this.destroyed = true
    this.cleanups.forEach(c => c())
    Object.values(this.panels).forEach(p => p?.destroy?.())
    this.suggestions?.destroy()
    this.binding?.destroy()
    this.provider?.destroy()
    this.editor?.dispose()
    this.model?.dispose()
    this.doc.destroy()
    document.title = 'Tandem'
    this.root.remove()
  }
}

function initials (name: string): string {
  const parts = name.trim().split(/\s+/).filter(Boolean)
  const letters = parts.length > 1 ? parts[0][0] + parts[parts.length - 1][0] : (parts[0] ?? '?').slice(0, 2)
  return letters.toUpperCase()
}

export function shortcutsHelp (): void {
  modal('Keyboard shortcuts', h('dl', { class: 'shortcuts' },
    h('dt', {}, 'Ctrl/⌘ + S'), h('dd', {}, 'Create a named checkpoint'),
    h('dt', {}, 'Ctrl/⌘ + K'), h('dd', {}, 'Open the AI assistant'),
    h('dt', {}, 'Ctrl/⌘ + Alt + M'), h('dd', {}, 'Comment on the selection'),
    h('dt', {}, 'Esc'), h('dd', {}, 'Close a dialog')))
}
