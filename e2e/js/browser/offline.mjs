// One person loses the network, keeps typing, and comes back: nothing is lost, both end with
// both people's edits. The indicator tells the truth meanwhile.

import { BASE, check, checkEqual, editorText, eventually, focusEnd, scenario, twoEditors, waitIn, waitText } from './lib.mjs'

scenario('offline', async (t) => {
  const { ada, bob, room } = await twoEditors(t, 'Trains')

  await focusEnd(ada)
  await ada.keyboard.type('line one;')
  await waitText(bob, 'line one;')

  // Bob goes into a tunnel: the socket really closes and the indicator says offline.
  await bob.context().setOffline(true)
  await waitIn(bob, 'the offline indicator', () =>
    document.querySelector('.conn')?.dataset.state === 'offline' && window.tandem.socketOpen() === false)
  await t.screenshot(bob, 'bob-offline')

  // Both type meanwhile, Bob at the end, Ada at the start.
  await focusEnd(bob)
  await bob.keyboard.type(' bob wrote this offline')
  await ada.locator('.monaco-editor .view-lines').click()
  await ada.keyboard.press('Control+Home')
  await ada.keyboard.type('ada online: ')
  await waitText(ada, 'ada online: line one;')
  // The server has Ada's edit and not Bob's; Bob has his own and not Ada's: nothing flows.
  const token = await ada.evaluate(() => JSON.parse(localStorage.getItem('tandem.session')).access_token)
  const server = await eventually('the server to hold Ada\'s edit', async () => {
    const res = await fetch(`${BASE}/api/rooms/${encodeURIComponent(room)}/document`, { headers: { authorization: `Bearer ${token}` } })
    return (await res.json()).files?.['main.js']
  }, text => text === 'ada online: line one;')
  checkEqual(server, 'ada online: line one;', 'the server\'s text while Bob is offline')
  checkEqual(await editorText(bob), 'line one; bob wrote this offline', 'Bob\'s text while offline')
  check(!(await editorText(ada)).includes('bob wrote'), 'an offline edit reached Ada')
  check(await bob.evaluate(() => window.tandem.socketOpen()) === false, 'Bob\'s socket reopened while offline')

  // Back online: the provider reconnects and both edits meet.
  await bob.context().setOffline(false)
  await waitIn(bob, 'the connected indicator', () => document.querySelector('.conn')?.dataset.state === 'connected')
  const merged = 'ada online: line one; bob wrote this offline'
  await waitText(bob, merged, 'Bob\'s merged text')
  await waitText(ada, merged, 'Ada\'s merged text')
  await t.screenshot(bob, 'bob-merged')
})
