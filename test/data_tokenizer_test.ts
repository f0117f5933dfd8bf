// The character tokenizer: its 96 ids, round trips, and errors that name the bad character or id.

import assert from "node:assert/strict";
import { charTokenizer } from "../src/data/tokenizer.ts";
import { sampleText } from "../src/data/corpus.ts";

Deno.test("the vocabulary is newline then printable ASCII 32..126", () => {
  assert.equal(charTokenizer.vocabSize, 96);
  assert.deepEqual([...charTokenizer.encode("\n")], [0]);
  for (let code = 32; code <= 126; code++) {
    assert.deepEqual([...charTokenizer.encode(String.fromCharCode(code))], [code - 31]);
  }
});

Deno.test("decode(encode(text)) is the text", () => {
  let every = "\n";
  for (let code = 32; code <= 126; code++) every += String.fromCharCode(code);
  for (const text of ["", every, "the small fox chases a red ball near the river.\n", sampleText(5, 2000)]) {
    const ids = charTokenizer.encode(text);
    assert.ok(ids instanceof Int32Array);
    assert.equal(ids.length, text.length);
    assert.equal(charTokenizer.decode(ids), text);
  }
  assert.equal(charTokenizer.decode([73, 74]), "hi");
});

Deno.test("encode names an unknown character, escaped, and its position", () => {
  const cases: [string, string[]][] = [
    ["ab\tc", ['"\\t"', "U+0009", "position 2"]],
    ["caf\u00e9", ['"\u00e9"', "U+00E9", "position 3"]],
    ["ok \u{1F600}", ["U+1F600", "position 3"]],
    ["\r", ['"\\r"', "position 0"]],
    ["\x7f", ['"\x7f"', "U+007F", "position 0"]],
  ];
  for (const [text, fragments] of cases) {
    assert.throws(() => charTokenizer.encode(text), (error: Error) => {
      assert.ok(error instanceof RangeError, `${JSON.stringify(text)}: ${error}`);
      for (const fragment of fragments) assert.ok(error.message.includes(fragment), `${error.message} lacks ${fragment}`);
      return true;
    });
  }
});

Deno.test("decode names an out-of-range id and its position", () => {
  const cases: [number[], string[]][] = [
    [[1, 96], ["id 96", "position 1", "[0, 95]"]],
    [[-1], ["id -1", "position 0"]],
    [[3, 4, 1.5], ["id 1.5", "position 2"]],
    [[NaN], ["id NaN", "position 0"]],
  ];
  for (const [ids, fragments] of cases) {
    assert.throws(() => charTokenizer.decode(ids), (error: Error) => {
      assert.ok(error instanceof RangeError);
      for (const fragment of fragments) assert.ok(error.message.includes(fragment), `${error.message} lacks ${fragment}`);
      return true;
    });
  }
});
