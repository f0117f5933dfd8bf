// The lab page in headless Chromium, mostly on the CPU backend (short runs, set by URL parameters): what the
// views draw (read from their data-* attributes) against what the run returned (its ranks' ledgers,
// memory and exported state, in `window.lab.result`); a checkpoint saved to OPFS resumed after a
// reload on another layout; a rank failed on purpose and the elastic resume shown; and bad settings
// answered with a message in the page's words; and one rank on the browser's WebGPU against the CPU
// backend. Screenshots land in test-artifacts/.

import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import { pageTest, screenshot } from "./browser_chromium.ts";
import type { LabRunState } from "../web/lab_run_state.ts";
import { train } from "../src/train/trainer.ts";

const SHORT = "batch=8&seq=32&backend=cpu";

/** Waits for the run (and the one-rank run, if any) to end; fails with the page's message if it did not finish. */
async function finished(page: Page, reference = false): Promise<LabRunState> {
  await page.waitForFunction(
    (reference) =>
      ["done", "error", "stopped", "invalid"].includes(document.body.dataset.lab ?? "") &&
      (!reference || ["done", "error"].includes(document.body.dataset.reference ?? "")),
    reference,
    { timeout: 120_000 },
  );
  const state = await page.evaluate(() => (globalThis as unknown as { lab: LabRunState }).lab);
  assert.equal(state.phase, "done", `the run ended ${state.phase}: ${await page.textContent("#message")}`);
  return state;
}

const numbers = (page: Page, selector: string, attributes: string[]) =>
  page.$$eval(
    selector,
    (elements, attributes) => elements.map((element) => attributes.map((name) => Number(element.getAttribute(name)))),
    attributes,
  );

pageTest(
  "lab: dp2 × tp2, ZeRO-1 over 2 nodes draws the run's own ledger and memory",
  `?steps=6&${SHORT}&saveEvery=0`,
  async (page, pageErrors) => {
    await page.setViewportSize({ width: 1280, height: 800 });
    const state = await finished(page, true);
    await screenshot(page, "lab-1280.png");
    assert.deepEqual(pageErrors, []);
    const result = state.result!;

    // The heatmap's cells are the ledgers' bytes, rank to rank, within a node (ranks 0–1, 2–3) or across.
    const cells = await page.$$eval("#traffic [data-src]", (elements) =>
      elements.map((e) => ({
        src: Number(e.getAttribute("data-src")),
        dst: Number(e.getAttribute("data-dst")),
        bytes: Number(e.getAttribute("data-bytes")),
        link: e.getAttribute("data-link"),
      })));
    assert.equal(cells.length, 16);
    for (const { src, dst, bytes, link } of cells) {
      assert.equal(bytes, result.traffic.matrix[src][dst], `bytes from rank ${src} to rank ${dst}`);
      assert.equal(link, Math.floor(src / 2) === Math.floor(dst / 2) ? "intra" : "inter");
    }
    assert.ok(result.traffic.byLink.intra > 0 && result.traffic.byLink.inter > 0, "dp crosses the nodes, tp stays inside");

    // Memory bars: every rank's bytes by category, as the ranks reported them at their last step.
    const keys = ["parameters", "gradients", "optimizer", "gathered", "secondary"];
    const bars = await numbers(page, "#memory .bar[data-rank]", [
      "data-rank",
      ...keys.map((key) => `data-${key}`),
    ]);
    assert.equal(bars.length, 4);
    for (const [rank, ...bytes] of bars) {
      assert.deepEqual(
        bytes,
        keys.map((key) => result.memory[rank][key as keyof typeof result.memory[0]]),
        `rank ${rank}'s memory`,
      );
    }

    // The timeline holds the last step's collectives: the tail of each rank's ledger, in call order.
    for (let rank = 0; rank < 4; rank++) {
      const drawn = await numbers(page, `#timeline [data-rank="${rank}"][data-index]`, ["data-index", "data-bytes"]);
      const ledger = result.collectives[rank];
      assert.equal(ledger.length % 6, 0, "every step calls the same collectives");
      assert.equal(drawn.length, ledger.length / 6, `rank ${rank}: one segment per collective of the step`);
      const tail = ledger.slice(-drawn.length);
      drawn.forEach(([index, bytes]) => assert.equal(bytes, tail[index].bytes, `rank ${rank}, call ${index}`));
    }

    // ZeRO-1's ownership: each rank's flat state as drawn (fragments and padding) is as long as the state it exported.
    for (let rank = 0; rank < 4; rank++) {
      const pieces = await numbers(page, `#ownership :is(.flat-fragment, .padding)[data-rank="${rank}"]`, ["data-count"]);
      assert.equal(pieces.reduce((sum, [count]) => sum + count, 0), result.stateElements[rank], `rank ${rank}'s flat state`);
    }

    // The loss curve: the run's losses, and the same run on one rank close to them (the same maths, split).
    const losses = state.attempts[0].map((point) => point.loss);
    assert.deepEqual(losses, result.losses);
    assert.equal(state.reference.length, 6);
    state.reference.forEach((point, i) =>
      assert.ok(Math.abs(point.loss - losses[i]) < 2e-3, `step ${i + 1}: ${point.loss} vs ${losses[i]}`)
    );
    assert.equal(await page.$$eval("#loss-chart polyline[data-series]", (lines) => lines.length), 3);

    await page.setViewportSize({ width: 420, height: 800 });
    await screenshot(page, "lab-420.png");
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.ok(overflow <= 0, `the narrow page scrolls sideways by ${overflow} px`);
  },
);

