"""Every SQL statement memagent writes by hand, as named constants with parameters only.

langgraph's saver owns its tables (``checkpoints``, ``checkpoint_blobs``,
``checkpoint_writes``) and their migrations. The statements here cover what its API
cannot do, each saying why next to it. One module by design, however long: every
statement memagent sends is reviewed in one place.
"""

SETUP_LOCK_KEY = 0x6D656D61  # "mema": one advisory-lock key for all of memagent's setup
"""Serialises ``setup()`` across processes.

Stock ``setup()`` races when several processes start on an empty database: two
``CREATE TABLE IF NOT EXISTS`` collide on the catalog and two processes insert the same
migration version. An advisory lock lets one process migrate while the others wait,
then find nothing left to do. It is a transaction-level lock, held by a transaction
kept open on a connection of its own while the migrations run on others (``CREATE
INDEX CONCURRENTLY`` in langgraph's migrations cannot run in a transaction): behind a
pooler in transaction mode (PgBouncer), a session-level lock would stay on whichever
server connection the pooler happened to use, and its unlock could go to another one.
"""

# Waiting is a poll of ``pg_try_advisory_xact_lock``, not a blocking
# ``pg_advisory_xact_lock``: a blocked statement keeps a snapshot open, and ``CREATE
# INDEX CONCURRENTLY`` in the lock holder's migration waits for every older snapshot to
# end, so the holder would wait for the waiters while they wait for it (a hang the
# server cannot detect, since the lock is held on another connection than the index
# build). The holder's own open transaction has no snapshot between statements (READ
# COMMITTED), so it does not hold up the index build.
TRY_SETUP_LOCK = "SELECT pg_try_advisory_xact_lock(%s) AS locked"

MESSAGE_BLOCK = 64
"""Message numbers per ``nextval`` of ``memagent_message_blocks``: one block serves about
30 turns of a thread, so most writes need no round trip for numbers. It is the
sequence's increment, fixed when the sequence is made: changing it needs a migration."""

# langgraph's ``SELECT_SQL`` (the read behind ``aget_tuple`` and ``alist``), with one
# change: each channel version's blob is looked up by the blob table's whole primary
# key. The library joins ``jsonb_each_text(channel_versions)`` to ``checkpoint_blobs``
# on all four key columns, but PostgreSQL plans that as a hash join over *every* blob
# of the thread (the index on its first two columns, then the hash), fresh statistics
# or not: reading the head of a 1000-turn thread scanned about 3,000 rows to return 3,
# so every read grew with the thread's length. A ``LATERAL`` subquery with ``LIMIT 1``
# (harmless: the key is unique) is not flattened into that join, so each version is
# one index probe. Columns and their order are the library's, which decodes the rows.
SELECT_CHECKPOINT = """
select
    thread_id,
    checkpoint,
    checkpoint_ns,
    checkpoint_id,
    parent_checkpoint_id,
    metadata,
    (
        select array_agg(array[bl.channel::bytea, bl.type::bytea, bl.blob])
        from jsonb_each_text(checkpoint -> 'channel_versions') as version
        cross join lateral (
            select channel, type, blob from checkpoint_blobs
            where checkpoint_blobs.thread_id = checkpoints.thread_id
                and checkpoint_blobs.checkpoint_ns = checkpoints.checkpoint_ns
                and checkpoint_blobs.channel = version.key
                and checkpoint_blobs.version = version.value
            limit 1
        ) as bl
    ) as channel_values,
    (
        select array_agg(array[
            cw.task_id::text::bytea, cw.channel::bytea, cw.type::bytea, cw.blob,
            convert_to(cw.task_path, 'UTF8'), cw.idx::text::bytea
        ])
        from checkpoint_writes cw
        where cw.thread_id = checkpoints.thread_id
            and cw.checkpoint_ns = checkpoints.checkpoint_ns
            and cw.checkpoint_id = checkpoints.checkpoint_id
    ) as pending_writes
from checkpoints """

# memagent's own tables. Append-only: the position of a migration is its version.
MIGRATIONS: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS memagent_migrations (v INTEGER PRIMARY KEY)""",
    """CREATE TABLE IF NOT EXISTS memagent_audit (
    id BIGSERIAL PRIMARY KEY,
    at TIMESTAMPTZ NOT NULL DEFAULT now(),
    operation TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    surface TEXT NOT NULL,
    actor TEXT,
    detail JSONB NOT NULL DEFAULT '{}'
)""",
    """CREATE INDEX IF NOT EXISTS memagent_audit_thread_idx ON memagent_audit (thread_id, id)""",
    """CREATE TABLE IF NOT EXISTS memagent_thread_leases (
    thread_id TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
)""",
    # langgraph's blobs are large (a long thread's whole message list, at every step)
    # and PostgreSQL compresses them with pglz by default: 7 ms to store a 700 kB blob
    # here, against 1.5 ms with lz4 at a slightly better ratio. The library has no
    # setting for the column's compression. Only new rows are affected. Servers built
    # without lz4 (PostgreSQL before 14, or pgserver's embedded build) keep pglz.
    """DO $$
