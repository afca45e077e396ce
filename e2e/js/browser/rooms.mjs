// The account and room pages: rename, fork (with the content), delete, log out and in, and a
// session that outlives its short-lived access token (the server runs with a 3 s lifetime):
// the client refreshes it, rotating the refresh token, without a single failed request.

import { BASE, answerDialog, check, checkEqual, createRoom, eventually, focusEnd, register, scenario, visible, waitIn, waitText } from './lib.mjs'

const session = page => page.evaluate(() => JSON.parse(localStorage.getItem('tandem.session')))
const roomNames = page => page.locator('.room-row .room-name').allInnerTexts()

scenario('rooms', async (t) => {
  const rita = await t.person('Rita')
  await register(rita, 'Rita')
  const email = (await session(rita)).user.email
  const room = await createRoom(rita, 'Draft')
  await focusEnd(rita)
  await rita.keyboard.type('draft text')
  await waitText(rita, 'draft text')

  // Back to the list: rename.
  await rita.getByRole('button', { name: 'My rooms' }).click()
  const row = rita.locator(`.room-row[data-room="${room}"]`)
  await row.getByRole('button', { name: 'Rename' }).click()
  await answerDialog(rita, 'Final')
  await eventually('the renamed room', () => roomNames(rita), names => names.includes('Final') && !names.includes('Draft'))

  // Let the access token expire, then keep working: the client refreshes first.
  const before = await session(rita)
  await waitIn(rita, 'the access token to expire', token => {
    const exp = JSON.parse(atob(token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/'))).exp
    return Date.now() / 1000 > exp + 1
  }, before.access_token)

  // Fork: a new room, owned by Rita, with the same text.
  await row.getByRole('button', { name: 'Fork' }).click()
  await answerDialog(rita, 'Final (copy)')
  await waitIn(rita, 'the fork to open', original => window.tandem?.room?.() && window.tandem.room() !== original && window.tandem.text() === 'draft text', room)
  const after = await session(rita)
  check(after.refresh_token !== before.refresh_token, 'the refresh token did not rotate')
  check(after.access_token !== before.access_token, 'the access token was not renewed')
  const fork = await rita.evaluate(() => window.tandem.room())
  checkEqual(await rita.evaluate(() => window.tandem.role()), 'owner', 'Rita\'s role in the fork')

  // Delete the fork.
  await rita.getByRole('button', { name: 'My rooms' }).click()
  await rita.locator(`.room-row[data-room="${fork}"]`).getByRole('button', { name: 'Delete' }).click()
  await rita.locator('.modal button.danger', { hasText: 'Delete' }).click()
  await eventually('the fork to disappear', () => rita.locator(`.room-row[data-room="${fork}"]`).count(), n => n === 0)
  checkEqual(JSON.stringify(await roomNames(rita)), JSON.stringify(['Final']), 'rooms after deleting the fork')
  const res = await fetch(`${BASE}/api/rooms/${encodeURIComponent(fork)}`, { headers: { authorization: `Bearer ${(await session(rita)).access_token}` } })
  checkEqual(res.status, 404, 'the deleted fork over the API')

  // Log out: the session is gone, on the server too; log in again.
  const old = await session(rita)
  await rita.getByRole('button', { name: 'Log out' }).click()
  await visible(rita, 'h1:text("Log in")', 'the login page')
  check(await rita.evaluate(() => localStorage.getItem('tandem.session')) === null, 'the session stayed in storage')
  const refused = await fetch(`${BASE}/api/auth/refresh`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ refresh_token: old.refresh_token }) })
  check(refused.status === 401, `the logged-out refresh token still works (${refused.status})`)
  await rita.locator('input[name=email]').fill(email)
  await rita.locator('input[name=password]').fill('correct horse battery')
  await rita.getByRole('button', { name: 'Log in' }).click()
  await eventually('my rooms after logging in', () => roomNames(rita), names => names.length === 1 && names[0] === 'Final')
  await t.screenshot(rita, 'rooms')
})
