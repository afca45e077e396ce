// Ask the assistant for a refactor of the selection (the model is a scripted stand-in that
// answers with a fenced code block): the answer streams into the chat, the suggestion shows
// inline as a diff for both people, and Accept changes the text for both; a second one,
// rejected, changes nothing.

import { checkEqual, eventually, focusEnd, scenario, twoEditors, visible, waitIn, waitText } from './lib.mjs'

const SOURCE = 'let x = 1;\nlet total=a+b;\nlet y = 2;\n'
const AFTER = 'let x = 1;\nlet total = a + b;\nlet y = 2;\n'

scenario('ai', async (t) => {
  const { ada, bob, room } = await twoEditors(t, 'Refactoring')

  await focusEnd(ada)
  await ada.evaluate(text => window.tandem.editor().trigger('test', 'type', { text }), SOURCE)
  await waitText(bob, SOURCE)
  // Select the middle line.
  await ada.evaluate(() => window.tandem.editor().setSelection({ startLineNumber: 2, startColumn: 1, endLineNumber: 2, endColumn: 15 }))

  // Ctrl+K opens the assistant; Refactor sends the selection.
  await ada.keyboard.press('Control+k')
  await visible(ada, '.panel .ai', 'the AI panel')
  // While the model thinks, Bob sees which range the assistant works on.
  const working = waitIn(bob, 'the assistant\'s working range in Bob\'s editor', () =>
    document.querySelector('.monaco-editor .view-overlays .ai-working') !== null &&
    document.querySelector('.monaco-editor .view-line .ai-working-label') !== null)
  await ada.getByRole('button', { name: 'Refactor' }).click()
  await working
  await t.screenshot(bob, 'working')
  await waitIn(ada, 'the streamed answer', () => document.querySelector('.msg.assistant')?.textContent.includes('Same behaviour, spaced out.'))

  // Inline, for both: the range, the removed and the added line, Accept and Reject.
  for (const page of [ada, bob]) {
    await visible(page, '.suggestion-zone', `${page.person}'s inline suggestion`)
    const zone = page.locator('.suggestion-zone').first()
    checkEqual(await zone.locator('.del').innerText(), '− let total=a+b;', `${page.person}'s removed line`)
    checkEqual(await zone.locator('.add').innerText(), '+ let total = a + b;', `${page.person}'s added line`)
  }
  await t.screenshot(ada, 'suggestion')
  await t.screenshot(bob, 'suggestion-bob')

  await bob.locator('.suggestion-zone button.accept').click()
  await waitText(bob, AFTER, 'Bob\'s text after Accept')
  await waitText(ada, AFTER, 'Ada\'s text after Accept')
  for (const page of [ada, bob]) {
    await eventually(`${page.person}'s inline suggestion to go away`, () => page.locator('.suggestion-zone').count(), n => n === 0)
  }

  // A second suggestion, rejected: it goes away for both and the text stays as it is.
  await ada.evaluate(() => window.tandem.editor().setSelection({ startLineNumber: 1, startColumn: 1, endLineNumber: 1, endColumn: 11 }))
  await ada.getByRole('button', { name: 'Refactor' }).click()
  for (const page of [ada, bob]) {
    await visible(page, '.suggestion-zone', `${page.person}'s second suggestion`)
    checkEqual(await page.locator('.suggestion-zone .del').innerText(), '− let x = 1;', `${page.person}'s second removed line`)
  }
  await ada.locator('.suggestion-zone button.reject').click()
  for (const page of [ada, bob]) {
    await eventually(`${page.person}'s rejected suggestion to go away`, () => page.locator('.suggestion-zone').count(), n => n === 0)
    checkEqual(await page.evaluate(() => window.tandem.text()), AFTER, `${page.person}'s text after Reject`)
  }
  const statuses = await ada.evaluate(() => [...window.tandem.doc.getMap('suggestions').values()].map(s => s.get('status')).sort())
  checkEqual(JSON.stringify(statuses), JSON.stringify(['accepted', 'rejected']), 'the suggestions\' statuses')
  await t.screenshot(ada, 'decided')
})
