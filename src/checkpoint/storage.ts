// Where checkpoints live: one interface, with the local file system (fs_storage.ts, Deno), the
// browser's origin-private file system (opfs_storage.ts) and memory (here, for tests) behind it.
// Paths are relative, "/"-separated, and never leave the storage's root.

import { CheckpointError } from "./errors.ts";
import { sha256 } from "./sha256.ts";

/** A file being written piece by piece; close() syncs it. */
export interface FileWriter {
  write(piece: ArrayBufferView): Promise<void>;
  close(): Promise<void>;
}

export interface CheckpointStorage {
  /**
   * Writes the file from its pieces, creating its folders and replacing any file of that name, and
   * syncs it; resolves with the SHA-256 (hex) of the bytes written, hashed as they go by.
   */
  write(path: string, pieces: readonly ArrayBufferView[]): Promise<string>;
  /** Opens the file for writing in pieces (folders created, any file of that name replaced). */
  create(path: string): Promise<FileWriter>;
  /** `length` bytes from `offset` (all of the rest by default); a missing file or a short read is a CheckpointError. */
  read(path: string, offset?: number, length?: number): Promise<Uint8Array>;
  /** The bytes of each [offset, length] range of one file, opening it once. */
  readRanges(path: string, ranges: readonly (readonly [number, number])[]): Promise<Uint8Array[]>;
  /** The file's size in bytes, or null when there is none. */
  size(path: string): Promise<number | null>;
  /** The names directly inside a folder (none when it does not exist). */
  list(folder: string): Promise<string[]>;
  /** Makes `from` the file `to` in one step where the store can (a rename), replacing it: the commit of a write. */
  replace(from: string, to: string): Promise<void>;
  /** Removes a file or a whole folder; nothing when it does not exist. */
  remove(path: string): Promise<void>;
}

/** Splits a relative path into its names, refusing any that would leave the root. */
export function pathParts(path: string): string[] {
  const parts = path.split("/").filter((part) => part !== "" && part !== ".");
  if (path.startsWith("/") || parts.some((part) => part === ".." || part.includes("\\"))) {
    throw new CheckpointError(`storage: the path "${path}" leaves the checkpoint folder`);
  }
  return parts;
}

/** Joins path pieces with "/". */
export function joinPath(...pieces: string[]): string {
  return pieces.filter((piece) => piece !== "").join("/");
}

/** A checkpoint store in this process's memory (tests, and pages that keep nothing). */
export class MemoryStorage implements CheckpointStorage {
  readonly files = new Map<string, Uint8Array>();

  async write(path: string, pieces: readonly ArrayBufferView[]): Promise<string> {
    const name = key(path);
    const total = pieces.reduce((sum, piece) => sum + piece.byteLength, 0);
    const bytes = new Uint8Array(total);
    let at = 0;
    for (const piece of pieces) {
      bytes.set(new Uint8Array(piece.buffer, piece.byteOffset, piece.byteLength), at);
      at += piece.byteLength;
    }
    this.files.set(name, bytes);
    return await sha256(bytes);
  }

  create(path: string): Promise<FileWriter> {
    return settle(() => {
      const pieces: Uint8Array[] = [];
      key(path);
      return {
        write: (piece) => {
          pieces.push(new Uint8Array(piece.buffer, piece.byteOffset, piece.byteLength).slice());
          return Promise.resolve();
        },
        close: async () => {
          await this.write(path, pieces);
        },
      };
    });
  }

  read(path: string, offset = 0, length?: number): Promise<Uint8Array> {
    return settle(() => {
      const bytes = this.files.get(key(path));
      if (!bytes) throw new CheckpointError(`${path}: no such file`);
      const end = length === undefined ? bytes.length : offset + length;
      if (offset < 0 || end > bytes.length) {
        throw new CheckpointError(`${path}: bytes [${offset}, ${end}) lie beyond its ${bytes.length} bytes`);
      }
      return bytes.slice(offset, end);
    });
  }

  async readRanges(path: string, ranges: readonly (readonly [number, number])[]): Promise<Uint8Array[]> {
    const out: Uint8Array[] = [];
    for (const [offset, length] of ranges) out.push(await this.read(path, offset, length));
    return out;
  }

  size(path: string): Promise<number | null> {
    return settle(() => this.files.get(key(path))?.length ?? null);
  }

  list(folder: string): Promise<string[]> {
    return settle(() => {
      const prefix = key(folder);
      const names = new Set<string>();
      for (const name of this.files.keys()) {
        if (prefix !== "" && !name.startsWith(`${prefix}/`)) continue;
        names.add(name.slice(prefix === "" ? 0 : prefix.length + 1).split("/")[0]);
      }
      return [...names].sort();
    });
  }

  replace(from: string, to: string): Promise<void> {
    return settle(() => {
      const bytes = this.files.get(key(from));
      if (!bytes) throw new CheckpointError(`${from}: no such file to move to ${to}`);
      this.files.set(key(to), bytes);
      this.files.delete(key(from));
    });
  }

  remove(path: string): Promise<void> {
    return settle(() => {
      const prefix = key(path);
      for (const name of [...this.files.keys()]) if (name === prefix || name.startsWith(`${prefix}/`)) this.files.delete(name);
    });
  }
}

function key(path: string): string {
  return pathParts(path).join("/");
}

/** fn's result as a promise, its throw as a rejection (as an async storage's would be). */
function settle<T>(fn: () => T): Promise<T> {
  try {
    return Promise.resolve(fn());
  } catch (error) {
    return Promise.reject(error);
  }
}
