// Point-to-point channels: the only way bytes cross from one rank to another.
//
// Channel src → dst is a ring of SLOTS fixed-size slots in the world's buffer with two counters:
// head (slots src has filled) and tail (slots dst has consumed). The sender waits while all slots
// are full, the receiver while none is; both wait with Atomics.wait on the counter the other side
// advances. A slot is counted in the sender's ledger at the moment it is handed over (commit), so
// every payload byte that reaches another rank is in the ledger exactly once.

import type { Ledger } from "./ledger.ts";
import { SimdReducer } from "./simd_reduce.ts";
import type { WaitContext, World } from "./world.ts";

/** The sending end of channel rank → dst, as seen by rank. */
export class OutChannel {
  private head: number;
  private readonly headWord: number;
  private readonly tailWord: number;
  private readonly base: number;

  constructor(private readonly world: World, readonly dst: number, private readonly ledger: Ledger) {
    this.headWord = world.pairWord(world.rank, dst);
    this.tailWord = this.headWord + 1;
    this.head = Atomics.load(world.control, this.headWord);
    this.base = world.channelOffset(world.rank, dst);
  }

  /** Byte offset (in the world's buffer) of the next free slot; waits while the receiver is SLOTS behind. */
  acquire(context: WaitContext): number {
    const { control, layout } = this.world;
    for (;;) {
      const tail = Atomics.load(control, this.tailWord);
      if (((this.head - tail) | 0) < layout.slots) break;
      this.world.waitWhile(this.tailWord, tail, this.dst, context);
    }
    return this.base + (this.head % layout.slots) * layout.slotBytes;
  }

  /** Hands the acquired slot to the receiver; `payloadBytes` of it are counted in the ledger. */
  commit(payloadBytes: number): void {
    if (payloadBytes > 0) this.ledger.countBytes(this.dst, payloadBytes);
    this.head = (this.head + 1) | 0;
    Atomics.store(this.world.control, this.headWord, this.head);
    Atomics.notify(this.world.control, this.headWord);
  }
}

/** The receiving end of channel src → rank, as seen by rank. */
export class InChannel {
  private tail: number;
  private readonly headWord: number;
  private readonly tailWord: number;
  private readonly base: number;

  constructor(private readonly world: World, readonly src: number) {
    this.headWord = world.pairWord(src, world.rank);
    this.tailWord = this.headWord + 1;
    this.tail = Atomics.load(world.control, this.tailWord);
    this.base = world.channelOffset(src, world.rank);
  }

  /** Byte offset of the oldest filled slot; waits until the sender has filled one. */
  peek(context: WaitContext): number {
    this.world.waitWhile(this.headWord, this.tail, this.src, context);
    return this.base + (this.tail % this.world.layout.slots) * this.world.layout.slotBytes;
  }

  /** Gives the peeked slot back to the sender. */
  release(): void {
    this.tail = (this.tail + 1) | 0;
    Atomics.store(this.world.control, this.tailWord, this.tail);
    Atomics.notify(this.world.control, this.tailWord);
  }
}

/** All channels of one rank, shared by the world communicator and every group made from it. */
export class Ports {
  readonly out: OutChannel[];
  readonly in: InChannel[];
  readonly bytes: Uint8Array;
  /** Reductions over the world's memory (WASM SIMD there, JS loops for other arrays). */
  readonly reducer: SimdReducer;

  constructor(readonly world: World, readonly ledger: Ledger) {
    const ranks = Array.from({ length: world.layout.ranks }, (_, r) => r);
    this.out = ranks.map((dst) => new OutChannel(world, dst, ledger));
    this.in = ranks.map((src) => new InChannel(world, src));
    this.bytes = new Uint8Array(world.buffer);
    this.reducer = new SimdReducer(world.memory);
  }

  get slotBytes(): number {
    return this.world.layout.slotBytes;
  }

  /** Streams `data` to dst as one message, slot by slot. */
  send(dst: number, data: Uint8Array, context: WaitContext): void {
    if (data.length === 0) return;
    const channel = this.out[dst];
    this.ledger.countMessage(dst);
    for (let offset = 0; offset < data.length; offset += this.slotBytes) {
      const piece = data.subarray(offset, offset + this.slotBytes);
      this.bytes.set(piece, channel.acquire(context));
      channel.commit(piece.length);
    }
  }

  /** Receives a message sent with send() into `into` (its length is the message's). */
  recv(src: number, into: Uint8Array, context: WaitContext): void {
    const channel = this.in[src];
    for (let offset = 0; offset < into.length; offset += this.slotBytes) {
      const length = Math.min(this.slotBytes, into.length - offset);
      const slot = channel.peek(context);
      into.set(this.bytes.subarray(slot, slot + length), offset);
      channel.release();
    }
  }
}
