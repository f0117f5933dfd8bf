// The character tokenizer of the tiny and small models: 96 ids, "\n" first, then printable ASCII
// 32..126 in code order (" " is 1, "~" is 95).

const CHARACTERS = "\n" + Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)).join("");

/** Id of each UTF-16 code below 128, or -1 where the character is not in the vocabulary. */
const ID_OF_CODE = new Int32Array(128).fill(-1);
for (let id = 0; id < CHARACTERS.length; id++) ID_OF_CODE[CHARACTERS.charCodeAt(id)] = id;

function describeCharacter(text: string, position: number): string {
  const codePoint = text.codePointAt(position)!;
  const character = String.fromCodePoint(codePoint);
  const hex = codePoint.toString(16).toUpperCase().padStart(4, "0");
  return `${JSON.stringify(character)} (U+${hex}) at position ${position}`;
}

export const charTokenizer = {
  vocabSize: CHARACTERS.length,

  /** The character of each id, in id order. */
  characters: CHARACTERS,

  encode(text: string): Int32Array {
    const ids = new Int32Array(text.length);
    for (let i = 0; i < text.length; i++) {
      const code = text.charCodeAt(i);
      const id = code < 128 ? ID_OF_CODE[code] : -1;
      if (id < 0) {
        throw new RangeError(
          `charTokenizer.encode: unknown character ${describeCharacter(text, i)}; ` +
            `the vocabulary is "\\n" and printable ASCII 32..126`,
        );
      }
      ids[i] = id;
    }
    return ids;
  },

  /** Every character of `text` outside the vocabulary, each described with its code point and position (none: encode takes it). */
  unknownCharacters(text: string): string[] {
    const unknown: string[] = [];
    for (let i = 0; i < text.length; i += String.fromCodePoint(text.codePointAt(i)!).length) {
      const code = text.charCodeAt(i);
      if (code >= 128 || ID_OF_CODE[code] < 0) unknown.push(describeCharacter(text, i));
    }
    return unknown;
  },

  decode(ids: ArrayLike<number>): string {
    let text = "";
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (!Number.isInteger(id) || id < 0 || id >= CHARACTERS.length) {
        throw new RangeError(
          `charTokenizer.decode: id ${id} at position ${i} is out of range; ids are integers in [0, ${CHARACTERS.length - 1}]`,
        );
      }
      text += CHARACTERS[id];
    }
    return text;
  },
};