pageTest(
  "lab: a checkpoint saved to OPFS resumes after a reload on another layout",
  `?steps=4&${SHORT}&saveEvery=2&reference=0`,
  async (page, pageErrors) => {
    const first = await finished(page);
    assert.equal(first.saved, 4);
    const before = first.attempts[0];

    // A new page load, a new layout (dp4, ZeRO-2 over 2 nodes), two more steps from step 4's checkpoint.
    await page.goto(page.url().replace(/\?.*$/, `?steps=6&${SHORT}&dp=4&tp=1&zero=2&saveEvery=2&reference=0&autostart=0`));
    await page.click("#resume");
    const resumed = await finished(page);
    await screenshot(page, "lab-resumed.png");
    assert.deepEqual(pageErrors, []);
    assert.equal(resumed.startStep, 4);
    assert.deepEqual(resumed.attempts[0].map((point) => point.step), [5, 6]);
    assert.equal(resumed.result!.traffic.ranks, 4);
    assert.match(await page.textContent("#status") ?? "", /dp4, ZeRO-2, 2 nodes/);
    // The loss goes on from where it was, not from a new model's.
    const start = before[0].loss, end = before.at(-1)!.loss, next = resumed.attempts[0][0].loss;
    assert.ok(next < end + 0.25 && next < start - 0.5, `step 5's loss ${next} after step 4's ${end} (step 1: ${start})`);
  },
);

pageTest(
  "lab: a rank whose worker exits is survived from the last checkpoint, and the page shows it",
  `?steps=6&${SHORT}&saveEvery=2&fail=1@4:exit&reference=0`,
  async (page, pageErrors) => {
    const state = await finished(page);
    await screenshot(page, "lab-elastic.png");
    assert.deepEqual(pageErrors, []);
    assert.equal(state.events.length, 1);
    const [event] = state.events;
    assert.deepEqual([event.failedRank, event.lastStep, event.resumedStep, event.stepsLost], [1, 3, 2, 1]);
    const shown = await page.textContent("#events li");
    assert.match(
      shown ?? "",
      /^Rank 1 failed after step 3 \(exited: .*\)\. The survivors went on from the checkpoint of step 2, 1 step lost, dp2 × tp2, ZeRO-1, 2 nodes → dp1 × tp2, DDP, 2 nodes\./,
    );
    // The launch after the failure trains steps 3 to 6 on the survivors' layout, drawn as a second line.
    assert.deepEqual(state.attempts[1].map((point) => point.step), [3, 4, 5, 6]);
    assert.equal(state.result!.config.dp! * (state.result!.config.tp ?? 1), state.result!.traffic.ranks);
    assert.deepEqual(state.result!.config.dp, event.newLayout!.dp);
    assert.equal(await page.inputValue("#failHow"), "exit", "the address's failure is in the form");
    assert.equal(await page.$$eval("#loss-chart [data-series=attempt-1]", (lines) => lines.length), 1);
    assert.equal(await page.$$eval("#loss-chart [data-mark]", (marks) => marks.length), 2);
  },
);

