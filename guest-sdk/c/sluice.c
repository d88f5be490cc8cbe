// The Sluice C helper layer: see sluice.h.
#include "sluice.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static void *checked(void *p) {
    // Out of memory inside a sandbox: trap, and the host names the memory limit.
    if (!p) __builtin_trap();
    return p;
}

static char *vformat(const char *format, va_list args) {
    va_list copy;
    va_copy(copy, args);
    int len = vsnprintf(NULL, 0, format, copy);
    va_end(copy);
    if (len < 0) len = 0;
    char *text = checked(malloc((size_t)len + 1));
    vsnprintf(text, (size_t)len + 1, format, args);
    return text;
}

// Takes ownership of `text` into a component string.
static handler_string_t own(char *text) {
    handler_string_t s = {(uint8_t *)text, strlen(text)};
    return s;
}

// The export: calls sluice_handle, then frees the message, and the outputs if it failed
// (on success the bindings free them after the host has copied them).
bool exports_handler_handle(handler_message_t *msg, handler_list_output_t *ret,
                            handler_failure_t *err) {
    ret->ptr = NULL;
    ret->len = 0;
    bool ok = sluice_handle(msg, ret, err);
    handler_message_free(msg);
    if (!ok) handler_list_output_free(ret);
    return ok;
}

const handler_list_u8_t *sluice_field(const sluice_message_t *msg, const char *name) {
    size_t len = strlen(name);
    for (size_t i = msg->fields.len; i > 0; i--) {
        const sluice_plugin_types_field_t *f = &msg->fields.ptr[i - 1];
        if (f->f0.len == len && memcmp(f->f0.ptr, name, len) == 0) return &f->f1;
    }
    return NULL;
}

char *sluice_text(const sluice_message_t *msg, const char *name) {
    const handler_list_u8_t *value = sluice_field(msg, name);
    return value ? sluice_lossy(value->ptr, value->len, NULL) : NULL;
}

// The length of the valid UTF-8 sequence at `s` (at most `n` bytes), or 0 if there is
// none; `*bad` then gets the length of its maximal valid prefix (at least 1), which
// becomes one U+FFFD, as the Unicode standard recommends and Rust does.
static size_t utf8_sequence(const uint8_t *s, size_t n, size_t *bad) {
    uint8_t c = s[0];
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) need = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        *bad = 1;
        return 0;
    }
    size_t i = 1;
    for (; i < need && i < n; i++) {
        uint8_t b = s[i];
        uint8_t min = i == 1 ? lo : 0x80, max = i == 1 ? hi : 0xBF;
        if (b < min || b > max) break;
    }
    if (i == need) return need;
    *bad = i;
    return 0;
}

char *sluice_lossy(const uint8_t *bytes, size_t len, size_t *text_len) {
    // Each bad byte becomes at most 3 bytes (U+FFFD).
    char *text = checked(malloc(len * 3 + 1));
    size_t w = 0;
    for (size_t r = 0; r < len;) {
        size_t bad = 0;
        size_t ok = utf8_sequence(bytes + r, len - r, &bad);
        if (ok) {
            memcpy(text + w, bytes + r, ok);
            w += ok;
            r += ok;
        } else {
            memcpy(text + w, "\xEF\xBF\xBD", 3);
            w += 3;
            r += bad;
        }
    }
    text[w] = '\0';
    if (text_len) *text_len = w;
    return text;
}

sluice_output_t *sluice_output(sluice_outputs_t *out, const char *target) {
    out->ptr = checked(realloc(out->ptr, (out->len + 1) * sizeof(sluice_output_t)));
    sluice_output_t *o = &out->ptr[out->len++];
    handler_string_dup(&o->target, target);
    o->fields.ptr = NULL;
    o->fields.len = 0;
    return o;
}

void sluice_set_bytes(sluice_output_t *output, const char *name, const uint8_t *value,
                      size_t len) {
    sluice_plugin_types_list_field_t *fields = &output->fields;
    fields->ptr =
        checked(realloc(fields->ptr, (fields->len + 1) * sizeof(sluice_plugin_types_field_t)));
    sluice_plugin_types_field_t *f = &fields->ptr[fields->len++];
    handler_string_dup(&f->f0, name);
    f->f1.ptr = checked(malloc(len ? len : 1));
    memcpy(f->f1.ptr, value, len);
    f->f1.len = len;
}

