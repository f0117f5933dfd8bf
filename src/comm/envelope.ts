// Envelopes: the first slot every rank of a group sends every other member in a collective call.
// An envelope carries the sender's descriptor and, for small payloads, the payload itself (inline),
// so that a small collective costs one round of slot hand-offs.
//
// Slot layout: Int32 word 0 = descriptor words D, word 1 = inline payload bytes (-1: none),
// words 2 .. 2+D = descriptor, payload from the next 8-byte boundary.

import type { Ports } from "./channel.ts";
import { checkDescriptors, type Descriptor, encodedWords, encodeDescriptor, decodeDescriptor } from "./descriptor.ts";
import { CollectiveMismatchError } from "./errors.ts";
import type { WaitContext } from "./world.ts";

/** Largest payload carried inline: half a slot, at most 16 KiB (the other half holds the descriptor). */
export function inlineLimit(slotBytes: number): number {
  return Math.min(16384, slotBytes / 2);
}

function payloadOffset(descriptorWords: number): number {
  return Math.ceil((2 + descriptorWords) * 4 / 8) * 8;
}

/** Writes an envelope to member `dst` (a global rank) and hands it over. */
export function sendEnvelope(ports: Ports, dst: number, descriptor: Descriptor, payload: Uint8Array | null, context: WaitContext): void {
  const words = encodedWords(descriptor);
  const offset = payloadOffset(words);
  if (offset > ports.slotBytes / 2) {
    throw new RangeError(
      `${descriptor.kind}: its descriptor (${offset} bytes for a group of ${descriptor.group.length} ranks and tag ` +
        `${JSON.stringify(descriptor.tag)}) does not fit half a channel slot (${ports.slotBytes} bytes); raise channelBytes`,
    );
  }
  const channel = ports.out[dst];
  const slot = channel.acquire(context);
  const header = new Int32Array(ports.world.buffer, slot, ports.slotBytes / 4);
  header[0] = encodeDescriptor(descriptor, header.subarray(2));
  header[1] = payload ? payload.length : -1;
  if (payload && payload.length > 0) {
    ports.ledger.countMessage(dst);
    ports.bytes.set(payload, slot + payloadOffset(header[0]));
  }
  channel.commit(payload ? payload.length : 0);
}

/** An envelope received from a peer; its slot stays held until release(). */
export interface Envelope {
  descriptor: Descriptor;
  /** The inline payload as a view of the slot, or null when none was sent inline. */
  payload: Uint8Array | null;
  release(): void;
}

/** Waits for the next envelope from `src` (a global rank). */
export function receiveEnvelope(ports: Ports, src: number, context: WaitContext): Envelope {
  const channel = ports.in[src];
  const slot = channel.peek(context);
  const header = new Int32Array(ports.world.buffer, slot, ports.slotBytes / 4);
  const words = header[0];
  const descriptor = decodeDescriptor(header.subarray(2, 2 + words));
  const payloadBytes = header[1];
  const start = slot + payloadOffset(words);
  const payload = payloadBytes < 0 ? null : ports.bytes.subarray(start, start + payloadBytes);
  return { descriptor, payload, release: () => channel.release() };
}

/**
 * Every member sends its envelope to every other member, then receives theirs in group order and
 * checks that all descriptors agree. Returns the envelopes by group rank (null at `me`); the caller
 * releases them once it has used their payloads. A mismatch of anything but the group leaves the
 * channels in step, so the members may go on after catching the CollectiveMismatchError.
 */
export function exchangeEnvelopes(
  ports: Ports,
  members: readonly number[],
  me: number,
  descriptor: Descriptor,
  payloadFor: (member: number) => Uint8Array | null,
  context: WaitContext,
): (Envelope | null)[] {
  const n = members.length;
  for (let step = 1; step < n; step++) {
    const to = (me + step) % n;
    sendEnvelope(ports, members[to], descriptor, payloadFor(to), context);
  }
  const envelopes: (Envelope | null)[] = members.map(() => null);
  const descriptors: Descriptor[] = members.map(() => descriptor);
  for (let from = 0; from < n; from++) {
    if (from === me) continue;
    const envelope = receiveEnvelope(ports, members[from], context);
    envelopes[from] = envelope;
    descriptors[from] = envelope.descriptor;
    const theirs = envelope.descriptor.group.join(", ");
    if (theirs !== members.join(", ")) {
      releaseAll(envelopes);
      throw new CollectiveMismatchError({
        ranks: [members[me], members[from]],
        kind: descriptor.kind,
        tag: descriptor.tag,
        difference: `group differs: rank ${members[me]} calls ${descriptor.kind} on [${members.join(", ")}], ` +
          `rank ${members[from]} calls ${envelope.descriptor.kind} on [${theirs}]`,
      });
    }
  }
  try {
    checkDescriptors(descriptors);
  } catch (error) {
    // Every member has sent and received all its envelopes, so the channels stay in step and the
    // group can go on with its next call.
    releaseAll(envelopes);
    throw error;
  }
  return envelopes;
}

/** Releases every held envelope slot. */
export function releaseAll(envelopes: readonly (Envelope | null)[]): void {
  for (const envelope of envelopes) envelope?.release();
}
