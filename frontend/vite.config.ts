import react from '@vitejs/plugin-react'
import { defineConfig } from 'vite'

// The production build is served by FastAPI (dermsight.web) at "/", with hashed files under
// "/assets/". It is committed, and CI rebuilds it and checks `git diff --exit-code` against
// src/dermsight/web/static, so the output must be deterministic: content hashes only, no
// timestamps, no source maps, no absolute paths.
const api = { '/api': { target: 'http://127.0.0.1:8000', changeOrigin: false } }

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
