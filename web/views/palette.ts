// The colours of the lab page's views, chosen to stay apart for readers with colour-vision
// deficiencies: Okabe & Ito's eight colours for collective kinds, memory categories and link
// classes, Paul Tol's "muted" scheme for ranks. A rank has the same colour in every view, and so
// does a collective kind. Colour is never the only cue: every view also labels, outlines or tabulates.

/** Okabe & Ito (2008), "Color Universal Design". */
export const OKABE_ITO = {
  orange: "#E69F00",
  skyBlue: "#56B4E9",
  bluishGreen: "#009E73",
  yellow: "#F0E442",
  blue: "#0072B2",
  vermillion: "#D55E00",
  reddishPurple: "#CC79A7",
  grey: "#999999",
} as const;

/** Paul Tol's "muted" qualitative scheme, one colour per rank (rank 9 takes rank 0's again, and so on). */
const RANK_COLOURS = ["#332288", "#88CCEE", "#44AA99", "#117733", "#999933", "#DDCC77", "#CC6677", "#882255", "#AA4499"];

export function rankColour(rank: number): string {
  return RANK_COLOURS[rank % RANK_COLOURS.length];
}

/** Each collective kind (src/comm/descriptor.ts KINDS, and "recv"): its colour and a short label for narrow segments. */
export const KIND_STYLES: Record<string, { colour: string; short: string }> = {
  allReduce: { colour: OKABE_ITO.blue, short: "AR" },
  reduceScatter: { colour: OKABE_ITO.vermillion, short: "RS" },
  allGather: { colour: OKABE_ITO.bluishGreen, short: "AG" },
  allToAll: { colour: OKABE_ITO.reddishPurple, short: "A2A" },
  broadcast: { colour: OKABE_ITO.orange, short: "BC" },
  send: { colour: OKABE_ITO.skyBlue, short: "S" },
  recv: { colour: OKABE_ITO.yellow, short: "R" },
  reduce: { colour: "#882255", short: "RD" },
  gather: { colour: "#44AA99", short: "G" },
  scatter: { colour: "#DDCC77", short: "SC" },
  barrier: { colour: OKABE_ITO.grey, short: "B" },
};

/** The style of a kind this palette does not know: grey, labelled by its name. */
export function kindStyle(kind: string): { colour: string; short: string } {
  return KIND_STYLES[kind] ?? { colour: "#BBBBBB", short: kind.slice(0, 3) };
}

/** Links within a node and across nodes: two hues, each drawn as a ramp from pale to full. */
export const LINK_COLOURS = { intra: OKABE_ITO.blue, inter: OKABE_ITO.vermillion } as const;

/** The colour of empty cells and the lightest end of a ramp. */
export const PALE = "#F4F5F7";
/** Outlines, axes and secondary text. */
export const INK = "#1D232B";
export const MUTED_INK = "#5B6570";

/** The colour `t` of the way from `from` to `to` (#RRGGBB, t in [0, 1]). */
export function mix(from: string, to: string, t: number): string {
  const a = channels(from);
  const b = channels(to);
  return "#" + a.map((c, i) => Math.round(c + (b[i] - c) * t).toString(16).padStart(2, "0")).join("").toUpperCase();
}

/** Text that reads on a background: white on dark colours, ink on light ones (by WCAG relative luminance). */
export function textOn(background: string): string {
  const [r, g, b] = channels(background).map((c) => {
    const s = c / 255;
    return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
  });
  const luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b;
  // Below about 0.21 the contrast with white, 1.05 / (L + 0.05), beats the contrast with INK.
  return luminance < 0.21 ? "#FFFFFF" : INK;
}

function channels(hex: string): number[] {
  return [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
}
