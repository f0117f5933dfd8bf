// Checkpoints on the local file system (Deno), under a root folder. A write goes to its file and is
// synced (FsFile.sync) before it resolves, its SHA-256 taken by node:crypto on this thread while
// each piece's write runs on Deno's I/O threads; replace is a rename, which POSIX makes atomic,
// followed by a sync of the folder so that the rename itself survives a crash.

import { CheckpointError } from "./errors.ts";
import { type CheckpointStorage, type FileWriter, pathParts } from "./storage.ts";

const NODE_CRYPTO = "node:crypto";

export class FsStorage implements CheckpointStorage {
  constructor(readonly root: string) {
    if (!("Deno" in globalThis)) {
      throw new Error(
        "FsStorage: needs Deno's file system API, which this runtime lacks; use MemoryStorage (or OpfsStorage in a browser)",
      );
    }
  }

  async write(path: string, pieces: readonly ArrayBufferView[]): Promise<string> {
    // Loaded when used, and named through a variable so that bundlers leave it alone: a browser
    // bundle of shardlab, which never writes here, needs no node:crypto.
    const { createHash }: typeof import("node:crypto") = await import(NODE_CRYPTO);
    const hash = createHash("sha256");
    const writer = await this.create(path);
    try {
      for (const piece of pieces) {
        const written = writer.write(piece);
        hash.update(new Uint8Array(piece.buffer, piece.byteOffset, piece.byteLength));
        await written;
      }
    } finally {
      await writer.close();
    }
    return hash.digest("hex");
  }

  async create(path: string): Promise<FileWriter> {
    const file = this.resolve(path);
    await Deno.mkdir(parentOf(file), { recursive: true });
    const handle = await Deno.open(file, { write: true, create: true, truncate: true });
    return {
      write: async (piece) => {
        const bytes = new Uint8Array(piece.buffer, piece.byteOffset, piece.byteLength);
        for (let at = 0; at < bytes.length;) at += await handle.write(bytes.subarray(at));
      },
      close: async () => {
        try {
          await handle.sync();
        } finally {
          handle.close();
        }
      },
    };
  }

  async read(path: string, offset = 0, length?: number): Promise<Uint8Array> {
    if (length === undefined) {
      const size = await this.size(path);
      if (size === null) throw new CheckpointError(`${path}: no such file`);
      length = size - offset;
    }
    return (await this.readRanges(path, [[offset, length]]))[0];
  }

  async readRanges(path: string, ranges: readonly (readonly [number, number])[]): Promise<Uint8Array[]> {
    let handle: Deno.FsFile;
    try {
      handle = await Deno.open(this.resolve(path), { read: true });
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) throw new CheckpointError(`${path}: no such file`);
      throw error;
    }
    try {
      const size = (await handle.stat()).size;
      const out: Uint8Array[] = [];
      for (const [offset, length] of ranges) {
        const end = offset + length;
        if (offset < 0 || length < 0 || end > size) {
          throw new CheckpointError(`${path}: bytes [${offset}, ${end}) lie beyond its ${size} bytes`);
        }
        const bytes = new Uint8Array(length);
        await handle.seek(offset, Deno.SeekMode.Start);
        for (let at = 0; at < bytes.length;) {
          const read = await handle.read(bytes.subarray(at));
          if (read === null) {
            throw new CheckpointError(`${path}: the file ended at byte ${offset + at} while ${end} were expected`);
          }
          at += read;
        }
        out.push(bytes);
      }
      return out;
    } finally {
      handle.close();
    }
  }

  async size(path: string): Promise<number | null> {
    try {
      return (await Deno.stat(this.resolve(path))).size;
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return null;
      throw error;
    }
  }

  async list(folder: string): Promise<string[]> {
    const names: string[] = [];
    try {
      for await (const entry of Deno.readDir(this.resolve(folder))) names.push(entry.name);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return [];
      throw error;
    }
    return names.sort();
  }

  async replace(from: string, to: string): Promise<void> {
    const target = this.resolve(to);
    await Deno.mkdir(parentOf(target), { recursive: true });
    await Deno.rename(this.resolve(from), target);
    await syncFolder(parentOf(target));
  }

  async remove(path: string): Promise<void> {
    try {
      await Deno.remove(this.resolve(path), { recursive: true });
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }

  private resolve(path: string): string {
    return [this.root.replace(/\/+$/, ""), ...pathParts(path)].join("/");
  }
}

function parentOf(file: string): string {
  const cut = file.lastIndexOf("/");
  return cut <= 0 ? "." : file.slice(0, cut);
}

/** Syncs a folder's entries (where the platform lets a folder be opened). */
async function syncFolder(folder: string): Promise<void> {
  let handle: Deno.FsFile | null = null;
  try {
    handle = await Deno.open(folder, { read: true });
    await handle.sync();
  } catch {
    // Some platforms cannot open a folder as a file; the rename stands either way.
  } finally {
    handle?.close();
  }
}
