"""Finding, before the model loads, the sources of a write step that cannot even be opened.

A source that fails to read is never marked in the store, so every run tries it again, as it
must: it may have been fixed.  But a scheduled run over a folder that holds one corrupt or
encrypted PDF would then load the model every time (a second for a small model, most of a minute
for instructor-xl) only to fail on that file again.  So a write step first opens its sources in
order, each up to its first block, until one opens: those before it are the step's failures,
and the model loads only when there is something readable to encode.  The one that opened is
handed on to the producer as it stands (its first block put back), so no source is opened
twice; a source that opens but fails later (a bad page 200) is still the producer's skip.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import chain

from milvus_ingest.ingest.plan import SourcePlan
from milvus_ingest.ingest.stream import Opened
from milvus_ingest.reading import read_failure_reason, read_source
from milvus_ingest.sources import Skipped


@dataclass
class Probed:
    """What a write step starts from: the sources left, the first one already open, the failures."""

    plans: list[SourcePlan]
    #: ``read_source``'s answer for ``plans[0]`` (its blocks whole again); None when no plan is left.
    opened: Opened | None
    failures: list[Skipped]


def drop_unopenable(plans: Sequence[SourcePlan]) -> Probed:
    """``plans`` from the first source that opens and yields its first block (kept open), and the
    failures (each with its one-line reason) of the sources before it."""
    failures: list[Skipped] = []
    for index, plan in enumerate(plans):
        try:
            document, bytes_read = read_source(plan.item, plan.format)
            first = next(document.blocks, None)
        except Exception as exc:  # noqa: BLE001 - the same failures the producer turns into a skip
            failures.append(Skipped(plan.item.source, read_failure_reason(exc)))
            continue
        blocks = document.blocks if first is None else chain([first], document.blocks)
        return Probed(list(plans[index:]), (replace(document, blocks=blocks), bytes_read), failures)
    return Probed([], None, failures)
