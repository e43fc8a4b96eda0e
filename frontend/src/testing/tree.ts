/**
 * Test-only: reading the element tree a component returns when it runs in the one-component host
 * (./hookHost.ts), with no DOM. Child components stay unrendered elements: their props are read.
 */

import type { ReactElement } from 'react'

/** An element's props (`children` among them, of any shape). */
export type Props = Record<string, unknown> & { children?: unknown }
/** A React element of the rendered tree. */
export type El = ReactElement<Props>
/** An element found in the tree, with the elements it is inside (outermost first). */
export interface Hit {
  el: El
  above: El[]
}

/** Whether `x` is a React element. */
export const isElement = (x: unknown): x is El => typeof x === 'object' && x !== null && 'props' in x && '$$typeof' in x

/** The elements of `tree` depth first, each with the elements it is inside (outermost first). */
export function* walk(node: unknown, above: El[] = []): Generator<Hit> {
  if (Array.isArray(node)) {
    for (const n of node) yield* walk(n, above)
  } else if (isElement(node)) {
    yield { el: node, above }
    yield* walk(node.props.children, [...above, node])
  }
}

/** The (first) element with data-testid (or a component's testId, as ErrorBox's) `id`; throws when
 * there is none. */
export function byTestId(tree: unknown, id: string): Hit {
  for (const hit of walk(tree)) if (hit.el.props['data-testid'] === id || hit.el.props.testId === id) return hit
  throw new Error(`no element with test id ${id}`)
}

/**
 * Whether `tree` holds an element with test id `id`: data-testid or a component's testId, as
 * byTestId finds it; with `domOnly`, data-testid alone (a component given a testId, as an
 * <ErrorBox> with no error, may be in the tree and show nothing).
 */
export function has(tree: unknown, id: string, { domOnly = false }: { domOnly?: boolean } = {}): boolean {
  return [...walk(tree)].some(({ el }) => el.props['data-testid'] === id || (!domOnly && el.props.testId === id))
}

/** The text inside a node (its strings and numbers, joined). */
export function text(node: unknown): string {
  if (Array.isArray(node)) return node.map(text).join('')
  if (typeof node === 'string' || typeof node === 'number') return String(node)
  return isElement(node) ? text(node.props.children) : ''
}
