// The admin page's actions (create a token, delete one, add a user, revoke any token) run one at a
// time: while one is in flight its section's buttons are disabled, so a double click sends one
// request, not two (two tokens made, a second "Add user" refused as "exists already").
//
// No DOM here (no jsdom, no testing library): a section runs in a one-component host
// (src/testing/hookHost.ts) that keeps React's contract for the hooks it uses; the test reads the
// element tree it renders and acts as a browser would: a disabled button does nothing when
// clicked, an enabled one runs its onClick (a submit button its form's onSubmit), and React
// renders again before the next click (a click is a discrete event, flushed at once).

import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { ApiError } from '../api.ts'
import * as clinicApi from '../clinic/api.ts'
import { ClinicContext } from '../clinic/session.ts'
import type { AdminApiTokenInfo, ApiTokenInfo, NewApiToken, User } from '../clinic/types.ts'
import { byTestId, has, text, walk, type Props } from '../testing/tree.ts'
import { ClinicAdminPage } from './ClinicAdminPage.tsx'

const host = await vi.hoisted(async () => (await import('../testing/hookHost.ts')).createHookHost())

vi.mock('react', async (original) => ({ ...(await original<typeof import('react')>()), ...host.hooks }))

vi.mock('../clinic/api.ts', async (original) => ({
  ...(await original<typeof import('../clinic/api.ts')>()),
  listTokens: vi.fn(),
  createToken: vi.fn(),
  deleteToken: vi.fn(),
  listUsers: vi.fn(),
  createUser: vi.fn(),
  listAllTokens: vi.fn(),
  revokeAnyToken: vi.fn(),
  listAudit: vi.fn(),
}))
const api = vi.mocked(clinicApi)

// --- reading and using the rendered tree ------------------------------------------------------

/** A button element in the page, as the event handlers see it. */
function fakeButton() {
  return { isConnected: true, focus: vi.fn() }
}

/** Click the button `id` as a browser does: nothing when disabled; else its onClick, or (a submit
 * button) its form's onSubmit; then React renders (a click is flushed at once). Returns whether
 * anything ran. */
function click(render: () => unknown, id: string, target: unknown = fakeButton()): boolean {
  const { el, above } = byTestId(render(), id)
  if (el.props.disabled) return false
  const event = { preventDefault: () => {}, currentTarget: target }
  if (typeof el.props.onClick === 'function') {
    el.props.onClick(event)
  } else {
    const form = [...above].reverse().find((a) => a.type === 'form')
    if (el.props.type !== 'submit' || typeof form?.props.onSubmit !== 'function') throw new Error(`${id} does nothing when clicked`)
    form.props.onSubmit(event)
  }
  render()
  return true
}

/** Submit the form around `id` (Enter in a field), whether or not its button is disabled. */
function submitFormOf(render: () => unknown, id: string) {
  const form = [...byTestId(render(), id).above].reverse().find((a) => a.type === 'form')
  ;(form?.props.onSubmit as (e: unknown) => void)({ preventDefault: () => {} })
  render()
}

function type(render: () => unknown, id: string, value: string) {
  ;(byTestId(render(), id).el.props.onChange as (e: unknown) => void)({ target: { value } })
}

/** Let the pending promises settle (a mocked request answered, the reload after it). */
const settle = () => new Promise((resolve) => setTimeout(resolve, 0))

/** A request that answers when the test says so. */
function deferred<T>() {
  let resolve!: (v: T) => void
  let reject!: (e: unknown) => void
  const promise = new Promise<T>((res, rej) => {
    resolve = res
    reject = rej
  })
  return { promise, resolve, reject }
}

// --- the page's sections ----------------------------------------------------------------------

const admin: User = { id: 1, username: 'ana', role: 'admin' }

