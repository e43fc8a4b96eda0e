/** A visit as the clinic API returns it, for the front end's unit tests (one fixture, not a copy
 * per test file). `over` replaces fields; `result` adds to the stored result. */
import type { Visit } from './types.ts'

export function makeVisit(
  id: number,
  taken_at: string,
  over: Partial<Visit> = {},
  result: Partial<Visit['result']> = {},
): Visit {
  return {
    id,
    lesion_id: 70,
    taken_at,
    created_at: `${taken_at}T10:00:00Z`,
    created_by: 'dr',
    age: 41,
    sex: 'female',
    site: 'posterior torso',
    note: null,
    result: { risk: 'low', malignant_probability: 0.1, flags: [], ...result } as unknown as Visit['result'],
    image_url: `/api/v1/visits/${id}/image`,
    heatmap_url: `/api/v1/visits/${id}/heatmap`,
    model: { name: 'm', version: '1' },
    ...over,
  }
}
