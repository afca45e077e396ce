// A viewer's editor is read-only: typing changes nothing, for them or anyone. An editor
// invite link then lets the same person edit. A read-only share link opens the room
// without an account, read-only too. Made a viewer while editing, a person's room turns
// read-only at their next keystroke; made an editor again, it reopens editable at once.

import { BASE, check, checkEqual, createRoom, editorText, focusEnd, register, scenario, visible, waitText, waitUntilEditing } from './lib.mjs'

async function inviteLink (owner, role) {
  await owner.getByRole('button', { name: 'Share' }).click()
  await owner.locator('select[name=invite_role]').selectOption(role)
  await owner.getByRole('button', { name: 'Create invite link' }).click()
  const link = await owner.locator('input[name=invite_link]').inputValue()
  await owner.keyboard.press('Escape')
  check(link.startsWith(`${BASE}/invite/`), `invite link shape: ${link}`)
  return link
}

scenario('viewer-invite', async (t) => {
  const olga = await t.person('Olga')
  const vic = await t.person('Vic')
  await register(olga, 'Olga')
  await register(vic, 'Vic')
  const room = await createRoom(olga, 'Read me')
  await focusEnd(olga)
  await olga.keyboard.type('// only editors can change this')
  const original = '// only editors can change this'
  await waitText(olga, original)

  // As a viewer: the banner says so, the editor refuses keystrokes.
  await vic.goto(await inviteLink(olga, 'viewer'))
  await vic.waitForURL(`**/rooms/${encodeURIComponent(room)}`)
  await waitUntilEditing(vic)
  await waitText(vic, original)
  checkEqual(await vic.evaluate(() => window.tandem.role()), 'viewer', 'Vic\'s role')
  await visible(vic, '.banner:text("Read-only")', 'the read-only banner')
  await focusEnd(vic)
  await vic.keyboard.type('vandalism')
  await vic.keyboard.press('Enter')
  await vic.keyboard.press('Backspace')
  // Monaco says why, and nothing changed: not here, not for the owner.
  await visible(vic, '.monaco-editor-overlaymessage', 'the read-only message')
  checkEqual(await editorText(vic), original, 'the viewer\'s text after typing')
  // The owner types after the viewer did: once the owner's edit arrives, anything the viewer
  // might have sent would have arrived before it.
  await focusEnd(olga)
  await olga.keyboard.type('!')
  await waitText(vic, original + '!')
  checkEqual(await editorText(olga), original + '!', 'the owner\'s text')
  await t.screenshot(vic, 'viewer')

  // An editor invite upgrades Vic; now his typing reaches the owner.
  await vic.goto(await inviteLink(olga, 'editor'))
  await vic.waitForURL(`**/rooms/${encodeURIComponent(room)}`)
  await waitUntilEditing(vic)
  checkEqual(await vic.evaluate(() => window.tandem.role()), 'editor', 'Vic\'s role after the editor invite')
  check(await vic.locator('.banner').isHidden(), 'an editor sees no read-only banner')
  await focusEnd(vic)
  await vic.keyboard.type(' // Vic was here')
  const edited = original + '! // Vic was here'
  await waitText(vic, edited)
  await waitText(olga, edited, 'the owner\'s text after Vic typed')

  // A share link: no account, read-only.
  await olga.getByRole('button', { name: 'Share' }).click()
  await olga.getByRole('button', { name: 'Create read-only link' }).click()
  const shareLink = await olga.locator('input[name=share_link]').inputValue()
  await olga.keyboard.press('Escape')
  check(shareLink.startsWith(`${BASE}/share/`), `share link shape: ${shareLink}`)
  const guest = await t.person('Guest')
  await guest.goto(shareLink)
  await waitUntilEditing(guest)
  await waitText(guest, edited)
  await visible(guest, '.banner:text("share link")', 'the share-link banner')
  await focusEnd(guest)
  await guest.keyboard.type('guest typing')
  checkEqual(await editorText(guest), edited, 'the share-link holder\'s text after typing')
  await t.screenshot(olga, 'owner')

  // The owner makes Vic a viewer while his editor is open: his next keystroke is refused,
  // his room reloads read-only with the server's text, and the owner's text never changes.
  await olga.getByRole('button', { name: 'Share' }).click()
  await olga.getByRole('combobox', { name: 'Role of Vic' }).selectOption('viewer')
  await visible(olga, '.toast:text("Vic is now a viewer")', 'the role-change notice')
  await olga.keyboard.press('Escape')
  await focusEnd(vic)
  await vic.keyboard.type(' refused')
  await visible(vic, '.toast:text("read-only for you now")', 'the notice after the reload')
  await waitUntilEditing(vic)
  checkEqual(await vic.evaluate(() => window.tandem.role()), 'viewer', 'Vic\'s role after the change')
  await visible(vic, '.banner:text("Read-only")', 'the read-only banner after the change')
  await waitText(vic, edited, 'Vic\'s text after the reload')
  await focusEnd(olga)
  await olga.keyboard.type(';')
  await waitText(vic, edited + ';')
  checkEqual(await editorText(olga), edited + ';', 'the owner\'s text after Vic\'s refused edit')

  // Made an editor again while his read-only room is open: it reopens editable by itself.
  await olga.getByRole('button', { name: 'Share' }).click()
  await olga.getByRole('combobox', { name: 'Role of Vic' }).selectOption('editor')
  await visible(olga, '.toast:text("Vic is now an editor")', 'the role-change notice')
  await olga.keyboard.press('Escape')
  await visible(vic, '.toast:text("you can edit now")', 'the notice after the promotion')
  await waitUntilEditing(vic)
  checkEqual(await vic.evaluate(() => window.tandem.role()), 'editor', 'Vic\'s role after the promotion')
  check(await vic.locator('.banner').isHidden(), 'no read-only banner after the promotion')
  await focusEnd(vic)
  await vic.keyboard.type(' // back')
  await waitText(olga, edited + '; // back', 'the owner\'s text after Vic typed again')
})
