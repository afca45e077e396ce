// The owner's sharing dialog: invite links (role, expiry, copy), a read-only share link, and
// the participants.

import { Participant, call, enc } from './api'
import { clear, errorText, h, modal, toast } from './dom'
import type { RoomContext } from './room'

const EXPIRIES = [
  ['1d', '1 day'],
  ['7d', '7 days'],
  ['30d', '30 days'],
  ['never', 'Never']
]

async function copy (text: string, input: HTMLInputElement): Promise<void> {
  try {
    await navigator.clipboard.writeText(text)
    toast('Link copied.')
  } catch {
    // No clipboard permission (or not a secure context): leave it selected to copy by hand.
    input.focus()
    input.select()
    toast('Press Ctrl/⌘+C to copy the selected link.')
  }
}

function linkBox (url: string, name: string): HTMLElement {
  const input = h('input', { type: 'text', readonly: true, value: url, name, 'aria-label': name })
  return h('div', { class: 'row link-box' }, input, h('button', { class: 'ghost', onclick: () => { void copy(url, input) } }, 'Copy'))
}

export class ShareDialog {
  constructor (room: RoomContext) {
    const role = h('select', { name: 'invite_role', 'aria-label': 'Role' }, h('option', { value: 'editor' }, 'Editor: can edit'), h('option', { value: 'viewer' }, 'Viewer: read-only'))
    const expiry = h('select', { name: 'invite_expiry', 'aria-label': 'Expires after' }, ...EXPIRIES.map(([v, l]) => h('option', { value: v, selected: v === '7d' }, l)))
    const inviteOut = h('div', { class: 'invite-out' })
    const createInvite = h('button', {
      class: 'primary',
      onclick: async () => {
        try {
          const made = await call<{ url: string }>('POST', `/api/rooms/${enc(room.id)}/invites`, { role: role.value, expires_in: expiry.value })
          clear(inviteOut)
          inviteOut.append(linkBox(location.origin + made.url, 'invite_link'))
        } catch (err) {
          toast(errorText(err), 'error')
        }
      }
    }, 'Create invite link')

    const shareExpiry = h('select', { name: 'share_expiry', 'aria-label': 'Share link expires after' }, ...EXPIRIES.map(([v, l]) => h('option', { value: v, selected: v === '30d' }, l)))
    const shareOut = h('div', { class: 'share-out' })
    const createShare = h('button', {
      class: 'ghost',
      onclick: async () => {
        try {
          const made = await call<{ url: string }>('POST', `/api/rooms/${enc(room.id)}/share-links`, { expires_in: shareExpiry.value })
          clear(shareOut)
          shareOut.append(linkBox(location.origin + made.url, 'share_link'))
        } catch (err) {
          toast(errorText(err), 'error')
        }
      }
    }, 'Create read-only link')

    const members = h('ul', { class: 'members' })
    void call<Participant[] | { members: Participant[] }>('GET', `/api/rooms/${enc(room.id)}/members`).then(answer => {
      const list = Array.isArray(answer) ? answer : answer.members
      for (const m of list ?? []) {
        const name = m.display_name ?? m.name ?? m.user_id
        members.append(h('li', { class: 'row' }, h('span', {}, name), h('span', { class: 'spacer' }),
          m.role === 'owner' ? h('span', { class: 'badge role-owner' }, 'owner') : memberControls(room.id, m, name)))
      }
    }).catch(err => toast(errorText(err), 'error'))

    modal(`Share “${room.name}”`, h('div', { class: 'stack share-dialog' },
      h('h3', {}, 'Invite people'),
      h('p', { class: 'muted' }, 'Anyone with an account who opens the link joins with the chosen role.'),
      h('div', { class: 'row wrap' }, h('label', {}, 'Role', role), h('label', {}, 'Expires after', expiry), createInvite),
      inviteOut,
      h('h3', {}, 'Read-only link'),
      h('p', { class: 'muted' }, 'Opens the room read-only, without an account, until it expires.'),
      h('div', { class: 'row wrap' }, h('label', {}, 'Expires after', shareExpiry), createShare),
      shareOut,
      h('h3', {}, 'Participants'),
      members))
  }
}

/** An owner's controls for one participant: change the role (it takes effect at once, open
 * editors included) or remove them. */
function memberControls (roomId: string, member: Participant, name: string): HTMLElement {
  const select = h('select', { name: 'member_role', 'aria-label': `Role of ${name}`, 'data-user': member.user_id },
    h('option', { value: 'editor' }, 'Editor'), h('option', { value: 'viewer' }, 'Viewer')) as HTMLSelectElement
  select.value = member.role
  select.addEventListener('change', () => {
    const wanted = select.value
    call('PUT', `/api/rooms/${enc(roomId)}/members/${enc(member.user_id)}`, { role: wanted })
      .then(() => toast(`${name} is now ${wanted === 'editor' ? 'an editor' : 'a viewer'}.`))
      .catch(err => { select.value = member.role; toast(errorText(err), 'error') })
  })
  const row = h('span', { class: 'row' }, select)
  row.append(h('button', {
    class: 'ghost small',
    title: `Remove ${name}`,
    onclick: () => {
      call('DELETE', `/api/rooms/${enc(roomId)}/members/${enc(member.user_id)}`)
        .then(() => { row.closest('li')?.remove(); toast(`${name} was removed.`) })
        .catch(err => toast(errorText(err), 'error'))
    }
  }, 'Remove'))
  return row
}
