// Types of the Sluice JavaScript SDK's handler state (state.js), for handlers written in
// TypeScript: `import { state } from "./state.js"` (the pipeline, and plugin.toml, must
// declare the key prefixes). `sluice new NAME --lang ts` puts a copy beside the handler.
// A failed call throws the SDK's `retry` (state unavailable) or `reject` (a refused key).

/** Handler state: reads now, writes applied with the entry's commit. */
export declare const state: Readonly<{
  /** The string value of `key` as text (GET); undefined when absent. */
  get(key: string): string | undefined;
  /** The string value of `key` as bytes; undefined when absent. */
  getBytes(key: string): Uint8Array | undefined;
  /** Sets `key` (SET), applied with the entry's commit. */
  set(key: string, value: string | Uint8Array): void;
  /** Removes `key` (DEL), applied with the entry's commit. */
  delete(key: string): void;
  /**
   * Adds `delta` to the integer in `key` and returns the sum (INCRBY, read and checked):
   * a number when it is a safe integer, else a bigint.
   */
  incr(key: string, delta: number | bigint): number | bigint;
  /** Adds `delta` to the integer in `key` at the commit, unread: no conflicts. */
  add(key: string, delta: number | bigint): void;
  /** Field `field` of the hash `key` as text (HGET); undefined when absent. */
  hget(key: string, field: string): string | undefined;
  /** Sets `field` of the hash `key` (HSET), applied with the entry's commit. */
  hset(key: string, field: string, value: string | Uint8Array): void;
  /** Every field of the hash `key` as text, sorted by name (HGETALL). */
  hgetall(key: string): Map<string, string>;
}>;