void sluice_set(sluice_output_t *output, const char *name, const char *value) {
    sluice_set_bytes(output, name, (const uint8_t *)value, strlen(value));
}

bool sluice_reject(sluice_failure_t *err, const char *format, ...) {
    va_list args;
    va_start(args, format);
    err->tag = SLUICE_PLUGIN_TYPES_FAILURE_REJECT;
    err->val.reject = own(vformat(format, args));
    va_end(args);
    return false;
}

bool sluice_retry(sluice_failure_t *err, const char *format, ...) {
    va_list args;
    va_start(args, format);
    err->tag = SLUICE_PLUGIN_TYPES_FAILURE_RETRY;
    err->val.retry = own(vformat(format, args));
    va_end(args);
    return false;
}

void sluice_log(sluice_plugin_host_level_t level, const char *format, ...) {
    va_list args;
    va_start(args, format);
    handler_string_t line = own(vformat(format, args));
    va_end(args);
    sluice_plugin_host_log(level, &line);
    handler_string_free(&line);
}

char *sluice_config(const char *key) {
    handler_string_t k = {(uint8_t *)key, strlen(key)};
    handler_string_t value;
    if (!sluice_plugin_host_config(&k, &value)) return NULL;
    char *text = checked(malloc(value.len + 1));
    memcpy(text, value.ptr, value.len);
    text[value.len] = '\0';
    handler_string_free(&value);
    return text;
}

char *sluice_config_or(const char *key, const char *fallback) {
    char *value = sluice_config(key);
    return value ? value : checked(strdup(fallback));
}

char *sluice_quote(const char *text, size_t len) {
    // The longest escape, \u{7f}, is 6 bytes for one.
    char *quoted = checked(malloc(len * 6 + 3));
    size_t w = 0;
    quoted[w++] = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        switch (c) {
        case '"': w += (size_t)sprintf(quoted + w, "\\\""); break;
        case '\\': w += (size_t)sprintf(quoted + w, "\\\\"); break;
        case '\n': w += (size_t)sprintf(quoted + w, "\\n"); break;
        case '\r': w += (size_t)sprintf(quoted + w, "\\r"); break;
        case '\t': w += (size_t)sprintf(quoted + w, "\\t"); break;
        case '\0': w += (size_t)sprintf(quoted + w, "\\0"); break;
        default:
            if (c < 0x20 || c == 0x7F) w += (size_t)sprintf(quoted + w, "\\u{%x}", c);
            else quoted[w++] = (char)c;
        }
    }
    quoted[w++] = '"';
    quoted[w] = '\0';
    return quoted;
}

// --- Handler state ------------------------------------------------------------------------

static handler_string_t borrow(const char *text) {
    handler_string_t s = {(uint8_t *)text, strlen(text)};
    return s;
}

static handler_list_u8_t borrow_bytes(const char *text) {
    handler_list_u8_t s = {(uint8_t *)text, strlen(text)};
    return s;
}

// Turns a state error into the entry's failure; returns false.
static bool state_failed(sluice_failure_t *err, sluice_plugin_state_state_error_t *e) {
    handler_string_t *reason = &e->val.forbidden; // every case carries a string
    bool ok = e->tag == SLUICE_PLUGIN_STATE_STATE_ERROR_UNAVAILABLE
                  ? sluice_retry(err, "%.*s", (int)reason->len, (const char *)reason->ptr)
                  : sluice_reject(err, "%.*s", (int)reason->len, (const char *)reason->ptr);
    sluice_plugin_state_state_error_free(e);
    return ok;
}

static char *take_text(handler_option_list_u8_t *value) {
    if (!value->is_some) return NULL;
    char *text = checked(malloc(value->val.len + 1));
    memcpy(text, value->val.ptr, value->val.len);
    text[value->val.len] = '\0';
    handler_list_u8_free(&value->val);
    return text;
}

bool sluice_state_get(sluice_failure_t *err, const char *key, char **value) {
    handler_string_t k = borrow(key);
    handler_option_list_u8_t ret;
    sluice_plugin_state_state_error_t e;
    if (!sluice_plugin_state_get(&k, &ret, &e)) return state_failed(err, &e);
    *value = take_text(&ret);
    return true;
}

