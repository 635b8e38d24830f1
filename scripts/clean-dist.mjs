#!/usr/bin/env node
// prepack: build the package from a clean dist/, so a tarball never carries files of sources that no longer exist.
// The build info goes too, otherwise `tsc -b` would think the deleted output is up to date.
import { rmSync } from 'node:fs';

for (const path of ['dist', 'tsconfig.tsbuildinfo']) rmSync(path, { recursive: true, force: true });
