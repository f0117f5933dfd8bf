// The checkpoint's file formats. SHA-256 against WebCrypto's digest, whole and in pieces cut at
// every block boundary; safetensors written and read back, and each of the reference reader's
// rejections raised as a CheckpointError naming the file, the tensor and the value; a storage path
// that would leave its root refused.

import assert from "node:assert/strict";
import { CheckpointError } from "../src/checkpoint/errors.ts";
import { encodeHeader, headerLength, parseHeader } from "../src/checkpoint/safetensors.ts";
import { readHeader, writeSafetensors } from "../src/checkpoint/safetensors_io.ts";
import { Sha256, sha256 } from "../src/checkpoint/sha256.ts";
import { MemoryStorage } from "../src/checkpoint/storage.ts";

async function webCrypto(bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", Uint8Array.from(bytes)));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test("Sha256: equals WebCrypto's digest for every length around the block size, whole and in pieces", async () => {
  for (const length of [0, 1, 3, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 1000, 4099]) {
    const bytes = Uint8Array.from({ length }, (_, i) => (i * 131 + length) & 255);
    const expected = await webCrypto(bytes);
    assert.equal(await sha256(bytes), expected, `${length} bytes whole`);
    for (const cut of [1, 7, 63, 64, 100]) {
      const hash = new Sha256();
      for (let at = 0; at < length; at += cut) hash.update(bytes.subarray(at, at + cut));
      assert.equal(hash.hex(), expected, `${length} bytes in pieces of ${cut}`);
    }
  }
  assert.equal(await sha256(new Float32Array([1.5, -2])), await webCrypto(new Uint8Array(new Float32Array([1.5, -2]).buffer)));
});

Deno.test("safetensors: written files read back, dense, header padded to 8 bytes, metadata kept", async () => {
  const storage = new MemoryStorage();
  const a = Float32Array.from({ length: 6 }, (_, i) => i / 3);
  const b = new Int32Array([7, -8, 9]);
  await writeSafetensors(storage, "x/t.safetensors", [
    { name: "a", dtype: "F32", shape: [2, 3], data: a },
    { name: "b", dtype: "I32", shape: [3], data: b },
    { name: "empty", dtype: "F32", shape: [0, 4], data: new Float32Array(0) },
  ], { note: "hi" });
  const header = await readHeader(storage, "x/t.safetensors");
  assert.equal((header.dataStart - 8) % 8, 0, "the JSON is padded to a multiple of 8");
  assert.deepEqual(header.metadata, { note: "hi" });
  assert.deepEqual(header.tensors.get("a"), { dtype: "F32", shape: [2, 3], begin: 0, end: 24 });
  assert.deepEqual(header.tensors.get("b"), { dtype: "I32", shape: [3], begin: 24, end: 36 });
  const file = storage.files.get("x/t.safetensors")!;
  assert.equal(file.length, header.dataStart + 36);
  assert.deepEqual(new Float32Array(file.slice(header.dataStart, header.dataStart + 24).buffer), a);
  await assert.rejects(
    writeSafetensors(storage, "y.safetensors", [{ name: "a", dtype: "F32", shape: [2], data: new Float32Array(3) }]),
    /tensor "a" is given 12 bytes, but its shape needs 8/,
  );
});

/** A file from a header object and `dataBytes` bytes of data, with the length prefix given or computed. */
function fileOf(json: unknown, dataBytes: number, declaredLength?: bigint): Uint8Array {
  const body = new TextEncoder().encode(typeof json === "string" ? json : JSON.stringify(json));
  const bytes = new Uint8Array(8 + body.length + dataBytes);
  new DataView(bytes.buffer).setBigUint64(0, declaredLength ?? BigInt(body.length), true);
  bytes.set(body, 8);
  return bytes;
}

function parse(file: Uint8Array): void {
  const n = headerLength(file, file.length, "bad.safetensors");
  parseHeader(file.subarray(8, 8 + n), file.length, "bad.safetensors");
}

