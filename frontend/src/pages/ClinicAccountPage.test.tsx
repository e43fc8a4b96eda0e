// The page where a user changes their own password (#/clinic/account): its fields are labelled,
// a message is tied to the fields it is about (aria-describedby, aria-invalid), the first field in
// error takes focus, the new session's CSRF token is taken, and success is said in a status region.
//
// No DOM here: the page runs in the one-component host (src/testing/hookHost.ts), as the admin
// page's test does; the test reads the element tree and calls its handlers as a browser would.

import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { ApiError } from '../api.ts'
import * as clinicApi from '../clinic/api.ts'
import { clinicRouteFromHash } from '../clinic/format.ts'
import { ClinicContext } from '../clinic/session.ts'
import type { Session } from '../clinic/types.ts'
import { byTestId, has, text, walk } from '../testing/tree.ts'
import {
  ClinicAccountPage,
  passwordChangedMessage,
  passwordFormProblem,
  refusedFields,
} from './ClinicAccountPage.tsx'
import { clinicPageTitle } from './ClinicMain.tsx'

const host = await vi.hoisted(async () => (await import('../testing/hookHost.ts')).createHookHost())

vi.mock('react', async (original) => ({ ...(await original<typeof import('react')>()), ...host.hooks }))

vi.mock('../clinic/api.ts', async (original) => ({
  ...(await original<typeof import('../clinic/api.ts')>()),
  changePassword: vi.fn(),
}))
const api = vi.mocked(clinicApi)

const session: Session = { user: { id: 3, username: 'vic', role: 'clinician' }, csrf_token: 'old', idle_minutes: 30 }
const setSession = vi.fn()

const settle = () => new Promise((resolve) => setTimeout(resolve, 0))

function type(render: () => unknown, id: string, value: string) {
  ;(byTestId(render(), id).el.props.onChange as (e: unknown) => void)({ target: { value } })
}

function submit(render: () => unknown) {
  const form = [...walk(render())].find(({ el }) => el.type === 'form')?.el
  ;(form?.props.onSubmit as (e: unknown) => void)({ preventDefault: () => {} })
  render()
}

/** The props of the input `id`. */
const field = (render: () => unknown, id: string) => byTestId(render(), id).el.props

let unmount: (() => void) | null = null
function mountPage(): () => unknown {
  const m = host.mount(() => ClinicAccountPage())
  unmount = m.unmount
  return m.result
}

/** Put a fake element behind the ref of the field `id`, recording focus. */
function focusable(render: () => unknown, id: string) {
  const el = { focus: vi.fn() }
  const ref = byTestId(render(), id).el.props.ref as { current: unknown } | undefined
  if (ref) ref.current = el
  return el
}

beforeEach(() => {
  vi.resetAllMocks()
  host.contexts.set(ClinicContext, { session, setSession })
  vi.stubGlobal('requestAnimationFrame', (fn: FrameRequestCallback) => {
    fn(0)
    return 0
  })
})

afterEach(() => {
  unmount?.()
  unmount = null
  vi.unstubAllGlobals()
})

describe('the route', () => {
  it('is #/clinic/account, titled as its heading', () => {
    expect(clinicRouteFromHash('#/clinic/account')).toEqual({ page: 'account' })
    expect(clinicPageTitle('account', session)).toBe('Change your password')
    const tree = mountPage()()
    const h1 = [...walk(tree)].find(({ el }) => el.type === 'h1')?.el
    expect(text(h1)).toBe('Change your password')
  })
})

