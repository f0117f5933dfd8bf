// Who holds which elements of each parameter: the fragment map drawn for students. Tensor
// parallelism first cuts each weight into shards (the norms stay whole on every tp rank); ZeRO then
// flattens each data group's shards into flat groups (ZeRO-1/2: the whole model as one, ZeRO-3: one
// per block) and cuts each into equal parts, one per data rank, across parameter boundaries.
//
// Two pictures in one figure:
//   by parameter     one bar per parameter over its elements, one section per tensor-parallel shard,
//                    each piece in the colour of the rank that holds it; a piece several ranks hold
//                    alike (DDP's replicas, a norm on every tp rank) is striped in all their colours
//   by rank          each rank's flat state in order: the fragments of its parameters, its flat
//                    groups' parts and their padding, so the cut across parameters shows

import type { FragmentMap } from "../../src/parallel/fragment_map.ts";
import { CHAR_WIDTH, element, figure, legend, text, tooltip } from "./markup.ts";
import { INK, mix, MUTED_INK, PALE, rankColour, textOn } from "./palette.ts";
import { formatCount } from "./units.ts";

/** A stretch of one tensor-parallel shard of a parameter and the ranks that hold it there. */
export interface OwnershipPiece {
  name: string;
  /** The tensor-parallel shard (0 for a replicated parameter, which has one set of elements). */
  shard: number;
  /** Elements [start, start + count) of the shard, row-major. */
  start: number;
  count: number;
  /** The ranks among those holding this shard that hold these elements, ascending. */
  holders: number[];
  /** Every rank that holds the same elements at the same place (the fragment's replicas, other shards included). */
  replicas: number[];
}

/** A parameter's bar: its tensor-parallel sections, each with its elements and pieces. */
export interface OwnershipRow {
  name: string;
  shape: number[];
  kind: string;
  sections: { shard: number; numel: number; pieces: OwnershipPiece[] }[];
}

/** Each parameter's pieces by shard, from the fragment map's ranks. */
export function ownershipRows(map: FragmentMap): OwnershipRow[] {
  return map.parameters.map(({ name, shape, shards }) => {
    const replicated = shards[0].kind === "replicated";
    const sections = (replicated ? shards.slice(0, 1) : shards).map((shard, index) => {
      const pieces = new Map<string, OwnershipPiece>();
      for (const entry of map.ranks) {
        if (!replicated && entry.tensorParallelRank !== index) continue;
        for (const fragment of entry.fragments) {
          if (fragment.name !== name) continue;
          const key = `${fragment.shardOffset}:${fragment.numel}`;
          const piece = pieces.get(key) ??
            { name, shard: index, start: fragment.shardOffset, count: fragment.numel, holders: [], replicas: fragment.replicas };
          piece.holders.push(entry.rank);
          pieces.set(key, piece);
        }
      }
      return {
        shard: index,
        numel: shard.shape.reduce((a, b) => a * b, 1),
        pieces: [...pieces.values()].sort((a, b) => a.start - b.start),
      };
    });
    return { name, shape, kind: shards[0].kind, sections };
  });
}

const LEFT = 250;
const BAR_AREA = 560;
const RIGHT = 170;
const ROW = 28;
const BAR = 20;
const SECTION_GAP = 6;
/** Rough width of a character of the 10-unit font. */
const LABEL_CHAR = 5.6;
/** How tensor parallelism splits each kind of parameter (tp_shards.ts). */
const SPLIT_WORDS: Record<string, string> = {
  replicated: "replicated",
  column: "column-parallel",
  row: "row-parallel",
  vocab: "vocab-parallel",
};

