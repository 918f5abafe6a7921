// Reading the national codes a feature carries, so the inspector can say what each part means.
// GB/T 30428.2 component code: county 6 + major class 2 + minor class 2 + serial 6.
// GB/T 30428.1 unit grid code: county 6 + street 3 + community 3 + sequence 3.

export function componentCode(code) {
  if (!/^\d{16}$/.test(code ?? '')) return null;
  return { county: code.slice(0, 6), major: code.slice(6, 8), minor: code.slice(8, 10), serial: code.slice(10) };
}

export function gridCode(code) {
  if (!/^\d{15}$/.test(code ?? '')) return null;
  return { county: code.slice(0, 6), street: code.slice(0, 9), community: code.slice(0, 12), sequence: code.slice(12) };
}
