// One training step's collectives, one lane per rank: each call a segment in call order, as wide as
// its time, coloured by kind. A collective starts on every rank of its group at once, when the last
// of them reaches it (the ranks wait for each other), so a student sees which ranks talk together
// and where one group's collectives hold up another's. Only communication is drawn: compute between
// the calls takes no room.
//
// The width is the cost model's simulated time by default (α + bytes / bandwidth per message, the
// same on every run) or the measured wall time, which also holds the waiting and the host's noise;
// every segment's tooltip gives both.

import type { CollectiveRecord } from "../../src/comm/ledger.ts";
import { element, figure, legend, text, tooltip } from "./markup.ts";
import { INK, KIND_STYLES, kindStyle, MUTED_INK, rankColour, textOn } from "./palette.ts";
import { formatBytes, formatCount, formatMs, niceTicks } from "./units.ts";

export interface TimelineOptions {
  /** What a segment's width shows: "simulated" (the cost model's time, the default) or "wall" (measured). */
  time?: "simulated" | "wall";
}

/** A record placed on the time axis: when it starts (aligned across its group) and how long it takes, ms. */
export interface PlacedCollective {
  rank: number;
  /** Its place in the rank's calls. */
  index: number;
  record: CollectiveRecord;
  startMs: number;
  durationMs: number;
}

/**
 * Places every rank's records on one time axis: each rank's calls in order, and a call that several
 * ranks make (the same id) starts on all of them when the last of them is free. Records whose
 * partners are missing from `records` (a partial step) follow their rank's previous call.
 */
export function placeCollectives(
  records: CollectiveRecord[][],
  duration: (record: CollectiveRecord) => number,
): PlacedCollective[][] {
  const holders = new Map<string, number[]>();
  records.forEach((list, rank) => {
    for (const id of new Set(list.map((record) => record.id))) holders.set(id, [...(holders.get(id) ?? []), rank]);
  });
  const next = records.map(() => 0);
  const free = records.map(() => 0);
  const placed: PlacedCollective[][] = records.map(() => []);
  const place = (ranks: number[], start: number) => {
    for (const rank of ranks) {
      const record = records[rank][next[rank]];
      const durationMs = duration(record);
      placed[rank].push({ rank, index: next[rank], record, startMs: start, durationMs });
      free[rank] = start + durationMs;
      next[rank]++;
    }
  };
  const ready = (rank: number, id: string) => next[rank] < records[rank].length && records[rank][next[rank]].id === id;
  for (let progress = true; progress;) {
    progress = false;
    for (let rank = 0; rank < records.length; rank++) {
      while (next[rank] < records[rank].length) {
        const ranks = holders.get(records[rank][next[rank]].id)!;
        if (!ranks.every((r) => ready(r, records[rank][next[rank]].id))) break;
        place(ranks, Math.max(...ranks.map((r) => free[r])));
        progress = true;
      }
    }
  }
  // What could not be matched (partners missing or out of order) goes one after another.
  records.forEach((list, rank) => {
    while (next[rank] < list.length) place([rank], free[rank]);
  });
  return placed;
}

const LEFT = 76;
const PLOT = 880;
const RIGHT = 24;
const LANE = 26;
const GAP = 8;
/** The narrowest a segment is drawn, so that a call of no time still shows. */
const MIN_WIDTH = 2;

