"""A labelling run: choose the components, ask the explainer for each one's label, score every
label (and, as the control, another component's label) on held-out firing contexts against
silent ones, and store everything under `interp/`. Every finished step goes to the checkpoint
first, so a stopped run resumes without asking twice."""

from __future__ import annotations

import asyncio
import fnmatch
import math
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from spd_core.harvest.reader import ComponentStats, HarvestReader, NoHarvestError
from spd_core.interp.answers import parse_label, parse_selection
from spd_core.interp.chat import ChatClient
from spd_core.interp.checkpoint import Checkpoint
from spd_core.interp.prompts import explainer_messages, scorer_messages
from spd_core.interp.reader import harvest_token_summaries
from spd_core.interp.schema import ARRAYS, LABELLED, UNPARSED
from spd_core.interp.scoring import (
    Context,
    balanced_accuracy,
    derangement,
    shuffled_snippets,
    split_examples,
)
from spd_core.interp.settings import InterpSettings, Order
from spd_core.interp.writer import write_interp
from spd_core.store import FactorStore, StoreError

Key = tuple[str, int]


class InterpInputError(ValueError):
    """A store or an option that cannot be labelled; the message says why and what to do."""


def open_harvest(store: FactorStore) -> HarvestReader:
    """The store's complete harvest of text: InterpInputError for none or a toy's."""
    try:
        harvest = HarvestReader.open(store)
    except NoHarvestError as err:
        raise InterpInputError(f"{err}; labels are made from the harvest") from None
    if harvest.attrs.get("input_kind") != "text":
        raise InterpInputError(
            f"{store.path} is a decomposition of a toy model (its harvest read "
            f"{harvest.attrs.get('input_kind')}, not text): labels are written from text "
            "examples, so only decompositions of language models can be labelled"
        )
    return harvest


def resolve_modules(harvest: HarvestReader, patterns: list[str] | None) -> tuple[str, ...]:
    """The harvest's modules matching any of `patterns` (fnmatch; all when None)."""
    if not patterns:
        return tuple(harvest.modules)
    chosen = [m for m in harvest.modules if any(fnmatch.fnmatchcase(m, p) for p in patterns)]
    if not chosen:
        raise InterpInputError(
            f"--modules {' '.join(patterns)} matched nothing; modules: "
            + ", ".join(harvest.modules)
        )
    return tuple(chosen)


def choose_components(
    harvest: HarvestReader, modules: tuple[str, ...], order: Order, limit: int | None
) -> list[Key]:
    """The alive (ever firing) components of `modules`, highest frequency or mean CI first
    (ties: module order, then index), the first `limit` of them."""
    rows: list[ComponentStats] = [r for m in modules for r in harvest.table(m) if r.firing_count]

    def value(r: ComponentStats) -> float:
        return r.firing_frequency if order == "frequency" else r.mean_ci_when_firing

    rows.sort(key=lambda r: (-value(r), modules.index(r.module), r.component))
    return [(r.module, r.component) for r in rows[:limit]]


RETRY_TEMPERATURE = 0.7


def retry_temperature(temperature: float, attempt: int) -> float:
    """The first try at the settings' temperature, later ones at least RETRY_TEMPERATURE (at
    temperature 0 a server would repeat the same malformed answer)."""
    return temperature if attempt == 0 else max(temperature, RETRY_TEMPERATURE)


def component_seed(seed: int, key: Key) -> int:
    return zlib.crc32(f"{seed}:{key[0]}:{key[1]}".encode())


@dataclass
class Progress:
    """Counts for the progress lines: steps done this run, tokens, and the rate."""

    total: int
    report: Callable[[str], None]
    phase: str = "labels"
    done: int = 0
    tokens: int = 0
    started: float = field(default_factory=time.monotonic)
    _last: float = 0.0

    def step(self, tokens: int) -> None:
        self.done += 1
        self.tokens += tokens
        now = time.monotonic()
        if not (self.done == self.total or now - self._last >= 2.0):
            return
        self._last = now
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else math.inf
        per = self.tokens / self.done
        self.report(
            f"{self.phase} {self.done}/{self.total}  {rate:.2f}/s  tokens {self.tokens:,} "
            f"({per:,.0f} per component)  ETA {eta / 60:.1f} min"
        )


