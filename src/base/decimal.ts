/**
 * A setting's integer as given: a string of decimal digits (an optional minus sign) becomes its
 * number, any other string NaN, and anything else is returned as it is for the caller's type
 * check. `Number()` alone would also take "0x10", "1e1", " 20" and "".
 */
export function decimalOrAsIs(v: unknown): unknown {
  if (typeof v !== 'string') return v;
  return /^-?\d{1,16}$/.test(v) ? Number(v) : NaN;
}
