// tidy(): frees every tensor created inside a function except the ones it returns (as in TF.js),
// for synchronous and asynchronous functions alike.
//
// Scopes form one stack per thread. An async function keeps its scope open across its awaits, so a
// layer that waits for a collective between two ops frees its temporaries like any other: the
// tensors made while the scope is open are its own. That asks for one flow of tensor work per
// thread at a time, which a rank's worker and the trainer have (a step runs to its end before the
// next begins). Two async scopes that overlap are caught when the first closes while the second is
// still open, and throw.

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
 * or object of tensors), which move to the enclosing scope. When fn returns a promise, the scope
 * stays open until it settles and tidy returns a promise of the same value. If fn throws (or its
 * promise rejects), every tensor it created is disposed.
 */
export function tidy<T>(fn: () => T): T {
  const scope = new Set<Tensor>();
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (error) {
    close(scope, undefined);
    throw error;
  }
  if (!(result instanceof Promise)) {
    close(scope, result);
    return result;
  }
  return result.then(
    (value) => {
      close(scope, value);
      return value;
    },
    (error) => {
      close(scope, undefined);
      throw error;
    },
  ) as T;
}

/** Pops `scope` (which must be the innermost) and disposes its tensors but those in `result`. */
function close(scope: Set<Tensor>, result: unknown): void {
  if (scopes.at(-1) !== scope) {
    const depth = scopes.lastIndexOf(scope);
    if (depth >= 0) scopes.splice(depth, 1);
    throw new Error(
      `tidy: an async scope ended while ${scopes.length - depth} scope(s) opened after it were still open; ` +
        "two async tidy() calls overlapped (await one before starting the next)",
    );
  }
  scopes.pop();
  const kept = new Set(tensorsIn(result));
  for (const t of scope) {
    if (kept.has(t)) trackTensor(t);
    else t.dispose();
  }
}

function tensorsIn(value: unknown): Tensor[] {
  if (value === null || typeof value !== "object") return [];
  if ("retainedHandle" in value) return [value as Tensor];
  return Object.values(value).flatMap(tensorsIn);
}
