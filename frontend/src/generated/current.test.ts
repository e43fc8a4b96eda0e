// The committed card.ts must be what `npm run gen:types` makes of the committed card.schema.json
// (which tests/test_bundle.py keeps equal to the Python card model).
import { compile } from 'json-schema-to-typescript'
import { expect, it } from 'vitest'
import cardTs from './card.ts?raw'
import schema from './card.schema.json'

it('card.ts is generated from card.schema.json (run npm run gen:types)', async () => {
  const ts = await compile(schema as unknown as Parameters<typeof compile>[0], 'ModelCard', { unknownAny: true })
  expect(cardTs).toBe(ts)
})
