// A few DOM helpers: elements from a tag, attributes and children; a modal dialog; toasts.

type Child = Node | string | null | undefined | false
type Attrs = Record<string, string | number | boolean | EventListener | null | undefined>

/** `h('button', {class: 'x', onclick: f}, 'Label')`. */
export function h<K extends keyof HTMLElementTagNameMap> (tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag)
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value)
    } else if (key === 'value' && 'value' in el) {
      (el as HTMLInputElement).value = String(value)
    } else {
      el.setAttribute(key, value === true ? '' : String(value))
    }
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue
    el.append(child)
  }
  return el
}

export function clear (el: Element): void {
  while (el.firstChild) el.removeChild(el.firstChild)
}

/** Opens a modal holding `content`; answers a function that closes it. */
export function modal (title: string, content: Node, options: { wide?: boolean, onClose?: () => void } = {}): () => void {
  const close = (): void => {
    backdrop.remove()
    document.removeEventListener('keydown', onKey, true)
    options.onClose?.()
  }
  const onKey = (e: KeyboardEvent): void => {
    if (e.key === 'Escape') {
      e.preventDefault()
      close()
    }
  }
  const backdrop = h('div', { class: 'modal-backdrop', onclick: (e: Event) => { if (e.target === backdrop) close() } },
    h('div', { class: options.wide ? 'modal wide' : 'modal', role: 'dialog', 'aria-label': title },
      h('div', { class: 'modal-head' }, h('h2', {}, title), h('button', { class: 'icon', 'aria-label': 'Close', onclick: () => close() }, '×')),
      content))
  document.body.append(backdrop)
  document.addEventListener('keydown', onKey, true)
  return close
}

/** Asks for one line of text; answers null when cancelled. */
export function askText (title: string, label: string, initial = '', action = 'OK'): Promise<string | null> {
  return new Promise(resolve => {
    let answered = false
    const input = h('input', { type: 'text', value: initial, 'aria-label': label, name: 'answer' })
    const form = h('form', {
      class: 'stack',
      onsubmit: (e: Event) => {
        e.preventDefault()
        const value = input.value.trim()
        if (!value) return
        answered = true
        close()
        resolve(value)
      }
    }, h('label', {}, label, input), h('div', { class: 'row end' }, h('button', { type: 'submit', class: 'primary' }, action)))
    const close = modal(title, form, { onClose: () => { if (!answered) resolve(null) } })
    input.focus()
    input.select()
  })
}

/** Asks to confirm something destructive. */
export function confirmAction (title: string, text: string, action: string): Promise<boolean> {
  return new Promise(resolve => {
    let answered = false
    const ok = h('button', { class: 'danger', onclick: () => { answered = true; close(); resolve(true) } }, action)
    const close = modal(title, h('div', { class: 'stack' }, h('p', {}, text), h('div', { class: 'row end' }, ok)), {
      onClose: () => { if (!answered) resolve(false) }
    })
    ok.focus()
  })
}

export function toast (text: string, kind: 'info' | 'error' = 'info'): void {
  let box = document.querySelector('.toasts')
  if (!box) {
    box = h('div', { class: 'toasts', role: 'status', 'aria-live': 'polite' })
    document.body.append(box)
  }
  const el = h('div', { class: 'toast ' + kind }, text)
  box.append(el)
  setTimeout(() => el.remove(), 5000)
}

export function errorText (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

export function timeAgo (ms: number): string {
  const seconds = Math.round((Date.now() - ms) / 1000)
  if (seconds < 60) return 'just now'
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`
  return new Date(ms).toLocaleString()
}
