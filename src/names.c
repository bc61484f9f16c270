/*
 * names.c — question name -> name form. Pure: it reads labels and nothing else.
 *
 * Names are read from the right: the zone (internal., flycast., a.a.d.f.ip6.arpa.),
 * then under internal. the app or a reserved word (_apps, _peer, _instances), then the
 * form's keywords. A reserved word beats a region of the same spelling (vms, regions,
 * global, vm, process, of, _metadata, all are not regions). It must never look anything up.
 */
#include "names.h"

#include <string.h>

#define LABELS_MAX 128

static bool is(const names_label_t *l, const char *word)
{
	size_t n = strlen(word);
	return l->len == n && memcmp(l->p, word, n) == 0;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* top<N>: N in 1..999999999, decimal, no leading zero. */
static bool parse_top(const names_label_t *l, uint32_t *n)
{
	if (l->len < 4 || l->len > 12 || memcmp(l->p, "top", 3) != 0 || l->p[3] == '0')
		return false;
	uint32_t v = 0;
	for (size_t i = 3; i < l->len; i++) {
		if (l->p[i] < '0' || l->p[i] > '9')
			return false;
		v = v * 10 + (uint32_t)(l->p[i] - '0');
	}
	*n = v;
	return v >= 1;
}

/* Labels under internal.: lab[0] is the leftmost, lab[k-1] the app or reserved word. */
static void classify_internal(const names_label_t *lab, size_t k, names_t *o)
{
	if (k == 0) {
		o->form = NAME_APEX;
		return;
	}
	const names_label_t *top = &lab[k - 1];
	if (is(top, "_ns")) { /* the NS target: no app can be called _ns */
		o->form = k == 1 ? NAME_NSHOST : NAME_NX;
		return;
	}
	if (is(top, "_apps") || is(top, "_instances")) {
		if (k == 1)
			o->form = is(top, "_apps") ? NAME_APPS : NAME_INSTANCES;
		else if (k == 2 && is(top, "_instances") && is(&lab[0], "all"))
			o->form = NAME_ALL_INSTANCES;
		return;
	}
	if (is(top, "_peer")) {
		if (k == 1)
			o->form = NAME_PEERS;
		else if (k == 2)
			o->form = NAME_PEER, o->sub = lab[0];
		return;
	}
	if (k >= 2 && is(&lab[0], "healthy")) {
		/* healthy.<form>: every AAAA form of an app, less its critical Machines; the
		 * word beats a metadata value of the same spelling */
		classify_internal(lab + 1, k - 1, o);
		switch (o->healthy ? NAME_NX : o->form) { /* once only */
		case NAME_APP:
		case NAME_REGION:
		case NAME_GROUP:
		case NAME_VM:
		case NAME_NEAREST:
		case NAME_META:
		case NAME_META_KEY:
			o->healthy = true;
			return;
		default:
			o->form = NAME_NX;
			return;
		}
	}
	o->app = *top;
	size_t r = k - 1; /* labels left of the app */
	const names_label_t *y = r >= 1 ? &lab[k - 2] : NULL, *z = r >= 2 ? &lab[k - 3] : NULL;
	switch (r) {
	case 0:
		o->form = NAME_APP;
		return;
	case 1:
		if (is(y, "global"))
			o->form = NAME_APP, o->global = true;
		else if (is(y, "vms"))
			o->form = NAME_VMS;
		else if (is(y, "regions"))
			o->form = NAME_REGIONS;
		else if (is(y, "vm") || is(y, "process") || is(y, "of"))
			o->form = NAME_ENT;
		else if (is(y, "_metadata"))
			o->form = NAME_META_ENT;
		else if (is(y, "all"))
			return; /* all.vms.<app> is below vms.<app>, not all.<app>: nothing is */
		else
			o->form = NAME_REGION, o->sub = *y;
		return;
	case 2:
		if (is(y, "process"))
			o->form = NAME_GROUP, o->sub = *z;
		else if (is(y, "vm"))
			o->form = NAME_VM, o->sub = *z;
		else if (is(y, "of") && is(z, "nearest"))
			o->form = NAME_ENT;
		else if (is(y, "_metadata") && is(z, "kv"))
			o->form = NAME_META_ENT;
		else if (is(y, "vms") && is(z, "all"))
			o->form = NAME_ALL_VMS;
		else if (is(y, "regions") && is(z, "all"))
			o->form = NAME_ALL_REGIONS;
		return;
	case 3:
		if (is(y, "of") && is(z, "nearest") && parse_top(&lab[0], &o->top))
			o->form = NAME_NEAREST;
		else if (is(y, "_metadata") && is(z, "kv"))
			o->form = NAME_META_KEY, o->sub = lab[0];
		return;
	case 4:
		if (is(y, "_metadata") && is(z, "kv"))
			o->form = NAME_META, o->sub = lab[1], o->val = lab[0];
		return;
	default:
		return;
	}
}

/* a.a.d.f.ip6.arpa: 32 nibbles give a PTR name, fewer are prefixes of addresses (empty
 * non-terminals where some address has them, RFC 8020). */
static void classify_reverse(const names_label_t *lab, size_t n, names_t *o)
{
	if (n == 0) {
		o->form = NAME_APEX;
		return;
	}
	if (n > 28)
		return;
	uint8_t nib[32] = {0xf, 0xd, 0xa, 0xa};
	for (size_t i = 0; i < n; i++) {
		int v = lab[i].len == 1 ? hexval(lab[i].p[0]) : -1;
		if (v < 0)
			return;
		nib[4 + n - 1 - i] = (uint8_t)v;
	}
	for (size_t i = 0; i < 16; i++)
		o->addr[i] = (uint8_t)(nib[2 * i] << 4 | nib[2 * i + 1]);
	o->nibbles = (unsigned)(4 + n);
	o->form = n == 28 ? NAME_PTR : NAME_PTR_ENT;
}

void names_classify(const uint8_t *name, size_t len, names_t *o)
{
	names_label_t lab[LABELS_MAX];
	size_t off[LABELS_MAX], n = 0, pos = 0;

	memset(o, 0, sizeof(*o));
	o->form = NAME_OUTSIDE;
	while (pos < len && name[pos] != 0) {
		if (n == LABELS_MAX || name[pos] > 63 || pos + 1 + name[pos] > len)
			return;
		off[n] = pos;
		lab[n].p = (const char *)name + pos + 1;
		lab[n].len = name[pos];
		pos += 1 + (size_t)name[pos];
		n++;
	}
	if (n >= 1 && is(&lab[n - 1], "internal")) {
		o->zone = ZONE_INTERNAL;
		o->apex_off = off[n - 1];
		o->form = NAME_NX;
		classify_internal(lab, n - 1, o);
	} else if (n >= 1 && is(&lab[n - 1], "flycast")) {
		o->zone = ZONE_FLYCAST;
		o->apex_off = off[n - 1];
		o->form = n == 1 ? NAME_APEX : n == 2 ? NAME_FLYCAST : NAME_NX;
		if (n == 2)
			o->app = lab[0];
	} else if (n >= 6 && is(&lab[n - 1], "arpa") && is(&lab[n - 2], "ip6") &&
	           is(&lab[n - 3], "f") && is(&lab[n - 4], "d") && is(&lab[n - 5], "a") &&
	           is(&lab[n - 6], "a")) {
		o->zone = ZONE_REVERSE;
		o->apex_off = off[n - 6];
		o->form = NAME_NX;
		classify_reverse(lab, n - 6, o);
	}
}

bool names_label_valid(const char *s, size_t len)
{
	if (len == 0 || len > 63 || s[0] == '-' || s[len - 1] == '-')
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
			return false;
	}
	return true;
}

static const char *const reserved[] = {"global",  "vms",   "regions",    "process",   "vm",
                                       "nearest", "of",    "kv",         "_metadata", "all",
                                       "_apps",   "_peer", "_instances", "healthy"};

bool names_reserved(const char *s, size_t len)
{
	for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
		if (strlen(reserved[i]) == len && memcmp(reserved[i], s, len) == 0)
			return true;
	return false;
}

bool names_app_reserved(const char *s, size_t len)
{
	return len == 7 && memcmp(s, "healthy", 7) == 0;
}

bool names_meta_label(const char *s, size_t len)
{
	if (len == 0 || len > 63)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_'))
			return false;
	}
	return true;
}

bool names_peer_hidden(const char *s, size_t len)
{
	return len >= 12 && memcmp(s, "interactive-", 12) == 0;
}

bool names_machine_id(const char *s, size_t len)
{
	if (len != 14)
		return false;
	for (size_t i = 0; i < len; i++)
		if (hexval(s[i]) < 0)
			return false;
	return true;
}
