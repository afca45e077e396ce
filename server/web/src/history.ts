// Version history: the list, a side-by-side diff of a version against now, restore, and
// named checkpoints (Ctrl/⌘+S).

import { Version, call, enc } from './api'
import { askText, clear, confirmAction, errorText, h, modal, timeAgo, toast } from './dom'
import { monaco, languageOf } from './monaco'
import type { RoomContext } from './room'

const KIND_LABELS: Record<Version['kind'], string> = {
  auto: 'Automatic',
  named: 'Checkpoint',
  restore: 'Restore'
}

export class HistoryPanel {
  el = h('div', { class: 'history stack' })
  private list = h('ul', { class: 'versions' })

  constructor (private room: RoomContext) {
    if (!room.readOnly) {
      this.el.append(h('button', {
        class: 'primary',
        title: 'Ctrl/⌘+S',
        onclick: () => { void HistoryPanel.checkpoint(room, () => this.refresh()) }
      }, 'Create checkpoint'))
    }
    this.el.append(this.list)
  }

  static async checkpoint (room: RoomContext, after: () => void): Promise<void> {
    const label = await askText('Create checkpoint', 'Name of this version', '', 'Save')
    if (!label) return
    try {
      await call('POST', `/api/rooms/${enc(room.id)}/versions`, { label })
      toast(`Saved checkpoint “${label}”.`)
      after()
    } catch (err) {
      toast(errorText(err), 'error')
    }
  }

  refresh (): void {
    void (async () => {
      try {
        const { versions } = await call<{ versions: Version[] }>('GET', `/api/rooms/${enc(this.room.id)}/versions`, undefined, { token: this.room.shareToken })
        clear(this.list)
        if (versions.length === 0) this.list.append(h('li', { class: 'muted empty' }, 'No versions yet. Automatic versions are taken as people edit; press Ctrl/⌘+S for a named one.'))
        for (const v of versions) {
          this.list.append(h('li', { class: 'version', 'data-version': String(v.id) },
            h('div', { class: 'version-title' }, v.label ?? KIND_LABELS[v.kind], h('span', { class: 'badge' }, KIND_LABELS[v.kind])),
            h('div', { class: 'muted' }, timeAgo(v.created_at_ms)),
            h('div', { class: 'row' },
              h('button', { class: 'ghost small', onclick: () => { void this.compare(v) } }, 'Compare'),
              this.room.readOnly ? null : h('button', { class: 'ghost small', onclick: () => { void this.restore(v) } }, 'Restore'))))
        }
      } catch (err) {
        toast(errorText(err), 'error')
      }
    })()
  }

  private async restore (v: Version, afterDone?: () => void): Promise<void> {
    const name = v.label ?? `${KIND_LABELS[v.kind].toLowerCase()} version of ${new Date(v.created_at_ms).toLocaleString()}`
    if (!(await confirmAction('Restore version', `Bring every file back to “${name}”? This is recorded as a new version, so it can be undone by restoring again.`, 'Restore'))) return
    try {
      await call('POST', `/api/rooms/${enc(this.room.id)}/versions/${v.id}/restore`)
      toast(`Restored “${name}”.`)
      afterDone?.()
      this.refresh()
    } catch (err) {
      toast(errorText(err), 'error')
    }
  }

  /** A side-by-side diff of the version (left) against the current text (right). */
  private async compare (v: Version): Promise<void> {
    let content: Record<string, unknown>
    try {
      content = (await call<{ content: Record<string, unknown> }>('GET', `/api/rooms/${enc(this.room.id)}/versions/${v.id}`, undefined, { token: this.room.shareToken })).content
    } catch (err) {
      toast(errorText(err), 'error')
      return
    }
    const then = (content.files ?? {}) as Record<string, string>
    const now = (): Record<string, string> => Object.fromEntries([...this.room.files.entries()].map(([k, t]) => [k, t.toString()]))
    const paths = [...new Set([...Object.keys(then), ...Object.keys(now())])].sort()
    const current = this.room.currentFile()
    const select = h('select', { 'aria-label': 'File' }, ...paths.map(p => h('option', { value: p, selected: p === current }, p +
      (!(p in then) ? ' (new since)' : !(p in now()) ? ' (deleted since)' : ''))))
    const host = h('div', { class: 'diff-host' })
    const narrow = window.innerWidth < 700
    const diff = monaco.editor.createDiffEditor(host, {
      theme: 'vs-dark',
      readOnly: true,
      originalEditable: false,
      automaticLayout: true,
      renderSideBySide: !narrow,
      minimap: { enabled: false }
    })
    let models: monaco.editor.ITextModel[] = []
    const show = (path: string): void => {
      const original = monaco.editor.createModel(then[path] ?? '', languageOf(path))
      const modified = monaco.editor.createModel(now()[path] ?? '', languageOf(path))
      diff.setModel({ original, modified })
      models.forEach(m => m.dispose())
      models = [original, modified]
    }
    select.addEventListener('change', () => show(select.value))
    const label = v.label ?? KIND_LABELS[v.kind]
    const restore = this.room.readOnly
      ? null
      : h('button', { class: 'primary', onclick: () => { void this.restore(v, () => close()) } }, 'Restore this version')
    const close = modal(`Compare “${label}” with now`, h('div', { class: 'stack compare' },
      h('div', { class: 'row' }, select, h('span', { class: 'muted' }, `Left: ${label}, ${timeAgo(v.created_at_ms)}. Right: now.`), h('span', { class: 'spacer' }), restore),
      host), {
      wide: true,
      onClose: () => {
        diff.dispose()
        models.forEach(m => m.dispose())
      }
    })
    if (paths.length > 0) show(select.value || paths[0])
  }
}
