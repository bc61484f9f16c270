/*
 * reg_codec.c — how the registry lays out its records and index entries: a Machine's
 * record (encode, decode), the keys and values of its index entries, a region's record,
 * and the hits the walks decode from each table's entries. No transaction here.
 */
#include "reg_impl.h"

#include "names.h"

/* ---- machine records -------------------------------------------------------------------- */

static bool put_str(uint8_t *buf, size_t cap, size_t *n, const char *s, size_t max)
{
	size_t len = strlen(s);
	if (len > max || *n + 1 + len > cap)
		return false;
	buf[(*n)++] = (uint8_t)len;
	memcpy(buf + *n, s, len);
	*n += len;
	return true;
}

static bool get_str(const uint8_t *buf, size_t size, size_t *n, char *out, size_t cap)
{
	if (*n >= size)
		return false;
	size_t len = buf[(*n)++];
	if (len >= cap || *n + len > size)
		return false;
	memcpy(out, buf + *n, len);
	out[len] = '\0';
	*n += len;
	return true;
}

/* v2 | net4 | ip16 | u8 flags | str app | str region | str group | str state | u8 nmeta |
 * (str k, str v)* [| u8 nchecks | (str name, u8 status)* with FLAG_CHECKS]. Version 1
 * (schema 3) had no flags byte; dec_machine reads both. */
int enc_machine(const reg_machine_t *m, uint8_t *buf, size_t cap, size_t *len)
{
	if (m->nmeta > REG_META_MAX)
		return -E2BIG;
	size_t n = 0;
	buf[n++] = REC_V2;
	put_be32(buf + n, m->net);
	n += 4;
	memcpy(buf + n, m->ip, 16);
	n += 16;
	buf[n++] = (uint8_t)((m->skip_dns ? FLAG_SKIP_DNS : 0) | (m->nchecks ? FLAG_CHECKS : 0));
	if (!put_str(buf, cap, &n, m->app, REG_LABEL_MAX) ||
	    !put_str(buf, cap, &n, m->region, REG_LABEL_MAX) ||
	    !put_str(buf, cap, &n, m->group, REG_LABEL_MAX) ||
	    !put_str(buf, cap, &n, m->state, REG_STATE_MAX))
		return -ENAMETOOLONG;
	buf[n++] = (uint8_t)m->nmeta;
	for (size_t i = 0; i < m->nmeta; i++)
		if (!put_str(buf, cap, &n, m->meta[i].key, REG_LABEL_MAX) ||
		    !put_str(buf, cap, &n, m->meta[i].value, REG_META_VALUE_MAX))
			return -ENAMETOOLONG;
	if (m->nchecks) {
		if (n + 1 > cap)
			return -ENAMETOOLONG;
		buf[n++] = (uint8_t)m->nchecks;
	}
	for (size_t i = 0; i < m->nchecks; i++) {
		if (m->checks[i].status > REG_CHECK_CRITICAL)
			return -EINVAL;
		if (!put_str(buf, cap, &n, m->checks[i].name, REG_LABEL_MAX) || n + 1 > cap)
			return -ENAMETOOLONG;
		buf[n++] = m->checks[i].status;
	}
	*len = n;
	return 0;
}

int dec_machine(const MDB_val *key, const MDB_val *val, reg_machine_buf_t *o)
{
	const uint8_t *b = val->mv_data;
	size_t size = val->mv_size, n = 21;
	if (key->mv_size > REG_LABEL_MAX || size < 22 || (b[0] != 1 && b[0] != REC_V2))
		return -EIO;
	memcpy(o->id, key->mv_data, key->mv_size);
	o->id[key->mv_size] = '\0';
	o->m.id = o->id;
	o->m.net = get_be32(b + 1);
	memcpy(o->m.ip, b + 5, 16);
	o->m.checks = o->checks;
	o->m.nchecks = 0;
	uint8_t flags = b[0] == REC_V2 ? b[n++] : 0;
	o->m.skip_dns = flags & FLAG_SKIP_DNS;
	if (!get_str(b, size, &n, o->app, sizeof(o->app)) ||
	    !get_str(b, size, &n, o->region, sizeof(o->region)) ||
	    !get_str(b, size, &n, o->group, sizeof(o->group)) ||
	    !get_str(b, size, &n, o->state, sizeof(o->state)) || n >= size)
		return -EIO;
	o->m.app = o->app;
	o->m.region = o->region;
	o->m.group = o->group;
	o->m.state = o->state;
	o->m.nmeta = b[n++];
	if (o->m.nmeta > REG_META_MAX)
		return -EIO;
	for (size_t i = 0; i < o->m.nmeta; i++) {
		if (!get_str(b, size, &n, o->metabuf[i][0], REG_LABEL_MAX + 1) ||
		    !get_str(b, size, &n, o->metabuf[i][1], REG_META_VALUE_MAX + 1))
			return -EIO;
		o->meta[i].key = o->metabuf[i][0];
		o->meta[i].value = o->metabuf[i][1];
	}
	o->m.meta = o->meta;
	if (!(flags & FLAG_CHECKS))
		return 0;
	if (n >= size || b[n] > REG_CHECKS_MAX)
		return -EIO;
	o->m.nchecks = b[n++];
	for (size_t i = 0; i < o->m.nchecks; i++) {
		if (!get_str(b, size, &n, o->checkbuf[i], REG_LABEL_MAX + 1) || n >= size ||
		    b[n] > REG_CHECK_CRITICAL)
			return -EIO;
		o->checks[i] = (reg_check_t){o->checkbuf[i], b[n++]};
	}
	return 0;
}

