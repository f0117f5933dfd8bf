// The traffic ledger of one rank: every payload byte this rank sends to another rank, counted by
// (dst, link class, collective kind, tag), and one record per collective call with its bytes per
// destination, measured wall time and simulated time.
//
// The channels count at the moment a slot is handed to the receiver, so the ledger is exact by
// construction. Control words (the descriptors ranks exchange to check that their calls match) are
// not payload and are not counted. A message is one logical transfer to one destination (one ring
// step, one direct block); its latency α is charged once however many slots carry it.

import { type Links, sendTimeMs } from "./cost_model.ts";

export type LinkClass = "intra" | "inter";

/** Bytes and messages one call sent to one destination. */
export interface SendTotal {
  dst: number;
  link: LinkClass;
  bytes: number;
  messages: number;
}

export interface CollectiveRecord {
  /** Identifies the call across ranks: `groupRanks#seq`, or `src>dst#seq` for send/recv. */
  id: string;
  kind: string;
  tag: string;
  /** Global ranks of the group, in group order. */
  group: readonly number[];
  /** "direct", "peer" (by place), "peer+ring", "ring", "chain", "pairwise" or "local" (a group of one rank). */
  algorithm: string;
  dtype: string;
  /** Elements this rank passed in. */
  elements: number;
  sends: SendTotal[];
  /** Bytes this rank sent in this call. */
  bytes: number;
  wallMs: number;
  simulatedMs: number;
}

export interface LedgerTotal {
  dst: number;
  link: LinkClass;
  kind: string;
  tag: string;
  bytes: number;
  messages: number;
}

export interface LedgerJSON {
  rank: number;
  ranksPerNode: number;
  links: Links;
  bytesSent: number;
  totals: LedgerTotal[];
  collectives: CollectiveRecord[];
}

export interface CallInfo {
  id: string;
  kind: string;
  tag: string;
  group: readonly number[];
  dtype: string;
  elements: number;
}

interface OpenCall {
  record: CollectiveRecord;
  sends: Map<number, SendTotal>;
  /** The totals of this call's (kind, tag), by destination. */
  totals: Map<number, LedgerTotal>;
  start: number;
}

export class Ledger {
  readonly collectives: CollectiveRecord[] = [];
  /** Totals by (kind, tag), then by destination. */
  private readonly totals = new Map<string, Map<number, LedgerTotal>>();
  private current: OpenCall | null = null;

  constructor(readonly rank: number, readonly ranksPerNode: number, readonly links: Links) {}

  linkTo(dst: number): LinkClass {
    return Math.floor(dst / this.ranksPerNode) === Math.floor(this.rank / this.ranksPerNode) ? "intra" : "inter";
  }

  /** Opens the record of a call; every count until end() belongs to it. */
  begin(info: CallInfo): void {
    const record: CollectiveRecord = { ...info, algorithm: "local", sends: [], bytes: 0, wallMs: 0, simulatedMs: 0 };
    const key = `${info.kind}\u0000${info.tag}`;
    let totals = this.totals.get(key);
    if (!totals) this.totals.set(key, totals = new Map());
    this.current = { record, sends: new Map(), totals, start: performance.now() };
  }

  /** Names the algorithm the open call uses. */
  setAlgorithm(algorithm: string): void {
    this.open().record.algorithm = algorithm;
  }

  /** A new message to dst starts (charged one latency). */
  countMessage(dst: number): void {
    this.sendTotal(dst).messages++;
    this.total(dst).messages++;
  }

  /** `bytes` payload bytes were handed to dst. */
  countBytes(dst: number, bytes: number): void {
    this.sendTotal(dst).bytes += bytes;
    this.total(dst).bytes += bytes;
  }

  /** Closes the open call: wall time, per-destination sends and simulated time. */
  end(): CollectiveRecord {
    const { record, sends, start } = this.open();
    record.wallMs = performance.now() - start;
    record.sends = [...sends.values()].sort((a, b) => a.dst - b.dst);
    record.bytes = record.sends.reduce((sum, send) => sum + send.bytes, 0);
    record.simulatedMs = record.sends.reduce(
      (sum, send) => sum + sendTimeMs(this.links[send.link], send.bytes, send.messages),
      0,
    );
    this.collectives.push(record);
    this.current = null;
    return record;
  }

  /** Drops the open call after an error (its counted bytes stay in the totals). */
  abandon(): void {
    this.current = null;
  }

  get bytesSent(): number {
    let sum = 0;
    for (const byDst of this.totals.values()) for (const total of byDst.values()) sum += total.bytes;
    return sum;
  }

  toJSON(): LedgerJSON {
    return {
      rank: this.rank,
      ranksPerNode: this.ranksPerNode,
      links: this.links,
      bytesSent: this.bytesSent,
      totals: [...this.totals.values()].flatMap((byDst) => [...byDst.values()].map((total) => ({ ...total }))),
      collectives: this.collectives.map((record) => ({
        ...record,
        group: [...record.group],
        sends: record.sends.map((s) => ({ ...s })),
      })),
    };
  }

  private open() {
    if (!this.current) throw new Error("ledger: no collective call is open");
    return this.current;
  }

  private sendTotal(dst: number): SendTotal {
    const sends = this.open().sends;
    let send = sends.get(dst);
    if (!send) {
      send = { dst, link: this.linkTo(dst), bytes: 0, messages: 0 };
      sends.set(dst, send);
    }
    return send;
  }

  private total(dst: number): LedgerTotal {
    const { record, totals } = this.open();
    let total = totals.get(dst);
    if (!total) {
      totals.set(dst, total = { dst, link: this.linkTo(dst), kind: record.kind, tag: record.tag, bytes: 0, messages: 0 });
    }
    return total;
  }
}
