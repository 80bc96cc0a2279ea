/** The shared known-answer vectors, both directions, under Node's test runner. */

import { test } from "node:test";
import { cases } from "./vector_cases.ts";

for (const [name, run] of cases) test(name, run);
