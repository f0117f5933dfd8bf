// The self-check page: opens the best device this browser offers and runs every kernel family
// against the CPU reference, one table row each. `document.body.dataset.state` ends as "done" or
// "error" so that tests can wait for it.

import { createDevice } from "../src/tensor/device.ts";
import { SELFCHECK_TOLERANCE, selfcheckRows } from "../src/selfcheck.ts";

const byId = (id: string) => document.getElementById(id)!;

async function run(): Promise<void> {
  const device = await createDevice();
  byId("backend").textContent = device.name;
  byId("adapter").textContent = device.info.adapter;
  if (device.name === "cpu") {
    const notice = byId("notice");
    notice.textContent = "This browser offers no WebGPU adapter, so shardlab runs on its CPU backend.";
    notice.style.display = "block";
  }
  let failures = 0;
  for await (const row of selfcheckRows(device)) {
    if (!row.ok) failures++;
    const tr = document.createElement("tr");
    tr.dataset.family = row.family;
    tr.dataset.ok = String(row.ok);
    tr.innerHTML = `<td>${row.family}</td><td class="${row.ok ? "ok" : "fail"}">${row.ok ? "agrees" : "DIFFERS"}</td>` +
      `<td class="num">${row.difference.toExponential(1)}</td><td class="num">${row.milliseconds.toFixed(0)} ms</td>`;
    byId("rows").append(tr);
  }
  byId("status").textContent = failures
    ? `${failures} kernel families differ from the CPU reference by more than ${SELFCHECK_TOLERANCE}.`
    : `Every kernel family agrees with the CPU reference (tolerance ${SELFCHECK_TOLERANCE}).`;
  document.body.dataset.backend = device.name;
  document.body.dataset.state = "done";
  device.destroy();
}

run().catch((error) => {
  byId("status").textContent = `error: ${error instanceof Error ? error.message : error}`;
  byId("status").className = "fail";
  document.body.dataset.state = "error";
});
