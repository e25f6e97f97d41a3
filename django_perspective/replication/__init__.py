"""Keep every process's copy of a declared table identical, through a Redis stream per table.

``update`` / ``remove`` / ``replace`` on a declared table (``perspective_table``,
``live_model_table``, ``live.follow_queryset``) append the change to the stream
``<prefix>:perspective:log:<name>`` (``XADD``); Redis gives the entry an id that orders it
against every other process's changes. Each process that hosts the table runs one listener
thread that reads the stream from the last id it applied (``XREAD``) and applies the entries
through the engine thread in id order: every replica applies every change exactly once,
in the same order, including its own (the writer waits until its replica has applied the
entry, so a process still reads its own writes).

A process that starts, or comes back after Redis was unreachable and the stream was
trimmed past its position, catches up:

- tables backed by the database (live model tables) note the stream's last id, reload the
  queryset, and apply what follows that id (rows are pushed whole and keyed, so applying a
  change the reload already saw is harmless);
- other tables append a snapshot request to the stream; one process that is up to date
  (an ``SET NX`` lock elects it) stores ``view.to_arrow()`` with the request's id in the
  key ``<prefix>:perspective:snap:<name>``, and the newcomer loads it and reads on from
  that id. Snapshots live in a Redis key, not in a channel-layer message, so the channel
  layer's message size limit does not apply. With no process to answer, the newcomer keeps
  its loader's rows and replays the whole retained stream.

Why a stream rather than channel-layer groups: ``group_send`` is at-most-once (a full
channel drops messages silently), does not order messages from different senders, and
keeps no history for a late joiner; a stream has all three. Replication is on when
``CHANNEL_LAYERS["default"]`` is a channels_redis layer (its first host and its ``prefix``
are reused) or ``PERSPECTIVE["REPLICATION"]`` is a Redis URL; ``InMemoryChannelLayer`` is
per-process, so updates stay local there.

The modules, by role: ``config`` (where Redis is), ``changes`` (what an entry carries),
``stream`` (the stream protocol: appending, the listener, catching up), ``apply`` (entries
and snapshots applied on the engine thread) and ``selection`` (which tables replicate, and
the process's ``Replicator``). Nothing here imports the modules that declare tables: they
declare themselves through ``selection.replicate``.
"""
