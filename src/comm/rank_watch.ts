// Decides how a launch ends: with every rank's value, or with the one rank that failed.
//
// A rank that throws or whose worker exits is named at once. A rank that stops answering says
// nothing itself: its peers time out in their collectives, each naming the rank it waited for. Those
// reports can chain (rank 0 waited for rank 3, which waited for rank 2), and they arrive close
// together but in any order, so the watch collects them for a grace period and then follows the
// chain to the rank that was waited for without waiting for anyone itself.

import { RankFailedError } from "./errors.ts";
import type { RankErrorReport } from "./rank_worker.ts";

type RankState =
  | { status: "running" }
  | { status: "done"; value: unknown }
  | { status: "failed"; report: RankErrorReport };

export class RankWatch {
  /** Every rank's value in rank order, or a RankFailedError naming the failed rank. */
  readonly verdict: Promise<unknown[]>;
  private readonly states: RankState[];
  private readonly waiters: number[] = [];
  private graceTimer: ReturnType<typeof setTimeout> | undefined;
  private decided = false;
  private resolve!: (values: unknown[]) => void;
  private reject!: (error: RankFailedError) => void;

  constructor(ranks: number, private readonly graceMs: number) {
    this.states = Array.from({ length: ranks }, () => ({ status: "running" }));
    this.verdict = new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }

  succeeded(rank: number, value: unknown): void {
    this.states[rank] = { status: "done", value };
    if (this.states.every((state) => state.status === "done")) {
      this.settle(() => this.resolve(this.states.map((state) => (state as { value: unknown }).value)));
    } else if (this.waiters.length > 0) {
      this.weighWaiters();
    }
  }

  /** The rank's entry rejected. Errors that point at another rank (timeouts, aborts) are weighed; others decide. */
  failed(rank: number, report: RankErrorReport): void {
    if (this.states[rank].status !== "running") return;
    this.states[rank] = { status: "failed", report };
    if (report.blames === undefined) {
      this.settle(() => this.reject(new RankFailedError(rank, "threw", report.summary, report.thrown ?? null)));
    } else {
      this.waiters.push(rank);
      this.weighWaiters();
    }
  }

  /** The rank's worker ended (closed itself or died of an uncaught error) before the rank reported. */
  exited(rank: number, cause: string): void {
    if (this.states[rank].status !== "running") return;
    this.settle(() => this.reject(new RankFailedError(rank, "exited", cause)));
  }

  private weighWaiters(): void {
    const { culprit } = this.followWaits();
    const stillRunning = this.states.some((state) => state.status === "running");
    if (this.states[culprit].status === "done" || !stillRunning) {
      this.blameCulprit();
    } else {
      this.graceTimer ??= setTimeout(() => this.blameCulprit(), this.graceMs);
    }
  }

  /** From the first rank that reported waiting, follows "waited for" until a rank that was not itself waiting. */
  private followWaits(): { culprit: number; waiter: number } {
    let waiter = this.waiters[0];
    let culprit = this.blamedBy(waiter)!;
    const seen = new Set([waiter]);
    for (let next = this.blamedBy(culprit); next !== undefined && !seen.has(culprit); next = this.blamedBy(culprit)) {
      seen.add(culprit);
      waiter = culprit;
      culprit = next;
    }
    return { culprit, waiter };
  }

  private blamedBy(rank: number): number | undefined {
    const state = this.states[rank];
    return state.status === "failed" ? state.report.blames : undefined;
  }

  private blameCulprit(): void {
    const { culprit, waiter } = this.followWaits();
    const culpritState = this.states[culprit];
    const what = culpritState.status === "done" ? "returned without joining the collective" : "stopped answering";
    const waiterReport = (this.states[waiter] as { report: RankErrorReport }).report;
    const cause = `it ${what}; rank ${waiter} reported ${waiterReport.summary.split("\n")[0]}`;
    this.settle(() => this.reject(new RankFailedError(culprit, "unresponsive", cause)));
  }

  private settle(decide: () => void): void {
    if (this.decided) return;
    this.decided = true;
    clearTimeout(this.graceTimer);
    decide();
  }
}
