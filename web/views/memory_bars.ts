// What each rank holds: stacked bars of parameters, gradients, optimizer state, ZeRO-3's gathered
// blocks and ZeRO++'s hpZ secondary copy, on one scale for all ranks, so that a student sees what
// each ZeRO stage takes away (stage 1 the optimizer state, stage 2 the gradients, stage 3 the
// parameters, at the price of a gathered block) and what hpZ adds back.

import type { RankMemory } from "../../src/parallel/strategy.ts";
import { element, figure, legend, text, tooltip } from "./markup.ts";
import { INK, MUTED_INK, OKABE_ITO, rankColour, textOn } from "./palette.ts";
import { formatBytes, formatCount, niceTicks } from "./units.ts";

/** The categories in stacking order, each with its label and colour. */
export const MEMORY_CATEGORIES: { key: keyof RankMemory; label: string; colour: string }[] = [
  { key: "parameters", label: "parameters", colour: OKABE_ITO.blue },
  { key: "gradients", label: "gradients", colour: OKABE_ITO.orange },
  { key: "optimizer", label: "optimizer state (fp32 master, AdamW moments)", colour: OKABE_ITO.bluishGreen },
  { key: "gathered", label: "gathered blocks (ZeRO-3)", colour: OKABE_ITO.reddishPurple },
  { key: "secondary", label: "hpZ secondary copy (ZeRO++)", colour: OKABE_ITO.skyBlue },
];

const LEFT = 76;
const BAR_AREA = 600;
const RIGHT = 84;
const ROW = 30;
const BAR = 22;
/** Rough width of a character of the 11-unit font, to decide whether a label fits inside its segment. */
const CHAR = 6.2;

/** Stacked bars per rank (bytes, on a scale shared by all ranks), with a legend and the exact numbers. */
export function renderMemoryBars(memory: RankMemory[], caption: string): string {
  const totals = memory.map((m) => MEMORY_CATEGORIES.reduce((sum, { key }) => sum + m[key], 0));
  const ticks = niceTicks(Math.max(0, ...totals), 5, true);
  const scaleMax = ticks.at(-1)!;
  const scale = (bytes: number) => (bytes / scaleMax) * BAR_AREA;
  const width = LEFT + BAR_AREA + RIGHT;

  const parts: string[] = [];
  const key = legend(
    MEMORY_CATEGORIES.map(({ key, label, colour }) => ({
      colour,
      label: memory.some((m) => m[key] > 0) ? label : `${label}: none`,
      data: { "data-category": key },
    })),
    width,
  );
  parts.push(key.markup);
  const top = key.height + 8;
  const axisY = top + memory.length * ROW + 4;
  for (const tick of ticks) {
    const x = LEFT + scale(tick);
    parts.push(element("line", { x1: x, y1: top - 4, x2: x, y2: axisY, stroke: "#DDE2E7", "stroke-width": 1 }));
    parts.push(text(x, axisY + 16, formatBytes(tick), { "text-anchor": "middle", fill: MUTED_INK, "font-size": 11 }));
  }
  parts.push(text(LEFT + BAR_AREA / 2, axisY + 36, "bytes held on the rank", { "text-anchor": "middle", fill: INK }));

  memory.forEach((m, rank) => {
    const y = top + rank * ROW;
    const segments: string[] = [];
    let x = LEFT;
    for (const { key, label, colour } of MEMORY_CATEGORIES) {
      if (m[key] === 0) continue;
      const w = scale(m[key]);
      const value = formatBytes(m[key]);
      segments.push(element(
        "g",
        { class: "segment", "data-category": key, "data-bytes": m[key] },
        tooltip(`rank ${rank}, ${label}: ${value} (${formatCount(m[key])} bytes)`) +
          element("rect", { x, y, width: w, height: BAR, fill: colour, stroke: "#FFFFFF", "stroke-width": 1 }) +
          (value.length * CHAR + 6 <= w
            ? text(x + w / 2, y + BAR / 2 + 4, value, { "text-anchor": "middle", fill: textOn(colour), "font-size": 11 })
            : ""),
      ));
      x += w;
    }
    const summary = MEMORY_CATEGORIES.map(({ key, label }) => `${label} ${formatBytes(m[key])}`).join(", ");
    const data = Object.fromEntries(MEMORY_CATEGORIES.map(({ key }) => [`data-${key}`, m[key]]));
    parts.push(element(
      "g",
      { class: "bar", "data-rank": rank, ...data, "data-total": totals[rank] },
      tooltip(`rank ${rank}: ${formatBytes(totals[rank])} in all (${summary})`) +
        element("circle", { cx: 12, cy: y + BAR / 2, r: 5, fill: rankColour(rank) }) +
        text(24, y + BAR / 2 + 4, `rank ${rank}`, { fill: INK }) +
        segments.join("") +
        text(x + 6, y + BAR / 2 + 4, formatBytes(totals[rank]), { fill: INK, "font-size": 11 }),
    ));
  });

  const most = totals.indexOf(Math.max(...totals));
  const same = totals.every((t) => t === totals[0]);
  const summary = memory.length === 0
    ? "No ranks."
    : same
    ? `Every rank holds ${formatBytes(totals[0])}.`
    : `Rank ${most} holds the most, ${formatBytes(totals[most])}; rank ${totals.indexOf(Math.min(...totals))} the least, ` +
      `${formatBytes(Math.min(...totals))}.`;
  return figure({
    view: "memory-bars",
    width,
    height: axisY + 48,
    title: `Memory per rank: ${summary}`,
    description: `One stacked bar per rank of ${memory.length}, on one scale: ` +
      `${MEMORY_CATEGORIES.map(({ label }) => label).join(", ")}, in bytes.`,
    body: parts.join(""),
    caption,
    summary,
    table: {
      headers: ["Rank", ...MEMORY_CATEGORIES.map(({ label }) => `${label} (bytes)`), "Total (bytes)"],
      rows: memory.map((m, rank) => [rank, ...MEMORY_CATEGORIES.map(({ key }) => m[key]), totals[rank]]),
    },
  });
}
