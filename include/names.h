/*
 * names — a question name (wire form, lower-cased) -> the name form it asks for.
 *
 * Pure: no registry, no sockets, no allocation. It decides only the shape of a name;
 * whether the app, region or Machine exists is answer.c's question to the registry.
 * The label syntax the registry accepts is checked here too, so that the importer and
 * the resolver agree on what a label is.
 */
#ifndef INTERNALD_NAMES_H
#define INTERNALD_NAMES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
	NAME_OUTSIDE,     /* not in a zone of ours: forward it */
	NAME_NX,          /* in a zone of ours, but no name form: NXDOMAIN */
	NAME_APEX,        /* internal. / flycast. / a.a.d.f.ip6.arpa. */
	NAME_ENT,         /* empty non-terminal under an app (vm.<app>, kv._metadata.<app>, ...) */
	NAME_APP,         /* <app>.internal, global.<app>.internal */
	NAME_REGION,      /* <region>.<app>.internal */
	NAME_GROUP,       /* <group>.process.<app>.internal */
	NAME_VM,          /* <id>.vm.<app>.internal */
	NAME_NEAREST,     /* top<N>.nearest.of.<app>.internal */
	NAME_META,        /* <value>.<key>.kv._metadata.<app>.internal */
	NAME_VMS,         /* vms.<app>.internal (TXT) */
	NAME_REGIONS,     /* regions.<app>.internal (TXT) */
	NAME_APPS,        /* _apps.internal (TXT) */
	NAME_PEERS,       /* _peer.internal (TXT) */
	NAME_PEER,        /* <peer>._peer.internal */
	NAME_INSTANCES,   /* _instances.internal (TXT) */
	NAME_FLYCAST,     /* <app>.flycast */
	NAME_PTR,         /* 32 nibbles under a.a.d.f.ip6.arpa */
	NAME_NSHOST,      /* _ns.internal: the apex NS target, this server */
	NAME_PTR_ENT,     /* 1-27 nibbles under a.a.d.f.ip6.arpa: a prefix of an address */
	NAME_ALL_VMS,     /* all.vms.<app>.internal (TXT, every state) */
	NAME_ALL_REGIONS, /* all.regions.<app>.internal (TXT, every state) */
	NAME_ALL_INSTANCES, /* all._instances.internal (TXT, every state) */
	NAME_META_ENT,      /* _metadata.<app>, kv._metadata.<app>: exist while a pair does */
	NAME_META_KEY,      /* <key>.kv._metadata.<app>.internal */
} names_form_t;

typedef enum { ZONE_NONE, ZONE_INTERNAL, ZONE_FLYCAST, ZONE_REVERSE } names_zone_t;

typedef struct {
	const char *p; /* into the caller's lower-cased name */
	uint8_t len;
} names_label_t;

typedef struct {
	names_form_t form;
	names_zone_t zone;
	size_t apex_off;   /* offset of the zone's apex name inside the wire name */
	names_label_t app; /* every form under an app */
	names_label_t sub; /* region, group, Machine id, peer name, metadata key */
	names_label_t val; /* metadata value */
	uint32_t top;      /* N of topN */
	bool global;       /* NAME_APP as global.<app>: nothing below it, never a non-terminal */
	bool healthy;      /* healthy.<an AAAA form>: less the Machines with a critical check */
	uint8_t addr[16];  /* NAME_PTR; NAME_PTR_ENT: its first nibbles, the rest 0 */
	unsigned nibbles;  /* NAME_PTR_ENT: nibbles of addr the name gives, fdaa included */
} names_t;

/*
 * Classifies a wire-form name (labels as length-prefixed bytes, root label last, at
 * most 255 bytes) already lower-cased. Never fails: a name that is not ours is
 * NAME_OUTSIDE, a malformed name in our zones is NAME_NX.
 */
void names_classify(const uint8_t *name, size_t len, names_t *out);

/* An RFC 1035 label as the registry stores it (RFC 1123 allows the leading digit):
 * 1-63 of [a-z0-9-], not starting or ending with '-'. Lower case only. */
bool names_label_valid(const char *s, size_t len);

/* A Machine id of the platform: exactly 14 hex digits, lower case. */
bool names_machine_id(const char *s, size_t len);

/* A word of the name forms (global, vms, regions, process, vm, nearest, of, kv, all,
 * healthy, _metadata, _apps, _peer, _instances): never a region code or a process group
 * (and healthy never an app: names_app_reserved). */
bool names_reserved(const char *s, size_t len);

/* An app name that would read as a word of the names: healthy. */
bool names_app_reserved(const char *s, size_t len);

/* A metadata key or value that names can ask for: 1-63 of [a-z0-9_-] in either case.
 * Other metadata is stored and exported but has no name. */
bool names_meta_label(const char *s, size_t len);

/* A peer that appears in no name and no PTR: interactive-* (fly ssh, console). */
bool names_peer_hidden(const char *s, size_t len);

#endif
