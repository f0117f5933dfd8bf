// tidy(): frees every tensor created inside a function except the ones it returns (as in TF.js).

import type { Tensor } from "./tensor.ts";

const scopes: Set<Tensor>[] = [];

export function trackTensor(t: Tensor): void {
  scopes.at(-1)?.add(t);
}

/** Keeps t alive past the innermost tidy() that would otherwise free it. */
export function keep<T extends Tensor>(t: T): T {
  scopes.at(-1)?.delete(t);
  return t;
}

/**
 * Runs fn and disposes the tensors it created, except those in its result (a tensor, or an array
 * or object of tensors), which move to the enclosing scope. fn must be synchronous.
 */
export function tidy<T>(fn: () => T): T {
  const scope = new Set<Tensor>();
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
    if (result instanceof Promise) throw new Error("tidy: the function must be synchronous (it returned a Promise)");
  } finally {
    scopes.pop();
  }
  const kept = new Set(tensorsIn(result));
  for (const t of scope) {
    if (kept.has(t)) trackTensor(t);
    else t.dispose();
  }
  return result;
}

function tensorsIn(value: unknown): Tensor[] {
  if (value === null || typeof value !== "object") return [];
  if ("retainedHandle" in value) return [value as Tensor];
  return Object.values(value).flatMap(tensorsIn);
}