pageTest("lab: bad settings are named in the page's words and nothing runs; Stop stops", "?steps=abc", async (page) => {
  await page.waitForFunction(() => document.body.dataset.lab === "invalid");
  assert.equal(await page.textContent("#message"), "Steps must be a whole number ≥ 1, got “abc”.");
  await page.goto(page.url().replace(/\?.*$/, "?dp=2&zero=3&qwz=1&tp=2"));
  await page.waitForFunction(() => document.body.dataset.lab === "invalid");
  const message = await page.textContent("#message") ?? "";
  assert.match(message, /^“ZeRO\+\+ quantized weights \(qwZ\)” partitions over the whole world/);
  assert.doesNotMatch(message, /--/);
  await page.goto(page.url().replace(/\?.*$/, "?steps=5&fail=2@9"));
  await page.waitForFunction(() => document.body.dataset.lab === "invalid");
  assert.equal(await page.textContent("#message"), "Step it fails at must be at most Steps, 5, got 9.");
  assert.equal(await page.evaluate(() => document.body.dataset.reference), undefined, "nothing started");
  // The form's values are checked the same way when Train is pressed.
  await page.fill("#steps", "2.5");
  await page.click("#train");
  assert.equal(await page.textContent("#message"), "Steps must be a whole number ≥ 1, got “2.5”.");
  await screenshot(page, "lab-invalid.png");
  // A fresh browser's OPFS holds no checkpoint to resume.
  await page.goto(page.url().replace(/\?.*$/, "?autostart=0"));
  await page.click("#resume");
  await page.waitForFunction(() => document.body.dataset.lab === "error");
  assert.match(await page.textContent("#message") ?? "", /^There is no saved checkpoint in this browser's OPFS yet/);

  // Stop ends the run's worker (and the ranks inside it): no step arrives after it.
  await page.fill("#steps", "200");
  await page.click("#train");
  await page.waitForFunction(() => (globalThis as unknown as { lab: LabRunState }).lab.attempts[0].length >= 1);
  await page.click("#stop");
  const stepsAtStop = await page.evaluate(() => (globalThis as unknown as { lab: LabRunState }).lab.attempts[0].length);
  await page.waitForTimeout(1500);
  assert.equal(await page.evaluate(() => document.body.dataset.lab), "stopped");
  assert.equal(await page.evaluate(() => (globalThis as unknown as { lab: LabRunState }).lab.attempts[0].length), stepsAtStop);
});

pageTest(
  "lab: one rank on the browser's WebGPU trains like the CPU backend",
  "?dp=1&tp=1&sp=1&zero=0&nodes=1&steps=3&batch=4&seq=16&backend=webgpu&saveEvery=0&reference=0",
  async (page, pageErrors) => {
    const state = await finished(page);
    assert.deepEqual(pageErrors, []);
    assert.equal(state.result!.config.backend, "webgpu");
    const cpu = await train({ ...state.result!.config, backend: "cpu" });
    const webgpu = state.result!.losses;
    assert.equal(webgpu.length, cpu.length);
    webgpu.forEach((loss, step) =>
      assert.ok(Math.abs(loss - cpu[step].loss) < 1e-3, `step ${step + 1}: ${loss} vs ${cpu[step].loss}`)
    );
  },
);
