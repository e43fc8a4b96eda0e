import { useLayoutEffect, useRef, useState, type ReactNode } from 'react'

/** How a table's box is shown to the keyboard: not at all while the table fits, or as a named
 *  region in the tab order while it scrolls sideways. */
interface Scroll {
  scrolls: boolean
  name: string
}

const FITS: Scroll = { scrolls: false, name: '' }

function measure(box: HTMLElement): Scroll {
  if (box.scrollWidth <= box.clientWidth) return FITS
  const caption = box.querySelector('caption')?.textContent?.trim()
  return { scrolls: true, name: `${caption || 'Table'} (scrolls sideways)` }
}

/** The visible cue above a table that does not fit its box (its hidden columns are otherwise
 *  easy to miss on a phone); screen readers have the box's name, which says the same. */
export const SCROLL_CUE = 'Scroll the table sideways to see all its columns →'

/** The box around a wide table (class `table-wrap`: scrolls sideways on a narrow screen). While
 *  the table does not fit, the box can be reached with Tab and scrolled with the arrow keys
 *  (WCAG 2.1.1; axe's `scrollable-region-focusable`), is a region named after the table's
 *  caption, and a line above it says that it scrolls; while it fits it adds no tab stop. */
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
