// The traffic ledger counts exactly the bytes the documented algorithms send (comm_expected.ts:
// ring all-reduce 2·M − |chunk p| − |chunk p+1| per rank, i.e. 2(n−1)/n·M when n divides M; direct
// messages whole; remainders in the first chunks), per destination, link class and tag; simulated
// times follow the alpha-beta model; launch merges the ranks' ledgers into the traffic matrix.

import assert from "node:assert/strict";
import { DEFAULT_LINKS, type Links, resolveLinks } from "../src/comm/cost_model.ts";
import { launch } from "../src/comm/launch.ts";
import type { CollectiveRecord, LedgerJSON } from "../src/comm/ledger.ts";
import type { Case, CasesArgs } from "./fixtures/comm_cases.ts";
import { expectedAlgorithm, expectedSends, groupOf } from "./comm_expected.ts";
import { casesFor, HEAP_BYTES } from "./comm_matrix.ts";

const ENTRY = new URL("./fixtures/comm_cases.ts", import.meta.url).href;
const LINKS: Links = { intra: { bandwidthGBps: 100, latencyUs: 3 }, inter: { bandwidthGBps: 10, latencyUs: 20 } };

/** Simulated ms of `messages` messages with `bytes` bytes in all, written out from the model's definition. */
function modelMs(link: { bandwidthGBps: number; latencyUs: number }, bytes: number, messages: number): number {
  return messages * link.latencyUs * 1e-3 + (bytes / (link.bandwidthGBps * 1e9)) * 1e3;
}

interface Expectation {
  matrix: number[][];
  /** Bytes of each case over all ranks. */
  byCase: number[];
  /** Expected simulated ms of each case on each rank (NaN where it does not take part). */
  simulated: number[][];
}

/** Checks every rank's record of every case; returns the expected traffic for the world-level checks. */
function checkRecords(cases: Case[], ledgers: LedgerJSON[], ranksPerNode: number, failures: string[]): Expectation {
  const ranks = ledgers.length;
  const matrix = ledgers.map(() => new Array<number>(ranks).fill(0));
  const simulated = cases.map(() => new Array<number>(ranks).fill(NaN));
  const byCase = cases.map(() => 0);
  cases.forEach((c, i) => {
    for (let rank = 0; rank < ranks; rank++) {
      const group = groupOf(c, rank, ranks);
      const records = ledgers[rank].collectives.filter((r) => r.tag === c.name);
      if (!group) {
        if (records.length > 0) failures.push(`${c.name} rank ${rank}: recorded outside its group`);
        continue;
      }
      const me = group.indexOf(rank);
      const kinds = c.kind === "sendRecv" ? ["send", "recv"] : [c.kind];
      if (records.map((r) => r.kind).toSorted().join() !== kinds.toSorted().join()) {
        failures.push(`${c.name} rank ${rank}: records ${records.map((r) => r.kind)}, expected ${kinds}`);
        continue;
      }
      const sending = records.find((r) => r.kind !== "recv")!;
      const { bytes, messages } = expectedSends(c, group, me);
      const sends = group.flatMap((dst, r) =>
        bytes[r] > 0 || messages[r] > 0 ? [{ dst, bytes: bytes[r], messages: messages[r] }] : []
      )
        .toSorted((a, b) => a.dst - b.dst)
        .map((s) => ({
          ...s,
          link: Math.floor(s.dst / ranksPerNode) === Math.floor(rank / ranksPerNode) ? "intra" as const : "inter" as const,
        }));
      const got = sending.sends.map(({ dst, bytes, messages, link }) => ({ dst, bytes, messages, link }));
      if (JSON.stringify(got) !== JSON.stringify(sends)) {
        failures.push(`${c.name} rank ${rank}: sends ${JSON.stringify(got)}, expected ${JSON.stringify(sends)}`);
      }
      if (sending.algorithm !== expectedAlgorithm(c, group.length)) {
        failures.push(`${c.name} rank ${rank}: algorithm ${sending.algorithm}`);
      }
      const ms = sends.reduce((sum, s) => sum + modelMs(LINKS[s.link], s.bytes, s.messages), 0);
      if (Math.abs(sending.simulatedMs - ms) > 1e-12 * Math.max(1, ms)) {
        failures.push(`${c.name} rank ${rank}: simulated ${sending.simulatedMs} ms, expected ${ms}`);
      }
      for (const record of records) checkRecordShape(c, record, group, failures);
      for (const s of sends) matrix[rank][s.dst] += s.bytes;
      byCase[i] += sends.reduce((sum, s) => sum + s.bytes, 0);
      simulated[i][rank] = ms;
    }
  });
  return { matrix, byCase, simulated };
}

function checkRecordShape(c: Case, record: CollectiveRecord, group: number[], failures: string[]): void {
  const bytes = record.sends.reduce((sum, s) => sum + s.bytes, 0);
  if (record.bytes !== bytes) failures.push(`${c.name}: record.bytes ${record.bytes} is not the sum of its sends ${bytes}`);
  if (record.kind === "recv" && bytes !== 0) failures.push(`${c.name}: a recv sent ${bytes} bytes`);
  const expectedGroup = c.kind === "sendRecv" ? record.group : group;
  if (JSON.stringify(record.group) !== JSON.stringify(expectedGroup)) failures.push(`${c.name}: group ${record.group}`);
  if (!(record.wallMs >= 0)) failures.push(`${c.name}: wall time ${record.wallMs}`);
}

