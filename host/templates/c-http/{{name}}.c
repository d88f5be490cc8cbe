// {{name}}: a Sluice handler that calls an HTTP service for each entry.
//
// POSTs the entry's fields as a JSON object to config `url` (default
// http://127.0.0.1:8080/) with the entry's idempotency key in `Idempotency-Key`, and
// writes the answer's status and body to the stream OUT (config `target` overrides it).
// A service that answers 429 or 5xx, or cannot be reached, is tried again later (retry);
// another 4xx dead-letters the entry (reject). Replace with your own.
//
// The pipeline must grant the service's origin:
//     allowed_outbound_hosts = ["http://127.0.0.1:8080"]
//
// Build: sluice build (writes {{file}}.wasm).
// Try:   sluice invoke {{file}}.wasm --allow-outbound http://127.0.0.1:8080 greeting=hello
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice.h"

// Appends `text` (`len` bytes) to `json` as a JSON string.
static void append_string(char **json, size_t *len, const char *text, size_t n) {
    *json = realloc(*json, *len + 6 * n + 3);
    char *p = *json + *len;
    *p++ = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == '"' || c == '\\') {
            *p++ = '\\';
            *p++ = (char)c;
        } else if (c < 0x20) {
            p += sprintf(p, "\\u%04x", c);
        } else {
            *p++ = (char)c;
        }
    }
    *p++ = '"';
    *len = (size_t)(p - *json);
}

// The message's fields as a JSON object (malloc'ed, `*len` bytes).
static char *fields_json(const sluice_message_t *msg, size_t *len) {
    char *json = malloc(2);
    *len = 0;
    json[(*len)++] = '{';
    for (size_t i = 0; i < msg->fields.len; i++) {
        const sluice_plugin_types_field_t *f = &msg->fields.ptr[i];
        if (i > 0) json[(*len)++] = ',';
        append_string(&json, len, (const char *)f->f0.ptr, f->f0.len);
        json = realloc(json, *len + 1);
        json[(*len)++] = ':';
        char *value = sluice_lossy(f->f1.ptr, f->f1.len, NULL);
        append_string(&json, len, value, strlen(value));
        free(value);
    }
    json = realloc(json, *len + 1);
    json[(*len)++] = '}';
    return json;
}

bool sluice_handle(const sluice_message_t *msg, sluice_outputs_t *out, sluice_failure_t *err) {
    char *url = sluice_config_or("url", "http://127.0.0.1:8080/");
    size_t len;
    char *body = fields_json(msg, &len);
    // The same key on every delivery of this entry: the service can do its work once
    // even when this call is made again (a retry, a crash before the commit).
    char *key = sluice_idempotency_key(msg);
    sluice_http_response_t response;
    char *error = NULL;
    bool sent = sluice_http_post(url, "application/json", key, (const uint8_t *)body, len,
                                 &response, &error);
    free(body);
    free(key);
    bool ok = false;
    if (!sent) {
        sluice_retry(err, "%s could not be reached: %s", url, error);
        free(error);
    } else if (response.status == 429 || response.status >= 500) {
        sluice_retry(err, "%s answered %u", url, response.status);
    } else if (response.status >= 400) {
        sluice_reject(err, "%s refused the entry (%u)", url, response.status);
    } else {
        char *target = sluice_config_or("target", "OUT");
        sluice_output_t *o = sluice_output(out, target);
        free(target);
        char status[8];
        snprintf(status, sizeof status, "%u", response.status);
        sluice_set(o, "status", status);
        sluice_set_bytes(o, "body", response.body, response.body_len);
        ok = true;
    }
    if (sent) sluice_http_response_free(&response);
    free(url);
    return ok;
}
