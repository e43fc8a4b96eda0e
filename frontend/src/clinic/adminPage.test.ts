// The admin page after the second clinic audit: the audit log pages ("Older events") and filters
// by user and patient; a token about to expire says in how many days; "Add user" and the token
// form tie their refusals to the field they are about (the password, the days).

import { createElement } from 'react'
import { renderToStaticMarkup } from 'react-dom/server'
import { describe, expect, it } from 'vitest'
import { ApiError } from '../api.ts'
import { expiryNote, latestRequest, olderCursor, TokenExpiry, tokenErrorField, userErrorField } from '../pages/ClinicAdminPage.tsx'
import { auditPath } from './api.ts'
import { fieldErrorProps, refusedInput } from './fieldErrors.ts'
import type { AuditEntry } from './types.ts'

describe('the audit log query', () => {
  it('asks for the next page before the last event and for the filters given', () => {
    expect(auditPath({ limit: 100 })).toBe('/admin/audit?limit=100')
    expect(auditPath({ limit: 100, before: 4711, user: ' ana ', patient: 12 })).toBe(
      '/admin/audit?limit=100&before=4711&user=ana&patient=12',
    )
    expect(auditPath({ user: '   ' })).toBe('/admin/audit?limit=100')
    expect(auditPath({ user: 'a&b' })).toBe('/admin/audit?limit=100&user=a%26b')
  })

  it('offers older events only after a full page', () => {
    const page = (n: number): AuditEntry[] =>
      Array.from({ length: n }, (_, i) => ({ id: 500 - i, at: '', user: 'ana', action: 'view', object_type: 'patient', object_id: i }))
    expect(olderCursor(page(100), 100)).toBe(401)
    expect(olderCursor(page(99), 100)).toBeNull()
    expect(olderCursor([], 100)).toBeNull()
  })
})

describe('outdated audit answers', () => {
  it('drops the answer to a query replaced before it returned', () => {
    const requests = latestRequest()
    const olderOfA = requests.start() // "Older events" under filter A
    expect(olderOfA()).toBe(true)
    const newestOfB = requests.start() // "Show events" with filter B before A's page is back
    expect(newestOfB()).toBe(true)
    expect(olderOfA()).toBe(false) // A's page is not appended to B's list
    const again = requests.start()
    expect(newestOfB()).toBe(false)
    expect(again()).toBe(true)
  })

  it('keeps the lists apart: an older page of one filter never joins another', async () => {
    const requests = latestRequest()
    let shown: string[] = []
    const answers: Record<string, (page: string[]) => void> = {}
    const load = async (key: string, append: boolean) => {
      const current = requests.start()
      const page = await new Promise<string[]>((resolve) => (answers[key] = resolve))
      if (!current()) return
      shown = append ? [...shown, ...page] : page
    }
    const a = load('A older', true)
    const b = load('B newest', false)
    answers['B newest'](['b1', 'b2'])
    await b
    answers['A older'](['a101'])
    await a
    expect(shown).toEqual(['b1', 'b2'])
  })
})

describe('token expiry', () => {
  it('says in how many days a token expires when within the week', () => {
    expect(expiryNote({ expired: false, expires_soon: true, expires_in_days: 3 })).toBe('expires in 3 days')
    expect(expiryNote({ expired: false, expires_soon: true, expires_in_days: 1 })).toBe('expires in 1 day')
    expect(expiryNote({ expired: false, expires_soon: true, expires_in_days: 0 })).toBe('expires within a day')
    expect(expiryNote({ expired: false, expires_soon: false, expires_in_days: 40 })).toBeNull()
    expect(expiryNote({ expired: true, expires_soon: false, expires_in_days: 0 })).toBe('expired: make a new token')
  })

  it('shows it next to the date in the list', () => {
    const html = renderToStaticMarkup(
      createElement(TokenExpiry, {
        token: { expires_at: '2026-12-10T00:00:00+00:00', expired: false, expires_soon: true, expires_in_days: 2 },
      }),
    )
    expect(html).toContain('(expires in 2 days)')
  })
})

describe('form errors tied to their fields', () => {
  it('puts the password refusals on the password, the others on the user name', () => {
    expect(userErrorField('this password is too easy to guess (this is similar to a commonly used password)')).toBe('password')
    expect(userErrorField('a password is 10-200 characters long (this one has 5)')).toBe('password')
    expect(userErrorField('The password may not be the user name (ignoring case)')).toBe('password')
    expect(userErrorField("A user named 'password1' exists already", 409)).toBe('username')
    expect(userErrorField('the user name may not contain a space')).toBe('username')
  })

  it('puts a refusal of the lifetime on the days field', () => {
    expect(tokenErrorField('an API token works for 1 to 365 days (got 400)')).toBe('days')
    expect(tokenErrorField('the name must be one line of text')).toBe('name')
  })

  it('marks only refusals of what was typed as invalid, described by the message', () => {
    expect(refusedInput(new ApiError(422, 'too easy to guess'))).toBe(true)
    expect(refusedInput(new ApiError(503, 'busy'))).toBe(false)
    expect(fieldErrorProps('u-error', true)).toEqual({ 'aria-invalid': true, 'aria-describedby': 'u-error' })
  })
})