BEGIN
    EXECUTE 'ALTER TABLE checkpoint_blobs ALTER COLUMN blob SET COMPRESSION lz4';
    EXECUTE 'ALTER TABLE checkpoint_writes ALTER COLUMN blob SET COMPRESSION lz4';
EXCEPTION WHEN feature_not_supported OR syntax_error THEN
    NULL;
END
$$""",
    # Each message once (agent/store/messages.py, docs/storage.md). ``seq`` numbers a
    # thread's message rows; a ``messages`` version in ``checkpoint_blobs`` lists ranges
    # of them. (The per-thread counter below is replaced by a sequence further down.)
    """CREATE TABLE IF NOT EXISTS memagent_messages (
    thread_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    message_id TEXT NOT NULL,
    type TEXT NOT NULL,
    blob BYTEA NOT NULL,
    PRIMARY KEY (thread_id, seq)
)""",
    """CREATE INDEX IF NOT EXISTS memagent_messages_id_idx
    ON memagent_messages (thread_id, message_id)""",
    """CREATE TABLE IF NOT EXISTS memagent_message_seq (
    thread_id TEXT PRIMARY KEY,
    last_seq BIGINT NOT NULL
)""",
    # Who owns a thread, as the authenticated page or server saw it first used
    # (docs/SPEC.md, "Data lifecycle"): what ``erase-user`` finds a user's threads by.
    # The server's own record (thread metadata) lives outside PostgreSQL, in its
    # ``.langgraph_api/`` files, and the page's threads are known only by their id.
    """CREATE TABLE IF NOT EXISTS memagent_thread_owner (
    thread_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
)""",
    """CREATE INDEX IF NOT EXISTS memagent_thread_owner_owner_idx
    ON memagent_thread_owner (owner)""",
    # Message numbers come from one sequence for every thread instead of a counter row
    # per thread: a deleted thread then leaves no row naming it, and a number is still
    # never handed out twice (for any thread, so also not to a thread deleted and made
    # again under its id, nor to a copy, which keeps its source's numbers). The first
    # number is above every number the old counters gave. Processes of an older
    # release still running fail loudly on the dropped table rather than reuse numbers.
    f"""CREATE SEQUENCE IF NOT EXISTS memagent_message_blocks
    INCREMENT BY {MESSAGE_BLOCK} MINVALUE 1""",
    """DO $$
BEGIN
    PERFORM setval(
        'memagent_message_blocks',
        GREATEST(
            (SELECT max(last_seq) FROM memagent_message_seq),
            (SELECT max(seq) FROM memagent_messages),
            0
        ) + 1,
        false
    );
END
$$""",
    """DROP TABLE IF EXISTS memagent_message_seq""",
    # What retention removed (agent/store/retention.py): one row per root checkpoint it
    # cut, so that asking for one gets "removed by retention" rather than "unknown",
    # and the timeline keeps a tombstone of each memory change it cut (``tombstone``:
    # the change's kind and facts, counts only, never content). It names the thread,
    # so a delete removes it too.
    """CREATE TABLE IF NOT EXISTS memagent_retained (
    thread_id TEXT NOT NULL,
    checkpoint_id TEXT NOT NULL,
    parent_checkpoint_id TEXT,
    ts TEXT,
    retained_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    tombstone JSONB,
    PRIMARY KEY (thread_id, checkpoint_id)
)""",
)
SELECT_MIGRATION_VERSION = "SELECT max(v) AS v FROM memagent_migrations"
INSERT_MIGRATION_VERSION = "INSERT INTO memagent_migrations (v) VALUES (%s)"

# What makes a checkpoint a timeline point: a turn's ``input`` checkpoint, or the marker
# of a memory event kind. The marker keys come from the registry
# (``agent.memory.events.MEMORY_METADATA_KEYS``) as the ``memory_keys`` parameter, so a
# new kind needs no change here; ``agent.memory.timeline.entry_from`` applies the same
# rule in Python.
TIMELINE_POINT = "(metadata ->> 'source' = 'input' OR metadata ?| %(memory_keys)s::text[])"

# The timeline walks the head's lineage (parent links, so a rewind's fork is followed
# and abandoned branches are not listed) reading metadata and the turn's input write
# only: the ``__start__`` task's ``messages`` write on an ``input`` checkpoint is the
# user's message. The library's ``alist`` would load every listed checkpoint's full
# message blob, so its cost would grow with the thread instead of with ``limit``.
# PostgreSQL evaluates a recursive query only as far as the outer LIMIT pulls rows, so
# the walk stops after ``limit`` entries; ``depth`` restores the walk order after it.
# Each step is a LATERAL lookup with LIMIT 1 so that it is always one index probe: as a
# plain join the planner may hash *all* of the thread's checkpoints for the first step,
# which makes the timeline cost grow with the thread (6.6 ms at 400 turns, not 0.3 ms).
SELECT_TIMELINE = (
    """
