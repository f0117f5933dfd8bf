// `bench pipelines`: the compute pipelines a default `shardlab train` creates, and what compiling
// them costs on a cold start (empty driver shader cache) and a warm one.
//
// Mesa's llvmpipe compiles a pipeline in two places: createComputePipeline (WGSL → SPIR-V → NIR,
// in every run) and the pipeline's first dispatch (NIR → LLVM → machine code, on the queue's
// thread; the result is kept in Mesa's on-disk shader cache). The suite runs pipelines_child.ts in
// child processes (record the pipelines of one step, replay each, time a few steps), each with
// MESA_SHADER_CACHE_DIR pointing at one temporary folder, first empty (cold) then as the cold run
// left it (warm).

import type { SuiteOptions } from "./kernels.ts";
import type { RecordedPipeline, ReplayRow, StepsFigures } from "./pipelines_child.ts";
import { rankEntry } from "./rank_entry.ts";
import { alignedTable, formatMs, writeJsonReport } from "./report.ts";

/** Trainer steps timed in each `steps` child. */
const STEPS = 5;

/** Runs pipelines_child.ts in `mode` with the shader cache in `cacheDir`; returns what it printed as JSON. */
async function child<T>(mode: string, cacheDir: string, input?: string): Promise<T> {
  const args = ["run", "-A", "--no-check", rankEntry("pipelines_child", import.meta.url).pathname, mode];
  const env = { MESA_SHADER_CACHE_DIR: cacheDir, MESA_SHADER_CACHE_DISABLE: "false" };
  const command = new Deno.Command(Deno.execPath(), { args, env, stdin: "piped", stdout: "piped", stderr: "inherit" });
  const process = command.spawn();
  const writer = process.stdin.getWriter();
  await writer.write(new TextEncoder().encode(input ?? ""));
  await writer.close();
  const { code, stdout } = await process.output();
  if (code !== 0) throw new Error(`bench pipelines: the ${mode} child exited with ${code}`);
  return JSON.parse(new TextDecoder().decode(stdout)) as T;
}

function progress(message: string): void {
  console.error(`bench pipelines: ${message}`);
}

export async function runPipelines(options: SuiteOptions): Promise<number> {
  const scratch = await Deno.makeTempDir({ prefix: "shardlab_pipelines_" });
  try {
    progress("recording the pipelines of one training step");
    const recorded = await child<RecordedPipeline[]>("record", `${scratch}/record`);
    const input = JSON.stringify(recorded);
    progress(`${recorded.length} pipelines; replaying each cold, then warm`);
    const cold = await child<ReplayRow[]>("replay", `${scratch}/replay`, input);
    const warm = await child<ReplayRow[]>("replay", `${scratch}/replay`, input);
    progress(`${STEPS} training steps cold, then warm`);
    const stepsCold = await child<StepsFigures>("steps", `${scratch}/steps`, String(STEPS));
    const stepsWarm = await child<StepsFigures>("steps", `${scratch}/steps`, String(STEPS));

    const pair = (a: number, b: number) => `${formatMs(a)} / ${formatMs(b)}`;
    const rows = cold.map((c, i) => {
      const w = warm[i];
      return [
        c.pipeline,
        pair(c.moduleMs, w.moduleMs),
        pair(c.createMs, w.createMs),
        pair(c.firstDispatchMs, w.firstDispatchMs),
        formatMs(c.secondDispatchMs),
      ];
    });
    const sum = (list: ReplayRow[], field: keyof Omit<ReplayRow, "pipeline">) =>
      list.reduce((total, row) => total + row[field], 0);
    const fields = ["moduleMs", "createMs", "firstDispatchMs"] as const;
    rows.push([
      `total (${cold.length} pipelines)`,
      ...fields.map((f) => pair(sum(cold, f), sum(warm, f))),
      formatMs(sum(cold, "secondDispatchMs")),
    ]);
    console.log(`pipelines of one tiny training step, ms cold / warm (Mesa shader cache empty / filled):\n`);
    console.log(
      alignedTable(["pipeline", "shader module", "createComputePipeline", "first dispatch", "second dispatch"], rows).join("\n"),
    );
    console.log(`\n${STEPS} training steps, ms cold / warm:`);
    console.log(`  first step   ${pair(stepsCold.firstStepMs, stepsWarm.firstStepMs)}`);
    console.log(`  later steps  ${pair(stepsCold.laterStepMs, stepsWarm.laterStepMs)} (median)`);
    console.log(`  process      ${pair(stepsCold.totalMs, stepsWarm.totalMs)} (device, model, ${STEPS} steps)`);
    if (options.json) {
      await writeJsonReport(options.json, "pipelines", {
        pipelines: { cold, warm },
        steps: { count: STEPS, cold: stepsCold, warm: stepsWarm },
      });
      progress(`wrote ${options.json}`);
    }
  } finally {
    await Deno.remove(scratch, { recursive: true });
  }
  return 0;
}
