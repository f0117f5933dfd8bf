// The page's kernel self-check: opens the best device this browser offers and runs every kernel
// family against the CPU reference, one table row each. On the CPU backend there is nothing to
// compare (the CPU backend is the reference), and the panel says so instead of claiming agreement.
// `document.body.dataset.selfcheck` ends as "done" or "error" so that tests can wait for it.

import { createDevice } from "../src/tensor/device.ts";
import { SELFCHECK_TOLERANCE, selfcheckRows } from "../src/selfcheck.ts";

export async function runSelfcheck(rows: HTMLElement, status: HTMLElement): Promise<void> {
  rows.replaceChildren();
  status.className = "muted";
  status.textContent = "running…";
  const device = await createDevice();
  try {
    document.body.dataset.selfcheckBackend = device.name;
    if (device.name === "cpu") {
      status.textContent = "This browser offers no WebGPU adapter, so the only backend here is the CPU backend — the " +
        "reference itself. There is nothing to compare it with.";
      return;
    }
    let failures = 0;
    for await (const row of selfcheckRows(device)) {
      if (!row.ok) failures++;
      const tr = document.createElement("tr");
      tr.dataset.family = row.family;
      tr.dataset.ok = String(row.ok);
      tr.innerHTML = `<td>${row.family}</td><td class="${row.ok ? "ok" : "fail"}">${row.ok ? "agrees" : "DIFFERS"}</td>` +
        `<td class="num">${row.difference.toExponential(1)}</td><td class="num">${row.milliseconds.toFixed(0)} ms</td>`;
      rows.append(tr);
    }
    status.textContent = failures
      ? `${failures} kernel families differ from the CPU reference by more than ${SELFCHECK_TOLERANCE} on ${device.name}.`
      : `Every kernel family agrees with the CPU reference on ${device.name} (tolerance ${SELFCHECK_TOLERANCE}).`;
  } finally {
    device.destroy();
  }
}