WITH RECURSIVE lineage AS (
    (SELECT checkpoint_id, parent_checkpoint_id, checkpoint ->> 'ts' AS ts, metadata, 0 AS depth
     FROM checkpoints
     WHERE thread_id = %(thread_id)s AND checkpoint_ns = ''
     ORDER BY checkpoint_id DESC
     LIMIT 1)
    UNION ALL
    SELECT c.checkpoint_id, c.parent_checkpoint_id, c.checkpoint ->> 'ts', c.metadata,
           l.depth + 1
    FROM lineage l
    CROSS JOIN LATERAL (
        SELECT p.checkpoint_id, p.parent_checkpoint_id, p.checkpoint, p.metadata
        FROM checkpoints p
        WHERE p.thread_id = %(thread_id)s
          AND p.checkpoint_ns = ''
          AND p.checkpoint_id = l.parent_checkpoint_id
        LIMIT 1
    ) c
)
SELECT e.checkpoint_id, e.parent_checkpoint_id, e.ts, e.metadata,
       w.type AS input_type, w.blob AS input_blob
FROM (
    SELECT * FROM lineage
    WHERE """
    + TIMELINE_POINT
    + """
    LIMIT %(limit)s
) e
LEFT JOIN LATERAL (
    SELECT cw.type, cw.blob
    FROM checkpoint_writes cw
    WHERE cw.thread_id = %(thread_id)s
      AND cw.checkpoint_ns = ''
      AND cw.checkpoint_id = e.checkpoint_id
      AND cw.channel = 'messages'
      AND e.metadata ->> 'source' = 'input'
    ORDER BY cw.task_id, cw.idx
    LIMIT 1
) w ON TRUE
ORDER BY e.depth
"""
)

# The library has no way to list threads.
SELECT_THREADS = """
SELECT thread_id,
       count(*) AS checkpoints,
       max(checkpoint ->> 'ts') AS last_activity
FROM checkpoints
WHERE checkpoint_ns = ''
GROUP BY thread_id
ORDER BY last_activity DESC
LIMIT %s
"""

# ``adelete_thread`` runs its three deletes outside a transaction and reports nothing;
# these run inside one and return how many rows each removed.
DELETE_THREAD: tuple[tuple[str, str], ...] = (
    ("checkpoint_writes", "DELETE FROM checkpoint_writes WHERE thread_id = %s"),
    ("checkpoint_blobs", "DELETE FROM checkpoint_blobs WHERE thread_id = %s"),
    ("checkpoints", "DELETE FROM checkpoints WHERE thread_id = %s"),
    ("memagent_messages", "DELETE FROM memagent_messages WHERE thread_id = %s"),
)
# A deleted thread has no owner any more. Not counted with the rows above, which are
# what a delete reports (``memagent delete --json``); ``erase-user`` counts it.
DELETE_THREAD_OWNER = "DELETE FROM memagent_thread_owner WHERE thread_id = %s"
DELETE_THREAD_OWNERS = "DELETE FROM memagent_thread_owner WHERE thread_id = ANY(%s)"
DELETE_RETAINED_RECORDS = "DELETE FROM memagent_retained WHERE thread_id = %s"
# What else names a thread: erasing a user removes it too, counted, in the same
# transaction as the rows of ``DELETE_THREAD``. The thread's lease is held by the
# erase and goes when it is released.
ERASE_THREAD_BOOKKEEPING: tuple[tuple[str, str], ...] = (
    ("memagent_thread_owner", DELETE_THREAD_OWNER),
    ("memagent_retained", DELETE_RETAINED_RECORDS),
)

# The first authenticated use of a thread records its owner; later uses change
# nothing, so a thread never changes hands.
RECORD_THREAD_OWNER = """
INSERT INTO memagent_thread_owner (thread_id, owner) VALUES (%s, %s)
ON CONFLICT (thread_id) DO NOTHING
"""
SELECT_OWNED_THREADS = """
SELECT thread_id FROM memagent_thread_owner WHERE owner = %s ORDER BY thread_id
"""
# The page names its threads ``<user>:<uuid>``; threads it made before ownership was
# recorded are found by that shape (the caller checks the uuid part, so user ``a``
# does not find user ``a:b``'s threads).
SELECT_THREADS_WITH_PREFIX = """
SELECT thread_id FROM checkpoints WHERE left(thread_id, %(length)s) = %(prefix)s
UNION
SELECT thread_id FROM memagent_messages WHERE left(thread_id, %(length)s) = %(prefix)s
"""

# The audit log keeps every line of an erased user's threads, with the thread ids and
# the user's name replaced by keyed pseudonyms (``agent.store.pseudonym``): counts and
# times stay, and nothing names the person.
# The audit lines about a user: those they made, and those of their page's threads
# (the caller checks the page's id shape).
SELECT_AUDIT_THREADS_OF = """
SELECT thread_id, bool_or(actor = %(actor)s) AS by_actor FROM memagent_audit
WHERE actor = %(actor)s OR left(thread_id, %(length)s) = %(prefix)s
GROUP BY thread_id
"""
PSEUDONYMISE_AUDIT = """
UPDATE memagent_audit a
SET thread_id = coalesce(
        (SELECT p.pseudonym
         FROM unnest(%(threads)s::text[], %(pseudonyms)s::text[]) AS p(thread_id, pseudonym)
         WHERE p.thread_id = a.thread_id),
        a.thread_id),
    actor = CASE WHEN a.actor = %(user)s THEN %(pseudonym)s ELSE a.actor END
