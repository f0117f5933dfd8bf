// The live loss curve: loss per step on a canvas, with the corpus floor as a dashed line, so the
// gap between what the model has learned and what can be learned is visible at a glance.

const PAD = { left: 48, right: 12, top: 12, bottom: 28 };

export class LossChart {
  private losses: number[] = [];
  private floor = 0;
  private totalSteps = 1;

  constructor(private readonly canvas: HTMLCanvasElement) {}

  reset(totalSteps: number, floor: number): void {
    this.losses = [];
    this.totalSteps = totalSteps;
    this.floor = floor;
    this.draw();
  }

  push(loss: number): void {
    this.losses.push(loss);
    this.draw();
  }

  private draw(): void {
    const ctx = this.canvas.getContext("2d")!;
    const { width, height } = this.canvas;
    ctx.clearRect(0, 0, width, height);
    const top = Math.max(this.floor + 0.5, ...this.losses.map((l) => Math.min(l, 8)));
    const bottom = Math.max(0, this.floor - 0.3);
    const x = (step: number) => PAD.left + (step / this.totalSteps) * (width - PAD.left - PAD.right);
    const y = (loss: number) => PAD.top + ((top - loss) / (top - bottom)) * (height - PAD.top - PAD.bottom);

    ctx.strokeStyle = "#c9d1d9";
    ctx.fillStyle = "#5b6570";
    ctx.font = "11px system-ui, sans-serif";
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(PAD.left, PAD.top);
    ctx.lineTo(PAD.left, height - PAD.bottom);
    ctx.lineTo(width - PAD.right, height - PAD.bottom);
    ctx.stroke();
    for (let i = 0; i <= 4; i++) {
      const value = bottom + ((top - bottom) * i) / 4;
      ctx.fillText(value.toFixed(1), 8, y(value) + 4);
    }
    ctx.fillText("step", (width + PAD.left) / 2 - 12, height - 8);
    ctx.fillText("0", PAD.left - 3, height - PAD.bottom + 14);
    ctx.fillText(String(this.totalSteps), x(this.totalSteps) - 16, height - PAD.bottom + 14);

    ctx.strokeStyle = "#17803d";
    ctx.setLineDash([6, 4]);
    ctx.beginPath();
    ctx.moveTo(PAD.left, y(this.floor));
    ctx.lineTo(width - PAD.right, y(this.floor));
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillStyle = "#17803d";
    ctx.fillText(`corpus floor ${this.floor.toFixed(2)}`, width - PAD.right - 120, y(this.floor) - 5);

    ctx.strokeStyle = "#2563eb";
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    this.losses.forEach((loss, i) => (i === 0 ? ctx.moveTo(x(i + 1), y(loss)) : ctx.lineTo(x(i + 1), y(loss))));
    ctx.stroke();
  }
}
