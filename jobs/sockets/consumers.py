"""Websocket consumers: authorise, join the job's group, send a snapshot, relay deltas."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Coroutine
from typing import Any

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.http import Http404

from jobs import protocol
from jobs.engine import events, workers
from jobs.protocol import (
    CLOSE_NOT_FOUND,
    CLOSE_SERVER_ERROR,
    CLOSE_UNAUTHENTICATED,
    ChunkPrintedEvent,
    JobChangedEvent,
    JobSampledEvent,
    LiveState,
)
from jobs.selectors import jobs as selectors
from jobs.sockets.broker import BROKER_ERRORS
from jobs.sockets.guards import GuardedConsumer
from jobs.sockets.shared import SharedRead

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 1024
# A job page's socket checks its group and version this often (not a worker heartbeat:
# those are jobs.engine.workers.HEARTBEAT_S).
SOCKET_BEAT_S = 2.0
GAP_GRACE_S = 2.0
# A gap wider than this is not waited for: a snapshot is cheaper than tracking it.
MAX_TRACKED_GAP = 1000
# A client's resyncs are answered at most this often (more are merged into one).
MIN_RESYNC_INTERVAL_S = 1.0
OVERVIEW_INTERVAL_S = 1.0


async def _job_beat_read(job_id: int) -> tuple[int, LiveState] | None:
    read: tuple[int, LiveState] | None = await database_sync_to_async(
        selectors.job_version_and_live
    )(job_id=job_id)
    return read


# A job's version and `job.live`, read once per beat for all of its pages in this process
# (jobs.sockets.shared): its five pages asked five times, each through the one thread that
# runs the consumers' database calls.
JOB_BEATS: SharedRead[int, tuple[int, LiveState] | None] = SharedRead(
    _job_beat_read, max_age_s=SOCKET_BEAT_S / 2
)


async def accept_authenticated(consumer: AsyncJsonWebsocketConsumer) -> Any | None:
    """Accept the socket and return its user, or close it with 4401 when not logged in.

    Accepting first lets the page see the code and stop reconnecting.
    """
    await consumer.accept()
    user = consumer.scope.get("user")
    if user is None or not user.is_authenticated:
        await consumer.close(code=CLOSE_UNAUTHENTICATED)
        return None
    return user


class JobConsumer(GuardedConsumer):
    """Live state of one job: `job.snapshot` (compact: packed statuses, a bounded window of
    chunk states in `job.chunks` pages) first, then `job.progress` deltas.

    Every delta carries the job's sequence number. Deltas numbered up to the snapshot's
    are already in it and are dropped; later ones are relayed even when they arrive out of
    order (worker processes publish independently, and each carries different chunks).
    A number that has not arrived GAP_GRACE_S after a later one did is a real gap (the
    channel layer may drop messages): then the consumer sends a fresh snapshot, at once
    when the number jumps by more than MAX_TRACKED_GAP either way (a counter that Redis
    lost starts again far above, jobs.engine.events). Every
    SOCKET_BEAT_S it also joins the job's group again (a Redis that lost its data lost the
    membership too) and compares the newest version it relayed with the job's version in
    the database at the previous beat: a change that has not come a whole beat after it was
    stored, while no delta came at all, was lost (the group with it), and the socket
    resyncs. Deltas that come late are not lost: a socket that resynced then would only
    add to the queue it waits in. The client may send
    `{"type": "resync"}` too, answered at most once per MIN_RESYNC_INTERVAL_S.

    While the channel layer's Redis does not answer, the page is told so (GuardedConsumer)
    and the socket waits; when it answers again, the socket joins the group again and
    sends a fresh snapshot. A client that stops reading gets no deltas until it has read
    what it was sent, then a fresh snapshot (GuardedConsumer.send_update).
    """

    job_id: int
    group: str | None = None
    snapshot_seq = 0
    max_seq = 0
    last_snapshot_at = 0.0
    version_sent = 0
    # The job's version in the database at the previous beat: one that has still not been
    # relayed a beat later was lost on the way.
    version_due = 0
    # Whether a delta was relayed since the last beat: deltas that keep coming, however
    # late, are not lost (a socket that resynced then only added to the queue it was in).
    relayed_since_beat = False
    live_sent: LiveState | None = None
    ticker: asyncio.Task[None] | None = None
    resync_later: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        user = await accept_authenticated(self)
        if user is None or not await self.guard_connect(user):
            return
        self.job_id = int(self.scope["url_route"]["kwargs"]["job_id"])
        try:
            await database_sync_to_async(selectors.job_get_for_user)(user=user, job_id=self.job_id)
        except Http404:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.missing: dict[int, float] = {}
        self.group = events.job_group(self.job_id)
        if self.broker_available:
            try:
                await self._join(self.group)
            except BROKER_ERRORS as error:
                # The page hears that updates are paused; broker_changed joins later.
                self.broker_failed(error)
        self.ticker = asyncio.create_task(supervised(self, self._beat()))

    async def standing_changed(self, user: Any) -> None:
        """A member of staff demoted while watching someone else's job loses it (4404)."""
        await super().standing_changed(user)
        try:
            await database_sync_to_async(selectors.job_get_for_user)(user=user, job_id=self.job_id)
        except Http404:
            await self.close(code=CLOSE_NOT_FOUND)

    async def _join(self, group: str) -> None:
        await self.channel_layer.group_add(group, self.channel_name)
        await self.send_snapshot()

    async def broker_changed(self, available: bool) -> None:
        # The group may have been lost with Redis, and deltas were lost while it was away
        # (a client that is behind joins when it catches up).
        if available and self.group is not None and not self.behind:
            await self._join(self.group)

    async def fell_behind(self) -> None:
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def caught_up(self) -> None:
        if self.group is not None:
            await self._join(self.group)

    async def send_live(self, live: LiveState) -> None:
        """`job.live`: pace, live processes and why it waits (selectors.jobs_live), which
        change with the cluster and the clock rather than with the job's own events."""
        if live != self.live_sent and not self.client_behind():
            self.live_sent = live
            await self.send_json(protocol.job_live_message(live))

    async def disconnect(self, code: int) -> None:
        for task in (self.ticker, self.resync_later):
            if task is not None:
                task.cancel()
        await self.guard_disconnect()
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def _beat(self) -> None:
        group = events.job_group(self.job_id)
        while True:
            await asyncio.sleep(SOCKET_BEAT_S)
            if not self.broker_available or self.behind:
                continue  # broker_changed or caught_up resyncs
            try:
                await self.channel_layer.group_add(group, self.channel_name)
            except BROKER_ERRORS as error:
                self.broker_failed(error)
                continue
            beat = await JOB_BEATS.get(self.job_id)
            if beat is None:
                await self.close(code=CLOSE_NOT_FOUND)
                return
            version, live = beat
            now = time.monotonic()
            gap = any(now - noticed >= GAP_GRACE_S for noticed in self.missing.values())
            # Behind: a version the database had a whole beat ago has still not come, and no
            # delta came meanwhile (the group was lost). Not "behind now, and at the last
            # beat too": a busy job's newest version is nearly always on its way, and a
            # daphne that fell a few seconds behind made every page resync every two beats,
            # which put it further behind (issue 20).
            behind = self.version_sent < self.version_due and not self.relayed_since_beat
            self.relayed_since_beat = False
            try:
                if gap or behind:
                    await self.send_snapshot()  # carries `live` too
                else:
                    self.version_due = version
                    await self.send_live(live)
            except BROKER_ERRORS as error:
                self.broker_failed(error)

    async def send_snapshot(self) -> None:
        """`job.snapshot` (the job, every chunk's status packed in `grid`, its processes,
        the first page of the window of full chunk states, `chunk_pages` in all, and
        `live`: selectors.jobs_live), then one `job.chunks` message per further page of
        the window, all with the snapshot's seq."""
        # Read the counter before the database: deltas numbered after it are newer.
        try:
            seq = await events.current_seq(self.job_id)
        except BROKER_ERRORS as error:
            self.broker_failed(error)  # every socket resyncs once Redis answers
            return
        snapshot = await database_sync_to_async(selectors.job_snapshot)(job_id=self.job_id)
        if snapshot is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        job, pages = snapshot.job, snapshot.pages
        live = await database_sync_to_async(selectors.job_live_by_id)(job_id=self.job_id)
        self.live_sent = live
        self.snapshot_seq = seq
        if seq < self.max_seq - MAX_TRACKED_GAP:
            # The counter went back (restored from an older copy): count from it again.
            self.max_seq, self.missing = seq, {}
        else:
            self.max_seq = max(self.max_seq, seq)
            self.missing = {number: at for number, at in self.missing.items() if number > seq}
        self.version_sent = job["version"]
        self.version_due = 0
        self.last_snapshot_at = time.monotonic()
        await self.send_json(
            protocol.job_snapshot_message(
                seq=seq,
                job=job,
                grid=snapshot.grid,
                lanes=snapshot.lanes,
                peak=snapshot.peak,
                chunks=pages[0],
                chunk_pages=len(pages),
                live=live,
            )
        )
        for number, page in enumerate(pages[1:], start=1):
            await self.send_json(protocol.job_chunks_message(seq=seq, page=number, chunks=page))

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None or len(text_data) > MAX_MESSAGE_BYTES:
            await self._reply_error(
                f"Send a JSON text message of at most {MAX_MESSAGE_BYTES} bytes."
            )
            return
        try:
            content = json.loads(text_data)
        except json.JSONDecodeError:
            await self._reply_error("Message is not valid JSON.")
            return
        await self.receive_json(content)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if protocol.is_resync(content):
            if self.group is not None and self._resync_allowed_now():
                await self.send_snapshot()
            return
        await self._reply_error(f'Unknown message: "type" must be "{protocol.RESYNC}".')

    def _resync_allowed_now(self) -> bool:
        """A client's resyncs are answered at most once per MIN_RESYNC_INTERVAL_S: one that
        comes sooner is merged into a single snapshot sent when the interval is over."""
        wait = self.last_snapshot_at + MIN_RESYNC_INTERVAL_S - time.monotonic()
        if wait <= 0:
            return True
        if self.resync_later is None or self.resync_later.done():
            self.resync_later = asyncio.create_task(self._snapshot_after(wait))
        return False

    async def _snapshot_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        await self.send_snapshot()

    async def _reply_error(self, message: str) -> None:
        await self.send_json(protocol.error_message(message))

    async def job_changed(self, event: JobChangedEvent) -> None:
        """A publisher's `job.changed` event (jobs/events.py), relayed as `job.progress`."""
        seq = event["seq"]
        if seq <= self.snapshot_seq:
            if self.snapshot_seq - seq > MAX_TRACKED_GAP and self._resync_allowed_now():
                # Far below: not a late delta but a counter that went back (a stray one
                # from before a re-based counter waits for the resync interval).
                await self.send_snapshot()
            return  # published before the snapshot was read, so already in it
        if self.client_behind():
            return  # caught_up sends a snapshot, which holds this change
        self.missing.pop(seq, None)
        if seq > self.max_seq + 1:
            if seq - self.max_seq > MAX_TRACKED_GAP:
                await self.send_snapshot()
                return
            noticed = time.monotonic()
            self.missing.update(dict.fromkeys(range(self.max_seq + 1, seq), noticed))
        self.max_seq = max(self.max_seq, seq)
        if event["job"] is not None:
            self.version_sent = max(self.version_sent, event["job"]["version"])
        self.relayed_since_beat = True
        await self.send_json(
            protocol.job_progress_message(seq=seq, job=event["job"], chunks=event["chunks"])
        )

    async def chunk_printed(self, event: ChunkPrintedEvent) -> None:
        """A worker's new chunk output, relayed as `chunk.output` (no sequence number: its
        byte offset tells a page whether it fits what it has, and fetches what it lacks)."""
        await self.send_update(event["message"])

    async def job_sampled(self, event: JobSampledEvent) -> None:
        """A worker process's sample while it runs the job, relayed as `job.resources`."""
        await self.send_update(event["message"])


