// The lab page's views (web/views/) carry exactly the numbers of a real run. One small run trains
// the tiny preset for one step on dp 2 × tp 2 over 2 simulated nodes with ZeRO-3 (tensor
// parallelism inside each node, data parallelism across), and each view is checked against what
// the run itself reports: the merged traffic matrix of the ledgers, each rank's records, the step's
// memory, the fragment map. The ownership view is also checked on maps of other layouts, with the
// size of every shard worked out here from the parameter shapes.

import assert from "node:assert/strict";
import type { CollectiveRecord } from "../src/comm/ledger.ts";
import { headDim, presetConfig } from "../src/nn/config.ts";
import type { FragmentMap } from "../src/parallel/fragment_map.ts";
import { trainParallel } from "../src/train/parallel_run.ts";
import { placeCollectives, renderCollectiveTimeline } from "../web/views/collective_timeline.ts";
import { renderMemoryBars } from "../web/views/memory_bars.ts";
import { linkBetween, renderTrafficHeatmap, trafficMatrix } from "../web/views/traffic_matrix.ts";
import { formatBytes, formatMs } from "../web/views/units.ts";
import { renderZeroOwnership } from "../web/views/zero_ownership.ts";
import { mapOf, MODEL as PADDED_MODEL } from "./known_states.ts";

const RANKS_PER_NODE = 2;
const RUN = await trainParallel({
  preset: "tiny",
  steps: 1,
  batch: 4,
  seq: 16,
  lr: 1e-3,
  seed: 3,
  backend: "cpu",
  dp: 2,
  tp: 2,
  nodes: 2,
  zero: 3,
});
const RECORDS: CollectiveRecord[][] = RUN.ranks.map(({ value }) => value.collectives);
const MAP: FragmentMap = RUN.ranks[0].value.fragmentMap!;

/** What a view drew: an element's attributes, and those of the first <rect> inside it. */
interface Drawn {
  data: Record<string, string>;
  rect: Record<string, number>;
}

