// The alpha-beta cost model of the simulated interconnect, and the merge of every rank's ledger into
// one traffic picture.
//
// A message of b bytes over a link costs α + b/β. A rank's sends within one collective call are
// serialized on its port, so the call's simulated time on that rank is the sum over its sends; the
// collective's simulated time is the maximum over the ranks that took part. A rank's simulated time
// is the sum over the collectives it took part in, and the world's is the maximum over its ranks
// (so collectives of disjoint groups overlap).

import type { CollectiveRecord, LedgerJSON, LinkClass } from "./ledger.ts";

export interface LinkSpec {
  /** Bandwidth β in GB/s (10^9 bytes per second). */
  bandwidthGBps: number;
  /** Latency α per message in microseconds. */
  latencyUs: number;
}

export type Links = Record<LinkClass, LinkSpec>;

/** NVLink-class links inside a node, InfiniBand-class links between nodes. */
export const DEFAULT_LINKS: Links = {
  intra: { bandwidthGBps: 300, latencyUs: 2 },
  inter: { bandwidthGBps: 12.5, latencyUs: 5 },
};

/** The default links with any given fields replaced; throws naming a value that is not a positive number. */
export function resolveLinks(links: Partial<Record<LinkClass, Partial<LinkSpec>>> = {}): Links {
  const resolved = {} as Links;
  for (const link of ["intra", "inter"] as const) {
    const spec = { ...DEFAULT_LINKS[link], ...links[link] };
    for (const field of ["bandwidthGBps", "latencyUs"] as const) {
      const value = spec[field];
      const valid = field === "latencyUs" ? value >= 0 : value > 0;
      if (typeof value !== "number" || !Number.isFinite(value) || !valid) {
        throw new RangeError(
          `links.${link}.${field} must be a ${field === "latencyUs" ? "non-negative" : "positive"} number, got ${value}`,
        );
      }
    }
    resolved[link] = spec;
  }
  return resolved;
}

/** Simulated milliseconds of `messages` messages carrying `bytes` bytes in total over one link. */
export function sendTimeMs(link: LinkSpec, bytes: number, messages: number): number {
  return messages * link.latencyUs / 1e3 + bytes / (link.bandwidthGBps * 1e6);
}

/** One collective call seen from all the ranks that took part. */
export interface TrafficCollective {
  id: string;
  kind: string;
  tag: string;
  group: number[];
  algorithm: string;
  /** Bytes sent by all participants together. */
  bytes: number;
  /** The slowest participant's measured wall time. */
  wallMs: number;
  /** The slowest participant's simulated time. */
  simulatedMs: number;
}

export interface TrafficJSON {
  ranks: number;
  /** matrix[src][dst]: bytes sent from src to dst. */
  matrix: number[][];
  byKind: Record<string, number>;
  byTag: Record<string, number>;
  byLink: Record<LinkClass, number>;
  totalBytes: number;
  collectives: TrafficCollective[];
  /** Simulated time of the whole run: the maximum over ranks of their collectives' simulated times. */
  simulatedMs: number;
  /** The same, per rank. */
  rankSimulatedMs: number[];
}

export interface Traffic extends TrafficJSON {
  toJSON(): TrafficJSON;
}

/** Merges the ledgers of all ranks (in rank order) into one traffic matrix with totals. */
export function mergeLedgers(ledgers: readonly LedgerJSON[]): Traffic {
  const ranks = ledgers.length;
  ledgers.forEach((ledger, i) => {
    if (ledger.rank !== i) {
      throw new RangeError(`mergeLedgers: ledger ${i} belongs to rank ${ledger.rank}; pass them in rank order`);
    }
  });
  const matrix = ledgers.map(() => new Array<number>(ranks).fill(0));
  const byKind: Record<string, number> = {};
  const byTag: Record<string, number> = {};
  const byLink: Record<LinkClass, number> = { intra: 0, inter: 0 };
  let totalBytes = 0;
  for (const ledger of ledgers) {
    for (const total of ledger.totals) {
      matrix[ledger.rank][total.dst] += total.bytes;
      byKind[total.kind] = (byKind[total.kind] ?? 0) + total.bytes;
      byTag[total.tag] = (byTag[total.tag] ?? 0) + total.bytes;
      byLink[total.link] += total.bytes;
      totalBytes += total.bytes;
    }
  }

  const collectives = new Map<string, TrafficCollective>();
  for (const ledger of ledgers) {
    for (const record of ledger.collectives) mergeRecord(collectives, record);
  }
  const rankSimulatedMs = ledgers.map((ledger) =>
    ledger.collectives.reduce((sum, record) => sum + collectives.get(record.id)!.simulatedMs, 0)
  );
  const json: TrafficJSON = {
    ranks,
    matrix,
    byKind,
    byTag,
    byLink,
    totalBytes,
    collectives: [...collectives.values()],
    simulatedMs: Math.max(0, ...rankSimulatedMs),
    rankSimulatedMs,
  };
  return { ...json, toJSON: () => json };
}

function mergeRecord(collectives: Map<string, TrafficCollective>, record: CollectiveRecord): void {
  const merged = collectives.get(record.id);
  if (!merged) {
    const { id, kind, tag, group, algorithm, bytes, wallMs, simulatedMs } = record;
    collectives.set(id, { id, kind, tag, group: [...group], algorithm, bytes, wallMs, simulatedMs });
    return;
  }
  if (record.kind === "send") merged.kind = "send"; // a point-to-point pair is named after its sender
  merged.bytes += record.bytes;
  merged.wallMs = Math.max(merged.wallMs, record.wallMs);
  merged.simulatedMs = Math.max(merged.simulatedMs, record.simulatedMs);
}