/** The page's section `name` (its component), as the admin page renders it. */
function section(name: 'Tokens' | 'Users' | 'AllTokens'): () => unknown {
  const page = ClinicAdminPage()
  const el = [...walk(page)].find(({ el }) => typeof el.type === 'function' && el.type.name === name)?.el
  if (!el) throw new Error(`the admin page has no ${name}`)
  const component = el.type as (props: Props) => unknown
  return () => component(el.props)
}

const token: ApiTokenInfo = {
  id: 7,
  name: 'backup script',
  created_at: '2026-11-01T10:00:00+00:00',
  last_used_at: null,
  expires_at: '2027-01-30T10:00:00+00:00',
  expired: false,
}
const anyToken: AdminApiTokenInfo = { ...token, id: 9, name: 'scanner', user: 'ben', user_id: 2, revoked_at: null }
const made: NewApiToken = { id: 8, name: 'nightly export', token: 'dst_secret', expires_at: '2027-03-01T10:00:00+00:00' }

let unmount: (() => void) | null = null
/** Mount section `name`; returns its render (the tree with the latest state). */
async function mountSection(name: 'Tokens' | 'Users' | 'AllTokens'): Promise<() => unknown> {
  const s = host.mount(section(name))
  unmount = s.unmount
  await settle() // its list is loaded
  return s.result
}

beforeEach(() => {
  vi.resetAllMocks()
  host.contexts.set(ClinicContext, { session: { user: admin, csrf_token: 'x' }, setSession: () => {} })
  api.listTokens.mockResolvedValue([token])
  api.listUsers.mockResolvedValue([admin])
  api.listAllTokens.mockResolvedValue([anyToken])
  vi.stubGlobal('requestAnimationFrame', (fn: FrameRequestCallback) => {
    fn(0)
    return 0
  })
  const body = {}
  vi.stubGlobal('document', { body, activeElement: body })
  vi.stubGlobal('window', { confirm: vi.fn(() => true) })
})

afterEach(() => {
  unmount?.()
  unmount = null
  vi.unstubAllGlobals()
})