Deno.test("safetensors: every rule of the reference reader is a CheckpointError naming the file and value", () => {
  const ok = { w: { dtype: "F32", shape: [2], data_offsets: [0, 8] } };
  parse(fileOf(ok, 8));
  const cases: [Uint8Array, RegExp][] = [
    [new Uint8Array(5), /5 bytes cannot hold a safetensors header length/],
    [fileOf(ok, 8, 100_000_001n), /header claims 100000001 bytes, over the limit of 100000000/],
    [fileOf(ok, 8, 4000n), /header claims 4000 bytes, but the file has/],
    [fileOf("{not json", 0), /not valid UTF-8 JSON/],
    [fileOf("[1, 2]", 0), /not a JSON object/],
    [fileOf({ __metadata__: { a: 1 } }, 0), /__metadata__ "a" is not a string/],
    [fileOf({ w: { dtype: "F31", shape: [2], data_offsets: [0, 8] } }, 8), /tensor "w" has dtype "F31"/],
    [fileOf({ w: { dtype: "F32", shape: [2, -1], data_offsets: [0, 8] } }, 8), /tensor "w" has shape \[2,-1\]/],
    [fileOf({ w: { dtype: "F32", shape: [2 ** 30, 2 ** 30, 2 ** 30], data_offsets: [0, 8] } }, 8), /the shape .* overflows/],
    [
      fileOf({ w: { dtype: "F32", shape: [3], data_offsets: [0, 8] } }, 8),
      /data_offsets \[0, 8\) hold 8 bytes, but F32 \[3\] needs 12/,
    ],
    [fileOf({ w: { dtype: "F32", shape: [2], data_offsets: [0] } }, 8), /data_offsets \[0\]; expected \[begin, end\]/],
    [
      fileOf(
        { w: { dtype: "F32", shape: [2], data_offsets: [0, 8] }, v: { dtype: "F32", shape: [1], data_offsets: [12, 16] } },
        16,
      ),
      /tensor "v" begins at byte 12 of the data, but the one before it ends at 8 \(a gap\)/,
    ],
    [
      fileOf(
        { w: { dtype: "F32", shape: [2], data_offsets: [0, 8] }, v: { dtype: "F32", shape: [2], data_offsets: [4, 12] } },
        12,
      ),
      /begins at byte 4 of the data, but the one before it ends at 8 \(an overlap\)/,
    ],
    [fileOf(ok, 12), /the tensors end at byte \d+, but the file has \d+/],
    [fileOf(ok, 4), /the tensors end at byte \d+, but the file has \d+/],
  ];
  for (const [file, pattern] of cases) {
    assert.throws(
      () => parse(file),
      (e) => e instanceof CheckpointError && /bad\.safetensors/.test(e.message) && pattern.test(e.message),
    );
  }
  assert.throws(() => encodeHeader([{ name: "__metadata__", dtype: "F32", shape: [1] }]), /reserved or repeated/);
});

Deno.test("storage: paths that leave the root are refused", async () => {
  const storage = new MemoryStorage();
  for (const path of ["../x", "a/../../x", "/abs", "a\\b"]) {
    await assert.rejects(storage.write(path, [new Uint8Array(1)]), /leaves the checkpoint folder/);
  }
  await storage.write("a/b/c", [new Uint8Array([1, 2, 3])]);
  assert.deepEqual(await storage.list("a"), ["b"]);
  assert.deepEqual(await storage.read("a/b/c", 1, 2), new Uint8Array([2, 3]));
  await assert.rejects(storage.read("a/b/c", 2, 5), /bytes \[2, 7\) lie beyond its 3 bytes/);
  await storage.replace("a/b/c", "a/d");
  assert.equal(await storage.size("a/b/c"), null);
  assert.equal(await storage.size("a/d"), 3);
});
