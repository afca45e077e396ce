// Two people type into the same file at the same moment: both editors end identical, with
// every keystroke of both, and each sees the other's cursor labelled with their name.

import { BASE, check, createRoom, editorText, eventually, focusEnd, openRoom, register, scenario, waitRemoteCursor, waitText } from './lib.mjs'

scenario('two-users', async (t) => {
  const ada = await t.person('Ada')
  const bob = await t.person('Bob')
  await register(ada, 'Ada')
  await register(bob, 'Bob')
  const room = await createRoom(ada, 'Pairing')

  // Bob becomes an editor through the owner's invite dialog.
  await ada.getByRole('button', { name: 'Share' }).click()
  await ada.locator('select[name=invite_role]').selectOption('editor')
  await ada.getByRole('button', { name: 'Create invite link' }).click()
  const link = await ada.locator('input[name=invite_link]').inputValue()
  check(link.startsWith(`${BASE}/invite/`), `invite link shape: ${link}`)
  await ada.keyboard.press('Escape')
  await bob.goto(link)
  await bob.waitForURL(`**/rooms/${encodeURIComponent(room)}`)
  await openRoom(bob, room)

  // Each on their own line, typing at the same moment.
  await focusEnd(ada)
  await ada.keyboard.type('// Ada:\n// Bob:')
  await waitText(bob, '// Ada:\n// Bob:')
  await ada.evaluate(() => window.tandem.editor().setPosition({ lineNumber: 1, column: 8 }))
  await bob.locator('.monaco-editor .view-lines').click()
  await bob.evaluate(() => { window.tandem.editor().setPosition({ lineNumber: 2, column: 8 }); window.tandem.editor().focus() })
  await Promise.all([
    ada.keyboard.type(' const ada = "typing at the same time";', { delay: 15 }),
    bob.keyboard.type(' const bob = "typing at the same time too";', { delay: 15 })
  ])

  const converged = await eventually('both editors to show the same text',
    async () => [await editorText(ada), await editorText(bob)],
    ([a, b]) => a === b && a === '// Ada: const ada = "typing at the same time";\n// Bob: const bob = "typing at the same time too";')
  console.log(`converged on ${JSON.stringify(converged[0])}`)

  // The server's document agrees with both editors.
  const token = await ada.evaluate(() => JSON.parse(localStorage.getItem('tandem.session')).access_token)
  const doc = await (await fetch(`${BASE}/api/rooms/${encodeURIComponent(room)}/document`, { headers: { authorization: `Bearer ${token}` } })).json()
  check(doc.files?.['main.js'] === converged[0], `server document differs: ${JSON.stringify(doc)}`)

  await waitRemoteCursor(ada, 'Bob')
  await waitRemoteCursor(bob, 'Ada')
  // The presence list names both.
  for (const page of [ada, bob]) {
    await eventually(`${page.person}'s presence list`, () => page.locator('.presence .avatar').evaluateAll(els => els.map(e => e.dataset.name)),
      names => names.includes('Ada') && names.includes('Bob'))
  }
  await waitText(bob, converged[0])
  await t.screenshot(ada, 'ada')
  await t.screenshot(bob, 'bob')
})
