// Shared helpers of the browser scenarios: Debian's Chromium driven by playwright-core,
// one browser context per person, every console error and page error collected, and
// waits on conditions (never fixed sleeps).
//
// A scenario is `scenario(name, async (t) => { ... })`. It exits 0 when everything held and
// 1 with a message naming what did not. Environment: TANDEM_URL (the server, e.g.
// http://127.0.0.1:1234), TANDEM_ARTIFACTS (where screenshots go), CHROMIUM (the browser,
// /usr/bin/chromium by default).

import { chromium } from 'playwright-core'
import fs from 'node:fs'
import path from 'node:path'

export const BASE = process.env.TANDEM_URL ?? 'http://127.0.0.1:8080'
const ARTIFACTS = process.env.TANDEM_ARTIFACTS ?? path.resolve('artifacts')
export const LAPTOP = { width: 1280, height: 800 }
export const PHONE = { width: 390, height: 844 }
const TIMEOUT = 20_000

export class Failure extends Error {}

export function check (condition, message) {
  if (!condition) throw new Failure(message)
}

export function checkEqual (actual, expected, what) {
  if (actual !== expected) {
    throw new Failure(`${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`)
  }
}

/** Waits until `fn(arg)` is truthy in the page; fails with `what` on timeout. */
export async function waitIn (page, what, fn, arg, timeout = TIMEOUT) {
  try {
    return await (await page.waitForFunction(fn, arg, { timeout, polling: 50 })).jsonValue()
  } catch (err) {
    throw new Failure(`timed out waiting for ${what} (${page.person}): ${err.message.split('\n')[0]}`)
  }
}

