// Gate v2's measured figures from the card (gate.v2_evaluation): false accepts per held-out kind of
// non-dermoscopic image, false rejects of dermoscopic test images per source, gate v1 alongside.

import { TableWrap } from './TableWrap.tsx'

type Rec = Record<string, unknown>

function rec(v: unknown): Rec | null {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Rec) : null
}

interface Rate {
  n: number
  k: number
  rate: number | null
}

function rate(v: unknown): Rate | null {
  const r = rec(v)
  if (!r || typeof r.n !== 'number' || typeof r.k !== 'number') return null
  return { n: r.n, k: r.k, rate: typeof r.rate === 'number' ? r.rate : null }
}

function show(r: Rate | null): string {
  if (!r || r.rate === null) return '—'
  return `${(100 * r.rate).toFixed(1)} % (${r.k}/${r.n})`
}

const LABELS: Record<string, string> = {
  natural_photo: 'natural photos (animals, food, objects, scenes, wallpapers)',
  people: 'photos of people',
  graphics: 'graphics, logos, clip art',
  documents: 'text pages, tables, screenshots',
  charts: 'charts',
  synthetic: 'noise, gradients, blank, drawn scenes',
  medical_other: 'other medical images (X-ray/CT-like, histology, retina, endoscopy-like)',
  skin_texture: 'skin texture without a lesion (drawn)',
  recoloured: 'dermoscopic images recoloured (sepia, tinted black and white, swapped channels, negative)',
  clinical_skin_proxy: 'clinical skin photos (SIMULATED proxy)',
}

export function GateV2Figures({ gate }: { gate: Rec }) {
  const ev = rec(gate.v2_evaluation)
  if (!ev) return null
  const held = rec(ev.held_out_false_accept) ?? {}
  const seen = rec(ev.new_pictures_false_accept) ?? {}
  const hasSeen = Object.keys(seen).length > 0
  const v1fa = rec(ev.v1_false_accept) ?? {}
  const negs = rec(ev.negatives) ?? {}
  const fr = rec(ev.false_reject_test) ?? {}
  const v1fr = rec(ev.v1_false_reject_test) ?? {}
  const unseen = rec(ev.unseen_source_false_reject) ?? {}
  const clin = rec(ev.clinical_proxy_fresh)
  return (
    <div data-testid="gate-v2">
      <h3 className="sub-title">Gate v2: how well it worked</h3>
      {typeof gate.v2_fit === 'string' && <p className="muted">{gate.v2_fit}.</p>}
      <p>
        Non-dermoscopic images let through, per kind of image, with the gate refitted <em>without</em> that kind (so
        each figure is for images of a kind the gate never saw), and for new pictures of kinds it has seen (fitted
        without those pictures). Gate v1 (kNN score only) alongside.
      </p>
      <TableWrap>
        <table className="data-table" data-testid="gate-v2-categories">
          <caption className="visually-hidden">Non-dermoscopic images let through by the gate, per kind of image</caption>
          <thead>
            <tr>
              <th scope="col" className="wrap-head">kind of image (held out)</th>
              <th scope="col" className="wrap-head">images (distinct sources)</th>
              <th scope="col" className="wrap-head">let through, gate v2 (kind held out)</th>
              {hasSeen && <th scope="col" className="wrap-head">let through, gate v2 (new pictures of a kind it has seen)</th>}
              <th scope="col" className="wrap-head">let through, gate v1</th>
            </tr>
          </thead>
          <tbody>
            {Object.keys(held).map((c) => {
              const n = rec(negs[c])
              return (
                <tr key={c} data-category={c}>
                  <th scope="row">{LABELS[c] ?? c}</th>
                  <td>
                    {typeof n?.images === 'number' ? n.images : '—'}
                    {typeof n?.distinct_sources === 'number' ? ` (${n.distinct_sources})` : ''}
                  </td>
                  <td>{show(rate(rec(held[c])?.false_accept))}</td>
                  {hasSeen && <td>{show(rate(rec(seen[c])?.false_accept))}</td>}
                  <td>{show(rate(v1fa[c]))}</td>
                </tr>
              )
            })}
          </tbody>
        </table>
      </TableWrap>
      <p>
        Dermoscopic TEST images wrongly refused, per source (and with the gate refitted without that source: how it
        treats a dermatoscope or clinic it has never seen):
      </p>
      <TableWrap>
        <table className="data-table" data-testid="gate-v2-sources">
          <caption className="visually-hidden">Dermoscopic test images wrongly refused by the gate, per source</caption>
          <thead>
            <tr>
              <th scope="col" className="wrap-head">source</th>
              <th scope="col" className="wrap-head">refused, gate v2</th>
              <th scope="col" className="wrap-head">refused, gate v2 refitted without this source</th>
              <th scope="col" className="wrap-head">refused, gate v1</th>
            </tr>
          </thead>
          <tbody>
            {Object.keys(fr).map((s) => (
              <tr key={s}>
                <th scope="row">{s}</th>
                <td>{show(rate(fr[s]))}</td>
                <td>{show(rate(unseen[s]))}</td>
                <td>{show(rate(v1fr[s]))}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </TableWrap>
      {clin && (
        <p>
          Simulated clinical skin photos made from test images (not used to fit): refused {show(rate(clin.blocked))},
          flagged “not a dermoscopic image — accuracy unknown” {show(rate(clin.flagged))}, neither{' '}
          {show(rate(clin.neither))}.
        </p>
      )}
      <p className="hint">
        The non-dermoscopic images were all made offline (package sample photos, Debian wallpapers and clip art, and
        generated images); the clinical skin photos are a drawn/zoomed-out proxy, not real clinical photos. Real photos
        from the wild can be missed at higher rates than these.
      </p>
    </div>
  )
}
