import { defineConfig } from 'vite'

// The server serves dist/ at `/` and answers index.html for the client's own routes, so
// every asset URL is absolute. Hashed names under /assets/ are cached for good.
export default defineConfig({
  base: '/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    chunkSizeWarningLimit: 4096,
    sourcemap: false
  },
  server: {
    proxy: {
      '/api': 'http://127.0.0.1:8080',
      '/ws': { target: 'ws://127.0.0.1:8080', ws: true }
    }
  }
})
