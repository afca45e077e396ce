// A named checkpoint (Ctrl+S), more edits, then a restore from the history panel: both
// people's editors go back to the checkpoint's text.

import { answerDialog, eventually, focusEnd, scenario, twoEditors, visible, waitIn, waitText } from './lib.mjs'

scenario('restore', async (t) => {
  const { ada, bob, room } = await twoEditors(t, 'History')

  const first = 'function greet() {\n  return "hello";\n}\n'
  await focusEnd(ada)
  // Typed without auto-indent and auto-closing getting in the way.
  await ada.evaluate(text => window.tandem.editor().trigger('test', 'type', { text }), first)
  await waitText(bob, first)

  // Ctrl+S asks for a name and saves a checkpoint.
  await ada.keyboard.press('Control+s')
  await answerDialog(ada, 'before the change')
  await visible(ada, '.toast:text("Saved checkpoint")', 'the checkpoint toast')

  await focusEnd(bob)
  await bob.keyboard.type('greet(); // changed later')
  const later = first + 'greet(); // changed later'
  await waitText(ada, later)

  // The history panel lists the checkpoint; compare shows a diff against now.
  await ada.locator('button[data-panel=history]').click()
  const version = ada.locator('.version', { hasText: 'before the change' })
  await version.waitFor({ timeout: 20_000 })
  await version.getByRole('button', { name: 'Compare' }).click()
  await visible(ada, '.modal .monaco-diff-editor', 'the diff editor')
  await waitIn(ada, 'the diff to show the later line as added', () =>
    [...document.querySelectorAll('.modal .monaco-diff-editor .line-insert, .modal .monaco-diff-editor .char-insert')].length > 0)
  await t.screenshot(ada, 'compare')
  await ada.getByRole('button', { name: 'Restore this version' }).click()
  await ada.locator('.modal button.danger', { hasText: 'Restore' }).click()

  await waitText(ada, first, 'Ada\'s text after the restore')
  await waitText(bob, first, 'Bob\'s text after the restore')
  // The dialogs close, and the restore is itself a version.
  await eventually('the dialogs to close after the restore', () => ada.locator('.modal').count(), n => n === 0)
  await ada.locator('.version .badge', { hasText: /^Restore$/ }).first().waitFor({ timeout: 20_000 })
  await t.screenshot(bob, 'restored')
})
