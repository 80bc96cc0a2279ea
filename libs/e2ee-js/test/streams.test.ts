/** Streaming record encryption and decryption under Node's test runner. */

import { test } from "node:test";
import { cases } from "./stream_cases.ts";

for (const [name, run] of cases) test(name, run);
