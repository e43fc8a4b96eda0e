import { useLayoutEffect, useRef, useState, type ReactNode } from 'react'

/** How a table's box is shown to the keyboard: not at all while the table fits, or as a named
 *  region in the tab order while it scrolls sideways. */
interface Scroll {
  scrolls: boolean
  name: string
}

const FITS: Scroll = { scrolls: false, name: '' }

/** The name of the table in `box`, as a screen reader gives it: its `aria-labelledby` (e.g. its
 * section's heading), else its `aria-label`, else its caption; '' when it has none. */
export function tableName(box: Pick<HTMLElement, 'querySelector' | 'ownerDocument'>): string {
  const table = box.querySelector('table')
  if (!table) return ''
  const labelledBy = table.getAttribute('aria-labelledby')
  if (labelledBy) {
    const doc = box.ownerDocument
    const text = labelledBy
      .split(/\s+/)
      .map((id) => doc?.getElementById(id)?.textContent?.trim() ?? '')
      .filter(Boolean)
      .join(' ')
    if (text) return text
  }
  const label = table.getAttribute('aria-label')?.trim()
  if (label) return label
  return table.querySelector('caption')?.textContent?.trim() ?? ''
}

/** The name of the box of a table that scrolls: the table's name and that it scrolls, so that
 * two such boxes on a page have different names (axe's `landmark-unique`). */
export function scrollRegionName(name: string): string {
  return `${name || 'Table'} (scrolls sideways)`
}

function measure(box: HTMLElement): Scroll {
  if (box.scrollWidth <= box.clientWidth) return FITS
  return { scrolls: true, name: scrollRegionName(tableName(box)) }
}

/** The visible cue above a table that does not fit its box (its hidden columns are otherwise
 *  easy to miss on a phone); screen readers have the box's name, which says the same. */
export const SCROLL_CUE = 'Scroll the table sideways to see all its columns →'

/** The box around a wide table (class `table-wrap`: scrolls sideways on a narrow screen). While
 *  the table does not fit, the box can be reached with Tab and scrolled with the arrow keys
 *  (WCAG 2.1.1; axe's `scrollable-region-focusable`), is a region named after the table's name
 *  (`tableName`: its caption, or the heading it is labelled by), and a line above it says that
 *  it scrolls; while it fits it adds no tab stop. */
export function TableWrap({ children }: { children: ReactNode }) {
  const ref = useRef<HTMLDivElement>(null)
  const [scroll, setScroll] = useState<Scroll>(FITS)
  // a layout effect: the box is measured and named before the browser paints the new table
  useLayoutEffect(() => {
    const box = ref.current
    if (!box) return
    const update = () =>
      setScroll((old) => {
        const now = measure(box)
        return now.scrolls === old.scrolls && now.name === old.name ? old : now
      })
    update()
    if (typeof ResizeObserver === 'undefined') return
    const observer = new ResizeObserver(update)
    observer.observe(box)
    for (const child of Array.from(box.children)) observer.observe(child)
    return () => observer.disconnect()
  }, [])
  return (
    <>
      {scroll.scrolls && (
        <p className="table-scroll-cue" aria-hidden="true" data-testid="table-scroll-cue">
          {SCROLL_CUE}
        </p>
      )}
      <div
        ref={ref}
        className="table-wrap"
        tabIndex={scroll.scrolls ? 0 : undefined}
        role={scroll.scrolls ? 'region' : undefined}
        aria-label={scroll.scrolls ? scroll.name : undefined}
      >
        {children}
      </div>
    </>
  )
}

/** The one row of a table with nothing to list (a header row alone reads as a table cut short). */
export function EmptyRow({ columns, text, testId }: { columns: number; text: string; testId?: string }) {
  return (
    <tr>
      <td colSpan={columns} className="muted" data-testid={testId}>
        {text}
      </td>
    </tr>
  )
}
