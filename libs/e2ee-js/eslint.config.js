// ESLint (flat config) for the protocol library and SDK: `npm run lint -w libs/e2ee-js`,
// part of `make lint`, zero warnings. typescript-eslint's recommended rules, plus the
// type-aware ones that catch what tsc does not: a promise nobody awaits (an error lost, a
// check that never stops anything) or handed where a plain callback is expected.
import js from "@eslint/js";
import { defineConfig } from "eslint/config";
import tseslint from "typescript-eslint";

export default defineConfig(
  // api.d.ts is generated from the OpenAPI documents (scripts/gen_api.py).
  { ignores: ["src/client/api.d.ts"] },
  js.configs.recommended,
  tseslint.configs.recommended,
  {
    languageOptions: {
      parserOptions: { project: ["./tsconfig.json"], tsconfigRootDir: import.meta.dirname },
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
    // Tests build fakes of the client and read JSON test vectors: `any` is fine there.
    files: ["test/**"],
    rules: { "@typescript-eslint/no-explicit-any": "off" },
  },
  {
    // Plain JavaScript (this file): no type information.
    files: ["**/*.js"],
    ...tseslint.configs.disableTypeChecked,
  },
);
