// Who sends how much to whom: the rank × rank matrix of payload bytes from the ranks' ledgers, drawn
// as a heatmap. Row = sending rank, column = receiving rank. Cells between ranks of one node are
// shaded in one hue and cells across nodes in another, and each node's block is outlined, so a
// student sees at a glance which parallel dimension crosses the slow inter-node links (with
// dp × tp over two nodes, tensor parallelism's all-reduces stay inside a node and data
// parallelism's traffic crosses).

import type { CollectiveRecord, LinkClass } from "../../src/comm/ledger.ts";
import { element, figure, round, text, tooltip } from "./markup.ts";
import { INK, LINK_COLOURS, mix, MUTED_INK, PALE, textOn } from "./palette.ts";
import { formatBytes, formatCount } from "./units.ts";

export interface TrafficMatrix {
  ranks: number;
  ranksPerNode: number;
  /** bytes[src][dst]: payload bytes rank src sent to rank dst. */
  bytes: number[][];
}

/** Sums CollectiveRecord.sends of each source rank (records[src] = that rank's records of the period). */
export function trafficMatrix(records: CollectiveRecord[][], ranksPerNode: number): TrafficMatrix {
  const ranks = records.length;
  if (!Number.isInteger(ranksPerNode) || ranksPerNode < 1 || ranks % ranksPerNode !== 0) {
    throw new RangeError(`trafficMatrix: ${ranksPerNode} ranks per node do not divide ${ranks} ranks into whole nodes`);
  }
  const bytes = records.map(() => new Array<number>(ranks).fill(0));
  records.forEach((rankRecords, src) => {
    for (const record of rankRecords) {
      for (const send of record.sends) {
        if (!Number.isInteger(send.dst) || send.dst < 0 || send.dst >= ranks) {
          throw new RangeError(`trafficMatrix: rank ${src} sent to rank ${send.dst} in "${record.tag}", outside 0..${ranks - 1}`);
        }
        bytes[src][send.dst] += send.bytes;
      }
    }
  });
  return { ranks, ranksPerNode, bytes };
}

/** The link between two ranks: "intra" when they share a node (node = ⌊rank / ranksPerNode⌋). */
export function linkBetween(src: number, dst: number, ranksPerNode: number): LinkClass {
  return Math.floor(src / ranksPerNode) === Math.floor(dst / ranksPerNode) ? "intra" : "inter";
}

const LINK_WORDS: Record<LinkClass, string> = { intra: "within a node", inter: "across nodes" };
const CELL = 64;
const LEFT = 104;
const TOP = 64;
const LEGEND_WIDTH = 210;
/** The palest shade a cell that carries any bytes gets, so that small traffic is not mistaken for none. */
const MIN_SHADE = 0.15;

