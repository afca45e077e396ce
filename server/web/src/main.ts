// The client's pages and its router. Paths (the server answers index.html for each):
//   /                 my rooms (or the login page)
//   /rooms/{id}       a room
//   /invite/{token}   accept an invite (after logging in or registering), then open its room
//   /share/{token}    open a room read-only through a share link, without an account

import './style.css'
import { ApiError, RoomView, call, currentSession, enc, login, logout, onSessionChange, register } from './api'
import { askText, clear, confirmAction, errorText, h, toast } from './dom'
import { NOTICE_KEY, RoomPage } from './room'

const app = document.getElementById('app')!
let page: { destroy: () => void } | null = null

export function navigate (path: string): void {
  history.pushState(null, '', path)
  route()
}

window.addEventListener('popstate', () => route())
onSessionChange(s => {
  if (!s && !location.pathname.startsWith('/share/')) route()
})

function route (): void {
  page?.destroy()
  page = null
  clear(app)
  const path = location.pathname
  const invite = path.match(/^\/invite\/([^/]+)$/)
  const share = path.match(/^\/share\/([^/]+)$/)
  const room = path.match(/^\/rooms\/([^/]+)$/)
  if (share) {
    openShare(decodeURIComponent(share[1]))
  } else if (!currentSession()) {
    app.append(authPage(invite ? 'Log in or register to accept the invite.' : null))
  } else if (invite) {
    acceptInvite(decodeURIComponent(invite[1]))
  } else if (room) {
    page = new RoomPage(app, decodeURIComponent(room[1]), { onLeave: () => navigate('/') })
  } else {
    page = roomsPage()
  }
}

function header (...right: Node[]): HTMLElement {
  const session = currentSession()
  return h('header', { class: 'topbar' },
    h('a', { class: 'brand', href: '/', onclick: (e: Event) => { e.preventDefault(); navigate('/') } }, h('span', { class: 'logo' }), 'Tandem'),
    h('div', { class: 'spacer' }),
    ...right,
    session ? h('span', { class: 'whoami', title: session.user.email }, session.user.display_name) : null,
    session ? h('button', { class: 'ghost', onclick: () => { void logout() } }, 'Log out') : null)
}

function authPage (note: string | null): HTMLElement {
  let mode: 'login' | 'register' = 'login'
  const error = h('p', { class: 'error', role: 'alert' })
  const email = h('input', { type: 'email', name: 'email', autocomplete: 'username', required: true })
  const password = h('input', { type: 'password', name: 'password', autocomplete: 'current-password', required: true, minlength: 8 })
  const name = h('input', { type: 'text', name: 'display_name', autocomplete: 'name' })
  const nameRow = h('label', { hidden: true }, 'Display name', name)
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Log in')
  const toggle = h('button', { type: 'button', class: 'link' }, 'Create an account')
  const title = h('h1', {}, 'Log in')
  toggle.addEventListener('click', () => {
    mode = mode === 'login' ? 'register' : 'login'
    nameRow.hidden = mode === 'login'
    name.required = mode === 'register'
    title.textContent = submit.textContent = mode === 'login' ? 'Log in' : 'Create account'
    toggle.textContent = mode === 'login' ? 'Create an account' : 'I have an account'
    password.autocomplete = mode === 'login' ? 'current-password' : 'new-password'
  })
  const form = h('form', {
    class: 'card auth stack',
    onsubmit: async (e: Event) => {
      e.preventDefault()
      error.textContent = ''
      submit.disabled = true
      try {
        if (mode === 'login') await login(email.value.trim(), password.value)
        else await register(email.value.trim(), password.value, name.value.trim())
        route()
      } catch (err) {
        error.textContent = err instanceof ApiError && err.code === 'validation_failed' ? err.message : errorText(err)
      } finally {
        submit.disabled = false
      }
    }
  }, title, note ? h('p', { class: 'muted' }, note) : null, nameRow, h('label', {}, 'Email', email), h('label', {}, 'Password', password), error, submit, toggle)
  return h('div', { class: 'page' }, header(), h('main', { class: 'center' }, form))
}

