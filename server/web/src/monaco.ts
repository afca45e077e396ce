// Monaco, trimmed to what the client uses: the editor with its standard features, syntax
// colouring for common languages (no language-service workers), and the one editor worker
// bundled by Vite.

import * as monaco from 'monaco-editor/esm/vs/editor/editor.api.js'
import 'monaco-editor/esm/vs/editor/editor.all.js'
import 'monaco-editor/esm/vs/basic-languages/javascript/javascript.contribution.js'
import 'monaco-editor/esm/vs/basic-languages/typescript/typescript.contribution.js'
import 'monaco-editor/esm/vs/basic-languages/python/python.contribution.js'
import 'monaco-editor/esm/vs/basic-languages/rust/rust.contribution.js'
import 'monaco-editor/esm/vs/basic-languages/markdown/markdown.contribution.js'
import 'monaco-editor/esm/vs/basic-languages/html/html.contribution.js'
import 'monaco-editor/esm/vs/basic-languages/css/css.contribution.js'
import 'monaco-editor/esm/vs/basic-languages/go/go.contribution.js'
import 'monaco-editor/esm/vs/basic-languages/java/java.contribution.js'
import 'monaco-editor/esm/vs/basic-languages/cpp/cpp.contribution.js'
import 'monaco-editor/esm/vs/basic-languages/shell/shell.contribution.js'
import 'monaco-editor/esm/vs/basic-languages/yaml/yaml.contribution.js'
import EditorWorker from 'monaco-editor/esm/vs/editor/editor.worker.js?worker'

self.MonacoEnvironment = {
  getWorker: () => new EditorWorker()
}

const LANGUAGES: Record<string, string> = {
  js: 'javascript',
  mjs: 'javascript',
  cjs: 'javascript',
  jsx: 'javascript',
  ts: 'typescript',
  tsx: 'typescript',
  py: 'python',
  rs: 'rust',
  md: 'markdown',
  html: 'html',
  css: 'css',
  go: 'go',
  java: 'java',
  c: 'cpp',
  h: 'cpp',
  cpp: 'cpp',
  sh: 'shell',
  yml: 'yaml',
  yaml: 'yaml',
  json: 'javascript'
}

/** The Monaco language of a file, by its extension. */
export function languageOf (path: string): string {
  const ext = path.split('.').pop()?.toLowerCase() ?? ''
  return LANGUAGES[ext] ?? 'plaintext'
}

export { monaco }

// Disposing an editor cancels the work it had scheduled (word highlighting, hovers), and
// Monaco rejects those promises with its `Canceled` error, which nobody awaits. That is
// the expected end of the work, not a failure: keep it out of the console.
window.addEventListener('unhandledrejection', event => {
  const reason = event.reason as { name?: unknown, message?: unknown } | null
  if (reason && reason.name === 'Canceled' && reason.message === 'Canceled') event.preventDefault()
})
