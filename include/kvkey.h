/*
 * kvkey — the fleet bucket's key layout (internald(7), FLEET), pure: one JSON Lines
 * record <-> the key it lives under.
 *
 *   org.<slug>   machine.<org>.<id>   peer.<org>.<name>   region.<code>
 *   flycast.<org>.<app>.<the address as 32 lower-case hex nibbles>
 *
 * Every part is lower-cased (as import lower-cases labels). Nothing here touches NATS or
 * the registry; publish and follow use it to agree on keys.
 */
#ifndef INTERNALD_KVKEY_H
#define INTERNALD_KVKEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KVKEY_MAX 256

enum kvkey_kind { KVKEY_ORG, KVKEY_MACHINE, KVKEY_PEER, KVKEY_FLYCAST, KVKEY_REGION };

/*
 * The key of the record line[0..len) (one JSON object). Returns its kind (>= 0) and
 * writes the key into key[cap]; *del says whether it is an "op":"delete" record. A
 * Machine's delete names only its id: then key is "" and the id is written to id[idcap]
 * (the caller finds the org). -EINVAL with a message in err[errcap] when the record
 * lacks (or has a malformed) field the key is made of; the record's other fields are
 * not checked here (jsonl does that).
 */
int kvkey_of_record(const char *line, size_t len, char *key, size_t cap, bool *del, char *id,
                    size_t idcap, char *err, size_t errcap);
/* The address a Machine's (private_ip) or peer's (ip) put names, and whether the record
 * holds it once written, as the registry counts holders: a peer always, a Machine when
 * started (the default) and not "dns":{"skip_registration":true}. */
typedef struct {
	bool set; /* false: another kind, a delete, or no IPv6 address */
	bool holds;
	uint8_t ip[16];
} kvkey_addr_t;
/* kvkey_of_record, and the record's address into *addr, from one parse of the line
 * (publish reads every line of a file of any size with it; it orders address handovers). */
int kvkey_of_record_addr(const char *line, size_t len, char *key, size_t cap, bool *del, char *id,
                         size_t idcap, kvkey_addr_t *addr, char *err, size_t errcap);
/* The lower-cased region a Machine or peer record names, into out[cap]: 0, or -ENOENT
 * when the record names none (another kind, a delete, not JSON). */
int kvkey_region_of(const char *line, size_t len, char *out, size_t cap);
/* machine.<org>.<id>. -ENAMETOOLONG if it does not fit. */
int kvkey_machine(const char *org, const char *id, char *key, size_t cap);
/* The kind of a key of this layout, or -EINVAL. */
int kvkey_kind(const char *key);
/* The one-line JSON delete record that removes key's record (no newline), e.g.
 * {"kind":"peer","org":"o","name":"n","op":"delete"}. -EINVAL if key is not of this
 * layout, -ENOSPC if cap is too small. */
int kvkey_delete_record(const char *key, char *buf, size_t cap);

#endif