async def supervised(consumer: AsyncJsonWebsocketConsumer, loop: Coroutine[Any, Any, None]) -> None:
    """Run a consumer's background loop; if it fails, close the socket so that the page
    reconnects and resyncs, instead of the loop dying silently."""
    try:
        await loop
    except asyncio.CancelledError:
        raise
    except Exception:
        logger.exception("live socket loop failed; closing the socket")
        await consumer.close(code=CLOSE_SERVER_ERROR)


class OverviewConsumer(GuardedConsumer):
    """The overview's live state, pushed once a second: the person's running, queued and
    recently finished jobs, and the cluster (nodes, per-core CPU, worker processes,
    chunk throughput). Each push is complete, so nothing is lost between pushes and a
    reconnecting page is in sync with its first message; so a push is simply skipped
    while the client has not read the last ones, or while Redis does not answer (the page
    is told so, GuardedConsumer).

    The active list holds at most COREBOARD_OVERVIEW_ACTIVE_MAX jobs (`active_more` counts
    the rest), so a frame stays far below daphne's 1 MiB limit; the cluster shows other
    people's work without their job ids; an error closes the socket with 4500, so the
    page reconnects rather than silently stopping.
    """

    ticker: asyncio.Task[None] | None = None
    joined = False

    async def connect(self) -> None:
        user = await accept_authenticated(self)
        if user is None or not await self.guard_connect(user):
            return
        # A node that joins, leaves or drains says so on this group: pushed at once.
        self.changed = asyncio.Event()
        self.joined = True
        if self.broker_available:
            try:
                await self.channel_layer.group_add(workers.CLUSTER_GROUP, self.channel_name)
            except BROKER_ERRORS as error:
                self.broker_failed(error)
        self.ticker = asyncio.create_task(supervised(self, self._tick()))

    async def broker_changed(self, available: bool) -> None:
        if available and not self.behind:
            await self.channel_layer.group_add(workers.CLUSTER_GROUP, self.channel_name)
            self.changed.set()

    async def fell_behind(self) -> None:
        await self.channel_layer.group_discard(workers.CLUSTER_GROUP, self.channel_name)

    async def caught_up(self) -> None:
        await self.channel_layer.group_add(workers.CLUSTER_GROUP, self.channel_name)
        self.changed.set()

    async def disconnect(self, code: int) -> None:
        if self.ticker is not None:
            self.ticker.cancel()
        await self.guard_disconnect()
        if self.joined:
            await self.channel_layer.group_discard(workers.CLUSTER_GROUP, self.channel_name)

    async def standing_changed(self, user: Any) -> None:
        await super().standing_changed(user)
        self.changed.set()  # push what they may see now at once

    async def cluster_changed(self, event: dict[str, Any]) -> None:
        """protocol.EVENT_CLUSTER_CHANGED from jobs.engine.workers: push at once."""
        self.changed.set()

    async def _tick(self) -> None:
        ticks = 0
        while True:
            if self.broker is not None:
                await self.broker.wait_available()
            if not self.client_behind():
                try:
                    await self._push(rejoin=ticks % 60 == 59)
                except BROKER_ERRORS as error:
                    self.broker_failed(error)
            ticks += 1
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(OVERVIEW_INTERVAL_S):
                    await self.changed.wait()
            self.changed.clear()

    async def _push(self, *, rejoin: bool) -> None:
        # The scope's user, read at each push: a change of staff status re-scopes it
        # (GuardedConsumer.standing_changed).
        state = await sync_to_async(workers.cluster_state, thread_sensitive=False)()
        message = await database_sync_to_async(selectors.overview_state)(
            user=self.scope["user"],
            cluster_state=state,
            active_max=settings.COREBOARD_OVERVIEW_ACTIVE_MAX,
        )
        await self.send_json(message)
        if rejoin:
            # A Redis that lost its data lost the group membership too.
            await self.channel_layer.group_add(workers.CLUSTER_GROUP, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        await self.send_json(protocol.error_message("This socket takes no messages."))
