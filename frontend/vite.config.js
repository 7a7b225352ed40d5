// Builds the web app into the Python package, so `pip install` ships it without Node.
import { defineConfig } from "vite";
import { fileURLToPath } from "node:url";

const outDir = fileURLToPath(new URL("../src/qoima/web/static/dist", import.meta.url));

// Cornerstone tools start a 3 MB worker for segmentation statistics, which we do not use.
const withoutComputeWorker = {
  name: "qoima-without-compute-worker",
  enforce: "pre",
  resolveId(source) {
    return source.endsWith("/registerComputeWorker.js") ? "\0qoima-compute-worker-stub" : null;
  },
  load(id) {
    return id === "\0qoima-compute-worker-stub" ? "export function registerComputeWorker() {}" : null;
  },
};

export default defineConfig({
  base: "/static/dist/",
  plugins: [withoutComputeWorker],
  build: {
    outDir,
    emptyOutDir: true,
    target: "es2022",
    chunkSizeWarningLimit: 4096,
    sourcemap: false,
    rollupOptions: {
      input: fileURLToPath(new URL("./src/main.js", import.meta.url)),
      output: {
        // Fixed names: the committed bundle diffs cleanly and index.html needs no manifest.
        entryFileNames: "app.js",
        chunkFileNames: "[name].js",
        assetFileNames: (asset) => (asset.names?.[0]?.endsWith(".css") ? "app.css" : "[name][extname]"),
      },
    },
  },
  // Cornerstone's image decoders run in a module worker and load WebAssembly codecs.
  worker: {
    format: "es",
    rollupOptions: { output: { entryFileNames: "[name].js", chunkFileNames: "[name].js", assetFileNames: "[name][extname]" } },
  },
  resolve: {
    // vtk.js (under Cornerstone) imports xmlbuilder2, whose Node build breaks in a bundle.
    alias: { xmlbuilder2: fileURLToPath(new URL("./node_modules/xmlbuilder2/lib/xmlbuilder2.min.js", import.meta.url)) },
  },
  server: { proxy: { "/api": "http://127.0.0.1:8080", "/dicomweb": "http://127.0.0.1:8080" } },
});