WHERE a.thread_id = ANY(%(threads)s::text[]) OR a.actor = %(user)s
"""

# The verification scan after an erase (``agent.store.verification``): independent of
# the statements above, it reads the catalog for every text, JSON and bytes column of
# every table in the database's search path and asks each whether a row holds what was
# erased. Column names come from the catalog, composed as identifiers.
SELECT_SCANNABLE_COLUMNS = r"""
SELECT c.table_schema, c.table_name, c.column_name, c.data_type
FROM information_schema.columns c
JOIN information_schema.tables t USING (table_catalog, table_schema, table_name)
WHERE t.table_type = 'BASE TABLE'
  AND c.table_schema NOT IN ('pg_catalog', 'information_schema')
  AND c.table_schema NOT LIKE 'pg\_%%'
  AND c.data_type IN ('text', 'character varying', 'character', 'json', 'jsonb', 'bytea')
ORDER BY c.table_schema, c.table_name, c.ordinal_position
"""
# Per column type, the test a value fails: a text column that *is* an erased id or the
# user's name; a JSON value that holds an id anywhere in its text, or has the name as
# one of its strings; bytes (msgpack, which keeps text as UTF-8) that hold an id.
# The name is not searched inside free text: another user may mention it.
SCAN_TEXT = "{column}::text = ANY(%(exact)s::text[])"
SCAN_JSON = """
EXISTS (SELECT 1 FROM unnest(%(ids)s::text[]) AS i(id) WHERE strpos({column}::text, i.id) > 0)
OR jsonb_path_exists({column}::jsonb, 'strict $.** ? (@ == $name)', %(name)s::jsonb)
"""
SCAN_BYTES = """
EXISTS (SELECT 1 FROM unnest(%(raw_ids)s::bytea[]) AS i(id) WHERE position(i.id IN {column}) > 0)
"""
SCAN_TABLE = "SELECT count(*) AS hits FROM {table} WHERE {tests}"

# ``memagent vacuum``: memagent's and langgraph's tables in the current schema, for
# VACUUM, which the library never runs and which cannot run inside a transaction.
SELECT_OWN_TABLES = r"""
SELECT tablename FROM pg_tables
WHERE schemaname = current_schema()
  AND (tablename LIKE 'checkpoint%%' OR tablename LIKE 'memagent\_%%')
ORDER BY tablename
"""
SELECT_TABLE_BYTES = "SELECT pg_total_relation_size(%s::regclass) AS bytes"
VACUUM_TABLE = "VACUUM {table}"
VACUUM_FULL_TABLE = "VACUUM FULL {table}"
# The same transaction removes memagent's other rows naming the thread, which hold no
# conversation and so are not counted: what retention cut, and a lease left expired by
# a crashed holder. A live lease is left to its holder, who releases it (a delete from
# ``tools.admin`` holds the thread's lease itself), so no two operations ever run on
# the thread at once.
DELETE_THREAD_RECORDS: tuple[str, ...] = (
    DELETE_RETAINED_RECORDS,
    "DELETE FROM memagent_thread_leases WHERE thread_id = %s AND expires_at < now()",
)

# Purge keeps the thread from its newest forget on. ``aprune`` can only keep the
# latest checkpoint or nothing, so the cut is made here, in one transaction.
SELECT_NEWEST_FORGET = """
SELECT checkpoint_id FROM checkpoints
WHERE thread_id = %s AND checkpoint_ns = '' AND metadata ? 'memory_cleared'
ORDER BY checkpoint_id DESC
LIMIT 1
"""
# What the purge keeps must descend from the forget: a branch that forked off before it
# (a rewind there restores the forgotten messages into newer checkpoints) goes too. Ids
# and parent links only, so the purge reads no message blob.
SELECT_ROOT_LINKS_FROM = """
SELECT checkpoint_id, parent_checkpoint_id FROM checkpoints
WHERE thread_id = %s AND checkpoint_ns = '' AND checkpoint_id >= %s
ORDER BY checkpoint_id
"""
PURGE_WRITES_BEFORE = """
DELETE FROM checkpoint_writes
WHERE thread_id = %(thread_id)s
  AND (checkpoint_id < %(cut)s OR (checkpoint_ns = '' AND checkpoint_id = ANY(%(dropped)s)))
"""
PURGE_CHECKPOINTS_BEFORE = """
DELETE FROM checkpoints
WHERE thread_id = %(thread_id)s
  AND (checkpoint_id < %(cut)s OR (checkpoint_ns = '' AND checkpoint_id = ANY(%(dropped)s)))