/** For each parameter a bar over its elements split by owning rank, then each rank's flat state. */
export function renderZeroOwnership(map: FragmentMap, caption: string): string {
  const { dataParallelSize: dp, tensorParallelSize: tp, layout } = map;
  const width = LEFT + BAR_AREA + RIGHT;
  const ranksPerNode = map.worldSize / layout.nodes;
  const parts: string[] = [];
  const key = legend(
    map.ranks.map(({ rank, dataRank, tensorParallelRank }) => ({
      colour: rankColour(rank),
      label: `rank ${rank} (node ${Math.floor(rank / ranksPerNode)}, data ${dataRank}, tp ${tensorParallelRank})`,
      data: { "data-rank": rank },
    })),
    width,
  );
  parts.push(key.markup);
  let y = key.height + 12;
  parts.push(text(8, y + 4, "By parameter: which rank holds which elements (striped: several ranks hold them alike)", {
    "font-weight": 600,
    fill: INK,
  }));
  y += 20;
  if (tp > 1) {
    const section = (BAR_AREA - SECTION_GAP * (tp - 1)) / tp;
    for (let shard = 0; shard < tp; shard++) {
      parts.push(text(LEFT + shard * (section + SECTION_GAP) + section / 2, y + 4, `tensor-parallel shard ${shard}`, {
        "text-anchor": "middle",
        fill: MUTED_INK,
        "font-size": 11,
      }));
    }
    y += 14;
  }
  const rows = ownershipRows(map);
  for (const row of rows) {
    parts.push(parameterRow(row, y));
    y += ROW;
  }
  y += 16;
  parts.push(text(8, y + 4, "By rank: each rank's flat optimizer state, fragment by fragment (dashed: padding)", {
    "font-weight": 600,
    fill: INK,
  }));
  y += 12;
  const longest = Math.max(1, ...map.ranks.map((entry) => entry.numel));
  if (map.ranks[0].flatGroups.length > 0) {
    parts.push(flatGroupLabels(map.ranks[0].flatGroups, y, longest));
    y += 14;
  } else {
    y += 4;
  }
  for (const entry of map.ranks) {
    parts.push(flatStateRow(entry, y, longest));
    y += ROW;
  }

  const summary = layout.zero === 0
    ? `DDP: nothing is partitioned. Every rank of a data group holds every parameter whole` +
      (tp > 1 ? " (its tensor-parallel shard)" : "") + `, so each piece is held by all ${dp} ranks of the data group alike.`
    : `ZeRO-${layout.zero}: the ${dp} ranks of each data group split ` +
      (layout.zero === 3 ? "each block's parameters (one flat group per block)" : "all parameters (one flat group)") +
      ` into ${dp} equal parts, cutting across parameters; each rank keeps the optimizer state of its part only.`;
  const tpNote = tp > 1
    ? ` Tensor parallelism first splits each weight into ${tp} shards; the norms stay whole on every tp rank.`
    : "";
  return figure({
    view: "zero-ownership",
    width,
    height: y + 8,
    title: `Which rank holds which parameter elements: ${summary}`,
    description: `One bar per parameter (${rows.length}) over its elements, divided by tensor-parallel shard, each piece ` +
      `coloured by the rank that holds it; below, each of the ${map.worldSize} ranks' flat state in order.${tpNote}`,
    body: parts.join(""),
    caption,
    summary: summary + tpNote,
    table: {
      headers: ["Parameter", "Tensor-parallel shard", "First element", "Elements", "Held by ranks"],
      rows: rows.flatMap((row) =>
        row.sections.flatMap((section) =>
          section.pieces.map((piece) => [row.name, section.shard, piece.start, piece.count, piece.holders.join(" ")])
        )
      ),
    },
  });
}

/** A parameter's label, its bar of pieces (one stripe per holder) and its shape. */
function parameterRow(row: OwnershipRow, y: number): string {
  const sectionWidth = (BAR_AREA - SECTION_GAP * (row.sections.length - 1)) / row.sections.length;
  const out: string[] = [text(8, y + BAR / 2 + 4, shortName(row.name), { fill: INK })];
  row.sections.forEach((section, index) => {
    const left = LEFT + index * (sectionWidth + SECTION_GAP);
    out.push(element("rect", { x: left, y, width: sectionWidth, height: BAR, fill: PALE }));
    for (const piece of section.pieces) {
      const x = left + (piece.start / section.numel) * sectionWidth;
      const w = (piece.count / section.numel) * sectionWidth;
      const stripe = BAR / piece.holders.length;
      const others = piece.replicas.filter((r) => !piece.holders.includes(r));
      piece.holders.forEach((rank, i) => {
        const hover = `${row.name}, tp shard ${section.shard}: elements ${formatCount(piece.start)}–` +
          `${formatCount(piece.start + piece.count - 1)} (${formatCount(piece.count)}) held by rank ${rank}` +
          (piece.holders.length > 1 ? `; ranks ${piece.holders.join(", ")} hold them alike` : "") +
          (others.length > 0 ? `; the same elements also lie on ranks ${others.join(", ")} (another tp shard)` : "");
        out.push(element(
          "g",
          {
            class: "piece",
            "data-param": row.name,
            "data-shard": section.shard,
            "data-rank": rank,
            "data-start": piece.start,
            "data-count": piece.count,
            "data-replicas": piece.replicas.join(" "),
          },
          tooltip(hover) +
            element("rect", { x, y: y + i * stripe, width: w, height: stripe, fill: rankColour(rank) }),
        ));
      });
      const label = `r${piece.holders[0]}`;
      if (piece.holders.length === 1 && label.length * CHAR_WIDTH + 4 <= w) {
        out.push(
          text(x + w / 2, y + BAR / 2 + 4, label, { "text-anchor": "middle", fill: textOn(rankColour(piece.holders[0])) }),
        );
      }
      out.push(element("rect", { x, y, width: w, height: BAR, fill: "none", stroke: "#FFFFFF", "stroke-width": 1 }));
    }
  });
  const about = `${row.shape.join("×")}, ${SPLIT_WORDS[row.kind] ?? row.kind}`;
  out.push(text(LEFT + BAR_AREA + 10, y + BAR / 2 + 4, about, { fill: MUTED_INK, "font-size": 10 }));
  return element("g", { class: "parameter", "data-param": row.name }, tooltip(`${row.name}: ${about}`) + out.join(""));
}

