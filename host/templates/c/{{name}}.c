// {{name}}: a Sluice handler.
//
// Copies every field of a message to the stream `OUT` (config key `target` overrides it)
// and adds `handledBy`; rejects a message that has no fields. Replace with your own.
//
// Build: sluice build (writes {{file}}.wasm). Try: sluice invoke {{file}}.wasm greeting=hello
#include <stdlib.h>

#include "sluice.h"

bool sluice_handle(const sluice_message_t *msg, sluice_outputs_t *out, sluice_failure_t *err) {
    if (msg->fields.len == 0)
        return sluice_reject(err, "message %.*s has no fields", (int)msg->id.len, (const char *)msg->id.ptr);
    sluice_debug("handling %.*s (attempt %u)", (int)msg->id.len, (const char *)msg->id.ptr, msg->attempt);
    char *target = sluice_config_or("target", "OUT");
    sluice_output_t *o = sluice_output(out, target);
    free(target);
    for (size_t i = 0; i < msg->fields.len; i++) {
        const sluice_plugin_types_field_t *f = &msg->fields.ptr[i];
        char *name = sluice_lossy(f->f0.ptr, f->f0.len, NULL);
        sluice_set_bytes(o, name, f->f1.ptr, f->f1.len);
        free(name);
    }
    sluice_set(o, "handledBy", "{{name}}");
    return true;
}
