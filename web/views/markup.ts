// The markup the lab page's views share: escaping, attributes, the figure around each SVG and the
// table of exact numbers under it. The views are plain strings so that they run anywhere (Deno
// tests, a worker, the page) and the page only sets innerHTML.
//
// Every figure is an <figure> holding an SVG that scales to its container (viewBox, width 100%, no
// wider than its natural size), its caption, and a <details> table with the numbers the picture
// shows, for screen readers and for students who want the exact bytes.

import { INK } from "./palette.ts";

/** Text safe inside an element or a double-quoted attribute. */
export function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

const ESCAPES: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

export type AttributeValue = string | number | boolean | null | undefined;

/** ` name="value"` for each attribute that is set (false, null and undefined leave it out; true writes it bare). */
export function attrs(attributes: Record<string, AttributeValue>): string {
  let out = "";
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    out += value === true ? ` ${name}` : ` ${name}="${escapeXml(String(value))}"`;
  }
  return out;
}

/**
 * An element with escaped attributes; `inner` is markup (escape text first). Always closed with an
 * end tag: the HTML parser ignores "/>" on HTML elements, and innerHTML puts these in HTML.
 */
export function element(name: string, attributes: Record<string, AttributeValue>, inner = ""): string {
  return `<${name}${attrs(attributes)}>${inner}</${name}>`;
}

/** An SVG <text> of plain text. */
export function text(x: number, y: number, content: string, attributes: Record<string, AttributeValue> = {}): string {
  return element("text", { x: round(x), y: round(y), ...attributes }, escapeXml(content));
}

/** An SVG <title> of plain text: the tooltip of the element it is the first child of. */
export function tooltip(content: string): string {
  return element("title", {}, escapeXml(content));
}

/** A coordinate with at most two decimals, so that the markup stays short. */
export function round(value: number): number {
  return Math.round(value * 100) / 100;
}

export interface LegendItem {
  colour: string;
  /** Plain text. */
  label: string;
  /** Data attributes naming what the item stands for, e.g. { "data-kind": "allGather" }. */
  data: Record<string, AttributeValue>;
}

/** Rough width of a character of the 12-unit font, to lay out text without measuring it. */
export const CHAR_WIDTH = 6.6;

/** A legend of swatches from (8, 8), wrapped to `width`: its markup and its height. */
export function legend(items: LegendItem[], width: number): { markup: string; height: number } {
  const rowHeight = 22;
  let x = 8;
  let row = 0;
  const markup = items.map(({ colour, label, data }) => {
    const itemWidth = 20 + label.length * CHAR_WIDTH + 18;
    if (x + itemWidth > width && x > 8) {
      x = 8;
      row++;
    }
    const y = 8 + row * rowHeight;
    const item = element(
      "g",
      { class: "legend-item", ...data },
      element("rect", { x, y, width: 14, height: 14, fill: colour }) + text(x + 20, y + 11, label, { fill: INK }),
    );
    x += itemWidth;
    return item;
  }).join("");
  return { markup: element("g", { class: "legend" }, markup), height: 8 + (row + 1) * rowHeight };
}

export interface FigureParts {
  /** A class naming the view, e.g. "traffic-heatmap". */
  view: string;
  width: number;
  height: number;
  /** The SVG's accessible name and its longer description (plain text). */
  title: string;
  description: string;
  /** The SVG's content (markup). */
  body: string;
  /** Plain text: the caller's caption. */
  caption: string;
  /** Plain text after the caption (totals, a note). */
  summary?: string;
  table: DataTable;
}

export interface DataTable {
  /** Plain text. */
  headers: string[];
  /** Cells as plain text (numbers are written as given). */
  rows: (string | number)[][];
}

/** The figure: the scalable SVG, its caption and the table of its numbers. */
export function figure(parts: FigureParts): string {
  const svg = element(
    "svg",
    {
      xmlns: "http://www.w3.org/2000/svg",
      viewBox: `0 0 ${round(parts.width)} ${round(parts.height)}`,
      width: "100%",
      role: "img",
      style: `max-width:${Math.ceil(parts.width)}px;height:auto;display:block`,
      "font-family": "system-ui, sans-serif",
      "font-size": 12,
    },
    element("title", {}, escapeXml(parts.title)) + element("desc", {}, escapeXml(parts.description)) + parts.body,
  );
  const summary = parts.summary ? ` ${element("span", { class: "view-summary" }, escapeXml(parts.summary))}` : "";
  const caption = element("figcaption", {}, element("strong", {}, escapeXml(parts.caption)) + summary);
  return element("figure", { class: `shardlab-view ${parts.view}` }, svg + caption + dataTable(parts.table));
}

/** The numbers behind a figure, in a table that opens on demand. */
export function dataTable(table: DataTable): string {
  const head = element("tr", {}, table.headers.map((h) => element("th", { scope: "col" }, escapeXml(h))).join(""));
  const body = table.rows.map((row) => element("tr", {}, row.map((cell) => element("td", {}, escapeXml(String(cell)))).join("")))
    .join("");
  return element(
    "details",
    {},
    element("summary", {}, "The numbers") + element("table", {}, element("thead", {}, head) + element("tbody", {}, body)),
  );
}
