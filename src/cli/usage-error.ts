// The error of a command used wrongly: a bad option, a bad combination of them, or input the
// command cannot take. Nothing was done; `flotilla` exits with code 2 (program.ts).

export class UsageError extends Error {
  override readonly name = 'UsageError';
  readonly code = 'USAGE';
}
