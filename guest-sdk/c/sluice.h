// Write Sluice stream handlers in C.
//
// A handler implements one function:
//
//     bool sluice_handle(const sluice_message_t *msg, sluice_outputs_t *out,
//                        sluice_failure_t *err);
//
// It reads the message's fields, appends outputs to `out` and returns true; or it fills
// `err` with sluice_reject() / sluice_retry() and returns false (outputs appended so far
// are dropped). This header's helpers own all allocation: the message is freed after
// the call, and every string you pass in is copied.
//
//     #include "sluice.h"
//
//     bool sluice_handle(const sluice_message_t *msg, sluice_outputs_t *out,
//                        sluice_failure_t *err) {
//         char *name = sluice_text(msg, "name");
//         if (!name) return sluice_reject(err, "field \"name\" is missing");
//         sluice_output_t *o = sluice_output(out, "NAMES");
//         sluice_set(o, "name", name);
//         free(name);
//         return true;
//     }
//
// Build: see "Writing a plugin in C" in the book (docs/src/guide/plugins-c.md)
// (clang-19 --target=wasm32-wasi, then `sluice-c component`), or run `sluice new NAME
// --lang c` for a project that builds.
#ifndef SLUICE_H
#define SLUICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "handler.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef handler_message_t sluice_message_t;
typedef handler_list_output_t sluice_outputs_t;
typedef handler_output_t sluice_output_t;
typedef handler_failure_t sluice_failure_t;

// The handler every C plugin defines.
bool sluice_handle(const sluice_message_t *msg, sluice_outputs_t *out, sluice_failure_t *err);

// --- Reading fields -------------------------------------------------------------------

// The value of the last field called `name` (as the Rust SDK's to_struct reads a repeated
// name), or NULL when there is none. Points into the message: do not free.
const handler_list_u8_t *sluice_field(const sluice_message_t *msg, const char *name);

// Field `name` as NUL-terminated UTF-8 text, malloc'ed (free it), or NULL when absent.
// Bytes that are not UTF-8 become U+FFFD, exactly as Rust's String::from_utf8_lossy.
char *sluice_text(const sluice_message_t *msg, const char *name);

// `len` bytes as NUL-terminated UTF-8 text, malloc'ed, invalid sequences replaced by
// U+FFFD. The text's length goes to `*text_len` unless it is NULL (use it when a value
// may hold NUL bytes).
char *sluice_lossy(const uint8_t *bytes, size_t len, size_t *text_len);

// --- Building outputs -----------------------------------------------------------------

// Appends an output to stream `target` (one of the pipeline's `outputs`) and returns it
// for sluice_set(); valid until the next sluice_output() call.
sluice_output_t *sluice_output(sluice_outputs_t *out, const char *target);

// Adds a text field to an output.
void sluice_set(sluice_output_t *output, const char *name, const char *value);

// Adds a field holding any bytes.
void sluice_set_bytes(sluice_output_t *output, const char *name, const uint8_t *value,
                      size_t len);

// --- Failing --------------------------------------------------------------------------

