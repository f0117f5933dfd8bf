// Checkpoints in the browser's origin-private file system (OPFS), under a root folder. Writes go
// through a FileSystemSyncAccessHandle, which browsers offer only in dedicated workers (a rank's
// worker, the page's training worker): written at offsets, flushed, closed. Before a file is
// written, navigator.storage.estimate() must leave room for it, or the write fails naming both
// numbers. OPFS promises no atomic rename, so replace copies the new file into place and then
// removes it (move() where the browser has it): a reader meets the old or the new whole file only
// because the commit writes metadata.json and `latest` last, and `latest` is a few bytes.

import { CheckpointError } from "./errors.ts";
import { Sha256 } from "./sha256.ts";
import { type CheckpointStorage, type FileWriter, pathParts } from "./storage.ts";

/** The sync handle of OPFS files (in dedicated workers), as far as it is used here. */
interface SyncAccessHandle {
  write(data: ArrayBufferView, options: { at: number }): number;
  truncate(size: number): void;
  flush(): void;
  close(): void;
}

interface OpfsFile extends FileSystemFileHandle {
  createSyncAccessHandle(): Promise<SyncAccessHandle>;
  move?(parent: FileSystemDirectoryHandle, name: string): Promise<void>;
}

export class OpfsStorage implements CheckpointStorage {
  constructor(readonly root: string) {
    if (typeof (globalThis.navigator as Navigator | undefined)?.storage?.getDirectory !== "function") {
      throw new Error(
        "OpfsStorage: needs the browser's origin private file system (navigator.storage.getDirectory), which this runtime lacks; " +
          "use MemoryStorage (or FsStorage under Deno)",
      );
    }
  }

  async write(path: string, pieces: readonly ArrayBufferView[]): Promise<string> {
    const writer = await this.create(path, pieces.reduce((sum, piece) => sum + piece.byteLength, 0));
    const hash = new Sha256();
    try {
      for (const piece of pieces) {
        await writer.write(piece);
        hash.update(piece);
      }
    } finally {
      await writer.close();
    }
    return hash.hex();
  }

  /** `bytes`, when known, is checked against the origin's quota first. */
  async create(path: string, bytes = 0): Promise<FileWriter> {
    const { usage = 0, quota = Infinity } = await navigator.storage.estimate();
    if (usage + bytes > quota) {
      throw new CheckpointError(
        `${path}: needs ${bytes} bytes of OPFS, but this origin has ${quota - usage} of its quota of ${quota} left`,
      );
    }
    const [folder, name] = await this.parent(path, true);
    const file = await folder.getFileHandle(name, { create: true }) as OpfsFile;
    const handle = await file.createSyncAccessHandle();
    handle.truncate(0);
    let at = 0;
    return {
      write: (piece) => {
        const data = new Uint8Array(piece.buffer, piece.byteOffset, piece.byteLength);
        const written = handle.write(data, { at });
        if (written !== data.length) {
          throw new CheckpointError(`${path}: OPFS wrote ${written} of ${data.length} bytes (the quota may be full)`);
        }
        at += written;
        return Promise.resolve();
      },
      close: () => {
        handle.flush();
        handle.close();
        return Promise.resolve();
      },
    };
  }

  async read(path: string, offset = 0, length?: number): Promise<Uint8Array> {
    const file = await this.file(path);
    const end = length === undefined ? file.size : offset + length;
    if (offset < 0 || end > file.size) {
      throw new CheckpointError(`${path}: bytes [${offset}, ${end}) lie beyond its ${file.size} bytes`);
    }
    return new Uint8Array(await file.slice(offset, end).arrayBuffer());
  }

  async readRanges(path: string, ranges: readonly (readonly [number, number])[]): Promise<Uint8Array[]> {
    const file = await this.file(path);
    const out: Uint8Array[] = [];
    for (const [offset, length] of ranges) {
      if (offset < 0 || length < 0 || offset + length > file.size) {
        throw new CheckpointError(`${path}: bytes [${offset}, ${offset + length}) lie beyond its ${file.size} bytes`);
      }
      out.push(new Uint8Array(await file.slice(offset, offset + length).arrayBuffer()));
    }
    return out;
  }

  async size(path: string): Promise<number | null> {
    try {
      return (await this.file(path)).size;
    } catch (error) {
      if (error instanceof CheckpointError) return null;
      throw error;
    }
  }

  async list(folder: string): Promise<string[]> {
    const directory = await this.folder(folder, false);
    if (!directory) return [];
    const names: string[] = [];
    for await (const name of (directory as unknown as { keys(): AsyncIterable<string> }).keys()) names.push(name);
    return names.sort();
  }

  async replace(from: string, to: string): Promise<void> {
    const [folder, name] = await this.parent(to, true);
    const source = await this.handle(from);
    if (source.move) {
      await source.move(folder, name);
      return;
    }
    await this.write(to, [await this.read(from)]);
    await this.remove(from);
  }

  async remove(path: string): Promise<void> {
    const [folder, name] = await this.parent(path, false).catch(() => [null, ""] as const);
    if (!folder) return;
    await folder.removeEntry(name, { recursive: true }).catch((error: DOMException) => {
      if (error.name !== "NotFoundError") throw error;
    });
  }

  private async folder(path: string, create: boolean): Promise<FileSystemDirectoryHandle | null> {
    let directory = await navigator.storage.getDirectory();
    for (const part of [...pathParts(this.root), ...pathParts(path)]) {
      try {
        directory = await directory.getDirectoryHandle(part, { create });
      } catch (error) {
        if ((error as DOMException).name === "NotFoundError") return null;
        throw error;
      }
    }
    return directory;
  }

  private async parent(path: string, create: boolean): Promise<readonly [FileSystemDirectoryHandle, string]> {
    const parts = pathParts(path);
    const folder = await this.folder(parts.slice(0, -1).join("/"), create);
    if (!folder || parts.length === 0) throw new CheckpointError(`${path}: no such folder in OPFS`);
    return [folder, parts.at(-1)!];
  }

  private async handle(path: string): Promise<OpfsFile> {
    const [folder, name] = await this.parent(path, false).catch(() => {
      throw new CheckpointError(`${path}: no such file`);
    });
    try {
      return await folder.getFileHandle(name) as OpfsFile;
    } catch (error) {
      if ((error as DOMException).name === "NotFoundError" || (error as DOMException).name === "TypeMismatchError") {
        throw new CheckpointError(`${path}: no such file`);
      }
      throw error;
    }
  }

  private async file(path: string): Promise<File> {
    return await (await this.handle(path)).getFile();
  }
}
