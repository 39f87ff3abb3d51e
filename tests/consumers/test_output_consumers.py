"""A worker's chunk output and process samples reach the owner's job page (and only it):
the channel-layer events `chunk.printed` and `job.sampled` relayed as `chunk.output` and
`job.resources`."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.contrib.auth.models import User

from jobs import protocol
from jobs.engine import events
from tests.factories import make_ended_job
from tests.sockets import communicator_for

pytestmark = [
    pytest.mark.consumers,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("in_memory_channel_layer"),
]

create_job = database_sync_to_async(make_ended_job)


async def test_chunk_output_and_samples_are_relayed_to_the_owners_page_only(
    alice: User, mallory: User
) -> None:
    job = await create_job(alice)
    other = await create_job(mallory)
    alice_page = await communicator_for(job.pk, alice)
    mallory_page = await communicator_for(other.pk, mallory)
    for page in (alice_page, mallory_page):
        connected, _ = await page.connect()
        assert connected
        assert (await page.receive_json_from(timeout=5))["type"] == "job.snapshot"
    printed = protocol.chunk_output_message(
        job=job.pk, index=2, offset=12, text="step 3\n", cut_bytes=0
    )
    sample = protocol.resource_sample(
        process="alpha@host|4242|boot", at="2026-12-06T07:00:00+00:00", cpu_percent=99.94, rss=5
    )
    layer = get_channel_layer()
    await layer.group_send(events.job_group(job.pk), dict(protocol.chunk_printed_event(printed)))
    await layer.group_send(
        events.job_group(job.pk),
        dict(
            protocol.job_sampled_event(protocol.job_resources_message(job=job.pk, samples=[sample]))
        ),
    )
    assert await alice_page.receive_json_from(timeout=5) == {
        "type": "chunk.output",
        "job": job.pk,
        "index": 2,
        "offset": 12,
        "text": "step 3\n",
        "cut_bytes": 0,
    }
    resources = await alice_page.receive_json_from(timeout=5)
    assert resources == {
        "type": "job.resources",
        "job": job.pk,
        "samples": [
            {
                "process": "alpha@host|4242|boot",
                "pid": 4242,
                "at": "2026-12-06T07:00:00+00:00",
                "cpu_percent": 99.9,
                "rss": 5,
            }
        ],
    }
    # Another person's page on another job hears nothing of it.
    assert await mallory_page.receive_nothing(timeout=0.3)
    await alice_page.disconnect()
    await mallory_page.disconnect()