describe('the form', () => {
  it('labels every field and gives the browser the right autocomplete', () => {
    const render = mountPage()
    const tree = render()
    for (const [id, auto] of [
      ['account-current', 'current-password'],
      ['account-new', 'new-password'],
      ['account-confirm', 'new-password'],
    ]) {
      const props = field(render, id)
      expect(props.type).toBe('password')
      expect(props.autoComplete).toBe(auto)
      const label = [...walk(tree)].find(({ el }) => el.type === 'label' && el.props.htmlFor === props.id)
      expect(label, id).toBeDefined()
    }
    // the rules of a new password are read with its field
    expect(String(field(render, 'account-new')['aria-describedby'])).toMatch(/-hint$/)
  })

  it('refuses two different new passwords before sending, tied to both fields, the first focused', () => {
    const render = mountPage()
    type(render, 'account-current', 'correct horse battery')
    type(render, 'account-new', 'a completely different passphrase 42')
    type(render, 'account-confirm', 'a completely different passphrase 43')
    const next = focusable(render, 'account-new')
    submit(render)
    expect(api.changePassword).not.toHaveBeenCalled()
    const error = byTestId(render(), 'account-error').el.props
    expect(String(error.error)).toMatch(/not the same/)
    for (const id of ['account-new', 'account-confirm']) {
      expect(field(render, id)['aria-invalid']).toBe(true)
      expect(String(field(render, id)['aria-describedby'])).toContain(String(error.id))
    }
    expect(field(render, 'account-current')['aria-invalid']).toBeUndefined()
    expect(next.focus).toHaveBeenCalled()
  })

  it('marks the current password when the server says it is wrong, and keeps the session', async () => {
    api.changePassword.mockRejectedValue(
      new ApiError(422, 'The current password is wrong: nothing was changed (failed tries count towards the lock of failed sign-ins)'),
    )
    const render = mountPage()
    type(render, 'account-current', 'not it')
    type(render, 'account-new', 'a completely different passphrase 42')
    type(render, 'account-confirm', 'a completely different passphrase 42')
    const current = focusable(render, 'account-current')
    submit(render)
    await settle()
    render()
    expect(api.changePassword).toHaveBeenCalledWith('not it', 'a completely different passphrase 42')
    expect(field(render, 'account-current')['aria-invalid']).toBe(true)
    expect(field(render, 'account-new')['aria-invalid']).toBeUndefined()
    expect(field(render, 'account-current').value).toBe('')
    expect(current.focus).toHaveBeenCalled()
    expect(String(byTestId(render(), 'account-error').el.props.error)).toMatch(/current password is wrong/)
    expect(setSession).not.toHaveBeenCalled()
    expect(has(render(), 'account-done', { domOnly: true })).toBe(false)
  })

  it('marks the new password when its rules refuse it', async () => {
    api.changePassword.mockRejectedValue(new ApiError(422, 'This password is too easy to guess: choose a longer one'))
    const render = mountPage()
    type(render, 'account-current', 'correct horse battery')
    type(render, 'account-new', 'password1')
    type(render, 'account-confirm', 'password1')
    submit(render)
    await settle()
    expect(field(render, 'account-new')['aria-invalid']).toBe(true)
    expect(field(render, 'account-current')['aria-invalid']).toBeUndefined()
  })

  it('takes the new session and says what was done, the message focused (no live region: read once)', async () => {
    api.changePassword.mockResolvedValue({ ...session, csrf_token: 'new', sessions_ended: 2, tokens_revoked: 1 })
    const render = mountPage()
    type(render, 'account-current', 'correct horse battery')
    type(render, 'account-new', 'a completely different passphrase 42')
    type(render, 'account-confirm', 'a completely different passphrase 42')
    submit(render)
    await settle()
    const tree = render()
    expect(setSession).toHaveBeenCalledWith({ user: session.user, csrf_token: 'new', idle_minutes: 30 })
    const status = byTestId(tree, 'account-status').el
    // focused (below) and so read: not a live region as well, which would read it twice
    expect(status.props.role).toBeUndefined()
    expect(status.props['aria-live']).toBeUndefined()
    expect(text(status)).toBe(passwordChangedMessage({ sessions_ended: 2, tokens_revoked: 1 }))
    expect(text(status)).toMatch(/2 other sessions were signed out and 1 API token was revoked/)
    for (const id of ['account-current', 'account-new', 'account-confirm']) expect(field(render, id).value).toBe('')
    expect(has(tree, 'account-error', { domOnly: true })).toBe(false)
  })
})

describe('helpers', () => {
  it('passwordFormProblem: empty fields, a mismatch, the same password', () => {
    expect(passwordFormProblem('', 'x', 'x')?.invalid.current).toBe(true)
    expect(passwordFormProblem('a', '', '')?.invalid.next).toBe(true)
    expect(passwordFormProblem('a', 'b', '')?.invalid.confirm).toBe(true)
    expect(passwordFormProblem('a', 'b', 'b')).toBeNull()
    expect(passwordFormProblem('a', 'a', 'a')?.message).toMatch(/same as the current/)
  })

  it('refusedFields: none for a refusal that is not about what was typed', () => {
    expect(refusedFields(new ApiError(429, 'Too many failed sign-ins'))).toEqual({ current: false, next: false, confirm: false })
    expect(refusedFields(new Error('offline'))).toEqual({ current: false, next: false, confirm: false })
  })
})