/** One lane per rank for one step: each collective in call order as a segment, coloured by kind, with a legend. */
export function renderCollectiveTimeline(records: CollectiveRecord[][], caption: string, options: TimelineOptions = {}): string {
  const time = options.time ?? "simulated";
  const placed = placeCollectives(records, (record) => time === "wall" ? record.wallMs : record.simulatedMs);
  const end = Math.max(0, ...placed.flat().map((p) => p.startMs + p.durationMs));
  const ticks = niceTicks(end, 6);
  const scale = (ms: number) => (ms / ticks.at(-1)!) * PLOT;
  const width = LEFT + PLOT + RIGHT;

  const parts: string[] = [];
  const kinds = [...new Set(records.flat().map((r) => r.kind))].sort((a, b) => kindOrder(a) - kindOrder(b));
  const key = legend(
    kinds.map((kind) => ({
      colour: kindStyle(kind).colour,
      label: `${kind} (${kindStyle(kind).short})`,
      data: { "data-kind": kind },
    })),
    width,
  );
  parts.push(key.markup);
  const top = key.height + 10;
  const axisY = top + records.length * (LANE + GAP);
  for (const tick of ticks) {
    const x = LEFT + scale(tick);
    parts.push(element("line", { x1: x, y1: top - 4, x2: x, y2: axisY, stroke: "#DDE2E7", "stroke-width": 1 }));
    parts.push(text(x, axisY + 16, formatMs(tick), { "text-anchor": "middle", fill: MUTED_INK, "font-size": 11 }));
  }
  const axisTitle = time === "wall" ? "measured wall time" : "simulated time (cost model)";
  parts.push(text(LEFT + PLOT / 2, axisY + 36, `${axisTitle}; compute between calls not shown`, {
    "text-anchor": "middle",
    fill: INK,
  }));

  placed.forEach((lane, rank) => {
    const y = top + rank * (LANE + GAP);
    const segments = lane.map(({ index, record, startMs, durationMs }) => {
      const style = kindStyle(record.kind);
      const x = LEFT + scale(startMs);
      const w = Math.max(MIN_WIDTH, scale(durationMs));
      const hover = `${record.kind} · ${record.tag}\n${formatBytes(record.bytes)} sent (${formatCount(record.bytes)} bytes), ` +
        `${record.algorithm} over ranks ${record.group.join(", ")}\nwall ${formatMs(record.wallMs)}, ` +
        `simulated ${formatMs(record.simulatedMs)}`;
      return element(
        "g",
        {
          class: "segment",
          "data-rank": rank,
          "data-index": index,
          "data-id": record.id,
          "data-kind": record.kind,
          "data-tag": record.tag,
          "data-bytes": record.bytes,
          "data-wall-ms": record.wallMs,
          "data-simulated-ms": record.simulatedMs,
          "data-start-ms": startMs,
        },
        tooltip(hover) +
          element("rect", { x, y, width: w, height: LANE, fill: style.colour, stroke: "#FFFFFF", "stroke-width": 0.5 }) +
          (style.short.length * 7 + 4 <= w
            ? text(x + w / 2, y + LANE / 2 + 4, style.short, {
              "text-anchor": "middle",
              fill: textOn(style.colour),
              "font-size": 11,
            })
            : ""),
      );
    });
    parts.push(element(
      "g",
      { class: "lane", "data-rank": rank, "data-calls": lane.length },
      element("circle", { cx: 12, cy: y + LANE / 2, r: 5, fill: rankColour(rank) }) +
        text(24, y + LANE / 2 + 4, `rank ${rank}`, { fill: INK }) +
        element("line", { x1: LEFT, y1: y + LANE / 2, x2: LEFT + PLOT, y2: y + LANE / 2, stroke: "#DDE2E7" }) +
        segments.join(""),
    ));
  });

  const calls = records.reduce((sum, list) => sum + list.length, 0);
  const last = placed.map((lane) => lane.at(-1)).reduce<PlacedCollective | undefined>(
    (a, b) => (b && (!a || b.startMs + b.durationMs > a.startMs + a.durationMs) ? b : a),
    undefined,
  );
  const summary = last
    ? `${calls} calls on ${records.length} ranks; rank ${last.rank} is the last to finish, after ${
      formatMs(last.startMs + last.durationMs)
    } of ${time === "wall" ? "measured" : "simulated"} communication.`
    : "No collectives in this step.";
  return figure({
    view: "collective-timeline",
    width,
    height: axisY + 48,
    title: `Collectives of one step: ${summary}`,
    description: `One lane per rank; each collective in call order is a segment as wide as its ${
      time === "wall" ? "measured wall" : "simulated"
    } time, coloured by kind${
      kinds.length > 0 ? ` (${kinds.join(", ")})` : ""
    }. A collective starts on all ranks of its group together.`,
    body: parts.join(""),
    caption,
    summary,
    table: {
      headers: ["Rank", "Call", "Kind", "Tag", "Algorithm", "Group", "Bytes", "Wall ms", "Simulated ms", "Starts at ms"],
      rows: placed.flat().map(({ rank, index, record, startMs }) => [
        rank,
        index + 1,
        record.kind,
        record.tag,
        record.algorithm,
        record.group.join(" "),
        record.bytes,
        formatMs(record.wallMs),
        formatMs(record.simulatedMs),
        formatMs(startMs),
      ]),
    },
  });
}

/** The palette's order of kinds, unknown kinds last. */
function kindOrder(kind: string): number {
  const known = Object.keys(KIND_STYLES).indexOf(kind);
  return known < 0 ? Object.keys(KIND_STYLES).length : known;
}
