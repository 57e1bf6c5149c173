// One version of a key, as the store holds it and every layer above renders it.

export interface KeyValue {
  readonly key: Uint8Array;
  readonly value: Uint8Array;
  readonly createRevision: number;
  readonly modRevision: number;
  readonly version: number;
  /** The lease the key is attached to (deleted with it); absent or 0 for none. */
  readonly lease?: number;
}
