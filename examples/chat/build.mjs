// Bundles src/app.js (the page's code and @azure/web-pubsub-client) into public/app.js with
// esbuild, pinned exactly in package.json so that the same inputs give the same bytes: the
// bundle is checked in, and test/browser/examples-chat.test.mjs rebuilds it in memory and
// compares. `make examples` (or `npm run build` here) writes it.
import { build } from "esbuild";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const OUTPUT = path.join(HERE, "public", "app.js");

/** The bundle's bytes, built in memory. */
export async function bundle() {
  const result = await build({
    absWorkingDir: HERE,
    entryPoints: ["src/app.js"],
    bundle: true,
    write: false,
    platform: "browser",
    format: "iife",
    target: "es2022",
    minify: true,
    legalComments: "eof",
    charset: "utf8",
    logLevel: "warning",
    outfile: OUTPUT,
  });
  return Buffer.from(result.outputFiles[0].contents);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const bytes = await bundle();
  writeFileSync(OUTPUT, bytes);
  console.log(`wrote ${path.relative(process.cwd(), OUTPUT)} (${bytes.length} bytes)`);
}
