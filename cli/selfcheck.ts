// `shardlab selfcheck` (what `npm start` runs): the adapter, then every kernel family against the CPU reference.

import { createDevice } from "../mod.ts";
import type { BackendChoice } from "../src/tensor/device.ts";
import { selfcheckRows } from "../src/selfcheck.ts";

export async function selfcheck(backend: BackendChoice): Promise<boolean> {
  const device = await createDevice({ backend });
  console.log(`backend   ${device.name}`);
  console.log(`adapter   ${device.info.adapter}`);
  console.log(`features  ${device.info.features.join(" ") || "(none)"}`);
  console.log(`limits    ${Object.entries(device.info.limits).map(([k, v]) => `${k}=${v}`).join(" ")}\n`);
  let allOk = true;
  for await (const row of selfcheckRows(device)) {
    allOk &&= row.ok;
    const verdict = row.ok ? "ok  " : "FAIL";
    console.log(
      `${row.family.padEnd(14)} ${verdict}  max relative difference ${row.difference.toExponential(1)}  ${
        row.milliseconds.toFixed(0)
      } ms`,
    );
  }
  console.log(
    allOk ? "\nevery kernel family agrees with the CPU reference" : "\nsome kernel families disagree with the CPU reference",
  );
  device.destroy();
  return allOk;
}