bool sluice_state_set(sluice_failure_t *err, const char *key, const char *value) {
    handler_string_t k = borrow(key);
    handler_list_u8_t v = borrow_bytes(value);
    sluice_plugin_state_state_error_t e;
    return sluice_plugin_state_set(&k, &v, &e) || state_failed(err, &e);
}

bool sluice_state_delete(sluice_failure_t *err, const char *key) {
    handler_string_t k = borrow(key);
    sluice_plugin_state_state_error_t e;
    return sluice_plugin_state_delete(&k, &e) || state_failed(err, &e);
}

bool sluice_state_incr(sluice_failure_t *err, const char *key, int64_t delta, int64_t *sum) {
    handler_string_t k = borrow(key);
    sluice_plugin_state_state_error_t e;
    return sluice_plugin_state_incr(&k, delta, sum, &e) || state_failed(err, &e);
}

bool sluice_state_add(sluice_failure_t *err, const char *key, int64_t delta) {
    handler_string_t k = borrow(key);
    sluice_plugin_state_state_error_t e;
    return sluice_plugin_state_add(&k, delta, &e) || state_failed(err, &e);
}

bool sluice_state_hget(sluice_failure_t *err, const char *key, const char *field, char **value) {
    handler_string_t k = borrow(key), f = borrow(field);
    handler_option_list_u8_t ret;
    sluice_plugin_state_state_error_t e;
    if (!sluice_plugin_state_hget(&k, &f, &ret, &e)) return state_failed(err, &e);
    *value = take_text(&ret);
    return true;
}

bool sluice_state_hset(sluice_failure_t *err, const char *key, const char *field,
                       const char *value) {
    handler_string_t k = borrow(key), f = borrow(field);
    handler_list_u8_t v = borrow_bytes(value);
    sluice_plugin_state_state_error_t e;
    return sluice_plugin_state_hset(&k, &f, &v, &e) || state_failed(err, &e);
}

bool sluice_state_hgetall(sluice_failure_t *err, const char *key,
                          handler_list_tuple2_string_list_u8_t *fields) {
    handler_string_t k = borrow(key);
    sluice_plugin_state_state_error_t e;
    return sluice_plugin_state_hgetall(&k, fields, &e) || state_failed(err, &e);
}

char *sluice_idempotency_key(const sluice_message_t *msg) {
    handler_string_t id = msg->id, key;
    sluice_plugin_host_idempotency_key(&id, &key);
    char *text = checked(malloc(key.len + 1));
    memcpy(text, key.ptr, key.len);
    text[key.len] = '\0';
    handler_string_free(&key);
    return text;
}

// --- Outgoing HTTP ------------------------------------------------------------------------
// Compiled only with bindings that include wasi:http (world stateful-http-handler).
#ifdef WASI_HTTP_TYPES_METHOD_POST

static char *text_of(const char *format, ...) __attribute__((format(printf, 1, 2)));
static char *text_of(const char *format, ...) {
    va_list args;
    va_start(args, format);
    char *text = vformat(format, args);
    va_end(args);
    return text;
}

// The wasi:http error codes, named as the Rust SDK's reasons name them (`{:?}` of its
// bindings' ErrorCode, without payloads).
static const char *const ERROR_CODES[] = {
    "DnsTimeout", "DnsError", "DestinationNotFound", "DestinationUnavailable",
    "DestinationIpProhibited", "DestinationIpUnroutable", "ConnectionRefused",
    "ConnectionTerminated", "ConnectionTimeout", "ConnectionReadTimeout",
    "ConnectionWriteTimeout", "ConnectionLimitReached", "TlsProtocolError",
    "TlsCertificateError", "TlsAlertReceived", "HttpRequestDenied",
    "HttpRequestLengthRequired", "HttpRequestBodySize", "HttpRequestMethodInvalid",
    "HttpRequestUriInvalid", "HttpRequestUriTooLong", "HttpRequestHeaderSectionSize",
    "HttpRequestHeaderSize", "HttpRequestTrailerSectionSize", "HttpRequestTrailerSize",
    "HttpResponseIncomplete", "HttpResponseHeaderSectionSize", "HttpResponseHeaderSize",
    "HttpResponseBodySize", "HttpResponseTrailerSectionSize", "HttpResponseTrailerSize",
    "HttpResponseTransferCoding", "HttpResponseContentCoding", "HttpResponseTimeout",
    "HttpUpgradeFailed", "HttpProtocolError", "LoopDetected", "ConfigurationError",
    "InternalError",
};

