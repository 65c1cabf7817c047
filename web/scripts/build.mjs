// Builds dist/ for the gateway (gateway/web.py serves it):
//   confide-client.js  the SDK as one ES module (React is a peer: `import ... from "react"`)
//   vendor/react.js    React and ReactDOM's createRoot as one ES module, for the demo page
//   demo.js, index.html the demo page; an import map points "react" at vendor/react.js
// Everything comes from node_modules (npm ci from the lockfile): nothing is fetched later.
import { cp, mkdir, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = fileURLToPath(new URL("..", import.meta.url));
const dist = `${root}dist`;
const require = createRequire(import.meta.url);
const common = {
  bundle: true,
  format: "esm",
  target: "es2020",
  platform: "browser",
  legalComments: "none",
  logLevel: "warning",
  define: { "process.env.NODE_ENV": '"production"' },
};

await rm(dist, { recursive: true, force: true });
await mkdir(`${dist}/vendor`, { recursive: true });

await build({
  ...common,
  entryPoints: [`${root}src/index.ts`],
  outfile: `${dist}/confide-client.js`,
  external: ["react"],
});

// React is CommonJS: re-export its names explicitly from one module, with ReactDOM's.
const names = Object.keys(require("react")).filter((n) => /^[A-Za-z_$][\w$]*$/.test(n));
const reactEntry = [
  'import React from "react";',
  'import * as ReactDOMClient from "react-dom/client";',
  "export default React;",
  `export const { ${names.join(", ")} } = React;`,
  "export const { createRoot, hydrateRoot } = ReactDOMClient;",
].join("\n");
await build({
  ...common,
  stdin: { contents: reactEntry, resolveDir: root, sourcefile: "react-vendor.js" },
  outfile: `${dist}/vendor/react.js`,
  minify: true,
});

await build({
  ...common,
  entryPoints: [`${root}demo/main.tsx`],
  outfile: `${dist}/demo.js`,
  external: ["react", "react-dom/client", "confide-client"],
  jsx: "transform",
});
await cp(`${root}demo/index.html`, `${dist}/index.html`);
await writeFile(`${dist}/BUILT`, "built by web/scripts/build.mjs from package-lock.json\n");
console.log(`built ${dist}`);
