// Where keyboard focus goes after a save that re-renders the page. Saving a visit or a diagnosis
// reloads the lesion and remounts the form, so the button that had focus is gone and focus would
// fall back to <body> (a screen reader hears nothing, a keyboard user starts again at the top).
// The saving form asks for focus on what it saved; the view that shows it takes it once shown.

const pending = new Map<string, string>()

/** Ask that the element shown for `kind` / `key` (e.g. 'visit' / '12') takes focus once rendered. */
export function requestFocus(kind: string, key: string): void {
  pending.set(kind, key)
}

/** Whether focus was asked for `kind` / `key`; the request is consumed when `take` is true. */
export function focusRequested(kind: string, key: string, take = true): boolean {
  if (pending.get(kind) !== key) return false
  if (take) pending.delete(kind)
  return true
}