#define DENIED "the request was denied: its origin is not granted (allowed_outbound_hosts) or is a private address the pipeline blocks (block_private_networks)"

// The reason for error `code` (which is freed), as the Rust SDK words it.
static char *code_error(wasi_http_types_error_code_t *code) {
    char *text;
    switch (code->tag) {
    case WASI_HTTP_TYPES_ERROR_CODE_HTTP_REQUEST_DENIED:
    case WASI_HTTP_TYPES_ERROR_CODE_DESTINATION_IP_PROHIBITED:
        text = checked(strdup(DENIED));
        break;
    case WASI_HTTP_TYPES_ERROR_CODE_CONNECTION_TIMEOUT:
    case WASI_HTTP_TYPES_ERROR_CODE_CONNECTION_READ_TIMEOUT:
    case WASI_HTTP_TYPES_ERROR_CODE_HTTP_RESPONSE_TIMEOUT:
        text = checked(strdup("the request timed out"));
        break;
    default: {
        size_t n = sizeof ERROR_CODES / sizeof ERROR_CODES[0];
        text = text_of("the request failed: ErrorCode::%s", code->tag < n ? ERROR_CODES[code->tag] : "unknown");
    }
    }
    wasi_http_types_error_code_free(code);
    return text;
}

// `scheme://authority/path?query` into the request; false with `*error` set if it is not.
static bool set_url(wasi_http_types_borrow_outgoing_request_t request, const char *url,
                    char **error) {
    const char *sep = strstr(url, "://");
    if (!sep) return *error = text_of("invalid URL: \"%s\" has no scheme", url), false;
    const char *authority = sep + 3;
    size_t host_len = strcspn(authority, "/?");
    if (host_len == 0) return *error = text_of("invalid URL: \"%s\" has no host", url), false;
    wasi_http_types_scheme_t scheme = {.tag = WASI_HTTP_TYPES_SCHEME_OTHER};
    size_t scheme_len = (size_t)(sep - url);
    if (scheme_len == 4 && strncasecmp(url, "http", 4) == 0) scheme.tag = WASI_HTTP_TYPES_SCHEME_HTTP;
    else if (scheme_len == 5 && strncasecmp(url, "https", 5) == 0) scheme.tag = WASI_HTTP_TYPES_SCHEME_HTTPS;
    else scheme.val.other = (handler_string_t){(uint8_t *)url, scheme_len};
    const char *path = authority[host_len] ? authority + host_len : "/";
    handler_string_t a = {(uint8_t *)authority, host_len}, p = borrow(path);
    const char *wrong = !wasi_http_types_method_outgoing_request_set_scheme(request, &scheme) ? "scheme"
                      : !wasi_http_types_method_outgoing_request_set_authority(request, &a) ? "authority"
                      : !wasi_http_types_method_outgoing_request_set_path_with_query(request, &p) ? "path"
                      : NULL;
    if (wrong) *error = text_of("invalid URL: %s of %s", wrong, url);
    return !wrong;
}