for (const [ranks, ranksPerNode] of [[3, 3], [4, 2], [8, 4]]) {
  Deno.test(`ledger counts every byte of every case exactly at ${ranks} ranks, ${ranksPerNode} per node; launch merges them`, async () => {
    const cases = casesFor(ranks);
    const args: CasesArgs = { cases, ledger: true };
    const results = await launch<{ ledger: LedgerJSON }>({
      ranks,
      ranksPerNode,
      entry: ENTRY,
      args,
      backend: "cpu",
      links: LINKS,
      heapBytes: HEAP_BYTES,
    });
    const ledgers = results.map((r) => r.value.ledger);
    const failures: string[] = [];
    const { matrix, byCase, simulated } = checkRecords(cases, ledgers, ranksPerNode, failures);
    assert.deepEqual(failures, [], `${failures.length} records differ:\n${failures.slice(0, 20).join("\n")}`);

    // Per-rank totals by (dst, kind, tag) add up to the records.
    for (const ledger of ledgers) {
      assert.deepEqual(ledger.links, LINKS);
      const fromRecords = ledger.collectives.reduce((sum, r) => sum + r.bytes, 0);
      assert.equal(ledger.bytesSent, fromRecords);
      assert.equal(ledger.totals.reduce((sum, t) => sum + t.bytes, 0), fromRecords);
    }

    // The merged traffic: matrix, link classes, kinds, tags, per-collective maxima and the critical path.
    const { traffic } = results;
    assert.deepEqual(traffic.matrix, matrix);
    const total = matrix.flat().reduce((a, b) => a + b, 0);
    assert.equal(traffic.totalBytes, total);
    const inter = matrix.flatMap((row, src) =>
      row.filter((_, dst) => Math.floor(src / ranksPerNode) !== Math.floor(dst / ranksPerNode))
    );
    assert.equal(traffic.byLink.inter, inter.reduce((a, b) => a + b, 0));
    assert.equal(traffic.byLink.intra, total - traffic.byLink.inter);
    assert.equal(Object.values(traffic.byKind).reduce((a, b) => a + b, 0), total);
    cases.forEach((c, i) => assert.equal(traffic.byTag[c.name] ?? 0, byCase[i], c.name));
    const rankMs = ledgers.map((_, rank) =>
      cases.reduce((sum, c, i) => {
        if (Number.isNaN(simulated[i][rank])) return sum;
        const members = groupOf(c, rank, ranks)!;
        // A send and its recv are one transfer of the sender's time; a collective takes its slowest member's.
        if (c.kind === "sendRecv") {
          return sum + simulated[i][rank] + simulated[i][members[(members.indexOf(rank) + members.length - 1) % members.length]];
        }
        return sum + Math.max(...members.map((m) => simulated[i][m]));
      }, 0)
    );
    rankMs.forEach((ms, rank) =>
      assert.ok(Math.abs(traffic.rankSimulatedMs[rank] - ms) < 1e-9, `rank ${rank}: ${traffic.rankSimulatedMs[rank]} vs ${ms}`)
    );
    assert.ok(Math.abs(traffic.simulatedMs - Math.max(...rankMs)) < 1e-9);
    assert.deepEqual(JSON.parse(JSON.stringify(traffic)).matrix, matrix);
  });
}

Deno.test("ledger: ring all-reduce sends 2(n−1)/n·M per rank when n divides M, and names the algorithm", async () => {
  // 4 ranks, M = 1 MiB of f32: 1.5 MiB per rank, all of it to the next rank, in 6 messages.
  const M = 1 << 20;
  const c: Case = { name: "ring", kind: "allReduce", dtype: "f32", sizes: [M / 4, M / 4, M / 4, M / 4], seed: 7 };
  const results = await launch<{ ledger: LedgerJSON }>({
    ranks: 4,
    entry: ENTRY,
    args: { cases: [c], ledger: true },
    backend: "cpu",
  });
  for (const { rank, value } of results) {
    const [record] = value.ledger.collectives;
    assert.equal(record.algorithm, "ring");
    assert.deepEqual(record.sends, [{ dst: (rank + 1) % 4, link: "intra", bytes: (2 * 3 / 4) * M, messages: 6 }]);
    assert.deepEqual(value.ledger.links, DEFAULT_LINKS);
    const expectedMs = 6 * 2e-3 + ((1.5 * M) / 300e9) * 1e3;
    assert.ok(Math.abs(record.simulatedMs - expectedMs) < 1e-12, `${record.simulatedMs} vs ${expectedMs}`);
  }
});

Deno.test("links: defaults, partial overrides and values that are not positive numbers", () => {
  assert.deepEqual(resolveLinks(), { intra: { bandwidthGBps: 300, latencyUs: 2 }, inter: { bandwidthGBps: 12.5, latencyUs: 5 } });
  assert.deepEqual(resolveLinks({ inter: { bandwidthGBps: 25 } }).inter, { bandwidthGBps: 25, latencyUs: 5 });
  assert.throws(
    () => resolveLinks({ intra: { bandwidthGBps: 0 } }),
    /links\.intra\.bandwidthGBps must be a positive number, got 0/,
  );
  assert.throws(
    () => resolveLinks({ inter: { latencyUs: -1 } }),
    /links\.inter\.latencyUs must be a non-negative number, got -1/,
  );
});
