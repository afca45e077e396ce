// Two people type into the same file at the same moment: both editors end identical, with
// every keystroke of both, and each sees the other's cursor labelled with their name.

import { BASE, answerDialog, check, checkEqual, visible, waitIn, createRoom, editorText, eventually, focusEnd, openRoom, register, scenario, waitRemoteCursor, waitText } from './lib.mjs'

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

  // Files: created, renamed and deleted through the document, live for the other.
  const paths = page => page.locator('.tree li[data-path]').evaluateAll(els => els.map(e => e.dataset.path))
  await ada.getByRole('button', { name: '+ New file' }).click()
  await answerDialog(ada, 'util.js')
  await eventually('util.js in Bob\'s file tree', () => paths(bob), p => p.join() === 'main.js,util.js')
  await ada.getByRole('button', { name: 'Rename util.js' }).click()
  await answerDialog(ada, 'lib/helpers.js')
  await eventually('the rename in Bob\'s file tree', () => paths(bob), p => p.join() === 'lib/helpers.js,main.js')
  checkEqual(await bob.locator('.tree li.folder').allInnerTexts().then(t => t.join()), 'lib/', 'the folders of Bob\'s tree')
  await bob.getByRole('button', { name: 'Delete lib/helpers.js' }).click()
  await bob.locator('.modal button.danger', { hasText: 'Delete' }).click()
  await eventually('the deletion in Ada\'s file tree', () => paths(ada), p => p.join() === 'main.js')
  await waitIn(ada, 'Ada back in main.js', () => window.tandem.file() === 'main.js')

  // A comment on Ada's line: marked in Bob's editor, listed in his panel, and his reply
  // reaches Ada's panel.
  await ada.evaluate(() => window.tandem.editor().setSelection({ startLineNumber: 1, startColumn: 9, endLineNumber: 1, endColumn: 18 }))
  await ada.getByRole('button', { name: 'Comment', exact: true }).click()
  await answerDialog(ada, 'Should this be let?')
  await visible(bob, '.monaco-editor .comment-range', 'the comment marker in Bob\'s editor')
  await bob.locator('button[data-panel=comments]').click()
  const thread = bob.locator('.thread', { hasText: 'Should this be let?' })
  await thread.waitFor({ timeout: 20_000 })
  checkEqual(await thread.locator('.quote').innerText(), 'const ada', 'the thread\'s quote')
  await thread.locator('input[name=reply]').fill('Yes, let it be.')
  await thread.getByRole('button', { name: 'Reply' }).click()
  await visible(ada, '.thread .comment p:text("Yes, let it be.")', 'Bob\'s reply in Ada\'s panel')
  await t.screenshot(ada, 'ada')
  await t.screenshot(bob, 'bob')
})
