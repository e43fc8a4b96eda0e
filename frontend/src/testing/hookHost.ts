/**
 * A one-component React host for tests without a DOM (no jsdom, no testing library). Test-only:
 * imported by test files alone, so it never reaches the production bundle.
 *
 * It keeps React's contract for the hooks it fakes: state kept between renders, an update to a
 * component that is gone ignored, effects run after a render when their deps changed (the old
 * one's cleanup first), every cleanup run at unmount, and (`strict`) strict mode's mount,
 * unmount, mount again. `useContext` gives the value a test set in `contexts`, else the
 * context's default.
 *
 * Use one host per test file, made before the modules under test import React:
 *
 *     const host = await vi.hoisted(async () => (await import('./testing/hookHost.ts')).createHookHost())
 *     vi.mock('react', async (original) => ({ ...(await original<typeof import('react')>()), ...host.hooks }))
 */

type Deps = readonly unknown[] | undefined
type Cleanup = void | (() => void)

interface Effect {
  run: () => Cleanup
  cleanup?: Cleanup
  deps: Deps
  due: boolean
}

/** A mounted component: `first` is what its first render returned. */
export interface Mounted<T> {
  first: T
  /** Render it again with its latest state (and run the effects that are due). */
  result: () => T
  /** Unmount it: every effect's cleanup runs, later state updates are ignored. */
  unmount: () => void
}

export interface HookHost {
  /** The hooks to put in place of React's (spread over the real module in `vi.mock('react', …)`). */
  hooks: {
    useState<T>(init: T | (() => T)): [T, (v: T | ((old: T) => T)) => void]
    useRef<T>(current: T): { current: T }
    useId(): string
    useCallback<F>(fn: F, deps: Deps): F
    useEffect(run: () => Cleanup, deps: Deps): void
    useContext(context: { _currentValue: unknown }): unknown
  }
  /** The value a context gives, where the test sets one (else its default). */
  contexts: Map<unknown, unknown>
  /** Mount the component `render` calls (the previous one's state is dropped). */
  mount<T>(render: () => T, strict?: boolean): Mounted<T>
}

const changed = (a: Deps, b: Deps) => !a || !b || a.length !== b.length || a.some((x, i) => !Object.is(x, b[i]))

/** A new host, with its own hook state. */
export function createHookHost(): HookHost {
  let slots: unknown[] = []
  let cursor = 0
  let mounted = false
  let nextId = 0
  const contexts = new Map<unknown, unknown>()

  function slot<T>(make: () => T): T {
    const i = cursor++
    if (!(i in slots)) slots[i] = make()
    return slots[i] as T
  }
  const effects = () => slots.filter((s): s is Effect => typeof s === 'object' && s !== null && 'due' in s)
  function runEffects() {
    for (const e of effects().filter((e) => e.due)) {
      if (e.cleanup) e.cleanup()
      e.cleanup = e.run()
      e.due = false
    }
  }

  const hooks: HookHost['hooks'] = {
    useState<T>(init: T | (() => T)): [T, (v: T | ((old: T) => T)) => void] {
      const i = cursor
      const value = slot(() => (typeof init === 'function' ? (init as () => T)() : init))
      const set = (v: T | ((old: T) => T)) => {
        if (mounted) slots[i] = typeof v === 'function' ? (v as (old: T) => T)(slots[i] as T) : v
      }
      return [value, set]
    },
    useRef: <T>(current: T) => slot(() => ({ current })),
    useId: () => slot(() => `:r${nextId++}:`),
    useCallback<F>(fn: F, deps: Deps): F {
      const memo = slot(() => ({ fn, deps }))
      if (changed(memo.deps, deps)) Object.assign(memo, { fn, deps })
      return memo.fn
    },
    useEffect(run: () => Cleanup, deps: Deps) {
      const e = slot<Effect>(() => ({ run, deps, due: true }))
      if (changed(e.deps, deps)) Object.assign(e, { run, deps, due: true })
    },
    useContext: (context) => (contexts.has(context) ? contexts.get(context) : context._currentValue),
  }

  function mount<T>(render: () => T, strict = false): Mounted<T> {
    slots = []
    mounted = true
    const once = () => {
      cursor = 0
      const out = render()
      runEffects()
      return out
    }
    const first = once()
    if (strict) {
      for (const e of effects()) {
        if (e.cleanup) e.cleanup()
        e.due = true
      }
      runEffects()
    }
    return {
      first,
      result: once,
      unmount() {
        mounted = false
        for (const e of effects()) if (e.cleanup) e.cleanup()
      },
    }
  }

  return { hooks, contexts, mount }
}