describe('your API tokens', () => {
  it('makes one token on a double click of "Create token"', async () => {
    const render = await mountSection('Tokens')
    const request = deferred<NewApiToken>()
    api.createToken.mockReturnValue(request.promise)
    type(render, 'token-name', 'nightly export')

    expect(click(render, 'token-create')).toBe(true)
    click(render, 'token-create') // the double click's second
    expect(api.createToken).toHaveBeenCalledTimes(1)
    const busy = render()
    expect(byTestId(busy, 'token-create').el.props.disabled).toBe(true) // while the first request runs
    expect(text(byTestId(busy, 'token-create').el)).toBe('Creating…')
    expect(byTestId(busy, 'token-delete-7').el.props.disabled).toBe(true)
    submitFormOf(render, 'token-create') // Enter in the name field: nothing more either
    expect(api.createToken).toHaveBeenCalledTimes(1)
    expect(api.createToken).toHaveBeenCalledWith('nightly export', 90)

    request.resolve(made)
    await settle()
    const after = render()
    expect(text(byTestId(after, 'new-token').el)).toBe('dst_secret')
    expect(byTestId(after, 'token-create').el.props.disabled).toBeFalsy()
    expect(text(byTestId(after, 'token-create').el)).toBe('Create token')
    expect(byTestId(after, 'token-name').el.props.value).toBe('')
    expect(api.listTokens).toHaveBeenCalledTimes(2) // the list reloaded once
    expect(api.createToken).toHaveBeenCalledTimes(1)
  })

  it('gives focus back to "Create token" when a double click left it on <main>', async () => {
    const render = await mountSection('Tokens')
    const request = deferred<NewApiToken>()
    api.createToken.mockReturnValue(request.promise)
    type(render, 'token-name', 'nightly export')
    const button = fakeButton()
    ;(byTestId(render(), 'token-create').el.props.ref as { current: unknown }).current = button
    click(render, 'token-create')
    click(render, 'token-create') // the second press lands on the disabled button: focus goes to <main>
    Object.assign(document, { activeElement: { tagName: 'MAIN', isConnected: true } })
    request.resolve(made)
    await settle()
    render()
    expect(api.createToken).toHaveBeenCalledTimes(1)
    expect(button.focus).toHaveBeenCalledTimes(1)
  })

  it('leaves focus where the user put it meanwhile', async () => {
    const render = await mountSection('Tokens')
    const request = deferred<NewApiToken>()
    api.createToken.mockReturnValue(request.promise)
    type(render, 'token-name', 'nightly export')
    const button = fakeButton()
    ;(byTestId(render(), 'token-create').el.props.ref as { current: unknown }).current = button
    click(render, 'token-create')
    Object.assign(document, { activeElement: { tagName: 'INPUT', isConnected: true } })
    request.resolve(made)
    await settle()
    render()
    expect(button.focus).not.toHaveBeenCalled()
  })

  it('deletes a token once on a double click, says so and focuses the section', async () => {
    const render = await mountSection('Tokens')
    const request = deferred<undefined>()
    api.deleteToken.mockReturnValue(request.promise)
    const pressed = fakeButton()
    const heading = { isConnected: true, focus: vi.fn(() => Object.assign(document, { activeElement: heading })) }
    const h2 = [...walk(render())].find(({ el }) => el.type === 'h2')!.el
    ;(h2.props.ref as { current: unknown }).current = heading

    expect(click(render, 'token-delete-7', pressed)).toBe(true)
    click(render, 'token-delete-7')
    expect(api.deleteToken).toHaveBeenCalledTimes(1)
    const busy = render()
    expect(byTestId(busy, 'token-delete-7').el.props.disabled).toBe(true)
    expect(text(byTestId(busy, 'token-delete-7').el)).toBe('Deleting…')
    expect(byTestId(busy, 'token-create').el.props.disabled).toBe(true)
    expect(text(byTestId(busy, 'token-create').el)).toBe('Create token')
    expect(api.deleteToken).toHaveBeenCalledTimes(1)

    request.resolve(undefined)
    await settle()
    expect(text(byTestId(render(), 'token-status').el)).toBe('Token “backup script” deleted.')
    expect(heading.focus).toHaveBeenCalledTimes(1)
    expect(pressed.focus).not.toHaveBeenCalled() // its row goes: focus stays on the heading
    expect(api.deleteToken).toHaveBeenCalledTimes(1)
  })

  it('ties a refused lifetime to the days field and lets the user try again', async () => {
    const render = await mountSection('Tokens')
    api.createToken.mockRejectedValue(new ApiError(422, 'an API token works for 1 to 365 days (got 400)'))
    const days = { focus: vi.fn() }
    ;(byTestId(render(), 'token-days').el.props.ref as { current: unknown }).current = days
    type(render, 'token-name', 'nightly export')
    click(render, 'token-create')
    await settle()
    const after = render()
    expect(byTestId(after, 'token-error').el.props.error).toBe('an API token works for 1 to 365 days (got 400)')
    expect(byTestId(after, 'token-days').el.props['aria-invalid']).toBe(true)
    expect(byTestId(after, 'token-name').el.props['aria-invalid']).toBeUndefined()
    expect(days.focus).toHaveBeenCalled()
    expect(byTestId(after, 'token-create').el.props.disabled).toBeFalsy()
    expect(byTestId(after, 'token-name').el.props.value).toBe('nightly export') // kept, to correct
  })
})