/** Waits until `probe()` answers something `ok` accepts; answers the last value. */
export async function eventually (what, probe, ok = Boolean, timeout = TIMEOUT) {
  const deadline = Date.now() + timeout
  let last
  while (Date.now() < deadline) {
    last = await probe()
    if (ok(last)) return last
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  throw new Failure(`timed out waiting for ${what}; last value ${JSON.stringify(last)}`)
}

export async function visible (page, selector, what = selector) {
  try {
    await page.locator(selector).first().waitFor({ state: 'visible', timeout: TIMEOUT })
  } catch {
    throw new Failure(`${what} never became visible (${page.person})`)
  }
}

class Scenario {
  constructor (name) {
    this.name = name
    this.pages = []
    this.browser = null
  }

  async start () {
    this.browser = await chromium.launch({
      executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
      headless: true,
      args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu']
    })
  }

  /** A new person: their own browser context (cookies, storage, network) and one page. */
  async person (name, viewport = LAPTOP) {
    const context = await this.browser.newContext({ viewport, baseURL: BASE })
    const page = await context.newPage()
    page.person = name
    page.errors = []
    page.on('console', msg => {
      if (msg.type() === 'error') page.errors.push(`console: ${msg.text()} (${msg.location().url})`)
    })
    page.on('pageerror', err => page.errors.push(`page error: ${err.message}`))
    this.pages.push(page)
    return page
  }

  async screenshot (page, label) {
    fs.mkdirSync(ARTIFACTS, { recursive: true })
    const file = path.join(ARTIFACTS, `${this.name}-${label}.png`)
    await page.screenshot({ path: file })
    console.log(`screenshot ${file}`)
    return file
  }

  assertNoConsoleErrors () {
    const errors = this.pages.flatMap(p => p.errors.map(e => `${p.person}: ${e}`))
    check(errors.length === 0, `console errors:\n  ${errors.join('\n  ')}`)
  }
}

export function scenario (name, body) {
  const t = new Scenario(name)
  const run = async () => {
    await t.start()
    try {
      await body(t)
      t.assertNoConsoleErrors()
    } finally {
      await t.browser.close().catch(() => {})
    }
  }
  run().then(() => {
    console.log(`ok: ${name}`)
    process.exit(0)
  }, err => {
    console.error(`FAILED: ${name}: ${err instanceof Failure ? err.message : err.stack ?? err}`)
    process.exit(1)
  })
}

// --- Steps through the app's UI --------------------------------------------------------

/** Registers `name` through the app's own form; lands on "My rooms". */
export async function register (page, name) {
  await page.goto('/')
  await page.getByRole('button', { name: 'Create an account' }).click()
  await page.locator('input[name=display_name]').fill(name)
  await page.locator('input[name=email]').fill(`${name.toLowerCase()}-${Date.now()}@example.com`)
  await page.locator('input[name=password]').fill('correct horse battery')
  await page.getByRole('button', { name: 'Create account' }).click()
  await visible(page, 'h1:text("My rooms")', '"My rooms"')
}

/** Creates a room from "My rooms" and waits until its editor is bound to a file. */
export async function createRoom (page, name) {
  await page.locator('input[name=room_name]').fill(name)
  await page.getByRole('button', { name: 'Create room' }).click()
  await waitUntilEditing(page)
  return page.evaluate(() => window.tandem.room())
}

/** Waits until the room page is connected and its editor shows a file. */
export async function waitUntilEditing (page) {
  await waitIn(page, 'the room to connect', () => window.tandem?.connection?.() === 'connected' && window.tandem.file() !== null)
  await visible(page, '.monaco-editor .view-lines', 'the editor')
}

export async function openRoom (page, roomId) {
  await page.goto(`/rooms/${encodeURIComponent(roomId)}`)
  await waitUntilEditing(page)
}

/**
 * Ada (who registers and creates the room) and Bob (who registers and joins through an
 * editor invite Ada makes in the Share dialog, which opens the room for him), both in the
 * room's editor.
 */
export async function twoEditors (t, roomName) {
  const ada = await t.person('Ada')
  const bob = await t.person('Bob')
  await register(ada, 'Ada')
  await register(bob, 'Bob')
  const room = await createRoom(ada, roomName)
  await ada.getByRole('button', { name: 'Share' }).click()
  await ada.locator('select[name=invite_role]').selectOption('editor')
  await ada.getByRole('button', { name: 'Create invite link' }).click()
  const link = await ada.locator('input[name=invite_link]').inputValue()
  await ada.keyboard.press('Escape')
  await bob.goto(link)
  // The app accepts the invite, then opens the room itself: navigating before it has
  // would cancel the acceptance.
  await bob.waitForURL(`**/rooms/${encodeURIComponent(room)}`)
  await waitUntilEditing(bob)
  return { ada, bob, room }
}

export function editorText (page) {
  return page.evaluate(() => window.tandem.text())
}

export async function waitText (page, expected, what = 'the editor text') {
  try {
    await page.waitForFunction(want => window.tandem?.text?.() === want, expected, { timeout: TIMEOUT, polling: 50 })
  } catch {
    const actual = await page.evaluate(() => window.tandem?.text?.()).catch(() => undefined)
    throw new Failure(`timed out waiting for ${what} (${page.person}) to be ${JSON.stringify(expected)}; it is ${JSON.stringify(actual)}`)
  }
}

/** Clicks into the editor and puts the caret at the end of the text. */
export async function focusEnd (page) {
  await page.locator('.monaco-editor .view-lines').click()
  await page.keyboard.press('Control+End')
}

/** Waits for a remote cursor labelled `name` (the label is the head's ::after content). */
export async function waitRemoteCursor (page, name) {
  await waitIn(page, `${name}'s named cursor`, who => [...document.querySelectorAll('.yRemoteSelectionHead')]
    .some(el => getComputedStyle(el, '::after').content.includes(who)), name)
}

/** Answers the app's own text dialog. */
export async function answerDialog (page, text) {
  const input = page.locator('.modal input[name=answer]')
  await input.waitFor({ state: 'visible', timeout: TIMEOUT })
  await input.fill(text)
  await input.press('Enter')
}