function roomsPage (): { destroy: () => void } {
  const list = h('ul', { class: 'rooms' })
  const nameInput = h('input', { type: 'text', name: 'room_name', placeholder: 'New room name', 'aria-label': 'New room name', required: true, maxlength: 200 })
  const create = h('form', {
    class: 'row',
    onsubmit: async (e: Event) => {
      e.preventDefault()
      try {
        const created = await call<RoomView>('POST', '/api/rooms', { name: nameInput.value.trim() })
        navigate(`/rooms/${enc(created.id)}`)
      } catch (err) {
        toast(errorText(err), 'error')
      }
    }
  }, nameInput, h('button', { type: 'submit', class: 'primary' }, 'Create room'))

  const refresh = async (): Promise<void> => {
    try {
      const { rooms } = await call<{ rooms: RoomView[] }>('GET', '/api/rooms')
      clear(list)
      if (rooms.length === 0) list.append(h('li', { class: 'muted empty' }, 'No rooms yet: create one above, or open an invite link.'))
      for (const room of rooms) list.append(roomRow(room, refresh))
    } catch (err) {
      if (currentSession()) toast(errorText(err), 'error')
    }
  }
  void refresh()
  app.append(h('div', { class: 'page' }, header(), h('main', { class: 'narrow stack' }, h('h1', {}, 'My rooms'), create, list)))
  return { destroy: () => {} }
}

function roomRow (room: RoomView, refresh: () => Promise<void>): HTMLElement {
  const open = (): void => navigate(`/rooms/${enc(room.id)}`)
  const act = (label: string, run: () => Promise<void>, cls = 'ghost'): HTMLElement =>
    h('button', {
      class: cls,
      onclick: async (e: Event) => {
        e.stopPropagation()
        try {
          await run()
        } catch (err) {
          toast(errorText(err), 'error')
        }
      }
    }, label)
  const actions: HTMLElement[] = [
    act('Fork', async () => {
      const name = await askText('Fork room', 'Name of the copy', `${room.name} (copy)`, 'Fork')
      if (!name) return
      const forked = await call<RoomView>('POST', `/api/rooms/${enc(room.id)}/fork`, { name })
      navigate(`/rooms/${enc(forked.id)}`)
    })
  ]
  if (room.role === 'owner') {
    actions.unshift(act('Rename', async () => {
      const name = await askText('Rename room', 'Room name', room.name, 'Rename')
      if (!name) return
      await call('PATCH', `/api/rooms/${enc(room.id)}`, { name })
      await refresh()
    }))
    actions.push(act('Delete', async () => {
      if (!(await confirmAction('Delete room', `Delete “${room.name}” with its document, history and comments? This cannot be undone.`, 'Delete'))) return
      await call('DELETE', `/api/rooms/${enc(room.id)}`)
      await refresh()
    }, 'ghost danger-text'))
  }
  return h('li', { class: 'room-row', 'data-room': room.id },
    h('a', { href: `/rooms/${enc(room.id)}`, class: 'room-name', onclick: (e: Event) => { e.preventDefault(); open() } }, room.name),
    h('span', { class: 'badge role-' + room.role }, room.role),
    room.online > 0 ? h('span', { class: 'online', title: 'open connections' }, `● ${room.online} online`) : null,
    h('span', { class: 'spacer' }),
    ...actions)
}

async function acceptInvite (token: string): Promise<void> {
  app.append(h('div', { class: 'page' }, header(), h('main', { class: 'center' }, h('p', { class: 'muted' }, 'Accepting the invite…'))))
  try {
    const room = await call<RoomView>('POST', `/api/invites/${enc(token)}/accept`)
    history.replaceState(null, '', `/rooms/${enc(room.id)}`)
    toast(`You joined “${room.name}” as ${room.role}.`)
    route()
  } catch (err) {
    clear(app)
    const message = err instanceof ApiError && err.code === 'invite_unusable'
      ? 'This invite has expired, was revoked or has been used up. Ask the room’s owner for a new one.'
      : errorText(err)
    app.append(h('div', { class: 'page' }, header(), h('main', { class: 'center' },
      h('div', { class: 'card stack' }, h('h1', {}, 'Invite not accepted'), h('p', {}, message), h('button', { class: 'primary', onclick: () => navigate('/') }, 'My rooms')))))
  }
}

async function openShare (token: string): Promise<void> {
  try {
    const room = await call<RoomView>('GET', '/api/share-links/current', undefined, { token })
    page = new RoomPage(app, room.id, { shareToken: token, onLeave: () => navigate('/') })
  } catch (err) {
    app.append(h('div', { class: 'page' }, header(), h('main', { class: 'center' },
      h('div', { class: 'card stack' }, h('h1', {}, 'Link not usable'), h('p', {}, 'This share link has expired or was revoked.'), h('p', { class: 'muted' }, errorText(err))))))
  }
}

route()

// A notice left by the page before a reload (a role change, say).
const notice = sessionStorage.getItem(NOTICE_KEY)
if (notice) {
  sessionStorage.removeItem(NOTICE_KEY)
  toast(notice)
}
