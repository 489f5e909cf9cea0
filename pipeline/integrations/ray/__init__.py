"""Many Ray workers, one pipeline: a Hub actor owns the pipeline, workers write through senders.

    import ray
    from pipeline import Pipeline
    from pipeline.integrations.ray import Hub
    from sinks import CsvSink

    def central() -> Pipeline:  # runs inside the hub actor: module-level, hence picklable
        return Pipeline("hub").aggregate(r"return", every=100).to(CsvSink("runs/all.csv"))

    @ray.remote
    def rollout(log, seed: int) -> None:
        with log:  # closing ships what is held and waits for the acks
            for step in range(1000):
                log.write({"step": step, "return": float(seed + step)})

    hub = Hub(central)
    ray.get([rollout.remote(hub.sender(worker=i), i) for i in range(4)])
    hub.close()  # drains, closes the central pipeline, ends the actor

`Hub(factory)` starts one Ray actor that builds `factory()` (a Pipeline, made inside the
actor, so the factory must be picklable by Ray: a module-level function, a functools.partial,
a lambda) and owns it. `hub.sender(**tags)` is a Node that any Ray task or actor can use: it
adds `tags` to every record and ships records to the hub in batches, asynchronously. Records
from every worker meet in the one central pipeline, so an aggregate there is over all workers.

Guarantees (what the sender and the hub promise):

- Order: records of one sender reach the central pipeline in the order they were written
  (Ray runs the calls of one caller on a synchronous actor in submission order).
- Exactly once: every batch carries the sender's stream id and a sequence number; the hub
  applies each (stream, number) once and counts a repeat as a duplicate. A stream is (run,
  worker, epoch): the Hub, the `hub.sender()` call with the Ray task that unpickled it, and
  the copy: a task that Ray retries continues its stream in a new epoch, and what its
  earlier attempt delivered is its replay (counted `replayed`, not applied twice).
- Bounded: a sender holds at most `batch_size` records plus `max_in_flight` batches in flight.
  When the hub is behind and every slot is taken, `write` waits at most `write_timeout`
  seconds for an acknowledgement; then the batch is dropped, counted in `.lost` and warned
  about once, and the sender stops waiting (it drops, without blocking, while every slot is
  still taken, and waits again once an ack frees a slot). `flush()` and `close()` wait at most
  `flush_timeout` seconds for the acks.
- Acknowledged means stored: before the hub answers a call that applied records, it flushes
  every sink of the central pipeline (a file sink: one write per batch), so a record its
  sender counts in `.sent` is on disk even if the hub dies right after. Aggregates are not
  flushed (their windows stay whole). With `Hub(..., checkpoint=folder)` the hub then
  writes the central pipeline's `state_dict()` and every stream's marks to a file in that
  folder before it answers: acknowledged means stored or checkpointed. `max_restarts` with a
  pipeline that holds state (an aggregate) requires a checkpoint.
- Faults: when the hub actor dies for good, each sender warns once and counts in `.lost`
  every record it could not deliver (those in flight and all later ones); nothing blocks.
  When a sender's process dies, the hub knows what it shipped: every call carries the
  sender's counts (records shipped, lost, confirmed), so at close the stream is named in
  `status().failures` and warned about with the records it reported, those stored and those
  shipped that never arrived (`missing`). What it wrote after its last batch that reached
  the hub (its buffer: fewer than `batch_size` records, or `flush_seconds` of them) died
  with its process and is unknown to anyone.
  A record that cannot be pickled (a lock, an open file) fails the Ray call shipping its
  batch; the sender then pickles the batch's records one by one and ships those that pickle:
  only the bad record is lost, counted and warned about once, and `write`, `flush` and
  `close` never raise for it. A batch the hub cannot take (a value its process cannot
  unpickle) is lost alone, counted and warned about; an empty batch takes its sequence
  number and the stream goes on.
- Restarts: with `Hub(..., max_restarts=n)` Ray restarts a dead hub actor and re-sends the
  calls that were in flight. The new actor rebuilds the pipeline with `factory()` and loads
  the checkpoint, if there is one (open windows, marks; file sinks cut back to it, so what
  the dead actor stored after it is applied again, once: exactly once across a restart);
  without one its file sinks continue the dead actor's files (`continue_file()`), and a
  batch stored but not acknowledged is stored again (at least once). The senders go on
  unchanged; the new actor learns from each sender how many records the dead one applied
  (`earlier`), so the counts reconcile.

Counts: `sender.written == sender.sent + sender.lost + sender.unconfirmed` once it is closed
(`unconfirmed`: shipped but not acknowledged within `flush_timeout`). `hub.status()` lists
every stream the hub has seen: its tags, `written` (reported by the sender), `records`
(applied by this actor), `earlier` (by a dead predecessor), `lost` (counted by the sender),
`missing` (shipped, never arrived; known once the stream ended or the hub closed),
batches, duplicates and whether it ended: `written == records + earlier + lost + missing`
(+ `via_relay` and `cut_back`: see `StreamStatus`).

Importing this module does not import Ray; making a Hub does (`pip install 'rlpipe[ray]'`).
"""

from pipeline.integrations.ray.core import HubCore
from pipeline.integrations.ray.hub import Hub
from pipeline.integrations.ray.sender import HubSender
from pipeline.integrations.ray.status import HubStatus, StreamStatus

__all__ = ["Hub", "HubCore", "HubSender", "HubStatus", "StreamStatus"]
