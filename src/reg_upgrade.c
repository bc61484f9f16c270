/*
 * reg_upgrade.c — reg_upgrade: converts a registry of an older schema in place.
 */
#include "reg_impl.h"

#include <stdlib.h>

/* ---- upgrade from schema 3 ------------------------------------------------------------------ */

typedef struct {
	char *ids; /* NUL-separated */
	size_t len, cap, n;
} idlist_t;

static int idlist_add(idlist_t *l, const void *id, size_t len)
{
	if (l->len + len + 1 > l->cap) {
		size_t cap = 2 * (l->len + len + 1) + 4096;
		char *p = realloc(l->ids, cap);
		if (!p)
			return -ENOMEM;
		l->ids = p, l->cap = cap;
	}
	memcpy(l->ids + l->len, id, len);
	l->ids[l->len + len] = '\0';
	l->len += len + 1;
	l->n++;
	return 0;
}

static int schema_of(reg_txn_t *t)
{
	MDB_val v;
	int rc = raw_get(t, DB_META, "schema", 6, &v);
	if (rc)
		return rc;
	return v.mv_size == 4 ? (int)get_be32(v.mv_data) : -EIO;
}

/* A peer's address entry, rebuilt from its record (net | name -> ip16 | region). */
static int peer_addr(reg_txn_t *t, const MDB_val *k, const MDB_val *v)
{
	if (k->mv_size < 5 || v->mv_size < 17 || k->mv_size > 4 + REG_LABEL_MAX)
		return -EIO;
	uint32_t net = get_be32(k->mv_data);
	size_t nl = k->mv_size - 4, rl = v->mv_size - 16, n = 0;
	uint8_t av[2 * REG_LABEL_MAX + 4];
	if (rl > REG_LABEL_MAX)
		return -EIO;
	av[n++] = 'p';
	memcpy(av + n, (const uint8_t *)k->mv_data + 4, nl), n += nl, av[n++] = 0;
	memcpy(av + n, (const uint8_t *)v->mv_data + 16, rl), n += rl;
	rkey_t ak;
	addr_key(&ak, net, v->mv_data);
	int rc = kput(t, DB_ADDR, &ak, av, n);
	return rc ? rc : touch_org(t, net);
}

int reg_upgrade(reg_txn_t *t)
{
	if (!t->write)
		return -EROFS;
	int rc = schema_of(t);
	if (rc < 0 || rc == SCHEMA_VERSION)
		return rc < 0 ? rc : 0;
	if (!older((uint32_t)rc))
		return -EPROTONOSUPPORT;
	static const int rebuilt[] = {DB_IDX, DB_ADDR, DB_SETS, DB_ALL, DB_SERIALS};
	for (size_t i = 0; i < sizeof(rebuilt) / sizeof(rebuilt[0]); i++)
		if ((rc = mdb_drop(t->txn, t->reg->dbi[rebuilt[i]], 0)))
			return map_err(rc);
	t->touched_any = false;
	/* Machine ids are read first: rewriting the records while walking them would move
	 * the cursor under us. Peers keep their records; only their address entries are
	 * rebuilt (another table). */
	idlist_t ids = {0};
	MDB_cursor *c;
	MDB_val k, v;
	reg_machine_buf_t *b = NULL;
	if ((rc = cursor(t, DB_MACHINES, &c)))
		return rc;
	for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT))
		if ((rc = idlist_add(&ids, k.mv_data, k.mv_size)))
			goto done;
	if (rc != MDB_NOTFOUND)
		goto done;
	if (!(b = malloc(sizeof(*b)))) {
		rc = -ENOMEM;
		goto done;
	}
	rc = 0;
	const char *id = ids.ids;
	for (size_t i = 0; i < ids.n && !rc; i++, id += strlen(id) + 1) {
		uint8_t buf[MACHINE_ENC_MAX];
		size_t len;
		if (!(rc = reg_get_machine(t, id, b)) &&
		    !(rc = enc_machine(&b->m, buf, sizeof(buf), &len)) &&
		    !(rc = raw_put(t, DB_MACHINES, id, strlen(id), buf, len)) &&
		    !(rc = touch_org(t, b->m.net)))
			rc = reindex(t, NULL, &b->m);
	}
	if (rc || (rc = cursor(t, DB_PEERS, &c)))
		goto done;
	for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT))
		if ((rc = peer_addr(t, &k, &v)))
			goto done;
	if (rc != MDB_NOTFOUND)
		goto done;
	/* orgs without records get a serial too */
	if ((rc = cursor(t, DB_ORGNETS, &c)))
		goto done;
	for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT))
		if ((rc = k.mv_size != 4 ? -EIO : touch_org(t, get_be32(k.mv_data))))
			goto done;
	if (rc != MDB_NOTFOUND)
		goto done;
	uint8_t sb[4];
	put_be32(sb, SCHEMA_VERSION);
	if ((rc = raw_put(t, DB_META, "schema", 6, sb, 4)))
		goto done;
	rc = 1;
done:
	free(ids.ids);
	free(b);
	return rc < 0 ? map_err(rc) : rc;
}
