// Envelopes: the first slot every rank of a group sends every other member in a collective call.
// An envelope carries the sender's descriptor and, for small payloads, the payload itself (inline),
// so that a small collective costs one round of slot hand-offs. In exchanges that allow it, a
// payload that lies in the world's memory (a heap array, heap.ts) travels by place instead, whatever
// its size: the envelope says where it is and the receiver reads it there, the one copy a byte
// needs. Such a payload stays the sender's: the receiver answers with a done word once it has read
// it (settle()), and only then may the sender's call return; the sender's ledger counts the bytes
// the done word reports as read. An envelope also says whether its sender works in place (its result
// goes where its payloads lie), so that the members of an all-to-all can tell whether all of them do.
//
// Slot layout: Int32 word 0 = descriptor words D (DONE: a done word), word 1 = payload bytes (-1:
// none; a done word: the bytes read), word 2 = where a payload by place lies (its byte offset in the
// world's memory, read unsigned: the memory may reach 4 GiB; 0: inline), word 3 = 1 when the sender
// works in place, words 4 .. 4+D = descriptor, an inline payload from the next 8-byte boundary.
//
// Agreement is checked on the raw words first: members that agree send identical descriptors
// (all-gathers and gathers may differ in their element count alone), so the common case compares a
// few dozen integers and decodes nothing.

import type { Ports } from "./channel.ts";
import { checkDescriptors, COUNT_WORD, decodeDescriptor, type Descriptor, encodeDescriptor, encodedWords } from "./descriptor.ts";
import { CollectiveMismatchError } from "./errors.ts";
import type { WaitContext } from "./world.ts";

/** Largest payload carried inline: half a slot, at most 16 KiB (the other half holds the descriptor). */
export function inlineLimit(slotBytes: number): number {
  return Math.min(16384, slotBytes / 2);
}

const HEADER_WORDS = 4;
const DONE = -1;

/**
 * How an exchange passes payloads: "inline" in the envelope when they fit (else not at all);
 * "placed": by place when they lie in the world's memory, and the receivers settle(); "inPlace": as
 * "placed", this rank's result going where its payloads lie.
 */
export type Passing = "inline" | "placed" | "inPlace";

function payloadOffset(descriptorWords: number): number {
  return Math.ceil((HEADER_WORDS + descriptorWords) * 4 / 8) * 8;
}

/** Whether `payload` can travel by place: it lies in the world's memory. */
export function byPlace(ports: Ports, payload: Uint8Array | null): boolean {
  return payload !== null && payload.buffer === ports.world.buffer;
}

/** The descriptor as the words every envelope of this call carries; throws if they cannot fit a slot. */
export function encodeForSlots(descriptor: Descriptor, slotBytes: number): Int32Array {
  const words = new Int32Array(encodedWords(descriptor));
  if (payloadOffset(words.length) > slotBytes / 2) {
    throw new RangeError(
      `${descriptor.kind}: its descriptor (${words.length * 4} bytes for a group of ${descriptor.group.length} ranks and tag ` +
        `${JSON.stringify(descriptor.tag)}) does not fit half a channel slot (${slotBytes} bytes); raise channelBytes`,
    );
  }
  encodeDescriptor(descriptor, words);
  return words;
}

/**
 * Writes an envelope to global rank `dst` and hands it over, with `payload` by place when `passing`
 * allows it and it lies in the world's memory, else inline when it fits, and otherwise not at all.
 */
export function sendEnvelope(
  ports: Ports,
  dst: number,
  words: Int32Array,
  payload: Uint8Array | null,
  context: WaitContext,
  passing: Passing = "inline",
): void {
  const place = passing !== "inline" && byPlace(ports, payload) ? payload : null;
  const inline = !place && payload !== null && payload.length <= inlineLimit(ports.slotBytes) ? payload : null;
  const channel = ports.out[dst];
  const slot = channel.acquire(context);
  const header = new Int32Array(ports.world.buffer, slot, HEADER_WORDS + words.length);
  header[0] = words.length;
  header[1] = (inline ?? place)?.length ?? -1;
  header[2] = place ? place.byteOffset : 0;
  header[3] = passing === "inPlace" ? 1 : 0;
  header.set(words, HEADER_WORDS);
  if (inline && inline.length > 0) {
    ports.ledger.countMessage(dst);
    ports.bytes.set(inline, slot + payloadOffset(words.length));
  }
  channel.commit(inline ? inline.length : 0);
}

/** An envelope received from a peer; its slot stays held until release(). */
export interface Envelope {
  /** The descriptor's words, a view of the slot. */
  words: Int32Array;
  /** The sender's element count (descriptor.count). */
  count: number;
  /** The payload, inline (a view of the slot) or by place (a view of the sender's array); null when none came. */
  payload: Uint8Array | null;
  /** Whether the payload came by place: the sender waits for this rank's done word (settle()). */
  placed: boolean;
  /** Whether the sender works in place: its result goes where its payloads lie. */
  inPlace: boolean;
  readonly descriptor: Descriptor;
  release(): void;
}

