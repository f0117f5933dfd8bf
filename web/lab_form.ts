// The lab's form: puts settings into its controls and reads them back as text by name (each
// control's id is its URL parameter; a checkbox is "1" or "0"), and says why the backend defaults
// to the CPU.

import { DEFAULTS } from "./lab_params.ts";

/** The form's control of each setting (autostart belongs to the address only). */
function controls(): [string, HTMLInputElement | HTMLSelectElement][] {
  return Object.keys(DEFAULTS).filter((name) => name !== "autostart").map((name) => {
    const control = document.getElementById(name) as HTMLInputElement | HTMLSelectElement | null;
    if (!control) throw new Error(`the lab page has no control for the setting ${name}`);
    return [name, control];
  });
}

export function fillForm(values: Record<string, string>): void {
  for (const [name, control] of controls()) {
    if (control instanceof HTMLInputElement && control.type === "checkbox") control.checked = values[name] === "1";
    else control.value = values[name];
  }
}

/** The form's settings, as text by name; a run started from the form starts at once. */
export function readForm(): Record<string, string> {
  const values: Record<string, string> = { autostart: "1" };
  for (const [name, control] of controls()) {
    values[name] = control instanceof HTMLInputElement && control.type === "checkbox"
      ? (control.checked ? "1" : "0")
      : control.value;
  }
  return values;
}

/**
 * Names this browser's WebGPU adapter and says why the lab trains on the CPU by default: without a
 * GPU, browsers offer a software adapter (SwiftShader), on which the lab's default run of five
 * simulated GPUs is several times slower than on the CPU backend.
 */
export async function showBackendNote(note: HTMLElement): Promise<void> {
  const gpu = (navigator as Navigator & { gpu?: GPU }).gpu;
  const adapter = await gpu?.requestAdapter().catch(() => null);
  if (!adapter) {
    note.textContent = "This browser offers no WebGPU adapter: the lab trains on its CPU backend.";
    return;
  }
  const { vendor, architecture, description } = adapter.info;
  const name = [vendor, architecture, description].filter(Boolean).join(" ") || "unnamed";
  const software = adapter.info.isFallbackAdapter || /swiftshader|software|llvmpipe/i.test(name);
  note.textContent = software
    ? `WebGPU here is a software adapter (${name}), several times slower than the CPU backend: the lab defaults to CPU.`
    : `WebGPU adapter: ${name}. The lab defaults to the CPU backend so that every machine gets the same run; choose ` +
      "WebGPU to train on the GPU.";
}