"""
PURGE_DETACH_PARENTS = """
UPDATE checkpoints SET parent_checkpoint_id = NULL
WHERE thread_id = %s AND parent_checkpoint_id < %s
"""
PURGE_UNREFERENCED_BLOBS = """
DELETE FROM checkpoint_blobs b
WHERE b.thread_id = %s
  AND NOT EXISTS (
    SELECT 1 FROM checkpoints c
    WHERE c.thread_id = b.thread_id
      AND c.checkpoint_ns = b.checkpoint_ns
      AND c.checkpoint -> 'channel_versions' ->> b.channel = b.version
  )
"""

# Message rows no range list of the thread refers to any more (after a purge, a prune
# or a rollback). The range lists are JSON, so PostgreSQL can read them here.
DELETE_UNREFERENCED_MESSAGES = """
DELETE FROM memagent_messages m
WHERE m.thread_id = %(thread_id)s
  AND NOT EXISTS (
    SELECT 1
    FROM checkpoint_blobs b
    CROSS JOIN LATERAL jsonb_array_elements(convert_from(b.blob, 'UTF8')::jsonb) AS r(range)
    WHERE b.thread_id = m.thread_id
      AND b.type = %(ranges_type)s
      AND m.seq BETWEEN (r.range ->> 0)::bigint AND (r.range ->> 1)::bigint
  )
"""

# Message numbers come in blocks of ``MESSAGE_BLOCK`` from one sequence: each row is
# the first number of a block no other caller (process, thread) ever gets. A sequence
# takes no row lock, so threads never wait for each other's numbers.
RESERVE_MESSAGE_BLOCKS = """
SELECT nextval('memagent_message_blocks') AS first FROM generate_series(1, %s)
"""
INSERT_MESSAGE = """
INSERT INTO memagent_messages (thread_id, seq, message_id, type, blob)
VALUES (%s, %s, %s, %s, %s)
ON CONFLICT DO NOTHING
"""
SELECT_MESSAGES_BY_SEQ = """
SELECT seq, type, blob FROM memagent_messages WHERE thread_id = %s AND seq = ANY(%s)
"""

# What a summary covers has left the head, so finding whether a covered message held a
# forgotten detail takes its stored versions: every row under its id (a message
# replaced under its id, by a soft forget say, has one row per version). By the
# (thread_id, message_id) index. Also each link of a summary's chain, read one by one:
# the link is inside the encoded message, so SQL cannot follow it.
SELECT_MESSAGES_BY_ID = """
SELECT seq, type, blob FROM memagent_messages
WHERE thread_id = %s AND message_id = ANY(%s)
ORDER BY seq
"""

# Redact rewrites every stored copy of a thread in place, in one transaction: the
# library has no way to change a stored value, and a quote may sit in any of them
# (message rows, older releases' message blobs, other channels such as the memory
# request, pending writes such as a turn's input or an interrupt, inline values and
# metadata in ``checkpoints``). PostgreSQL picks the candidate rows with a LIKE on their
# lower-cased text (``agent.redaction.candidate_patterns``) and locks them (FOR UPDATE,
# so no turn can write a copy back meanwhile); Python decides what changes, because a
# case-insensitive match inside msgpack values cannot be made exactly in SQL. Rows are
# addressed by their primary keys, so ids and parent links never change.
REDACT_SELECT_CHECKPOINTS = """
SELECT checkpoint_ns, checkpoint_id, checkpoint, metadata FROM checkpoints
WHERE thread_id = %(thread_id)s
  AND (lower(checkpoint::text) LIKE ANY(%(text)s) OR lower(metadata::text) LIKE ANY(%(text)s))
FOR UPDATE
"""
REDACT_UPDATE_CHECKPOINT = """
UPDATE checkpoints SET checkpoint = %s, metadata = %s
WHERE thread_id = %s AND checkpoint_ns = %s AND checkpoint_id = %s
"""
REDACT_SELECT_BLOBS = """
SELECT checkpoint_ns, channel, version, type, blob FROM checkpoint_blobs
WHERE thread_id = %(thread_id)s
  AND type <> %(ranges_type)s
  AND lower(encode(blob, 'escape')) LIKE ANY(%(binary)s)
FOR UPDATE
"""
# The range lists that name a replaced message row, to point them at its new row.
REDACT_SELECT_RANGES = """
SELECT b.checkpoint_ns, b.channel, b.version, b.type, b.blob FROM checkpoint_blobs b
WHERE b.thread_id = %(thread_id)s
  AND b.type = %(ranges_type)s
  AND EXISTS (
    SELECT 1
    FROM jsonb_array_elements(convert_from(b.blob, 'UTF8')::jsonb) AS r(range),
         unnest(%(seqs)s::bigint[]) AS s(seq)
    WHERE s.seq BETWEEN (r.range ->> 0)::bigint AND (r.range ->> 1)::bigint
  )