/** A rank × rank heatmap of bytes sent; cells within a node and across nodes in two hues, node blocks outlined. */
export function renderTrafficHeatmap(matrix: TrafficMatrix, caption: string): string {
  const { ranks, ranksPerNode, bytes } = matrix;
  const nodes = ranks / ranksPerNode;
  const totals: Record<LinkClass, number> = { intra: 0, inter: 0 };
  let largest = { bytes: 0, src: 0, dst: 0 };
  const pairs: { src: number; dst: number; link: LinkClass; bytes: number }[] = [];
  for (let src = 0; src < ranks; src++) {
    for (let dst = 0; dst < ranks; dst++) {
      const link = linkBetween(src, dst, ranksPerNode);
      totals[link] += bytes[src][dst];
      if (bytes[src][dst] > largest.bytes) largest = { bytes: bytes[src][dst], src, dst };
      if (src !== dst) pairs.push({ src, dst, link, bytes: bytes[src][dst] });
    }
  }
  const shade = (link: LinkClass, value: number) =>
    value === 0 ? PALE : mix(PALE, LINK_COLOURS[link], MIN_SHADE + (1 - MIN_SHADE) * (value / largest.bytes));

  const x = (rank: number) => LEFT + rank * CELL;
  const y = (rank: number) => TOP + rank * CELL;
  const size = ranks * CELL;
  const parts: string[] = [];
  // Axis titles and node / rank labels.
  parts.push(text(LEFT + size / 2, 16, "to rank (receiver)", { "text-anchor": "middle", "font-weight": 600, fill: INK }));
  parts.push(
    text(14, TOP + size / 2, "from rank (sender)", {
      "text-anchor": "middle",
      "font-weight": 600,
      fill: INK,
      transform: `rotate(-90 14 ${round(TOP + size / 2)})`,
    }),
  );
  for (let node = 0; node < nodes; node++) {
    const middle = (node + 0.5) * ranksPerNode * CELL;
    parts.push(text(LEFT + middle, 36, `node ${node}`, { "text-anchor": "middle", fill: MUTED_INK }));
    parts.push(text(40, TOP + middle + 4, `node ${node}`, { "text-anchor": "middle", fill: MUTED_INK }));
  }
  for (let rank = 0; rank < ranks; rank++) {
    parts.push(text(x(rank) + CELL / 2, TOP - 8, String(rank), { "text-anchor": "middle", fill: INK }));
    parts.push(text(LEFT - 10, y(rank) + CELL / 2 + 4, String(rank), { "text-anchor": "end", fill: INK }));
  }
  // The cells.
  for (let src = 0; src < ranks; src++) {
    for (let dst = 0; dst < ranks; dst++) {
      const link = linkBetween(src, dst, ranksPerNode);
      const value = bytes[src][dst];
      const fill = shade(link, value);
      const hover = src === dst
        ? `rank ${src} to itself: nothing goes over a link`
        : `rank ${src} → rank ${dst} (${LINK_WORDS[link]}): ${formatBytes(value)} (${formatCount(value)} bytes)`;
      const label = src === dst ? "—" : formatBytes(value);
      parts.push(element(
        "g",
        { class: "cell", "data-src": src, "data-dst": dst, "data-bytes": value, "data-link": link },
        tooltip(hover) +
          element("rect", { x: x(dst), y: y(src), width: CELL, height: CELL, fill, stroke: "#FFFFFF", "stroke-width": 1 }) +
          text(x(dst) + CELL / 2, y(src) + CELL / 2 + 4, label, { "text-anchor": "middle", fill: textOn(fill), "font-size": 11 }),
      ));
    }
  }
  // Each node's block of intra-node cells, outlined.
  for (let node = 0; node < nodes; node++) {
    const at = node * ranksPerNode * CELL;
    parts.push(element("rect", {
      x: LEFT + at,
      y: TOP + at,
      width: ranksPerNode * CELL,
      height: ranksPerNode * CELL,
      fill: "none",
      stroke: INK,
      "stroke-width": 3,
      class: "node-block",
    }));
  }
  parts.push(legend(LEFT + size + 24, TOP, largest.bytes, nodes > 1));

  const total = totals.intra + totals.inter;
  const description =
    `Heatmap of the bytes each of ${ranks} ranks on ${nodes} node${nodes > 1 ? "s" : ""} sent to each other rank: ` +
    `rows are senders, columns receivers. Blue cells are links within a node, vermillion cells links across nodes; ` +
    `the darker, the more bytes. Thick outlines mark each node's ranks. ` +
    (largest.bytes > 0
      ? `The busiest pair is rank ${largest.src} to rank ${largest.dst}, ${formatBytes(largest.bytes)}.`
      : "No rank sent anything.");
  return figure({
    view: "traffic-heatmap",
    width: LEFT + size + 24 + LEGEND_WIDTH,
    height: Math.max(TOP + size + 16, TOP + 190),
    title: `Bytes sent between ranks: ${formatBytes(total)} in all`,
    description,
    body: parts.join(""),
    caption,
    summary: `Within nodes: ${formatBytes(totals.intra)}; across nodes: ${formatBytes(totals.inter)}; ` +
      `total: ${formatBytes(total)} (${formatCount(total)} bytes).`,
    table: {
      headers: ["From rank", "To rank", "Link", "Bytes", "Size"],
      rows: pairs.map((p) => [p.src, p.dst, LINK_WORDS[p.link], p.bytes, formatBytes(p.bytes)]),
    },
  });
}

/** The two ramps, from none to the largest cell, and what the outline means. */
function legend(left: number, top: number, largest: number, severalNodes: boolean): string {
  const steps = 5;
  const swatch = 24;
  const parts: string[] = [];
  (["intra", "inter"] as const).forEach((link, row) => {
    const y = top + row * 64;
    parts.push(
      text(left, y + 12, LINK_WORDS[link] + (link === "inter" && !severalNodes ? " (one node: none)" : ""), { fill: INK }),
    );
    for (let i = 0; i < steps; i++) {
      const t = MIN_SHADE + ((1 - MIN_SHADE) * i) / (steps - 1);
      parts.push(
        element("rect", { x: left + i * swatch, y: y + 20, width: swatch, height: 14, fill: mix(PALE, LINK_COLOURS[link], t) }),
      );
    }
    parts.push(text(left, y + 48, "little", { fill: MUTED_INK, "font-size": 11 }));
    parts.push(
      text(left + steps * swatch, y + 48, formatBytes(largest), { fill: MUTED_INK, "font-size": 11, "text-anchor": "end" }),
    );
  });
  const y = top + 132;
  parts.push(element("rect", { x: left, y, width: 24, height: 16, fill: "none", stroke: INK, "stroke-width": 3 }));
  parts.push(text(left + 32, y + 12, "the ranks of one node", { fill: INK }));
  parts.push(element("rect", { x: left, y: y + 26, width: 24, height: 16, fill: PALE }));
  parts.push(text(left + 32, y + 38, "no bytes", { fill: INK }));
  return element("g", { class: "legend" }, parts.join(""));
}
