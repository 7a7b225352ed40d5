// Builds the web app into the Python package, so `pip install` ships it without Node.
import { defineConfig } from "vite";
import { fileURLToPath } from "node:url";

const outDir = fileURLToPath(new URL("../src/qoima/web/static/dist", import.meta.url));

export default defineConfig({
  base: "/static/dist/",
  build: {
    outDir,
    emptyOutDir: true,
    target: "es2020",
    sourcemap: false,
    rollupOptions: {
      input: fileURLToPath(new URL("./src/main.js", import.meta.url)),
      output: {
        // Fixed names: the committed bundle diffs cleanly and index.html needs no manifest.
        entryFileNames: "app.js",
        chunkFileNames: "[name].js",
        assetFileNames: "app[extname]",
      },
    },
  },
  server: { proxy: { "/api": "http://127.0.0.1:8080", "/dicomweb": "http://127.0.0.1:8080" } },
});