FOR UPDATE
"""
REDACT_UPDATE_BLOB = """
UPDATE checkpoint_blobs SET blob = %s
WHERE thread_id = %s AND checkpoint_ns = %s AND channel = %s AND version = %s
"""
REDACT_SELECT_WRITES = """
SELECT checkpoint_ns, checkpoint_id, task_id, idx, type, blob FROM checkpoint_writes
WHERE thread_id = %(thread_id)s AND lower(encode(blob, 'escape')) LIKE ANY(%(binary)s)
FOR UPDATE
"""
REDACT_UPDATE_WRITE = """
UPDATE checkpoint_writes SET blob = %s
WHERE thread_id = %s AND checkpoint_ns = %s AND checkpoint_id = %s AND task_id = %s AND idx = %s
"""
REDACT_SELECT_MESSAGES = """
SELECT seq, message_id, type, blob FROM memagent_messages
WHERE thread_id = %(thread_id)s AND lower(encode(blob, 'escape')) LIKE ANY(%(binary)s)
FOR UPDATE
"""
# The summary rows of a thread (``agent.memory.summary``: the ``additional_kwargs`` key
# is in every summary's blob, as UTF-8), for redact to find those made from a message
# it erases: a summary may restate the detail in other words, so the quote's LIKE
# would not find it. Python decodes the candidates and reads their covers and links:
# every stored link of every summary's chain is among these rows, so one read is enough.
REDACT_SELECT_SUMMARY_MESSAGES = """
SELECT seq, message_id, type, blob FROM memagent_messages
WHERE thread_id = %(thread_id)s AND encode(blob, 'escape') LIKE %(summary)s
FOR UPDATE
"""
# A message row never changes under its number (other processes cache decoded rows by
# it), so a redacted message becomes a new row with a new number and the old row goes.
REDACT_DELETE_MESSAGES = """
DELETE FROM memagent_messages WHERE thread_id = %s AND seq = ANY(%s)
"""

INSERT_AUDIT = """
INSERT INTO memagent_audit (operation, thread_id, surface, actor, detail)
VALUES (%s, %s, %s, %s, %s)
"""
SELECT_AUDIT = """
SELECT id, at, operation, thread_id, surface, actor, detail FROM memagent_audit
WHERE (%(thread_id)s::text IS NULL OR thread_id = %(thread_id)s)
ORDER BY id DESC
LIMIT %(limit)s
"""

# A lease row marks a thread as busy with a turn. Unlike an advisory lock it holds no
# connection while the model thinks, so a small pool can serve many threads at once.
ACQUIRE_THREAD_LEASE = """
INSERT INTO memagent_thread_leases (thread_id, holder, expires_at)
VALUES (%s, %s, now() + make_interval(secs => %s))
ON CONFLICT (thread_id) DO UPDATE
    SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
    WHERE memagent_thread_leases.expires_at < now()
RETURNING holder
"""
RELEASE_THREAD_LEASE = """
DELETE FROM memagent_thread_leases WHERE thread_id = %s AND holder = %s
"""
# The holder's heartbeat: only its own row, so a lease taken over after expiry stays
# with its new holder.
RENEW_THREAD_LEASE = """
UPDATE memagent_thread_leases SET expires_at = now() + make_interval(secs => %s)
WHERE thread_id = %s AND holder = %s
"""

# ``tools.admin``: whether a thread exists, without loading its state as ``aget_tuple``
# would.
SELECT_HEAD_ID = """
SELECT checkpoint_id FROM checkpoints
WHERE thread_id = %s AND checkpoint_ns = ''
ORDER BY checkpoint_id DESC
LIMIT 1
"""

# The CLI's tree: every root checkpoint's links (to connect the timeline points across
# all branches), with time and metadata only for the points themselves, then the user
# messages of the turns shown. No message blob is read. What retention cut comes as
# links too, older than every kept checkpoint, its memory changes as points whose
# metadata is only their tombstone (under ``%(tombstone_key)s``).
SELECT_TREE_LINKS = (
    """
SELECT checkpoint_id, parent_checkpoint_id, ts, metadata FROM (
    SELECT checkpoint_id, parent_checkpoint_id,
           CASE WHEN point THEN checkpoint ->> 'ts' END AS ts,
           CASE WHEN point THEN metadata END AS metadata
    FROM (
        SELECT checkpoint_id, parent_checkpoint_id, checkpoint, metadata,
               """
    + TIMELINE_POINT
    + """ AS point
        FROM checkpoints
        WHERE thread_id = %(thread_id)s AND checkpoint_ns = ''
    ) c
    UNION ALL
    SELECT checkpoint_id, parent_checkpoint_id,
           CASE WHEN tombstone IS NOT NULL THEN ts END,
           CASE WHEN tombstone IS NOT NULL
                THEN jsonb_build_object(%(tombstone_key)s::text, tombstone) END
    FROM memagent_retained
    WHERE thread_id = %(thread_id)s
) links
ORDER BY checkpoint_id
"""
)
SELECT_TURN_INPUTS = """
SELECT DISTINCT ON (checkpoint_id) checkpoint_id, type, blob
FROM checkpoint_writes
WHERE thread_id = %s AND checkpoint_ns = '' AND checkpoint_id = ANY(%s) AND channel = 'messages'
ORDER BY checkpoint_id, task_id, idx
"""

# The server's thread copy and run rollback (``acopy_thread``, ``adelete_for_runs``):
# ``AsyncPostgresSaver`` has neither, and the server's fallback copy replays every
# checkpoint through ``aput`` as if all channels were new, which would re-stamp memory
# metadata onto every later checkpoint. Copying rows as they are keeps ids, parents and
# metadata exactly.
# Copy a thread's rows under a new thread id. ``thread_id`` inside the metadata (the
# server puts it there) follows the copy; everything else, ids and parents included,
# stays byte for byte. ON CONFLICT: copying twice into the same target is harmless.
COPY_THREAD: tuple[tuple[str, str], ...] = (
    (
        "checkpoints",
        """
