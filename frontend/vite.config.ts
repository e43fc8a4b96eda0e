import react from '@vitejs/plugin-react'
import { defineConfig } from 'vite'

// The production build is served by FastAPI (dermsight.web) at "/", with hashed files under
// "/assets/". It is committed, and CI (`make check-frontend`) rebuilds it and refuses any
// change under src/dermsight/web/static (`git status --porcelain`: also a new file), so the
// output must be deterministic: content hashes only, no timestamps, no source maps, no absolute
// paths. `npm run build` then records the sources' fingerprint (tools/ui_source_hash.py), which
// the fast tests check.
// `npm run dev` proxies /api to `dermsight serve` at DERMSIGHT_API (default
// http://127.0.0.1:8000, `make serve`'s address).
const api = { '/api': { target: process.env.DERMSIGHT_API ?? 'http://127.0.0.1:8000', changeOrigin: false } }

export default defineConfig({
  base: '/',
  plugins: [react()],
  publicDir: false,
  build: {
    outDir: '../src/dermsight/web/static',
    emptyOutDir: true,
    assetsDir: 'assets',
    sourcemap: false,
    target: 'es2022',
    // Keep every asset a file under /assets (no data: URLs needed by the CSP).
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    reportCompressedSize: false,
  },
  server: { proxy: api },
  preview: { proxy: api },
})
