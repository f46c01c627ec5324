// Builds a JavaScript keyhost policy into a component with componentize-js:
//
//     node build.mjs POLICY.js WIT_DIR OUT.wasm
//
// The world is `policy`. Every optional feature of the engine (stdio,
// random, clocks, http, fetch-event) is disabled: a policy needs none of
// them, and keyhost links no wasi:http, so a component that imports one is
// refused at load. Node must find @bytecodealliance/componentize-js and
// @bytecodealliance/preview2-shim from where this script runs.
import { writeFile } from "node:fs/promises";
import { resolve } from "node:path";
import { componentize } from "@bytecodealliance/componentize-js";
import { _setPreopens } from "@bytecodealliance/preview2-shim/filesystem";

if (process.argv.length !== 5) {
  console.error("usage: node build.mjs POLICY.js WIT_DIR OUT.wasm");
  process.exit(2);
}
const [sourcePath, witPath, out] = process.argv.slice(2).map((path) => resolve(path));
// componentize-js reads the WIT through the WASI shim, which preopens
// nothing since preview2-shim 0.26: let it see the WIT folder.
_setPreopens({ [witPath]: witPath });
const { component } = await componentize({
  sourcePath,
  witPath,
  worldName: "policy",
  disableFeatures: ["stdio", "random", "clocks", "http", "fetch-event"],
});
await writeFile(out, component);