@dataclass
class InterpResult:
    labelled: int
    unparsed: int
    scored: int
    asked_now: int
    already_done: int
    requests: int
    tokens: int
    seconds: float
    mean_detection: float
    mean_control: float


class _Run:
    """The state of one run: clients, checkpoint, contexts; the steps are its methods."""

    def __init__(
        self,
        settings: InterpSettings,
        harvest: HarvestReader,
        explainer: ChatClient,
        scorer: ChatClient,
        checkpoint: Checkpoint,
        silent: dict[Key, list[Context]],
        concurrency: int,
    ) -> None:
        self.s = settings
        self.harvest = harvest
        self.explainer = explainer
        self.scorer = scorer
        self.checkpoint = checkpoint
        self.silent = silent
        self.gate = asyncio.Semaphore(concurrency)
        self.requests = 0

    def held_out(self, key: Key) -> list[Context]:
        summary = self.harvest.summary(*key)
        _, held = split_examples(summary.top_examples, self.s.examples_shown, self.s.held_out)
        return [Context(e.before, e.token, e.after) for e in held]

    async def detect(self, key: Key, label: str) -> tuple[float, int]:
        """(balanced accuracy of the scorer given `label` on `key`'s snippets, tokens); NaN
        when there is nothing to score or every answer was malformed."""
        held, silent = self.held_out(key), self.silent.get(key, [])
        if not held or not silent:
            return math.nan, 0
        snippets, firing = shuffled_snippets(held, silent, component_seed(self.s.seed, key))
        tokens = 0
        for attempt in range(self.s.attempts):
            answer = await self.scorer.complete(
                scorer_messages(label, snippets),
                self.s.scorer_max_tokens,
                retry_temperature(self.s.temperature, attempt),
            )
            self.requests += 1
            tokens += answer.tokens
            chosen = parse_selection(answer.text, len(snippets))
            if chosen is not None:
                return balanced_accuracy(chosen, firing, len(snippets)), tokens
        return math.nan, tokens

    async def label(self, key: Key, progress: Progress) -> None:
        async with self.gate:
            summary = self.harvest.summary(*key)
            shown, _ = split_examples(summary.top_examples, self.s.examples_shown, self.s.held_out)
            messages = explainer_messages(summary, shown)
            parsed, text, requests, tokens = None, "", 0, 0
            for attempt in range(self.s.attempts):
                answer = await self.explainer.complete(
                    messages, self.s.max_tokens, retry_temperature(self.s.temperature, attempt)
                )
                requests += 1
                tokens += answer.tokens
                text = answer.text
                parsed = parse_label(text)
                if parsed is not None:
                    break
            self.requests += requests
            score = math.nan
            if parsed is not None:
                score, used = await self.detect(key, parsed.label)
                tokens += used
            self.checkpoint.append(
                {
                    "kind": "label",
                    "module": key[0],
                    "component": key[1],
                    "status": LABELLED if parsed else UNPARSED,
                    "label": parsed.label if parsed else "",
                    "explanation": parsed.explanation if parsed else "",
                    "answer": text,
                    "detection_score": score,
                    "explainer_requests": requests,
                    "tokens": tokens,
                }
            )
            progress.step(tokens)

    async def control(self, key: Key, other: Key, label: str, progress: Progress) -> None:
        async with self.gate:
            score, tokens = await self.detect(key, label)
            self.checkpoint.append(
                {
                    "kind": "control",
                    "module": key[0],
                    "component": key[1],
                    "control_label_of": f"{other[0]}:{other[1]}",
                    "detection_control": score,
                    "tokens": tokens,
                }
            )
            progress.step(tokens)


def _records(checkpoint: Checkpoint, kind: str) -> dict[Key, dict[str, Any]]:
    return {(r["module"], int(r["component"])): r for r in checkpoint.records if r["kind"] == kind}


