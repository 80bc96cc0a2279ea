/**
 * A `ClientStore` in a folder of JSON files, for Node (the same layout as the Python CLI's
 * profile folder, `~/.ecrin` or `ECRIN_HOME`): the folder is 0700, every file 0600 from its
 * first byte, and every write atomic (a temporary file renamed over the old one). The store
 * never receives a passphrase, a recovery key or an unwrapped key.
 *
 * Node only: the browser entry point does not import this module.
 */

import { randomBytes } from "node:crypto";
import { chmod, mkdir, open, readFile, rename, rm } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";

import { InvalidInput } from "./errors.ts";
import type { ClientStore } from "./state.ts";

const DIR_MODE = 0o700;
const FILE_MODE = 0o600;

export class NodeFileStore implements ClientStore {
  readonly home: string;

  constructor(home: string) {
    this.home = home;
  }

  static fromEnv(): NodeFileStore {
    return new NodeFileStore(process.env.ECRIN_HOME || join(homedir(), ".ecrin"));
  }

  private path(name: string): string {
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) throw new InvalidInput(`not a profile document name: ${name}`);
    return join(this.home, name);
  }

  async read(name: string): Promise<unknown> {
    const path = this.path(name);
    let text: string;
    try {
      text = await readFile(path, "utf-8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw new InvalidInput(`${path} is unreadable (${(error as NodeJS.ErrnoException).code ?? "error"})`);
    }
    try {
      return JSON.parse(text);
    } catch {
      throw new InvalidInput(`${path} is unreadable (not JSON)`);
    }
  }

  async write(name: string, value: unknown): Promise<void> {
    const path = this.path(name);
    await mkdir(this.home, { recursive: true, mode: DIR_MODE });
    await chmod(this.home, DIR_MODE);
    const tmp = join(this.home, `.${name}.${randomBytes(4).toString("hex")}.tmp`);
    const handle = await open(tmp, "wx", FILE_MODE);
    try {
      await handle.writeFile(JSON.stringify(value, null, 2), "utf-8");
      await handle.sync();
      await handle.close();
      await chmod(tmp, FILE_MODE);
      await rename(tmp, path);
    } catch (error) {
      await handle.close().catch(() => undefined);
      await rm(tmp, { force: true });
      throw error;
    }
  }

  async remove(name: string): Promise<void> {
    await rm(this.path(name), { force: true });
  }
}
