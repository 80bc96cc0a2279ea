/**
 * PADME padding (Nikitin et al., 2019), as `ecrin_e2ee.padding`: a length L is rounded up
 * so that only its floor(log2(floor(log2 L))) + 1 most significant bits may be non-zero.
 */

function bitLength(n: number): number {
  return n === 0 ? 0 : Math.floor(Math.log2(n)) + 1;
}

/** The PADME-padded size for `length` (`padme(0) == 0`, `padme(L) >= L`). */
export function padme(length: number): number {
  if (!Number.isSafeInteger(length) || length < 0) {
    throw new RangeError("length must be a non-negative integer");
  }
  if (length <= 2) return length;
  let e = bitLength(length) - 1; // floor(log2 L)
  // Math.log2 may round up just below a power of two: correct it exactly.
  while (2 ** e > length) e--;
  while (2 ** (e + 1) <= length) e++;
  const s = bitLength(e); // floor(log2 e) + 1
  const mask = 2 ** (e - s);
  return Math.ceil(length / mask) * mask;
}
