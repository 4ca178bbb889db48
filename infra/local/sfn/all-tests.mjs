// Entry point for `node --test infra/local/sfn/`. Node 22 hands a folder given to --test to the
// module loader as a single file, which resolves it through package.json "main" to this file:
// it imports every *.test.mjs beside it, so their tests run in this one test process.
// (`node --test` run inside this folder, or `npm test`, finds the *.test.mjs files itself.)
import { readdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
for (const f of readdirSync(here).filter((n) => n.endsWith('.test.mjs')).sort()) {
  await import(pathToFileURL(`${here}/${f}`).href);
}
