// At a phone's width (390×844) the room stays usable: the editor and the main controls are
// on screen and the page never scrolls sideways; the file list and the panels open over it.

import { check, createRoom, eventually, focusEnd, PHONE, register, scenario, visible, waitText } from './lib.mjs'

async function noSidewaysScroll (page, where) {
  const { scroll, client } = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth }))
  check(scroll <= client, `${where}: the page scrolls sideways (${scroll} > ${client})`)
}

/** Waits (through any slide-in transition) until `selector` lies within the screen's width. */
async function onScreen (page, selector, what) {
  return eventually(`${what} to be on screen`, () => page.locator(selector).first().boundingBox(),
    box => box !== null && box.x >= 0 && box.x + box.width <= PHONE.width + 0.5 && box.width > 0 && box.height > 0)
}

scenario('phone', async (t) => {
  const pia = await t.person('Pia', PHONE)
  await register(pia, 'Pia')
  await noSidewaysScroll(pia, 'my rooms')
  await createRoom(pia, 'On the bus')
  await noSidewaysScroll(pia, 'the room')

  const editor = await onScreen(pia, '.monaco-editor', 'the editor')
  check(editor.height > 400, `the editor is too short: ${editor.height}px`)
  for (const [selector, what] of [
    ['.conn', 'the connection indicator'],
    ['.presence .avatar', 'the presence list'],
    ['button[data-panel=history]', 'the History button'],
    ['button[data-panel=comments]', 'the Comments button'],
    ['button[data-panel=ai]', 'the AI button'],
    ['button:text("Share")', 'the Share button'],
    ['button[aria-label=Files]', 'the Files button']
  ]) {
    await visible(pia, selector, what)
    await onScreen(pia, selector, what)
  }

  await focusEnd(pia)
  await pia.keyboard.type('typed on a phone')
  await waitText(pia, 'typed on a phone')

  await pia.locator('button[aria-label=Files]').click()
  await visible(pia, '.tree li[data-path="main.js"]', 'the file list')
  await onScreen(pia, '.files', 'the file list')
  await pia.locator('button[aria-label=Files]').click()

  await pia.locator('button[data-panel=history]').click()
  await visible(pia, '.panel .history', 'the history panel')
  await onScreen(pia, '.panel', 'the history panel')
  await noSidewaysScroll(pia, 'the history panel')
  await t.screenshot(pia, 'history')
  await pia.getByRole('button', { name: 'Close panel' }).click()
  await noSidewaysScroll(pia, 'the room after the panel')
  await t.screenshot(pia, 'room')
})