/* The value every idx entry of a Machine carries:
 * ip16 | u8 app len | u8 id len | u8 region len | region. */
#define IDX_VAL_HDR 19
size_t idx_value(const reg_machine_t *m, uint8_t *v)
{
	size_t rl = strlen(m->region);
	memcpy(v, m->ip, 16);
	v[16] = (uint8_t)strlen(m->app);
	v[17] = (uint8_t)strlen(m->id);
	v[18] = (uint8_t)rl;
	memcpy(v + IDX_VAL_HDR, m->region, rl);
	return IDX_VAL_HDR + rl;
}

/* The address entry of a Machine: 'm' app \0 id \0 region ('M': critical). */
size_t addr_value_machine(const reg_machine_t *m, uint8_t *v)
{
	size_t n = 0, al = strlen(m->app), il = strlen(m->id), rl = strlen(m->region);
	v[n++] = is_critical(m) ? 'M' : 'm';
	memcpy(v + n, m->app, al), n += al, v[n++] = 0;
	memcpy(v + n, m->id, il), n += il, v[n++] = 0;
	memcpy(v + n, m->region, rl), n += rl;
	return n;
}

/* Index keys of a Machine: 'A', 'R' entries, 'S' and 'r' counters (idx, started, app
 * first); 'a' entries and 'q' counters (all, every state: net tag app \0 ...). */
void idx_key(rkey_t *k, const reg_machine_t *m, int tag)
{
	if (tag == 'a' || tag == 'q') {
		key_init(k, m->net, tag);
		key_str(k, m->app, strlen(m->app), true);
	} else {
		app_key(k, m->net, m->app, strlen(m->app), tag);
	}
	switch (tag) {
	case 'R':
		key_str(k, m->region, strlen(m->region), true);
		break;
	case 'r':
	case 'q':
		key_str(k, m->region, strlen(m->region), false);
		return;
	case 'S':
		return;
	}
	key_str(k, m->id, strlen(m->id), false);
}

/* The all table's address key of a Machine: net 'i' ip16 id. */
void any_addr_key(rkey_t *k, const reg_machine_t *m)
{
	key_init(k, m->net, 'i');
	key_put(k, m->ip, 16);
	key_str(k, m->id, strlen(m->id), false);
}

static bool meta_queryable(const reg_meta_t *p)
{
	return names_meta_label(p->key, strlen(p->key)) &&
	       names_meta_label(p->value, strlen(p->value));
}

static void key_lower(rkey_t *k, const char *s, bool sep)
{
	size_t len = strlen(s), start = k->n;
	key_str(k, s, len, sep);
	if (k->overflow)
		return;
	for (size_t i = start; i < start + len; i++)
		if (k->b[i] >= 'A' && k->b[i] <= 'Z')
			k->b[i] = (uint8_t)(k->b[i] - 'A' + 'a');
}

/* Set i of a Machine's sets: 0..2 'A', 'R', 'G'; 3 'C' (critical ones only); then per
 * metadata pair its 'M' set and its 'K' set. false: no such set for this Machine. */
bool set_key(rkey_t *k, const reg_machine_t *m, size_t i)
{
	static const int tags[] = {'A', 'R', 'G', 'C'};
	int tag = i < 4 ? tags[i] : (i - 4) % 2 ? 'K' : 'M';
	const reg_meta_t *p = i < 4 ? NULL : &m->meta[(i - 4) / 2];
	if ((p && !meta_queryable(p)) || (tag == 'C' && !is_critical(m)))
		return false;
	app_key(k, m->net, m->app, strlen(m->app), tag);
	if (tag == 'R')
		key_str(k, m->region, strlen(m->region), false);
	else if (tag == 'G')
		key_str(k, m->group, strlen(m->group), false);
	else if (tag == 'M') {
		key_lower(k, p->key, true);
		key_lower(k, p->value, false);
	} else if (tag == 'K') {
		key_lower(k, p->key, false);
	}
	return true;
}

