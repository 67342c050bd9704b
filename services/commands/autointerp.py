"""`spd autointerp STORE --endpoint URL --model NAME`: a label, explanation and detection score
(beside a shuffled-label control) for each component, from its harvest, through any
OpenAI-compatible chat server; stored under interp/ in the store."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time

from spd_core.interp.chat import ChatClient, EndpointError
from spd_core.interp.checkpoint import Checkpoint, CheckpointError, checkpoint_path
from spd_core.interp.run import (
    InterpInputError,
    choose_components,
    finish,
    label_components,
    open_harvest,
    resolve_modules,
)
from spd_core.interp.settings import InterpSettings
from spd_core.interp.silent_contexts import SilentContextError, silent_contexts
from spd_core.store import FactorStore, StoreError

DESCRIPTION = """\
Label the components of a harvested decomposition of a language model (`spd harvest` first).
For each alive component (most frequent first, or by --order), a prompt built from its harvest
(top examples with the firing token marked and its CI, the tokens it fires on by precision and
by recall, the next-token logits it moves) goes to the explainer model, which answers a short
label and a one-sentence explanation. Any server that speaks the OpenAI-compatible
chat-completions API works: OpenAI (https://api.openai.com/v1), OpenRouter
(https://openrouter.ai/api/v1), vLLM, llama.cpp's server, Ollama (http://127.0.0.1:11434/v1),
`transformers serve` (http://127.0.0.1:8000/v1).

Detection score: the scorer model (by default the same endpoint and model) sees the label and a
shuffled mix of the component's held-out top examples (never shown to the explainer) and
contexts where it does not fire (found by running the decomposition on the harvest's windows),
and says which fire; the score is the balanced accuracy (0.5 is chance, 1 perfect). The control:
the same scoring with another component's label (labels shuffled across the components), so
every score stands beside what chance looks like for that component.

Every component of the harvest also gets a token summary that needs no language model (the
tokens that make up most of its firings, with their precision). Everything goes under interp/ in
the store (labels, explanations, answers, scores, the models, the prompts' hash, the settings),
with its own manifest and complete flag, tied to the harvest; `spd verify` checks it.

Requests run --concurrency at a time, each with --timeout seconds and --retries retries with
backoff on connection errors, 429 and 5xx; a malformed answer is asked again (--attempts in all)
and then recorded as unparsed. Progress lines show components per second, tokens and ETA. Every
finished component is written to STORE.autointerp-checkpoint.jsonl; a stopped run continues
with --resume and the same options, never asking twice for a component already labelled.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "autointerp",
        help="label and score every component through an OpenAI-compatible chat server",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("store", metavar="STORE", help="a complete, harvested factor store (local)")
    p.add_argument(
        "--endpoint", required=True, help="the server's OpenAI-compatible base URL, e.g. .../v1"
    )
    p.add_argument("--model", required=True, help="the explainer model, as the server names it")
    p.add_argument(
        "--api-key-env",
        metavar="VAR",
        help="environment variable holding the API key (default: none, for local servers)",
    )
    p.add_argument("--scorer-endpoint", help="the scorer's base URL (default --endpoint)")
    p.add_argument("--scorer-model", help="the scorer model (default --model)")
    p.add_argument(
        "--modules", nargs="+", metavar="PATTERN", help="only these modules (fnmatch patterns)"
    )
    p.add_argument("--limit", type=int, help="only the first N components in --order")
    p.add_argument(
        "--order",
        choices=["frequency", "mean_ci"],
        default="frequency",
        help="which components first: highest firing frequency or mean CI (default frequency)",
    )
    p.add_argument(
        "--concurrency", type=int, default=4, help="components in flight at once (default 4)"
    )
    p.add_argument("--resume", action="store_true", help="continue a stopped run (same options)")
    p.add_argument(
        "--examples", type=int, default=10, help="top examples shown to the explainer (10)"
    )
    p.add_argument(
        "--max-tokens", type=int, default=60, help="answer length limit of the explainer (60)"
    )
    p.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (0)")
    p.add_argument("--attempts", type=int, default=3, help="tries per answer (default 3)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per request (120)")
    p.add_argument("--retries", type=int, default=4, help="retries on 429/5xx/errors (4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the scoring draws (0)")


def _fail(message: str) -> int:
    print(f"spd autointerp: error: {message}", file=sys.stderr)
    return 2


def _api_key(var: str | None) -> str | None:
    if var is None:
        return None
    value = os.environ.get(var)
    if not value:
        raise InterpInputError(f"--api-key-env {var}: the environment variable {var} is not set")
    return value


INTERRUPTED = "spd autointerp: interrupted; stopping (the request in flight is dropped)"


def _stop_on_interrupt() -> None:
    """The first Ctrl-C (SIGINT) cancels the run at once and says so on stderr, even while a
    request waits on a slow server; a second one is a plain KeyboardInterrupt."""
    loop, task = asyncio.get_running_loop(), asyncio.current_task()
    assert task is not None

    def interrupted() -> None:
        print(INTERRUPTED, file=sys.stderr, flush=True)
        loop.remove_signal_handler(signal.SIGINT)
        task.cancel()

    loop.add_signal_handler(signal.SIGINT, interrupted)


async def _run(args: argparse.Namespace) -> int:
    _stop_on_interrupt()
    if args.concurrency < 1:
        return _fail(f"--concurrency must be >= 1, got {args.concurrency}")
    started = time.monotonic()
    try:
        store = FactorStore.open(args.store)
        harvest = open_harvest(store)
        modules = resolve_modules(harvest, args.modules)
        settings = InterpSettings(
            endpoint=args.endpoint,
            explainer_model=args.model,
            scorer_endpoint=args.scorer_endpoint or args.endpoint,
            scorer_model=args.scorer_model or args.model,
            modules=modules,
            limit=args.limit,
            order=args.order,
            examples_shown=args.examples,
            max_tokens=args.max_tokens,
            temperature=args.temperature,
            attempts=args.attempts,
            seed=args.seed,
        )
        components = choose_components(harvest, modules, settings.order, settings.limit)
        checkpoint = Checkpoint.start(checkpoint_path(store.path), settings.to_json(), args.resume)
        key = _api_key(args.api_key_env)
    except (StoreError, InterpInputError, CheckpointError, ValueError) as err:
        return _fail(str(err))
    explainer = ChatClient(
        settings.endpoint, settings.explainer_model, key, args.timeout, args.retries
    )
    scorer = ChatClient(
        settings.scorer_endpoint, settings.scorer_model, key, args.timeout, args.retries
    )
    try:
        await explainer.check()
        if (settings.scorer_endpoint, settings.scorer_model) != (
            settings.endpoint,
            settings.explainer_model,
        ):
            await scorer.check()
        done = sum(r["kind"] == "label" for r in checkpoint.records)
        print(
            f"labelling {len(components)} components of {store.path} with "
            f"{settings.explainer_model} at {settings.endpoint}"
            + (f"; resuming: {done} already labelled" if args.resume else ""),
            flush=True,
        )
        from spd_core.loading import load_decomposition

        decomposition = load_decomposition(store)
        silent = silent_contexts(
            decomposition,
            harvest,
            components,
            settings.silent,
            settings.silent_windows,
            settings.seed,
        )
        asked, requests = await label_components(
            settings,
            harvest,
            components,
            explainer,
            scorer,
            checkpoint,
            silent,
            args.concurrency,
            lambda line: print(line, flush=True),
        )
        result = finish(
            store, harvest, settings, checkpoint, asked, requests, time.monotonic() - started
        )
    except (EndpointError, SilentContextError, InterpInputError) as err:
        saved = sum(r["kind"] == "label" for r in checkpoint.records)
        kept = (
            f" ({saved} components labelled so far are kept in {checkpoint.path}: "
            "continue with --resume)"
            if saved
            else ""
        )
        return _fail(f"{err}{kept}")
    finally:
        await explainer.close()
        await scorer.close()
    print(
        f"labelled {result.labelled} components ({result.unparsed} unparsed answers; "
        f"{result.asked_now} asked now, {result.already_done} from the stopped run) in "
        f"{result.seconds:.0f} s with {result.requests} requests; {result.tokens:,} tokens; "
        f"mean detection score {result.mean_detection:.3f} beside {result.mean_control:.3f} "
        f"for shuffled labels; stored under interp/"
    )
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_run(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print(
            "spd autointerp: stopped; the components labelled so far are kept: continue with "
            f"`spd autointerp {args.store} --resume` and the same options",
            file=sys.stderr,
        )
        return 130