// A permanent failure: the message goes to the dead-letter stream with this reason
// (printf-style). Returns false, so `return sluice_reject(err, ...);` reads well.
bool sluice_reject(sluice_failure_t *err, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

// A transient failure: the message is delivered again later. Returns false.
bool sluice_retry(sluice_failure_t *err, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

// --- The host ---------------------------------------------------------------------------

// Writes a line (printf-style) to the host's log, attributed to the pipeline, the plugin
// and the message.
void sluice_log(sluice_plugin_host_level_t level, const char *format, ...)
    __attribute__((format(printf, 2, 3)));
#define sluice_trace(...) sluice_log(SLUICE_PLUGIN_HOST_LEVEL_TRACE, __VA_ARGS__)
#define sluice_debug(...) sluice_log(SLUICE_PLUGIN_HOST_LEVEL_DEBUG, __VA_ARGS__)
#define sluice_info(...) sluice_log(SLUICE_PLUGIN_HOST_LEVEL_INFO, __VA_ARGS__)
#define sluice_warn(...) sluice_log(SLUICE_PLUGIN_HOST_LEVEL_WARN, __VA_ARGS__)
#define sluice_error(...) sluice_log(SLUICE_PLUGIN_HOST_LEVEL_ERROR, __VA_ARGS__)

// The pipeline's `[config]` value for `key`, malloc'ed (free it), or NULL when absent.
char *sluice_config(const char *key);

// The `[config]` value for `key`, or a malloc'ed copy of `fallback` when it is absent.
char *sluice_config_or(const char *key, const char *fallback);

// This entry's idempotency key (WIT `host.idempotency-key`), malloc'ed (free it): 32
// hex digits, the same for every delivery of the entry to the pipeline's consumer group
// (a retry, a redelivery after a crash, a reclaim). Send it with a side effect (a
// payment, an e-mail) so that the receiver does it once.
char *sluice_idempotency_key(const sluice_message_t *msg);

// --- Outgoing HTTP --------------------------------------------------------------------
// Requests through the standard `wasi:http/outgoing-handler` interface. The pipeline
// must grant the origin (`allowed_outbound_hosts`).
// Available when the bindings are generated for the world `stateful-http-handler` (named
// `handler`), as scripts/build-plugins.sh does; a plugin that calls none of these does
// not import wasi:http and runs in any pipeline. With bindings of another world these
// are not compiled, and calling one fails to link.

// A whole response: the status and the body (malloc'ed, followed by a NUL byte not
// counted in `body_len`).
typedef struct {
    uint16_t status;
    uint8_t *body;
    size_t body_len;
} sluice_http_response_t;

// One request header.
typedef struct {
    const char *name;
    const char *value;
} sluice_http_header_t;

// Sends `method` (GET, POST...) to `url` (`http[s]://host[:port]/path?query`) with
// `header_count` headers and `body_len` bytes of `body`, and reads the whole response.
// True with `*response` filled (free it with sluice_http_response_free); false when no
// response came, with `*error` a malloc'ed reason in the Rust SDK's words: "the request
// was denied: ..." (origin not granted), "the request timed out", "invalid URL: ..." or
// "the request failed: ConnectionRefused" (the wasi:http error code).
bool sluice_http_request(const char *method, const char *url, const sluice_http_header_t *headers,
                         size_t header_count, const uint8_t *body, size_t body_len,
                         sluice_http_response_t *response, char **error);

// A POST of `body` with `content-type: content_type` and, unless it is NULL,
// `idempotency-key: idempotency_key`.
bool sluice_http_post(const char *url, const char *content_type, const char *idempotency_key,
                      const uint8_t *body, size_t body_len, sluice_http_response_t *response,
                      char **error);

// Frees the response's body.
void sluice_http_response_free(sluice_http_response_t *response);

// --- Handler state ------------------------------------------------------------------------
// Keys in Redis read and written with the entry's commit (WIT `sluice:plugin/state`; see
// docs/src/guide/state.md, "Handler state"). The bindings are generated for the world
// `stateful-handler` (named `handler`): a plugin that calls none of these does not import
// the interface and runs in any pipeline; one that does needs `state` prefixes.
//
// Each returns true on success; on failure it fills `err` (reject for a key outside the
// prefixes or of another type, retry when Redis cannot be read) and returns false, so
// `if (!sluice_state_hset(err, ...)) return false;` fails the entry. Strings are
// NUL-terminated; values read are malloc'ed (free them), NULL when absent.

bool sluice_state_get(sluice_failure_t *err, const char *key, char **value);
bool sluice_state_set(sluice_failure_t *err, const char *key, const char *value);
bool sluice_state_delete(sluice_failure_t *err, const char *key);
// INCRBY, read and checked at the commit: `*sum` gets the new value.
bool sluice_state_incr(sluice_failure_t *err, const char *key, int64_t delta, int64_t *sum);
// INCRBY at the commit, unread: no round trip, no conflicts.
bool sluice_state_add(sluice_failure_t *err, const char *key, int64_t delta);
bool sluice_state_hget(sluice_failure_t *err, const char *key, const char *field, char **value);
bool sluice_state_hset(sluice_failure_t *err, const char *key, const char *field,
                       const char *value);
// Every field, sorted by name; free with handler_list_tuple2_string_list_u8_free.
bool sluice_state_hgetall(sluice_failure_t *err, const char *key,
                          handler_list_tuple2_string_list_u8_t *fields);

// --- Text helpers ---------------------------------------------------------------------

// `len` bytes of UTF-8 `text` quoted and escaped as Rust's `{:?}` writes a string (for
// reasons that must match other languages' plugins byte for byte), malloc'ed.
char *sluice_quote(const char *text, size_t len);

#ifdef __cplusplus
}
#endif

#endif