INSERT INTO checkpoints
    (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata)
SELECT %(target)s, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint,
       CASE WHEN metadata ? 'thread_id'
            THEN metadata || jsonb_build_object('thread_id', %(target)s::text)
            ELSE metadata END
FROM checkpoints WHERE thread_id = %(source)s
ON CONFLICT DO NOTHING
""",
    ),
    (
        "checkpoint_blobs",
        """
INSERT INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob)
SELECT %(target)s, checkpoint_ns, channel, version, type, blob
FROM checkpoint_blobs WHERE thread_id = %(source)s
ON CONFLICT DO NOTHING
""",
    ),
    (
        "checkpoint_writes",
        """
INSERT INTO checkpoint_writes
    (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob)
SELECT %(target)s, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob
FROM checkpoint_writes WHERE thread_id = %(source)s
ON CONFLICT DO NOTHING
""",
    ),
    (
        "memagent_messages",
        """
INSERT INTO memagent_messages (thread_id, seq, message_id, type, blob)
SELECT %(target)s, seq, message_id, type, blob
FROM memagent_messages WHERE thread_id = %(source)s
ON CONFLICT DO NOTHING
""",
    ),
    (
        "memagent_retained",
        """
INSERT INTO memagent_retained
    (thread_id, checkpoint_id, parent_checkpoint_id, ts, retained_at, tombstone)
SELECT %(target)s, checkpoint_id, parent_checkpoint_id, ts, retained_at, tombstone
FROM memagent_retained WHERE thread_id = %(source)s
ON CONFLICT DO NOTHING
""",
    ),  # A copy belongs to whoever owns the original: only they can copy it.
    (
        "memagent_thread_owner",
        """
INSERT INTO memagent_thread_owner (thread_id, owner)
SELECT %(target)s, owner FROM memagent_thread_owner WHERE thread_id = %(source)s
ON CONFLICT (thread_id) DO NOTHING
""",
    ),
)

# Roll back runs: their checkpoints and those checkpoints' writes go, in one
# statement; the threads they touched are returned so that their orphaned blobs can be
# removed. ``run_id`` is not indexed (the server stamps it into the metadata), so this
# scans ``checkpoints``; it runs only when a run is rolled back.
DELETE_FOR_RUNS = """
WITH doomed AS (
    DELETE FROM checkpoints WHERE metadata ->> 'run_id' = ANY(%s)
    RETURNING thread_id, checkpoint_ns, checkpoint_id
), doomed_writes AS (
    DELETE FROM checkpoint_writes w
    USING doomed d
    WHERE w.thread_id = d.thread_id
      AND w.checkpoint_ns = d.checkpoint_ns
      AND w.checkpoint_id = d.checkpoint_id
    RETURNING 1
)
SELECT DISTINCT thread_id FROM doomed
"""

# An erase deletes the server's record of a run that said the detail, not what the run
# wrote: the server's run delete also rolls back the run's checkpoints
# (``adelete_for_runs``, which finds them by the ``run_id`` in their metadata), so the
# erase first takes that key off them. Their rows stay (ids, parents, messages); only
# the link to a run that no longer exists goes. langgraph has no API that edits the
# metadata of a stored checkpoint.
DETACH_RUN_CHECKPOINTS = """
UPDATE checkpoints SET metadata = metadata - 'run_id'
WHERE thread_id = %s AND metadata ->> 'run_id' = ANY(%s)
"""

# --- retention (agent/store/retention.py) -----------------------------------------------
# Retention keeps a thread from one rewind point on and removes everything older.
# langgraph cannot cut a prefix: ``aprune`` keeps the latest checkpoint or nothing (every
# rewind point would go), ``adelete_thread`` removes the whole thread, and
# ``aget_state_history``/``alist`` would load every checkpoint's whole state only to read
# ids and times. So the cut is made here, in one transaction. Checkpoint ids are
# time-ordered (uuid6), so "older than the cut" is ``checkpoint_id < cut``, on every
# branch and namespace, as purge does; parent links are left as they are, so every kept
# checkpoint loads exactly as before (its parent's id then answers "removed by
# retention", from ``memagent_retained``).

# The head and the turn points (rewind points) on its lineage, newest first, with their
# times: where a cut may go. Ids, times and one metadata field only, as the timeline
# walk reads them (``SELECT_TIMELINE``).
SELECT_RETENTION_POINTS = """
WITH RECURSIVE lineage AS (
    (SELECT checkpoint_id, parent_checkpoint_id, checkpoint ->> 'ts' AS ts,
            metadata ->> 'source' AS source, 0 AS depth
     FROM checkpoints
     WHERE thread_id = %(thread_id)s AND checkpoint_ns = ''
     ORDER BY checkpoint_id DESC
     LIMIT 1)
    UNION ALL
    SELECT c.checkpoint_id, c.parent_checkpoint_id, c.ts, c.source, l.depth + 1
    FROM lineage l
    CROSS JOIN LATERAL (
        SELECT p.checkpoint_id, p.parent_checkpoint_id, p.checkpoint ->> 'ts' AS ts,
               p.metadata ->> 'source' AS source
        FROM checkpoints p
        WHERE p.thread_id = %(thread_id)s
          AND p.checkpoint_ns = ''
          AND p.checkpoint_id = l.parent_checkpoint_id
        LIMIT 1
    ) c
)
SELECT checkpoint_id, ts, source = 'input' AS is_turn FROM lineage
WHERE depth = 0 OR source = 'input'
ORDER BY depth
"""
# The root checkpoints a cut removes: ids and links for all, metadata for the memory
# changes among them (their tombstones), nothing else.
SELECT_RETAINED_POINTS = """
SELECT checkpoint_id, parent_checkpoint_id, checkpoint ->> 'ts' AS ts,
       CASE WHEN metadata ?| %(memory_keys)s::text[] THEN metadata END AS metadata
