// ESLint (flat config) for the web app: `npm run lint -w web`,
// part of `make lint`, zero warnings. typescript-eslint's recommended rules, plus the
// type-aware ones that catch what tsc does not: a promise nobody awaits (an error lost, a
// check that never stops anything) or handed where a plain callback is expected.
import js from "@eslint/js";
import { defineConfig } from "eslint/config";
import tseslint from "typescript-eslint";

export default defineConfig(
  { ignores: ["dist/**"] },
  js.configs.recommended,
  tseslint.configs.recommended,
  {
    languageOptions: {
      parserOptions: { project: ["./tsconfig.json", "./tsconfig.worker.json"], tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // node:test's test() and describe() return promises the runner itself awaits.
      "@typescript-eslint/no-floating-promises": ["error", { allowForKnownSafeCalls: [
        { from: "package", package: "node:test", name: ["test", "it", "describe", "suite", "before", "after", "beforeEach", "afterEach"] },
      ] }],
      "@typescript-eslint/no-misused-promises": "error",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
    },
  },
  {
    // Plain JavaScript (this file): no type information.
    files: ["**/*.js"],
    ...tseslint.configs.disableTypeChecked,
  },
);
