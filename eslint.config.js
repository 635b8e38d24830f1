// Lint: typescript-eslint's type-aware recommended rules for the packages and tests.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import globals from 'globals';

export default tseslint.config(
  { ignores: ['**/dist/**', '**/node_modules/**', 'bench/results/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { ...globals.node } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-restricted-imports': 'off',
      eqeqeq: ['error', 'always'],
    },
  },
  {
    // Protocol primitives never reach for HTTP: they take bytes, strings and certificates.
    files: ['packages/core/src/proof/**', 'packages/core/src/errors.ts', 'packages/core/src/encoding.ts', 'packages/core/src/cnf.ts', 'packages/core/src/exporter.ts', 'packages/core/src/challenge.ts'],
    rules: {
      'no-restricted-imports': ['error', { paths: ['node:http', 'node:https', 'node:http2', 'http', 'https', 'http2'] }],
    },
  },
);