// The request with its headers, method and URL; false with `*error` set if one is refused.
static bool new_request(const char *method, const char *url, const sluice_http_header_t *headers,
                        size_t count, wasi_http_types_own_outgoing_request_t *request,
                        char **error) {
    wasi_http_types_list_tuple2_field_name_field_value_t list = {
        checked(calloc(count ? count : 1, sizeof *list.ptr)), count};
    for (size_t i = 0; i < count; i++) {
        list.ptr[i].f0 = borrow(headers[i].name);
        list.ptr[i].f1 = (wasi_http_types_field_value_t){(uint8_t *)headers[i].value, strlen(headers[i].value)};
    }
    wasi_http_types_own_fields_t fields;
    wasi_http_types_header_error_t header_error;
    bool ok = wasi_http_types_static_fields_from_list(&list, &fields, &header_error);
    free(list.ptr);
    if (!ok) return *error = text_of("the request failed: header not allowed (%d)", header_error.tag), false;
    *request = wasi_http_types_constructor_outgoing_request(fields);
    wasi_http_types_borrow_outgoing_request_t r = wasi_http_types_borrow_outgoing_request(*request);
    wasi_http_types_method_t m = {.tag = WASI_HTTP_TYPES_METHOD_OTHER, .val.other = borrow(method)};
    static const char *const METHODS[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"};
    for (uint8_t i = 0; i < sizeof METHODS / sizeof METHODS[0]; i++)
        if (strcasecmp(method, METHODS[i]) == 0) m.tag = i;
    if (!wasi_http_types_method_outgoing_request_set_method(r, &m)) {
        *error = text_of("invalid URL: method of %s", url);
    } else if (set_url(r, url, error)) {
        return true;
    }
    wasi_http_types_outgoing_request_drop_own(*request);
    return false;
}

// Writes `body` to the request's body and finishes it; `*error` set if that failed.
static void send_body(wasi_http_types_own_outgoing_body_t body, const uint8_t *bytes, size_t len,
                      char **error) {
    wasi_http_types_own_output_stream_t stream;
    if (len && wasi_http_types_method_outgoing_body_write(wasi_http_types_borrow_outgoing_body(body), &stream)) {
        wasi_io_streams_borrow_output_stream_t s = wasi_io_streams_borrow_output_stream(stream);
        // `blocking-write-and-flush` takes at most 4096 bytes a call.
        for (size_t at = 0; at < len && !*error; at += 4096) {
            handler_list_u8_t chunk = {(uint8_t *)bytes + at, len - at < 4096 ? len - at : 4096};
            wasi_io_streams_stream_error_t e;
            if (!wasi_io_streams_method_output_stream_blocking_write_and_flush(s, &chunk, &e)) {
                *error = checked(strdup("the request failed: writing the body"));
                wasi_io_streams_stream_error_free(&e);
            }
        }
        wasi_io_streams_output_stream_drop_own(stream);
    }
    wasi_http_types_error_code_t code;
    if (!wasi_http_types_static_outgoing_body_finish(body, NULL, &code)) {
        if (*error) wasi_http_types_error_code_free(&code);
        else *error = code_error(&code);
    }
}

// The response `future` gives once ready (it is dropped); false with `*error` set if none.
static bool await_response(wasi_http_types_own_future_incoming_response_t future,
                           wasi_http_types_own_incoming_response_t *response, char **error) {
    wasi_http_types_borrow_future_incoming_response_t f = wasi_http_types_borrow_future_incoming_response(future);
    wasi_io_poll_own_pollable_t ready = wasi_http_types_method_future_incoming_response_subscribe(f);
    wasi_io_poll_method_pollable_block(wasi_io_poll_borrow_pollable(ready));
    wasi_io_poll_pollable_drop_own(ready);
    wasi_http_types_result_result_own_incoming_response_error_code_void_t got;
    bool some = wasi_http_types_method_future_incoming_response_get(f, &got);
    wasi_http_types_future_incoming_response_drop_own(future);
    if (!some || got.is_err) return *error = checked(strdup("the request failed: no response")), false;
    if (got.val.ok.is_err) return *error = code_error(&got.val.ok.val.err), false;
    *response = got.val.ok.val.ok;
    return true;
}

// The body's error: its wasi:http error code, or else the first line of its text.
static char *read_error(wasi_io_streams_stream_error_t *e) {
    wasi_io_error_borrow_error_t error = wasi_io_error_borrow_error(e->val.last_operation_failed);
    wasi_http_types_error_code_t code;
    char *text;
    if (wasi_http_types_http_error_code(error, &code)) {
        text = code_error(&code);
    } else {
        handler_string_t debug;
        wasi_io_error_method_error_to_debug_string(error, &debug);
        int line = (int)strcspn((const char *)debug.ptr, "\n");
        line = line < (int)debug.len ? line : (int)debug.len;
        text = text_of("the request failed: %.*s", line, (const char *)debug.ptr);
        handler_string_free(&debug);
    }
    wasi_io_streams_stream_error_free(e);
    return text;
}

// Reads the whole body of `response` (which is dropped) into `out`.
static bool read_response(wasi_http_types_own_incoming_response_t response,
                          sluice_http_response_t *out, char **error) {
    wasi_http_types_borrow_incoming_response_t r = wasi_http_types_borrow_incoming_response(response);
    out->status = wasi_http_types_method_incoming_response_status(r);
    out->body = checked(malloc(1));
    out->body_len = 0;
    wasi_http_types_own_incoming_body_t body;
    wasi_http_types_own_input_stream_t stream;
    if (!wasi_http_types_method_incoming_response_consume(r, &body)) {
        *error = checked(strdup("the request failed: no response body"));
    } else if (!wasi_http_types_method_incoming_body_stream(wasi_http_types_borrow_incoming_body(body), &stream)) {
        *error = checked(strdup("the request failed: no body stream"));
        wasi_http_types_incoming_body_drop_own(body);
    } else {
        wasi_io_streams_borrow_input_stream_t s = wasi_io_streams_borrow_input_stream(stream);
        for (;;) {
            handler_list_u8_t chunk;
            wasi_io_streams_stream_error_t e;
            if (!wasi_io_streams_method_input_stream_blocking_read(s, 64 * 1024, &chunk, &e)) {
                if (e.tag == WASI_IO_STREAMS_STREAM_ERROR_LAST_OPERATION_FAILED) *error = read_error(&e);
                break;
            }
            out->body = checked(realloc(out->body, out->body_len + chunk.len + 1));
            memcpy(out->body + out->body_len, chunk.ptr, chunk.len);
            out->body_len += chunk.len;
            handler_list_u8_free(&chunk);
        }
        wasi_io_streams_input_stream_drop_own(stream);
        wasi_http_types_future_trailers_drop_own(wasi_http_types_static_incoming_body_finish(body));
    }
    wasi_http_types_incoming_response_drop_own(response);
    out->body[out->body_len] = '\0';
    if (*error) sluice_http_response_free(out);
    return !*error;
}

bool sluice_http_request(const char *method, const char *url, const sluice_http_header_t *headers,
                         size_t header_count, const uint8_t *body, size_t body_len,
                         sluice_http_response_t *response, char **error) {
    *error = NULL;
    wasi_http_types_own_outgoing_request_t request;
    if (!new_request(method, url, headers, header_count, &request, error)) return false;
    wasi_http_types_own_outgoing_body_t outgoing;
    if (!wasi_http_types_method_outgoing_request_body(wasi_http_types_borrow_outgoing_request(request), &outgoing)) {
        wasi_http_types_outgoing_request_drop_own(request);
        return *error = checked(strdup("the request failed: no request body")), false;
    }
    wasi_http_types_own_future_incoming_response_t future;
    wasi_http_types_error_code_t code;
    if (!wasi_http_outgoing_handler_handle(request, NULL, &future, &code)) {
        wasi_http_types_outgoing_body_drop_own(outgoing);
        return *error = code_error(&code), false;
    }
    // A body the host could not take (the connection failed): the response's error
    // says why, if there is one.
    char *write_error = NULL;
    send_body(outgoing, body, body_len, &write_error);
    wasi_http_types_own_incoming_response_t incoming;
    if (!await_response(future, &incoming, error)) {
        free(write_error);
        return false;
    }
    if (write_error) {
        wasi_http_types_incoming_response_drop_own(incoming);
        return *error = write_error, false;
    }
    return read_response(incoming, response, error);
}

bool sluice_http_post(const char *url, const char *content_type, const char *idempotency_key,
                      const uint8_t *body, size_t body_len, sluice_http_response_t *response,
                      char **error) {
    // A known length, not chunked: some servers read a body only by its length.
    char length[24];
    snprintf(length, sizeof length, "%zu", body_len);
    sluice_http_header_t headers[] = {
        {"content-type", content_type},
        {"content-length", length},
        {"idempotency-key", idempotency_key},
    };
    size_t count = idempotency_key ? 3 : 2;
    return sluice_http_request("POST", url, headers, count, body, body_len, response, error);
}

void sluice_http_response_free(sluice_http_response_t *response) {
    free(response->body);
    response->body = NULL;
    response->body_len = 0;
}

#endif
