import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { ApiError, TIMED_OUT, UNREACHABLE } from './api.ts'
import { HEALTH_MIN_GAP_MS, HEALTH_POLL_MS, NO_HEALTH, Poller, healthStatusText } from './health.ts'

describe('healthStatusText', () => {
  const up = { status: 'ok', model: { name: 'dermsight-effnet', version: '2.31' } }

  it('says what the last check found', () => {
    expect(healthStatusText(NO_HEALTH)).toBe('checking…')
    expect(healthStatusText({ data: up, error: null, loading: false })).toBe('ok · model dermsight-effnet 2.31')
    expect(healthStatusText({ data: null, error: new ApiError(401, 'x'), loading: false })).toBe('needs an API token')
    expect(healthStatusText({ data: null, error: new ApiError(500, 'boom'), loading: false })).toBe('error (boom)')
  })

  it('a failed check says "not reachable", also after the server had answered', () => {
    for (const error of [new ApiError(0, UNREACHABLE), new ApiError(0, TIMED_OUT), new ApiError(502, 'bad gateway'), new ApiError(504, 'x'), new TypeError('x')]) {
      expect(healthStatusText({ data: up, error, loading: false })).toBe('not reachable')
    }
  })
})

describe('Poller', () => {
  let visible = true
  let now = 0
  let pending: (() => void)[] = []
  const check = vi.fn(() => new Promise<void>((resolve) => pending.push(resolve)))
  const answer = async () => {
    pending.splice(0).forEach((r) => r())
    await Promise.resolve()
    await Promise.resolve()
  }

  beforeEach(() => {
    vi.useFakeTimers()
    visible = true
    now = 0
    pending = []
    check.mockClear()
  })
  afterEach(() => vi.useRealTimers())

  const make = () => new Poller({ check, visible: () => visible, now: () => now })

  it('checks at start and every interval while visible, never two at once', async () => {
    const p = make()
    p.start()
    expect(check).toHaveBeenCalledTimes(1)
    now += HEALTH_POLL_MS
    vi.advanceTimersByTime(HEALTH_POLL_MS) // the first has not answered: no second request
    expect(check).toHaveBeenCalledTimes(1)
    await answer()
    now += HEALTH_POLL_MS
    vi.advanceTimersByTime(HEALTH_POLL_MS)
    expect(check).toHaveBeenCalledTimes(2)
    await answer()
    visible = false // a hidden tab does not poll
    now += 3 * HEALTH_POLL_MS
    vi.advanceTimersByTime(3 * HEALTH_POLL_MS)
    expect(check).toHaveBeenCalledTimes(2)
    p.stop()
    visible = true
    vi.advanceTimersByTime(3 * HEALTH_POLL_MS)
    expect(check).toHaveBeenCalledTimes(2)
  })

  it('checks again when the window comes back, unless it just did', async () => {
    const p = make()
    p.start()
    await answer()
    now += HEALTH_MIN_GAP_MS - 1
    p.poke() // focus and visibilitychange fire together: one request
    expect(check).toHaveBeenCalledTimes(1)
    now += 1
    p.poke()
    expect(check).toHaveBeenCalledTimes(2)
    now += HEALTH_MIN_GAP_MS
    p.poke() // still waiting for the answer
    expect(check).toHaveBeenCalledTimes(2)
    await answer()
    visible = false
    now += HEALTH_MIN_GAP_MS
    p.poke()
    expect(check).toHaveBeenCalledTimes(2)
    p.stop()
  })
})
