// Types of the Sluice JavaScript SDK (sluice.js; state.js has state.d.ts), for handlers written in
// TypeScript. `sluice new NAME --lang ts` puts a copy beside the handler.

/** One stream entry: its source stream, ID, delivery attempt (1 first) and fields. */
export declare class Message {
  readonly source: string;
  readonly id: string;
  readonly attempt: number;
  /** [name, bytes] pairs, in order; names may repeat. */
  readonly raw: Array<[string, Uint8Array]>;
  /** The last value of field `name` as bytes, or undefined. */
  bytes(name: string): Uint8Array | undefined;
  /** The last value of field `name` as text (invalid UTF-8 as U+FFFD), or undefined. */
  text(name: string): string | undefined;
  /** Field `name` parsed as JSON; a missing or malformed field rejects the message. */
  json<T = unknown>(name: string): T;
  /** Every field as text, keyed by name (the last value wins). */
  fields(): Record<string, string>;
  /** This entry's idempotency key: the same for every delivery to the consumer group. */
  idempotencyKey(): string;
  /** The named fields as text; a missing one rejects the message. */
  require<K extends string>(...names: K[]): Record<K, string> & Record<string, string | undefined>;
}

/** What a handler throws to fail an entry: `retry` (delivered again) or `reject`. */
export interface Failure {
  tag: "retry" | "reject";
  val: string;
}

/** An entry to append to one of the pipeline's output streams. */
export interface Output {
  target: string;
  fields: Array<[string, Uint8Array]>;
}

/** Field values: text, bytes, or anything else (written as its JSON text). */
export type FieldValue = string | Uint8Array | number | boolean | null | object;

/** A permanent failure: the entry goes to the dead-letter stream now. Throw it. */
export declare function reject(reason: string): Failure;
/** A transient failure: the entry is delivered again later. Throw it. */
export declare function retry(reason: string): Failure;
/** An output to `target` with the object's members as fields, in order. */
export declare function output(target: string, object?: Record<string, FieldValue>): Output;
/** The pipeline's config value for `key`, or `fallback` when it is absent. */
export declare function config(key: string): string | undefined;
export declare function config(key: string, fallback: string): string;
/** The idempotency key of `msg`. */
export declare function idempotencyKey(msg: Message): string;
/** Lines in the host's log, attributed to the pipeline, plugin and entry. */
export declare const log: Readonly<{
  trace(message: string): void;
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}>;

/** What a handler returns: the outputs (possibly none), or a promise of them. */
export type HandlerResult = Output[] | Promise<Output[]>;
/** Wraps a handler as the component's `handle` export. */
export declare function handler(fn: (msg: Message) => HandlerResult): (raw: unknown) => unknown;
/** The `handle-batch` export of a `handle` (world batch-handler). */
export declare function batch(handle: (raw: unknown) => unknown): (raw: unknown) => unknown;
/** The `handle-packed` export of a `handle` (world packed-batch-handler). */
export declare function packed(handle: (raw: unknown) => unknown): (raw: unknown) => unknown;
