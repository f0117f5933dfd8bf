// Reuses GPU buffers by size bucket, so a training step does not create and destroy buffers.
//
// Sizes round up to one of four steps per power of two (at most 25 % slack) and never past the
// binding limit. A released buffer may be handed out again at once: work recorded later runs later
// on the queue, so it cannot disturb earlier readers of the same memory.

const MIN_BUCKET = 256;

export function bucketSize(bytes: number, limit: number): number {
  if (bytes <= MIN_BUCKET) return MIN_BUCKET;
  const power = 2 ** Math.floor(Math.log2(bytes));
  const step = power / 4;
  const rounded = Math.ceil(bytes / step) * step;
  return rounded <= limit ? rounded : Math.ceil(bytes / 4) * 4;
}

export class BufferPool {
  private free = new Map<number, GPUBuffer[]>();
  pooledBytes = 0;

  constructor(private device: GPUDevice, private limit: number) {}

  acquire(bytes: number): GPUBuffer {
    const size = bucketSize(bytes, this.limit);
    const reused = this.free.get(size)?.pop();
    if (reused) {
      this.pooledBytes -= size;
      return reused;
    }
    // GPUBufferUsage is read here, not when the module loads: runtimes without WebGPU (Node) load it too.
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    return this.device.createBuffer({ size, usage });
  }

  release(buffer: GPUBuffer): void {
    const list = this.free.get(buffer.size) ?? [];
    list.push(buffer);
    this.free.set(buffer.size, list);
    this.pooledBytes += buffer.size;
  }

  destroy(): void {
    for (const list of this.free.values()) for (const buffer of list) buffer.destroy();
    this.free.clear();
    this.pooledBytes = 0;
  }
}