describe('adding a user', () => {
  it('sends one request on a double click of "Add user"', async () => {
    const render = await mountSection('Users')
    const request = deferred<User>()
    api.createUser.mockReturnValue(request.promise)
    type(render, 'user-username', 'ben')
    type(render, 'user-password', 'correct horse battery')

    expect(click(render, 'user-create')).toBe(true)
    click(render, 'user-create')
    expect(api.createUser).toHaveBeenCalledTimes(1)
    const busy = render()
    expect(byTestId(busy, 'user-create').el.props.disabled).toBe(true)
    expect(text(byTestId(busy, 'user-create').el)).toBe('Adding…')
    submitFormOf(render, 'user-create')
    expect(api.createUser).toHaveBeenCalledTimes(1)

    request.resolve({ id: 2, username: 'ben', role: 'clinician' })
    await settle()
    const after = render()
    expect(has(after, 'user-error', { domOnly: true })).toBe(false) // its <ErrorBox testId> stays in the tree
    expect(byTestId(after, 'user-password').el.props.value).toBe('')
    expect(byTestId(after, 'user-username').el.props.value).toBe('')
    expect(text(byTestId(after, 'user-create').el)).toBe('Add user')
    expect(api.createUser).toHaveBeenCalledTimes(1)
    expect(api.listUsers).toHaveBeenCalledTimes(2)
  })

  it('ties a taken name to the user name field', async () => {
    const render = await mountSection('Users')
    api.createUser.mockRejectedValue(new ApiError(409, "A user named 'ben' exists already"))
    const field = { focus: vi.fn() }
    ;(byTestId(render(), 'user-username').el.props.ref as { current: unknown }).current = field
    type(render, 'user-username', 'ben')
    type(render, 'user-password', 'correct horse battery')
    click(render, 'user-create')
    await settle()
    const after = render()
    expect(byTestId(after, 'user-error').el.props.error).toBe("A user named 'ben' exists already")
    expect(byTestId(after, 'user-username').el.props['aria-invalid']).toBe(true)
    expect(field.focus).toHaveBeenCalled()
    expect(byTestId(after, 'user-create').el.props.disabled).toBeFalsy()
  })
})

describe("revoking a user's token (admin)", () => {
  it('asks once and revokes once on a double click', async () => {
    const render = await mountSection('AllTokens')
    const request = deferred<undefined>()
    api.revokeAnyToken.mockReturnValue(request.promise)

    expect(click(render, 'all-token-revoke-9')).toBe(true)
    click(render, 'all-token-revoke-9')
    expect(api.revokeAnyToken).toHaveBeenCalledTimes(1)
    const busy = render()
    expect(byTestId(busy, 'all-token-revoke-9').el.props.disabled).toBe(true)
    expect(text(byTestId(busy, 'all-token-revoke-9').el)).toBe('Revoking…')
    expect(window.confirm).toHaveBeenCalledTimes(1)
    expect(api.revokeAnyToken).toHaveBeenCalledTimes(1)

    request.resolve(undefined)
    await settle()
    expect(text(byTestId(render(), 'all-tokens-status').el)).toBe('ben’s token “scanner” revoked.')
    expect(api.revokeAnyToken).toHaveBeenCalledTimes(1)
  })

  it('revokes nothing when the admin cancels', async () => {
    const render = await mountSection('AllTokens')
    vi.mocked(window.confirm).mockReturnValue(false)
    click(render, 'all-token-revoke-9')
    expect(api.revokeAnyToken).not.toHaveBeenCalled()
    expect(byTestId(render(), 'all-token-revoke-9').el.props.disabled).toBeFalsy()
  })

  it('gives focus back to the button pressed when a failed revoke leaves it nowhere', async () => {
    const render = await mountSection('AllTokens')
    api.revokeAnyToken.mockRejectedValue(new ApiError(503, 'The server is busy: try again in a minute.'))
    const button = fakeButton() // focus fell to <body> while it was disabled
    click(render, 'all-token-revoke-9', button)
    await settle()
    const after = render()
    expect(text(byTestId(after, 'all-token-revoke-9').el)).toBe('Revoke')
    expect(byTestId(after, 'all-token-revoke-9').el.props.disabled).toBeFalsy()
    expect([...walk(after)].find(({ el }) => el.props.error)?.el.props.error).toBe('The server is busy: try again in a minute.')
    expect(button.focus).toHaveBeenCalledTimes(1)
  })
})