async def label_components(
    settings: InterpSettings,
    harvest: HarvestReader,
    components: list[Key],
    explainer: ChatClient,
    scorer: ChatClient,
    checkpoint: Checkpoint,
    silent: dict[Key, list[Context]],
    concurrency: int,
    report: Callable[[str], None],
) -> tuple[int, int]:
    """Label, score and control-score every component of `components` not yet in the
    checkpoint; (components labelled now, chat requests made)."""
    run = _Run(settings, harvest, explainer, scorer, checkpoint, silent, concurrency)
    labels = _records(checkpoint, "label")
    todo = [k for k in components if k not in labels]
    progress = Progress(len(todo), report)
    await asyncio.gather(*(run.label(k, progress) for k in todo))
    labels = _records(checkpoint, "label")
    scoreable = [
        k
        for k in components
        if labels[k]["status"] == LABELLED and run.held_out(k) and silent.get(k)
    ]
    cycle = derangement(scoreable, settings.seed)
    controls = _records(checkpoint, "control")
    todo_controls = [k for k in cycle if k not in controls]
    progress = Progress(len(todo_controls), report, phase="controls")
    await asyncio.gather(
        *(run.control(k, cycle[k], labels[cycle[k]]["label"], progress) for k in todo_controls)
    )
    return len(todo), run.requests


def _empty(name: str, C: int) -> np.ndarray:
    if name.startswith("detection"):
        return np.full(C, np.nan)
    if name in ("explainer_requests", "tokens_used"):
        return np.zeros(C, np.int64)
    return np.full(C, "", dtype=object)


def interp_arrays(
    harvest: HarvestReader, checkpoint: Checkpoint
) -> dict[str, dict[str, np.ndarray]]:
    """Every harvested module's arrays of `schema.ARRAYS`, from the checkpoint's records."""
    labels, controls = _records(checkpoint, "label"), _records(checkpoint, "control")
    out: dict[str, dict[str, np.ndarray]] = {}
    for module in harvest.modules:
        C = harvest.store.modules[module].C
        arrays: dict[str, np.ndarray] = {name: _empty(name, C) for name in ARRAYS}
        arrays["token_summary"][:] = harvest_token_summaries(harvest, module)
        for (m, c), r in labels.items():
            if m != module:
                continue
            for name in ("status", "label", "explanation", "answer", "explainer_requests"):
                arrays[name][c] = r[name]
            arrays["detection_score"][c] = r["detection_score"]
            arrays["tokens_used"][c] = r["tokens"]
        for (m, c), r in controls.items():
            if m != module:
                continue
            arrays["detection_control"][c] = r["detection_control"]
            arrays["control_label_of"][c] = r["control_label_of"]
            arrays["tokens_used"][c] += r["tokens"]
        for name in ARRAYS:
            if arrays[name].dtype == object:
                arrays[name] = arrays[name].astype(str).astype(np.dtypes.StringDType())
        out[module] = arrays
    return out


def _mean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def finish(
    store: FactorStore,
    harvest: HarvestReader,
    settings: InterpSettings,
    checkpoint: Checkpoint,
    asked_now: int,
    requests_now: int,
    seconds: float,
) -> InterpResult:
    """Write `interp/` from the checkpoint, then remove the checkpoint."""
    labels, controls = _records(checkpoint, "label"), _records(checkpoint, "control")
    scored = [r["detection_score"] for r in labels.values()]
    control = [r["detection_control"] for r in controls.values()]
    result = InterpResult(
        labelled=sum(r["status"] == LABELLED for r in labels.values()),
        unparsed=sum(r["status"] == UNPARSED for r in labels.values()),
        scored=sum(not math.isnan(v) for v in scored),
        asked_now=asked_now,
        already_done=len(labels) - asked_now,
        requests=requests_now,
        tokens=sum(r["tokens"] for r in checkpoint.records),
        seconds=seconds,
        mean_detection=_mean(scored),
        mean_control=_mean(control),
    )
    attrs = {
        "explainer_model": settings.explainer_model,
        "scorer_model": settings.scorer_model,
        "endpoint": settings.endpoint,
        "scorer_endpoint": settings.scorer_endpoint,
        "prompt_template_sha256": settings.prompt_template_sha256,
        "settings": settings.to_json(),
        "components_labelled": result.labelled,
        "components_unparsed": result.unparsed,
        "components_scored": result.scored,
        "mean_detection_score": result.mean_detection,
        "mean_detection_control": result.mean_control,
        "tokens_used": result.tokens,
    }
    try:
        write_interp(store.path, interp_arrays(harvest, checkpoint), attrs)
    except (StoreError, ValueError) as err:
        raise InterpInputError(f"cannot store the labels: {err}") from None
    checkpoint.remove()
    return result