/** Every element of class `className`, in document order. */
function elementsOf(markup: string, className: string): Drawn[] {
  const attributesOf = (text: string) =>
    Object.fromEntries([...text.matchAll(/ ([\w-]+)="([^"]*)"/g)].map(([, name, value]) => [name, value]));
  return [...markup.matchAll(new RegExp(`<g class="${className}"([^>]*)>(?:<title>[^<]*</title>)?(?:<rect([^>]*)>)?`, "g"))]
    .map(([, attributes, rect]) => ({
      data: attributesOf(attributes),
      rect: Object.fromEntries(Object.entries(attributesOf(rect ?? "")).map(([name, value]) => [name, Number(value)])),
    }));
}

/** Tags balanced, attributes quoted, no bare "<", ">" or "&" in text (every text escaped). */
function assertWellFormed(markup: string, what: string): void {
  const stack: string[] = [];
  let at = 0;
  for (const match of markup.matchAll(/<[^<>]*>/g)) {
    const between = markup.slice(at, match.index);
    assert.doesNotMatch(between, /[<>]|&(?!(amp|lt|gt|quot|#39);)/, `${what}: unescaped text "${between}"`);
    at = match.index + match[0].length;
    const tag = match[0].match(/^<(\/?)([a-zA-Z][\w:-]*)((?:\s+[\w:-]+(?:="[^"]*")?)*)\s*>$/);
    assert.ok(tag, `${what}: malformed tag ${match[0]}`);
    assert.doesNotMatch(tag[3], /&(?!(amp|lt|gt|quot|#39);)/, `${what}: unescaped attribute in ${match[0]}`);
    if (tag[1] === "") stack.push(tag[2]);
    else assert.equal(stack.pop(), tag[2], `${what}: </${tag[2]}> closes something else`);
  }
  assert.deepEqual(stack, [], `${what}: unclosed elements`);
  assert.doesNotMatch(markup.slice(at), /[<>]/, `${what}: text after the last tag`);
}

Deno.test("lab views: the traffic matrix equals the run's merged ledgers, pair by pair", () => {
  const matrix = trafficMatrix(RECORDS, RANKS_PER_NODE);
  assert.equal(matrix.ranks, 4);
  assert.deepEqual(matrix.bytes, RUN.ranks.traffic.matrix);
  // Every send's link class, as the sending ledger recorded it, is the one the matrix gives the pair.
  let sends = 0;
  RECORDS.forEach((records, src) => {
    for (const send of records.flatMap((record) => record.sends)) {
      assert.equal(linkBetween(src, send.dst, RANKS_PER_NODE), send.link, `rank ${src} → ${send.dst}`);
      sends++;
    }
  });
  assert.ok(sends > 0);
  const byLink = { intra: 0, inter: 0 };
  matrix.bytes.forEach((row, src) => row.forEach((bytes, dst) => byLink[linkBetween(src, dst, RANKS_PER_NODE)] += bytes));
  assert.deepEqual(byLink, RUN.ranks.traffic.byLink);
  // Tensor parallelism talks within each node (0–1, 2–3), data parallelism across (0–2, 1–3); 0 and 3 share no group.
  for (const [a, b] of [[0, 1], [2, 3], [0, 2], [1, 3]]) assert.ok(matrix.bytes[a][b] > 0 && matrix.bytes[b][a] > 0);
  assert.equal(matrix.bytes[0][3] + matrix.bytes[3][0] + matrix.bytes[1][2] + matrix.bytes[2][1], 0);

  assert.throws(() => trafficMatrix(RECORDS, 3), /3 ranks per node do not divide 4 ranks/);
  const stray = { ...RECORDS[0][0], sends: [{ dst: 4, link: "inter" as const, bytes: 1, messages: 1 }] };
  assert.throws(() => trafficMatrix([[stray], [], [], []], 2), /rank 0 sent to rank 4/);
});

Deno.test("lab views: each heatmap cell carries its pair's bytes and link; the caption the totals", () => {
  const { matrix, byLink, totalBytes } = RUN.ranks.traffic;
  const markup = renderTrafficHeatmap(trafficMatrix(RECORDS, RANKS_PER_NODE), "Traffic of step 1");
  const cells = elementsOf(markup, "cell");
  assert.equal(cells.length, 16);
  for (const cell of cells) {
    const [src, dst, bytes] = [cell.data["data-src"], cell.data["data-dst"], cell.data["data-bytes"]].map(Number);
    assert.equal(bytes, matrix[src][dst], `cell ${src} → ${dst}`);
    const sent = RECORDS[src].flatMap((record) => record.sends).find((send) => send.dst === dst);
    assert.equal(cell.data["data-link"], sent?.link ?? (Math.floor(src / 2) === Math.floor(dst / 2) ? "intra" : "inter"));
  }
  assert.match(markup, new RegExp(`Within nodes: ${formatBytes(byLink.intra)}; across nodes: ${formatBytes(byLink.inter)}`));
  assert.match(markup, new RegExp(`\\(${totalBytes.toLocaleString("en-US")} bytes\\)`));
  assert.match(markup, new RegExp(`<tr><td>0</td><td>2</td><td>across nodes</td><td>${matrix[0][2]}</td>`));
});

Deno.test("lab views: each memory bar carries the step's memory of its rank, on one scale", () => {
  const memory = RUN.history[0].memory;
  assert.deepEqual(memory, RUN.ranks.map(({ value }) => value.memory));
  assert.ok(memory[0].gathered > 0, "ZeRO-3 holds a gathered block");
  const markup = renderMemoryBars(memory, "Memory after step 1");
  const bars = elementsOf(markup, "bar");
  assert.deepEqual(
    bars.map((bar) => ({
      rank: Number(bar.data["data-rank"]),
      parameters: Number(bar.data["data-parameters"]),
      gradients: Number(bar.data["data-gradients"]),
      optimizer: Number(bar.data["data-optimizer"]),
      gathered: Number(bar.data["data-gathered"]),
      secondary: Number(bar.data["data-secondary"]),
    })),
    memory.map((m, rank) => ({ rank, ...m })),
  );
  // One scale: every segment's width per byte is the same.
  const segments = [
    ...markup.matchAll(/<g class="segment" data-category="\w+" data-bytes="(\d+)">.*?<rect[^>]* width="([\d.]+)"/g),
  ];
  assert.equal(segments.length, memory.reduce((n, m) => n + Object.values(m).filter((bytes) => bytes > 0).length, 0));
  const perByte = segments.map(([, bytes, width]) => Number(width) / Number(bytes));
  for (const ratio of perByte) {
    assert.ok(Math.abs(ratio - perByte[0]) <= 0.01 / memory[0].parameters, `${ratio} vs ${perByte[0]}`);
  }
  assert.match(markup, /hpZ secondary copy \(ZeRO\+\+\): none/);
});

Deno.test("lab views: the timeline has one segment per record per rank, a call aligned across its group", () => {
  const markup = renderCollectiveTimeline(RECORDS, "Step 1");
  const segments = elementsOf(markup, "segment");
  assert.equal(segments.length, RECORDS.flat().length);
  RECORDS.forEach((records, rank) => {
    const lane = segments.filter((segment) => Number(segment.data["data-rank"]) === rank);
    assert.deepEqual(
      lane.map((
        s,
      ) => [
        s.data["data-id"],
        s.data["data-kind"],
        s.data["data-tag"],
        Number(s.data["data-bytes"]),
        Number(s.data["data-simulated-ms"]),
      ]),
      records.map((r) => [r.id, r.kind, r.tag, r.bytes, r.simulatedMs]),
      `rank ${rank}`,
    );
    // In call order, none before the previous call on the rank has ended.
    for (let i = 1; i < lane.length; i++) {
      const end = Number(lane[i - 1].data["data-start-ms"]) + records[i - 1].simulatedMs;
      assert.ok(Number(lane[i].data["data-start-ms"]) >= end - 1e-12, `rank ${rank} call ${i}`);
    }
  });
  // Widths by simulated time, on one scale (a call of next to no time is drawn 2 units wide).
  const perMs = segments.filter((s) => s.rect.width > 2).map((s) => s.rect.width / Number(s.data["data-simulated-ms"]));
  assert.ok(perMs.length > 0 && perMs.every((ratio) => Math.abs(ratio / perMs[0] - 1) < 0.01), "one time scale");
  const starts = new Map<string, Set<string>>();
  for (const s of segments) {
    starts.set(s.data["data-id"], (starts.get(s.data["data-id"]) ?? new Set()).add(s.data["data-start-ms"]));
  }
  for (const [id, at] of starts) assert.equal(at.size, 1, `${id} starts at ${[...at]}`);
  const first = RECORDS[0][0];
  assert.ok(markup.includes(`wall ${formatMs(first.wallMs)}, simulated ${formatMs(first.simulatedMs)}`));
  assert.match(markup, /simulated time \(cost model\)/);
  assert.match(renderCollectiveTimeline(RECORDS, "Step 1", { time: "wall" }), /measured wall time/);
});

Deno.test("lab views: a call whose partner is missing follows its rank's previous call", () => {
  const call = (id: string, simulatedMs: number) => ({ ...RECORDS[0][0], id, simulatedMs });
  // b starts on both ranks when rank 0 is done with x, whichever rank reaches it first.
  const placed = placeCollectives(
    [[call("x", 5), call("b", 2)], [call("a", 1), call("b", 1)], [call("c", 3)]],
    (r) => r.simulatedMs,
  );
  assert.deepEqual(placed.map((lane) => lane.map((p) => p.startMs)), [[0, 5], [0, 5], [0]]);
  const lonely = placeCollectives([[call("a", 1), call("b", 2)], []], (r) => r.simulatedMs);
  assert.deepEqual(lonely[0].map((p) => p.startMs), [0, 1]);
});

/** Elements of tensor-parallel shard `index`'s piece of a parameter, from its full shape alone (tiny model, vocabulary 96 or 97). */
function shardElements(name: string, shape: number[], kind: string, tp: number): number {
  const { numHeads, numKvHeads, hiddenSize } = presetConfig("tiny");
  const D = headDim(presetConfig("tiny"));
  if (kind === "replicated") return shape.reduce((a, b) => a * b, 1);
  if (kind === "vocab") return Math.ceil(shape[0] / tp) * shape[1];
  if (kind === "row") return shape[0] * (shape[1] / tp);
  // Column-parallel: qkv holds numHeads/tp q heads and its kv heads (one, shared, once tp exceeds them).
  if (name.endsWith("qkv_proj.weight")) return (numHeads / tp + 2 * Math.max(1, numKvHeads / tp)) * D * hiddenSize;
  return (shape[0] / tp) * shape[1];
}

/** The ownership markup's pieces tile each shard of each parameter once, each held by the ranks the layout says. */
function checkOwnership(map: FragmentMap, what: string): void {
  const markup = renderZeroOwnership(map, what);
  assertWellFormed(markup, what);
  const { dp, tp, zero } = map.layout;
  const pieces = elementsOf(markup, "piece");
  assert.equal(pieces.length, map.ranks.reduce((n, entry) => n + entry.fragments.length, 0), `${what}: one stripe per fragment`);
  for (const { name, shape, shards } of map.parameters) {
    const kind = shards[0].kind;
    const sections = kind === "replicated" ? 1 : tp;
    for (let shard = 0; shard < sections; shard++) {
      const byPlace = new Map<string, number[]>();
      for (const p of pieces.filter((p) => p.data["data-param"] === name && Number(p.data["data-shard"]) === shard)) {
        const place = `${p.data["data-start"]}:${p.data["data-count"]}`;
        byPlace.set(place, [...(byPlace.get(place) ?? []), Number(p.data["data-rank"])]);
        const entry = map.ranks[Number(p.data["data-rank"])];
        assert.ok(
          entry.fragments.some((f) =>
            f.name === name && f.shardOffset === Number(p.data["data-start"]) && f.numel === Number(p.data["data-count"])
          ),
          `${what}: rank ${entry.rank} holds no fragment of ${name} at ${place}`,
        );
      }
      const places = [...byPlace].map(([place, ranks]) => ({ range: place.split(":").map(Number), ranks }))
        .sort((a, b) => a.range[0] - b.range[0]);
      // Drawn the same way: side by side in element order, each piece's holders stacked in stripes of its height.
      const drawn = pieces.filter((p) => p.data["data-param"] === name && Number(p.data["data-shard"]) === shard)
        .sort((a, b) => a.rect.x - b.rect.x || a.rect.y - b.rect.y);
      for (let i = 1; i < drawn.length; i++) {
        const [before, piece] = [drawn[i - 1], drawn[i]];
        if (before.data["data-start"] === piece.data["data-start"]) {
          assert.equal(piece.rect.x, before.rect.x);
          assert.ok(Math.abs(piece.rect.y - (before.rect.y + before.rect.height)) < 0.02, `${what}: ${name}'s stripes stack`);
        } else {
          assert.ok(Math.abs(piece.rect.x - (before.rect.x + before.rect.width)) < 0.02, `${what}: ${name} drawn in order`);
        }
      }
      let covered = 0;
      for (const { range: [start, count], ranks } of places) {
        assert.equal(start, covered, `${what}: ${name} shard ${shard} has a gap or an overlap at ${start}`);
        covered += count;
        // DDP: every rank of the data group; ZeRO: one; a replicated parameter on every tp rank as well.
        assert.equal(ranks.length, (zero === 0 ? dp : 1) * (kind === "replicated" ? tp : 1), `${what}: ${name} at ${start}`);
        if (kind !== "replicated") assert.ok(ranks.every((rank) => rank % tp === shard), `${what}: ${name} shard ${shard}`);
      }
      assert.equal(covered, shardElements(name, shape, kind, tp), `${what}: ${name} shard ${shard}'s elements`);
    }
  }
}

Deno.test("lab views: the ownership pieces cover every parameter's elements once per replica group", async () => {
  assert.equal(MAP.layout.zero, 3);
  checkOwnership(MAP, "the run's ZeRO-3 dp2×tp2");
  assert.equal(PADDED_MODEL.vocabSize, 97);
  checkOwnership(await mapOf({ dp: 4, zero: 3 }), "ZeRO-3 dp4");
  checkOwnership(await mapOf({ dp: 2, tp: 4, zero: 1, nodes: 2 }), "ZeRO-1 dp2×tp4, vocabulary padded, kv heads shared");
  const ddp = await mapOf({ dp: 2, tp: 2, zero: 0 });
  checkOwnership(ddp, "DDP dp2×tp2");
  assert.match(renderZeroOwnership(ddp, "DDP"), /DDP: nothing is partitioned/);
});

Deno.test("lab views: every view is well-formed markup and escapes the text it is given", () => {
  const tagged = RECORDS.map((records) => records.map((record) => ({ ...record, tag: `<x>&"${record.tag}` })));
  const views = {
    heatmap: renderTrafficHeatmap(trafficMatrix(RECORDS, RANKS_PER_NODE), "<x>&"),
    memory: renderMemoryBars(RUN.history[0].memory, "<x>&"),
    timeline: renderCollectiveTimeline(tagged, "<x>&"),
    ownership: renderZeroOwnership(MAP, "<x>&"),
  };
  for (const [what, markup] of Object.entries(views)) {
    assertWellFormed(markup, what);
    assert.ok(markup.includes("<strong>&lt;x&gt;&amp;</strong>"), `${what}: the caption escaped`);
    assert.ok(!markup.includes("<x>"), what);
    assert.match(markup, /^<figure class="shardlab-view [\w-]+"><svg [^>]*viewBox="0 0 [\d.]+ [\d.]+" width="100%" role="img"/);
    assert.match(markup, /<svg [^>]*><title>[^<]+<\/title><desc>[^<]+<\/desc>/, `${what}: the figure's name and description`);
  }
  assert.ok(views.timeline.includes(`data-tag="&lt;x&gt;&amp;&quot;${RECORDS[0][0].tag}"`));
});

Deno.test("lab views: bytes and times in the units students read", () => {
  assert.deepEqual(
    [0, 512, 1536, 333704, 1.5 * 2 ** 20, 10 * 2 ** 30].map(formatBytes),
    ["0 B", "512 B", "1.5 KiB", "326 KiB", "1.5 MiB", "10 GiB"],
  );
  assert.deepEqual([0, 0.0055, 0.45, 12.34, 1234.5].map(formatMs), ["0 ms", "5.5 µs", "0.45 ms", "12.3 ms", "1.23 s"]);
});