/** One rank's flat state: its fragments in its colour (alternating shades), padding dashed, flat-group parts marked. */
function flatStateRow(entry: FragmentMap["ranks"][number], y: number, longest: number): string {
  const scale = (elements: number) => (elements / longest) * BAR_AREA;
  const colour = rankColour(entry.rank);
  const out: string[] = [
    element("circle", { cx: 14, cy: y + BAR / 2, r: 5, fill: colour }),
    text(26, y + BAR / 2 + 4, `rank ${entry.rank}: ${formatCount(entry.numel)} elements`, { fill: INK }),
  ];
  entry.fragments.forEach((fragment, i) => {
    const fill = i % 2 === 0 ? colour : mix(colour, "#FFFFFF", 0.4);
    const label = shortName(fragment.name).split(".").at(-1)!;
    out.push(element(
      "g",
      {
        class: "flat-fragment",
        "data-rank": entry.rank,
        "data-param": fragment.name,
        "data-flat-start": fragment.start,
        "data-count": fragment.numel,
        "data-start": fragment.shardOffset,
      },
      tooltip(
        `rank ${entry.rank}, flat elements ${formatCount(fragment.start)}–${formatCount(fragment.start + fragment.numel - 1)}: ` +
          `${fragment.name}, its shard's elements from ${formatCount(fragment.shardOffset)}`,
      ) +
        element("rect", { x: LEFT + scale(fragment.start), y, width: scale(fragment.numel), height: BAR, fill }) +
        (label.length * LABEL_CHAR + 4 <= scale(fragment.numel)
          ? text(LEFT + scale(fragment.start + fragment.numel / 2), y + BAR / 2 + 4, label, {
            "text-anchor": "middle",
            fill: textOn(fill),
            "font-size": 10,
          })
          : ""),
    ));
  });
  for (const [start, numel] of entry.padding) {
    out.push(element(
      "g",
      { class: "padding", "data-rank": entry.rank, "data-flat-start": start, "data-count": numel },
      tooltip(`rank ${entry.rank}: ${formatCount(numel)} elements of padding (zeros) at ${formatCount(start)}`) +
        element("rect", {
          x: LEFT + scale(start),
          y: y + 1,
          width: scale(numel),
          height: BAR - 2,
          fill: "#FFFFFF",
          stroke: MUTED_INK,
          "stroke-dasharray": "3 2",
        }),
    ));
  }
  for (const group of entry.flatGroups) {
    const x = LEFT + scale(group.start);
    out.push(element("line", { x1: x, y1: y - 3, x2: x, y2: y + BAR + 3, stroke: INK, "stroke-width": 2 }));
  }
  return element("g", { class: "flat-state", "data-rank": entry.rank, "data-numel": entry.numel }, out.join(""));
}

/** Each flat group's part named above the flat states (every rank's parts lie at the same places). */
function flatGroupLabels(groups: FragmentMap["ranks"][number]["flatGroups"], y: number, longest: number): string {
  return groups.map((group, index) => {
    const width = (group.partNumel / longest) * BAR_AREA;
    const words = groups.length === 1 ? "one flat group: every parameter" : `flat group ${index}`;
    const label = words.length * LABEL_CHAR <= width ? words : String(index);
    return element(
      "g",
      { class: "flat-group", "data-group": index },
      tooltip(`flat group ${index}: ${group.names.join(", ")}`) +
        text(LEFT + ((group.start + group.partNumel / 2) / longest) * BAR_AREA, y + 6, label, {
          "text-anchor": "middle",
          fill: MUTED_INK,
          "font-size": 10,
        }),
    );
  }).join("");
}

/** A parameter's name without the parts every name shares ("model.", ".weight"). */
function shortName(name: string): string {
  return name.replace(/^model\./, "").replace(/\.weight$/, "");
}