/** Waits for the next envelope from global rank `src`. */
export function receiveEnvelope(ports: Ports, src: number, context: WaitContext): Envelope {
  const channel = ports.in[src];
  const slot = channel.peek(context);
  const header = new Int32Array(ports.world.buffer, slot, HEADER_WORDS);
  if (header[0] === DONE) {
    throw new Error(`envelope: rank ${ports.world.rank} expected an envelope from rank ${src} and got a done word`);
  }
  const words = new Int32Array(ports.world.buffer, slot + HEADER_WORDS * 4, header[0]);
  const payloadBytes = header[1];
  const place = header[2] >>> 0;
  const start = place > 0 ? place : slot + payloadOffset(words.length);
  let descriptor: Descriptor | null = null;
  return {
    words,
    count: words[COUNT_WORD],
    payload: payloadBytes < 0 ? null : ports.bytes.subarray(start, start + payloadBytes),
    placed: place > 0,
    inPlace: header[3] === 1,
    get descriptor() {
      return descriptor ??= decodeDescriptor(words);
    },
    release: () => channel.release(),
  };
}

/** Whether `theirs` equals `mine`, except possibly the element count. */
function sameWords(mine: Int32Array, theirs: Int32Array, countMayDiffer: boolean): boolean {
  if (mine.length !== theirs.length) return false;
  for (let i = 0; i < mine.length; i++) {
    if (mine[i] !== theirs[i] && !(countMayDiffer && i === COUNT_WORD)) return false;
  }
  return true;
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
  passing: Passing = "inline",
): (Envelope | null)[] {
  const n = members.length;
  const words = encodeForSlots(descriptor, ports.slotBytes);
  for (let step = 1; step < n; step++) {
    const to = (me + step) % n;
    sendEnvelope(ports, members[to], words, payloadFor(to), context, passing);
  }
  const countMayDiffer = (descriptor.kind === "allGather" || descriptor.kind === "gather") && descriptor.counts.length === 0;
  const envelopes: (Envelope | null)[] = members.map(() => null);
  let agree = true;
  for (let from = 0; from < n; from++) {
    if (from === me) continue;
    const envelope = envelopes[from] = receiveEnvelope(ports, members[from], context);
    if (sameWords(words, envelope.words, countMayDiffer)) continue;
    agree = false;
    // A member of another group may never send the rest: report it now.
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
  // Identical descriptors agree, except where a member's counts must match what the others send.
  const crossChecks = descriptor.kind === "allToAll"
    ? descriptor.recvCounts.length > 0
    : descriptor.counts.length > 0 && !countMayDiffer && (descriptor.kind === "allGather" || descriptor.kind === "gather");
  if (agree && !crossChecks) return envelopes;
  try {
    checkDescriptors(envelopes.map((envelope) => envelope?.descriptor ?? descriptor));
  } catch (error) {
    // Every member has sent and received all its envelopes, so the channels stay in step and the
    // group can go on with its next call.
    releaseAll(envelopes);
    throw error;
  }
  return envelopes;
}

/**
 * Ends an exchange that passed payloads by place ("placed" or "inPlace"), once this rank is done
 * with the payloads it received by place: sends each of their senders a done word (the bytes read,
 * or 0 when `read` is false), then waits for the done word of every member it sent a payload to by
 * place (`payloadFor` as in that exchange) and counts the bytes that member read. Run before
 * anything else moves on these channels.
 */
export function settle(
  ports: Ports,
  members: readonly number[],
  me: number,
  payloadFor: (member: number) => Uint8Array | null,
  envelopes: readonly (Envelope | null)[],
  read: boolean,
  context: WaitContext,
): void {
  const n = members.length;
  for (let step = 1; step < n; step++) {
    const from = (me + n - step) % n;
    const envelope = envelopes[from];
    if (!envelope?.placed) continue;
    const channel = ports.out[members[from]];
    const header = new Int32Array(ports.world.buffer, channel.acquire(context), HEADER_WORDS);
    header[0] = DONE;
    header[1] = read ? envelope.payload!.length : 0;
    channel.commit(0);
  }
  for (let step = 1; step < n; step++) {
    const to = (me + step) % n;
    if (!byPlace(ports, payloadFor(to))) continue;
    const channel = ports.in[members[to]];
    const header = new Int32Array(ports.world.buffer, channel.peek(context), HEADER_WORDS);
    if (header[0] !== DONE) throw new Error(`settle: rank ${ports.world.rank} expected a done word from rank ${members[to]}`);
    const bytes = header[1];
    channel.release();
    if (bytes === 0) continue;
    ports.ledger.countMessage(members[to]);
    ports.ledger.countBytes(members[to], bytes);
  }
}

/** Releases every held envelope slot. */
export function releaseAll(envelopes: readonly (Envelope | null)[]): void {
  for (const envelope of envelopes) envelope?.release();
}