FROM checkpoints
WHERE thread_id = %(thread_id)s AND checkpoint_ns = '' AND checkpoint_id < %(cut)s
"""
INSERT_RETAINED = """
INSERT INTO memagent_retained (thread_id, checkpoint_id, parent_checkpoint_id, ts, tombstone)
VALUES (%s, %s, %s, %s, %s)
ON CONFLICT DO NOTHING
"""
RETAIN_DELETE_WRITES = """
DELETE FROM checkpoint_writes WHERE thread_id = %(thread_id)s AND checkpoint_id < %(cut)s
"""
RETAIN_DELETE_CHECKPOINTS = """
DELETE FROM checkpoints WHERE thread_id = %(thread_id)s AND checkpoint_id < %(cut)s
"""
# What a thread's conversation occupies, row by row as stored (after compression), so
# that a retention can say how much it removed.
THREAD_BYTES = """
SELECT (SELECT coalesce(sum(pg_column_size(t.*)), 0) FROM checkpoints t
        WHERE t.thread_id = %(thread_id)s)
     + (SELECT coalesce(sum(pg_column_size(t.*)), 0) FROM checkpoint_blobs t
        WHERE t.thread_id = %(thread_id)s)
     + (SELECT coalesce(sum(pg_column_size(t.*)), 0) FROM checkpoint_writes t
        WHERE t.thread_id = %(thread_id)s)
     + (SELECT coalesce(sum(pg_column_size(t.*)), 0) FROM memagent_messages t
        WHERE t.thread_id = %(thread_id)s) AS bytes
"""
# Whether (and when) retention removed a root checkpoint, for the clear error.
SELECT_RETAINED_AT = """
SELECT retained_at FROM memagent_retained WHERE thread_id = %s AND checkpoint_id = %s
"""
# The timeline past the cut: from the oldest point the timeline walk found, on down the
# same lineage through the kept checkpoints left and then what retention recorded, the
# tombstones met on the way. Each step is one index probe in either table.
SELECT_TOMBSTONES_BELOW = """
WITH RECURSIVE walk AS (
    SELECT checkpoint_id, parent_checkpoint_id, NULL::text AS ts, NULL::jsonb AS tombstone,
           0 AS depth
    FROM checkpoints
    WHERE thread_id = %(thread_id)s AND checkpoint_ns = '' AND checkpoint_id = %(start)s
    UNION ALL
    SELECT n.checkpoint_id, n.parent_checkpoint_id, n.ts, n.tombstone, w.depth + 1
    FROM walk w
    CROSS JOIN LATERAL (
        (SELECT p.checkpoint_id, p.parent_checkpoint_id, NULL::text AS ts,
                NULL::jsonb AS tombstone
         FROM checkpoints p
         WHERE p.thread_id = %(thread_id)s
           AND p.checkpoint_ns = ''
           AND p.checkpoint_id = w.parent_checkpoint_id)
        UNION ALL
        (SELECT r.checkpoint_id, r.parent_checkpoint_id, r.ts, r.tombstone
         FROM memagent_retained r
         WHERE r.thread_id = %(thread_id)s AND r.checkpoint_id = w.parent_checkpoint_id)
        LIMIT 1
    ) n
)
SELECT checkpoint_id, parent_checkpoint_id, ts, tombstone FROM (
    SELECT * FROM walk WHERE tombstone IS NOT NULL LIMIT %(limit)s
) t
ORDER BY depth
"""
# Every thread, for a retention over all of them (``athreads`` lists the newest only).
SELECT_THREAD_IDS = """
SELECT DISTINCT thread_id FROM checkpoints WHERE checkpoint_ns = '' ORDER BY thread_id
"""
