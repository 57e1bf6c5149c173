// Short constructors for hand-made histories: `w(1, 0, 10, 'a')` is client 1 writing "a" to
// key "x" between t=0 and t=10, acknowledged.

import type { Operation, OpStatus, Value } from '../../src/check/index.js';

export interface OpExtras {
  readonly key?: string;
  readonly status?: OpStatus;
}

function base(client: number, invokeMs: number, completeMs: number | null, extras: OpExtras) {
  return {
    client,
    key: extras.key ?? 'x',
    invokeMs,
    completeMs,
    status: extras.status ?? 'ok',
  };
}

export function w(
  client: number,
  invokeMs: number,
  completeMs: number | null,
  value: Value,
  extras: OpExtras = {},
): Operation {
  return { ...base(client, invokeMs, completeMs, extras), kind: 'write', input: value };
}

export function r(
  client: number,
  invokeMs: number,
  completeMs: number | null,
  output: Value,
  extras: OpExtras = {},
): Operation {
  return { ...base(client, invokeMs, completeMs, extras), kind: 'read', output };
}

export function cas(
  client: number,
  span: readonly [number, number | null],
  swap: readonly [Value, Value],
  output: boolean,
  extras: OpExtras = {},
): Operation {
  const input = { expected: swap[0], new: swap[1] };
  return { ...base(client, span[0], span[1], extras), kind: 'cas', input, output };
}

/** An operation the client gave up on: it may take effect at any time after invokeMs. */
export function unknown(op: Operation): Operation {
  switch (op.kind) {
    case 'read': {
      const { output: _output, ...rest } = op;
      return { ...rest, status: 'unknown' };
    }
    case 'cas': {
      const { output: _output, ...rest } = op;
      return { ...rest, status: 'unknown' };
    }
    case 'write':
      return { ...op, status: 'unknown' };
  }
}

/** The same operation, reported as definitely not having happened. */
export function failed(op: Operation): Operation {
  return { ...op, status: 'fail' };
}
