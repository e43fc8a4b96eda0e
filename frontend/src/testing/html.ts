/**
 * Test-only: the text a user reads in server-rendered markup (`renderToStaticMarkup`): tags
 * dropped (as spaces), the entities React writes decoded, no-break spaces as spaces, runs of
 * white space as one space.
 */
export function visibleText(html: string): string {
  return html
    .replace(/<[^>]+>/g, ' ')
    .replace(/&#x27;/g, "'")
    .replace(/&quot;/g, '"')
    .replace(/&amp;/g, '&')
    .replace(/\u00a0/g, ' ')
    .replace(/\s+/g, ' ')
    .trim()
}
