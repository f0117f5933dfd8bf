// The ranks page: launches a world of ranks as module workers from this page, all-reduces one vector
// across them (ranks_allreduce.ts) and shows every rank's result next to the expected sum, and the
// traffic matrix of the merged ledger. The page is cross-origin isolated by serve.ts, which is what
// lets the ranks share memory. `document.body.dataset.ranks` goes "running" → "done" | "error", and
// `dataset.results` holds { ranks, length, results: [{ rank, node, backend, values }] } as JSON.

import { launch } from "../src/comm/launch.ts";
import type { AllReduceArgs, AllReduceResult } from "./ranks_allreduce.ts";
import type { BackendChoice } from "../src/tensor/device.ts";

const byId = (id: string) => document.getElementById(id)!;

function cell(text: string | number, className = ""): HTMLTableCellElement {
  const td = document.createElement("td");
  td.textContent = String(text);
  td.className = className;
  return td;
}

function row(...cells: HTMLTableCellElement[]): HTMLTableRowElement {
  const tr = document.createElement("tr");
  tr.append(...cells);
  return tr;
}

/** x summed over n ranks, where rank r holds (r + 1)·(i + 1). */
function expectedValue(i: number, ranks: number): number {
  return ((i + 1) * ranks * (ranks + 1)) / 2;
}

async function run(): Promise<void> {
  const params = new URLSearchParams(location.search);
  const ranks = Number(params.get("ranks") ?? 4);
  const ranksPerNode = Number(params.get("ranksPerNode") ?? Math.min(2, ranks));
  const length = Number(params.get("length") ?? 1009);
  const backend = (params.get("backend") ?? "auto") as BackendChoice;
  if (!crossOriginIsolated) {
    throw new Error("this page is not cross-origin isolated, so it has no SharedArrayBuffer; serve it with `npm run serve`");
  }
  document.body.dataset.ranks = "running";
  byId("status").textContent = `launching ${ranks} ranks…`;
  const args: AllReduceArgs = { length };
  const results = await launch<AllReduceResult>({
    ranks,
    ranksPerNode,
    backend,
    args,
    entry: new URL("./ranks_allreduce.js", location.href),
    workerUrl: new URL("./rank_worker.js", location.href),
    onEvent: ({ rank }) => (byId("status").textContent = `rank ${rank} finished its all-reduce`),
  });

  for (const { value } of results) {
    const correct = value.values.every((v, i) => v === expectedValue(i, ranks));
    byId("ranks").append(row(
      cell(value.rank),
      cell(value.node),
      cell(value.backend),
      cell(`${value.ms.toFixed(1)} ms`, "num"),
      cell(Array.from(value.values.slice(0, 4)).join(", ") + " …"),
      cell(correct ? "matches n(n+1)/2·(i+1)" : "wrong", correct ? "ok" : "fail"),
    ));
  }
  const { traffic } = results;
  const header = row(cell("src \\ dst"), ...traffic.matrix.map((_, dst) => cell(dst)));
  byId("traffic").append(header, ...traffic.matrix.map((bytes, src) => row(cell(src), ...bytes.map((b) => cell(b, "num")))));
  byId("totals").textContent = `${traffic.totalBytes} bytes in all: ${traffic.byLink.intra} within nodes, ` +
    `${traffic.byLink.inter} across nodes; simulated time ${traffic.simulatedMs.toFixed(4)} ms`;

  document.body.dataset.results = JSON.stringify({
    ranks,
    length,
    totalBytes: traffic.totalBytes,
    results: results.map(({ value }) => ({ ...value, values: Array.from(value.values) })),
  });
  byId("status").textContent = "done";
  document.body.dataset.ranks = "done";
}

run().catch((error: Error) => {
  byId("status").textContent = `error: ${error.message}`;
  byId("status").className = "fail";
  document.body.dataset.ranks = "error";
});
