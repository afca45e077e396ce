// The REST API: tokens, their refresh, and typed calls.
//
// A login gives a short-lived access token and a refresh token that rotates on every use.
// Both live in localStorage so a reload keeps the session. A 401 `token_expired` is answered
// by one refresh (shared by every request waiting at that moment, since a rotated refresh
// token presented twice revokes the session) and the request is sent again.

export type Role = 'owner' | 'editor' | 'viewer'

export interface User {
  id: string
  email: string
  display_name: string
}

export interface Session {
  user: User
  access_token: string
  refresh_token: string
}

export interface RoomView {
  id: string
  name: string
  role: Role
  online: number
  created_at_ms: number
}

export interface Participant {
  user_id: string
  display_name?: string
  name?: string
  email?: string
  role: Role
}

export interface RoomDetail {
  room: RoomView
  participants: Participant[]
}

export interface Version {
  id: number
  kind: 'auto' | 'named' | 'restore'
  label: string | null
  created_at_ms: number
  size_bytes: number
}

export interface Person {
  id: string
  name: string
}

export interface CommentView {
  id: string
  author: Person
  body: string
  created_at_ms: number
  edited_at_ms: number | null
}

export interface ThreadView {
  id: string
  file: string
  start?: number
  end?: number
  text?: string
  orphaned: boolean
  quote: string
  status: 'open' | 'resolved'
  author: Person
  comments: CommentView[]
  updated_at_ms: number
}

export class ApiError extends Error {
  constructor (
    readonly status: number,
    readonly code: string,
    message: string
  ) {
    super(message)
  }
}

const STORAGE_KEY = 'tandem.session'

let session: Session | null = load()
let refreshing: Promise<boolean> | null = null
const listeners = new Set<(s: Session | null) => void>()

function load (): Session | null {
  try {
    const raw = localStorage.getItem(STORAGE_KEY)
    return raw ? (JSON.parse(raw) as Session) : null
  } catch {
    return null
  }
}

function store (next: Session | null): void {
  session = next
  if (next) localStorage.setItem(STORAGE_KEY, JSON.stringify(next))
  else localStorage.removeItem(STORAGE_KEY)
  listeners.forEach(l => l(next))
}

export function currentSession (): Session | null {
  return session
}

export function onSessionChange (listener: (s: Session | null) => void): void {
  listeners.add(listener)
}

/** Seconds until the access token expires (negative once it has). */
function secondsLeft (token: string): number {
  try {
    const payload = JSON.parse(atob(token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')))
    return payload.exp - Date.now() / 1000
  } catch {
    return 0
  }
}

async function refresh (): Promise<boolean> {
  if (!session) return false
  if (!refreshing) {
    const presented = session.refresh_token
    refreshing = (async () => {
      try {
        const res = await fetch('/api/auth/refresh', {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ refresh_token: presented })
        })
        if (!res.ok) {
          store(null)
          return false
        }
        const body = await res.json()
        store({ user: body.user ?? session!.user, access_token: body.access_token, refresh_token: body.refresh_token })
        return true
      } catch {
        // Offline: keep the session; the next request tries again.
        return false
      } finally {
        refreshing = null
      }
    })()
  }
  return refreshing
}

/** An access token valid for at least a little longer (refreshing first if needed). */
export async function freshAccessToken (): Promise<string | null> {
  if (!session) return null
  if (secondsLeft(session.access_token) < 30) await refresh()
  return session?.access_token ?? null
}

export interface RequestOptions {
  /** A token to use instead of the session's (a share token). */
  token?: string
  signal?: AbortSignal
}

/** Sends a request; answers the raw response (errors already turned into `ApiError`). */
export async function send (method: string, path: string, body?: unknown, options: RequestOptions = {}): Promise<Response> {
  // Refresh ahead of an access token's expiry, so normal use never meets a 401; the 401
  // `token_expired` branch below covers clocks that disagree.
  if (!options.token && session && secondsLeft(session.access_token) < 5) await refresh()
  for (let attempt = 0; ; attempt++) {
    const token = options.token ?? session?.access_token
    const headers: Record<string, string> = {}
    if (token) headers.authorization = `Bearer ${token}`
    if (body !== undefined) headers['content-type'] = 'application/json'
    const res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: options.signal
    })
    if (res.ok) return res
    let code = 'http_' + res.status
    let message = res.statusText
    try {
      const err = (await res.json()).error
      code = err.code
      message = err.message
    } catch {
      // Not the JSON error shape; keep the status.
    }
    if (res.status === 401 && code === 'token_expired' && attempt === 0 && !options.token && (await refresh())) {
      continue
    }
    if (res.status === 401 && !options.token && code !== 'invalid_credentials') store(null)
    throw new ApiError(res.status, code, message)
  }
}

export async function call<T> (method: string, path: string, body?: unknown, options: RequestOptions = {}): Promise<T> {
  const res = await send(method, path, body, options)
  if (res.status === 204) return undefined as T
  const text = await res.text()
  return (text ? JSON.parse(text) : undefined) as T
}

export async function register (email: string, password: string, displayName: string): Promise<void> {
  const body = await call<Session>('POST', '/api/auth/register', { email, password, display_name: displayName })
  store({ user: body.user, access_token: body.access_token, refresh_token: body.refresh_token })
}

export async function login (email: string, password: string): Promise<void> {
  const body = await call<Session>('POST', '/api/auth/login', { email, password })
  store({ user: body.user, access_token: body.access_token, refresh_token: body.refresh_token })
}

export async function logout (): Promise<void> {
  try {
    if (session) await send('POST', '/api/auth/logout')
  } finally {
    store(null)
  }
}

export const enc = encodeURIComponent
