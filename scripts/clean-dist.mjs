#!/usr/bin/env node
// Remove build output: dist/ and the build info of each package directory given (default: the current one, as
// `prepack` runs it), so a build starts clean and a tarball never carries files of sources that no longer exist.
// The build info goes too, otherwise `tsc -b` would think the deleted output is up to date.
import { rmSync } from 'node:fs';
import { join } from 'node:path';

const dirs = process.argv.length > 2 ? process.argv.slice(2) : ['.'];
for (const dir of dirs) for (const path of ['dist', 'tsconfig.tsbuildinfo']) rmSync(join(dir, path), { recursive: true, force: true });
