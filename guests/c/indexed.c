/*
 * A plugin with resources in C, against `reload:plugin`'s `resource-plugin`
 * world: a counter (its state, 8 bytes) that owns an index `idx` (schema
 * 1: the values added, persisted as their sum) and a stream `feed` (its
 * position: the calls served). A reload hands both over: the old version
 * persists the index and checkpoints the stream, the new one checks,
 * opens and resumes them.
 *
 * A call's input is an amount (8 bytes) to add, or empty to read; the
 * reply is 24 bytes: the total, the index's sum, the stream's position.
 * Initialized with the configuration `reject`, a version refuses every
 * handover at `check-compat` (to test a refused reload).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "resource_plugin.h"

static uint64_t total, index_sum, position;
static int refuse_compat;

static void put(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static int named(const resource_plugin_string_t *s, const char *name) {
    size_t n = strlen(name);
    return s->len == n && memcmp(s->ptr, name, n) == 0;
}

static void bytes8(resource_plugin_list_u8_t *out, uint64_t v) {
    out->ptr = malloc(8);
    out->len = 8;
    put(out->ptr, v);
}

bool exports_reload_plugin_guest_call(resource_plugin_list_u8_t *input,
                                      resource_plugin_list_u8_t *ret,
                                      resource_plugin_string_t *err) {
    bool ok = true;
    if (input->len == 8) {
        uint64_t v = get(input->ptr);
        total += v;
        index_sum += v;
        position += 1;
    } else if (input->len != 0) {
        resource_plugin_string_dup(err, "an amount is 8 bytes");
        ok = false;
    }
    if (ok) {
        ret->ptr = malloc(24);
        ret->len = 24;
        put(ret->ptr, total);
        put(ret->ptr + 8, index_sum);
        put(ret->ptr + 16, position);
    }
    resource_plugin_list_u8_free(input);
    return ok;
}

bool exports_reload_plugin_lifecycle_init(resource_plugin_list_u8_t *config,
                                          resource_plugin_string_t *err) {
    (void)err;
    refuse_compat = config->len == 6 && memcmp(config->ptr, "reject", 6) == 0;
    resource_plugin_list_u8_free(config);
    return true;
}

bool exports_reload_plugin_lifecycle_shutdown(resource_plugin_string_t *err) {
    (void)err;
    return true;
}

void exports_reload_plugin_state_describe(exports_reload_plugin_state_description_t *ret) {
    ret->schema = 1;
    ret->resources.len = 2;
    ret->resources.ptr = malloc(2 * sizeof(reload_plugin_types_resource_decl_t));
    resource_plugin_string_dup(&ret->resources.ptr[0].name, "idx");
    ret->resources.ptr[0].kind = RELOAD_PLUGIN_TYPES_RESOURCE_KIND_INDEX;
    ret->resources.ptr[0].schema = 1;
    resource_plugin_string_dup(&ret->resources.ptr[1].name, "feed");
    ret->resources.ptr[1].kind = RELOAD_PLUGIN_TYPES_RESOURCE_KIND_STREAM;
    ret->resources.ptr[1].schema = 1;
}

bool exports_reload_plugin_state_save(resource_plugin_option_list_u8_t *ret,
                                      resource_plugin_string_t *err) {
    (void)err;
    ret->is_some = true;
    bytes8(&ret->val, total);
    return true;
}

bool exports_reload_plugin_state_migrate(exports_reload_plugin_state_snapshot_t *old,
                                         exports_reload_plugin_state_snapshot_t *ret,
                                         resource_plugin_string_t *err) {
    (void)ret;
    resource_plugin_string_dup(err, "one schema only");
    reload_plugin_types_snapshot_free(old);
    return false;
}

bool exports_reload_plugin_state_restore(resource_plugin_list_u8_t *state,
                                         resource_plugin_string_t *err) {
    bool ok = state->len == 8;
    if (ok) total = get(state->ptr);
    else resource_plugin_string_dup(err, "not a saved total");
    resource_plugin_list_u8_free(state);
    return ok;
}

bool exports_reload_plugin_resources_persist(resource_plugin_string_t *name,
                                             resource_plugin_list_u8_t *ret,
                                             resource_plugin_string_t *err) {
    bool ok = named(name, "idx");
    if (ok) bytes8(ret, index_sum);
    else resource_plugin_string_dup(err, "not an index of mine");
    resource_plugin_string_free(name);
    return ok;
}

bool exports_reload_plugin_resources_check_compat(reload_plugin_types_resource_decl_t *old,
                                                  resource_plugin_list_u8_t *persisted,
                                                  resource_plugin_string_t *err) {
    bool ok = !refuse_compat && old->schema == 1 &&
              (!named(&old->name, "idx") || persisted->len == 8);
    if (!ok) resource_plugin_string_dup(err, "cannot read that index");
    reload_plugin_types_resource_decl_free(old);
    resource_plugin_list_u8_free(persisted);
    return ok;
}

bool exports_reload_plugin_resources_open(resource_plugin_string_t *name,
                                          resource_plugin_list_u8_t *persisted,
                                          resource_plugin_string_t *err) {
    bool ok = named(name, "idx") && persisted->len == 8;
    if (ok) index_sum = get(persisted->ptr);
    else resource_plugin_string_dup(err, "cannot open that");
    resource_plugin_string_free(name);
    resource_plugin_list_u8_free(persisted);
    return ok;
}

bool exports_reload_plugin_resources_checkpoint(resource_plugin_string_t *name,
                                                uint64_t *ret,
                                                resource_plugin_string_t *err) {
    bool ok = named(name, "feed");
    if (ok) *ret = position;
    else resource_plugin_string_dup(err, "not a stream of mine");
    resource_plugin_string_free(name);
    return ok;
}

bool exports_reload_plugin_resources_resume(resource_plugin_string_t *name,
                                            uint64_t at,
                                            resource_plugin_string_t *err) {
    bool ok = named(name, "feed");
    if (ok) position = at;
    else resource_plugin_string_dup(err, "not a stream of mine");
    resource_plugin_string_free(name);
    return ok;
}

void exports_reload_plugin_resources_close(resource_plugin_string_t *name) {
    if (named(name, "idx")) index_sum = 0;
    if (named(name, "feed")) position = 0;
    resource_plugin_string_free(name);
}