const int set_tags[3] = {'A', 'R', 'G'};

static double bitsd(uint64_t u)
{
	double d;
	memcpy(&d, &u, 8);
	return d;
}

int region_from(const MDB_val *k, const MDB_val *v, reg_region_t *r)
{
	if (v->mv_size < 16 || k->mv_size > REG_LABEL_MAX)
		return -EIO;
	const uint8_t *b = v->mv_data;
	*r = (reg_region_t){
	        .code = k->mv_data,
	        .code_len = (uint8_t)k->mv_size,
	        .name = (const char *)b + 16,
	        .name_len = (uint8_t)(v->mv_size - 16),
	        .lat = bitsd(get_be64(b)),
	        .lon = bitsd(get_be64(b + 8)),
	};
	return 0;
}

/* Fills hit from an idx entry (net tag app \0 ... \0 id -> see idx_value): the
 * lengths in the value place app and id in the key without scanning it. */
/* An idx 'A'/'R' entry (net app \0 tag ...: the app at 4) or an all 'a' entry (net tag
 * app \0 id: at 5); both keys hold at least 6 bytes beside the app and the id. */
static int hit_at(const MDB_val *k, const MDB_val *v, reg_hit_t *h, size_t app_at)
{
	const uint8_t *kb = k->mv_data, *vb = v->mv_data;
	if (v->mv_size < IDX_VAL_HDR || v->mv_size != (size_t)IDX_VAL_HDR + vb[18] ||
	    k->mv_size < 6u + vb[16] + vb[17])
		return -EIO;
	h->kind = REG_HIT_MACHINE;
	h->net = get_be32(kb);
	h->ip = vb;
	h->app = (const char *)kb + app_at;
	h->app_len = vb[16];
	h->id = (const char *)kb + k->mv_size - vb[17];
	h->id_len = vb[17];
	h->region = (const char *)vb + IDX_VAL_HDR;
	h->region_len = vb[18];
	return 0;
}

int hit_from_idx(const MDB_val *k, const MDB_val *v, reg_hit_t *h)
{
	return hit_at(k, v, h, 4);
}

int hit_from_all(const MDB_val *k, const MDB_val *v, reg_hit_t *h)
{
	return hit_at(k, v, h, 5);
}

/* peers: net | name -> ip16 | region */
int hit_from_peer(const MDB_val *k, const MDB_val *v, reg_hit_t *h)
{
	if (k->mv_size < 5 || v->mv_size < 16)
		return -EIO;
	*h = (reg_hit_t){
	        .kind = REG_HIT_PEER,
	        .net = get_be32(k->mv_data),
	        .ip = v->mv_data,
	        .id = (const char *)k->mv_data + 4,
	        .id_len = (uint8_t)(k->mv_size - 4),
	        .region = (const char *)v->mv_data + 16,
	        .region_len = (uint8_t)(v->mv_size - 16),
	};
	return 0;
}

/* flycast: net | app \0 | ip16 */
int hit_from_flycast(const MDB_val *k, const MDB_val *v, reg_hit_t *h)
{
	(void)v;
	const uint8_t *kb = k->mv_data;
	if (k->mv_size < 4 + 2 + 16)
		return -EIO;
	*h = (reg_hit_t){
	        .kind = REG_HIT_MACHINE,
	        .net = get_be32(kb),
	        .ip = kb + k->mv_size - 16,
	        .app = (const char *)kb + 4,
	        .app_len = (uint8_t)(k->mv_size - 4 - 17),
	        .id = "",
	        .region = "",
	};
	return 0;
}

/* addr: net | ip16 -> 'm' app \0 id \0 region | 'p' name \0 region */
int hit_from_addr(const MDB_val *k, const MDB_val *v, reg_hit_t *h)
{
	const uint8_t *vb = v->mv_data, *end = vb + v->mv_size;
	if (k->mv_size != 20 || v->mv_size < 2)
		return -EIO;
	*h = (reg_hit_t){.net = get_be32(k->mv_data), .ip = (const uint8_t *)k->mv_data + 4};
	const uint8_t *p = vb + 1, *s;
	if (vb[0] == 'm' || vb[0] == 'M') {
		h->kind = REG_HIT_MACHINE;
		if (!(s = memchr(p, 0, (size_t)(end - p))))
			return -EIO;
		h->app = (const char *)p, h->app_len = (uint8_t)(s - p), p = s + 1;
	} else if (vb[0] == 'p') {
		h->kind = REG_HIT_PEER;
	} else {
		return -EIO;
	}
	if (!(s = memchr(p, 0, (size_t)(end - p))))
		return -EIO;
	h->id = (const char *)p, h->id_len = (uint8_t)(s - p), p = s + 1;
	h->region = (const char *)p, h->region_len = (uint8_t)(end - p);
	return 0;
}
