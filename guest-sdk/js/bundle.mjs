// Bundles a JavaScript or TypeScript handler, with its npm packages, into one ES module
// for componentize-js: what `sluice build` runs (node bundle.mjs ENTRY OUTFILE).
//
// - `./sluice.js` and `./state.js` resolve to this SDK's files when the project has no
//   file of that name (so a project needs no copy of the SDK);
// - `sluice:*` and `wasi:*` imports stay imports (the component's WIT imports);
// - a source map is written beside OUTFILE (OUTFILE.map), its sources relative to the
//   current directory (the project), for `sluice build` to put in the component: the
//   daemon maps a thrown error's stack back to the project's source lines;
// - stdout is one JSON object: the bundle's exports and its WIT imports (from esbuild's
//   metafile: https://esbuild.github.io/api/#metafile).
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { basename, dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const [entry, outfile] = process.argv.slice(2);
if (!entry || !outfile) {
  console.error("usage: node bundle.mjs ENTRY OUTFILE");
  process.exit(2);
}
const sdk = dirname(fileURLToPath(import.meta.url));

const sdkFiles = {
  name: "sluice-sdk",
  setup(build) {
    build.onResolve({ filter: /^\.\/(sluice|state)\.js$/ }, (args) => {
      if (existsSync(join(args.resolveDir, args.path))) return undefined;
      return { path: join(sdk, basename(args.path)) };
    });
  },
};

let result;
try {
  result = await esbuild.build({
    entryPoints: [entry],
    bundle: true,
    format: "esm",
    platform: "neutral",
    mainFields: ["module", "main"],
    external: ["sluice:*", "wasi:*"],
    outfile,
    sourcemap: "external",
    sourcesContent: false,
    metafile: true,
    logLevel: "silent",
    plugins: [sdkFiles],
  });
} catch (error) {
  // esbuild's own messages name the file, line and what is wrong.
  const messages = await esbuild.formatMessages(error.errors ?? [], { kind: "error" });
  console.error(messages.join("") || String(error));
  process.exit(1);
}
// esbuild names sources relative to the map; name them relative to the project.
const mapFile = `${outfile}.map`;
const map = JSON.parse(readFileSync(mapFile, "utf8"));
map.sources = map.sources.map((source) => relative(".", resolve(dirname(mapFile), source)));
writeFileSync(mapFile, JSON.stringify(map));

const out = Object.entries(result.metafile.outputs).find(
  ([path]) => resolve(path) === resolve(outfile),
)?.[1];
console.log(
  JSON.stringify({
    exports: out?.exports ?? [],
    imports: (out?.imports ?? []).filter((i) => i.external).map((i) => i.path),
  }),
);
