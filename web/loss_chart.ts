// The lab's loss chart, as SVG markup: the run's loss per step (one line per launch, so that the
// steps an elastic run trains again after a failure show as a second line over the first), the same
// run on one rank for comparison, and the corpus floor: the exact entropy of each step's rows,
// which no model can beat. Failures and resumes are marked where they happened.

export interface LossPoint {
  step: number;
  loss: number;
}

export interface LossChartData {
  totalSteps: number;
  /** The run's steps, one list per launch (an elastic run launches again after a failure). */
  attempts: LossPoint[][];
  /** The same run on one rank; empty when not compared. */
  reference: LossPoint[];
  /** The corpus floor of each step's rows. */
  floor: LossPoint[];
  /** Vertical marks: a failed rank, a resume. */
  marks: { step: number; label: string }[];
}

const WIDTH = 800, HEIGHT = 230;
const PAD = { left: 44, right: 12, top: 12, bottom: 34 };
const RUN_COLOURS = ["#0072B2", "#D55E00", "#CC79A7"];
const REFERENCE_COLOUR = "#E69F00";
const FLOOR_COLOUR = "#009E73";

export function renderLossChart(data: LossChartData): string {
  const losses = [...data.attempts.flat(), ...data.reference, ...data.floor].map((point) => point.loss);
  const top = Math.min(8, Math.max(1, ...losses)) + 0.2;
  const bottom = Math.max(0, Math.min(top - 1, ...losses) - 0.2);
  const x = (step: number) => PAD.left + (step / data.totalSteps) * (WIDTH - PAD.left - PAD.right);
  const y = (loss: number) => PAD.top + ((top - Math.min(loss, top)) / (top - bottom)) * (HEIGHT - PAD.top - PAD.bottom);
  const line = (points: LossPoint[], colour: string, series: string, dash = "") =>
    points.length === 0
      ? ""
      : `<polyline data-series="${series}" data-points="${points.length}" fill="none" stroke="${colour}" ` +
        `stroke-width="2"${dash ? ` stroke-dasharray="${dash}"` : ""} points="${
          points.map((p) => `${x(p.step).toFixed(1)},${y(p.loss).toFixed(1)}`).join(" ")
        }"></polyline>`;
  const ticks = [0, 1, 2, 3, 4].map((i) => {
    const value = bottom + ((top - bottom) * i) / 4;
    return `<text x="${PAD.left - 6}" y="${y(value) + 4}" text-anchor="end">${value.toFixed(1)}</text>` +
      `<line x1="${PAD.left}" x2="${WIDTH - PAD.right}" y1="${y(value)}" y2="${y(value)}" stroke="#e5e8eb"></line>`;
  }).join("");
  const marks = data.marks.map((mark, i) =>
    `<g data-mark="${mark.step}"><line x1="${x(mark.step)}" x2="${x(mark.step)}" y1="${PAD.top}" y2="${HEIGHT - PAD.bottom}" ` +
    `stroke="#b42318" stroke-dasharray="3 3"></line><text x="${x(mark.step) + 4}" y="${PAD.top + 12 + 14 * i}" fill="#b42318">${
      escapeText(mark.label)
    }</text></g>`
  ).join("");
  const legend = [
    ...data.attempts.map((_, i) => [RUN_COLOURS[i % RUN_COLOURS.length], i === 0 ? "this layout" : `after failure ${i}`]),
    ...(data.reference.length ? [[REFERENCE_COLOUR, "same run on one rank"]] : []),
    [FLOOR_COLOUR, "corpus floor"],
  ].map(([colour, label], i) =>
    `<g transform="translate(${PAD.left + i * 150},${HEIGHT - 6})"><rect y="-9" width="14" height="4" fill="${colour}"></rect>` +
    `<text x="18" y="-4">${label}</text></g>`
  ).join("");
  return `<svg viewBox="0 0 ${WIDTH} ${HEIGHT}" role="img" aria-labelledby="loss-title" font-size="11" ` +
    `font-family="system-ui, sans-serif"><title id="loss-title">Loss per step, nats per token</title>${ticks}` +
    `<line x1="${PAD.left}" x2="${PAD.left}" y1="${PAD.top}" y2="${HEIGHT - PAD.bottom}" stroke="#5b6570"></line>` +
    `<text x="${PAD.left}" y="${HEIGHT - PAD.bottom + 13}">0</text>` +
    `<text x="${WIDTH - PAD.right}" y="${HEIGHT - PAD.bottom + 13}" text-anchor="end">step ${data.totalSteps}</text>` +
    line(data.floor, FLOOR_COLOUR, "floor", "6 4") +
    data.attempts.map((points, i) => line(points, RUN_COLOURS[i % RUN_COLOURS.length], `attempt-${i}`)).join("") +
    // Over the run's lines, dashed: where the two agree, both stay visible.
    line(data.reference, REFERENCE_COLOUR, "reference", "4 4") +
    marks + legend + `</svg>`;
}

function escapeText(text: string): string {
  return text.replace(/[&<>]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;" })[c]!);
}
