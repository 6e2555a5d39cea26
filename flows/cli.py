"""The `takeflow` command: validate a storyboard, or produce it into a finished video.

Runs go to the Prefect server PREFECT_API_URL names, else to the one `takeflow server start` keeps
running (flows/server.py), else to a temporary server started for the command.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from urllib.parse import urlparse

from blocks.providers import GenerationError
from blocks.registry import load_provider
from tasks.checks import check_overrides, check_run
from tasks.plan import ShotPlan, delivery_size, providers_used
from tasks.storyboard import Storyboard, StoryboardError, one_line
from tasks.srt import read_srt
from tasks.provider_upscale import upscaler_of


class _OneLineParser(argparse.ArgumentParser):
    """Bad arguments are one line naming the argument and the fix, not a usage dump."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad option in one line (its default adds the usage block)."""

    def error(self, message: str):
        self.exit(2, f"error: {one_line(message)}; see {self.prog} --help\n")


def _version() -> str:
    try:
        return version("takeflow")
    except PackageNotFoundError:  # run from a checkout that is not installed
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="takeflow", description="Storyboard in, finished video out.")
    parser.add_argument("--version", action="version", version=f"takeflow {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    produce = commands.add_parser("produce", help="generate, score, upscale and assemble a storyboard")
    produce.add_argument("file", help="storyboard (.yaml, .yml or .json): a path, or an s3:// URI read "
                         "through --storage")
    produce.add_argument("--out", default="out", help="output folder (default: out)")
    produce.add_argument("--takes", help="takes per shot (1-16), overriding the storyboard")
    produce.add_argument("--budget", help="credit budget, overriding the storyboard")
    produce.add_argument("--budget-name", metavar="NAME", help="named ledger budget to draw on (takeflow budget)")
    produce.add_argument("--policy", choices=("stop", "pause", "fit"), help="when the estimate is over what the "
                         "budget has left: stop, pause for a decision in the UI, or fit the plan")
    produce.add_argument("--storage", metavar="BLOCK", help="saved storage block that receives the "
                         "deliverables and reads s3:// inputs, e.g. takeflow-s3-storage/media")
    produce.add_argument("-v", "--verbose", action="store_true", help="show Prefect's run logs")
    validate = commands.add_parser("validate", help="check a storyboard and print its plan; spends nothing")
    validate.add_argument("file", help="storyboard (.yaml, .yml or .json): a path, or an s3:// URI")
    validate.add_argument("--storage", metavar="BLOCK", help="saved storage block that reads an s3:// storyboard")
    validate.add_argument("--takes", help="takes per shot (1-16), overriding the storyboard")
    validate.add_argument("-v", "--verbose", action="store_true", help="show tracebacks of unexpected errors")
    estimate = commands.add_parser("estimate", help="print what a storyboard will cost, shot by shot and take "
                                   "by take, against its budget; spends nothing")
    estimate.add_argument("file", help="storyboard (.yaml, .yml or .json): a path, or an s3:// URI")
    estimate.add_argument("--storage", metavar="BLOCK", help="saved storage block that reads an s3:// storyboard")
    estimate.add_argument("--takes", help="takes per shot (1-16), overriding the storyboard")
    estimate.add_argument("--budget", help="credit budget, overriding the storyboard")
    estimate.add_argument("--budget-name", metavar="NAME", help="named ledger budget to check against")
    from flows.budget_cli import add_budget_commands
    add_budget_commands(commands)
    models = commands.add_parser("models", help="list the models in the catalogue, what they can do and cost")
    models.add_argument("--provider", help="only this provider's models")
    models.add_argument("--changes", metavar="FILE", help="list what takeflow's catalogue changes relative "
                        "to this catalogue file (default: $TAKEFLOW_CATALOGUE, where you keep your own)")
    simulate = commands.add_parser("simulate", help="run local provider simulators and point the saved "
                                   "provider blocks at them, for demos and tests without keys or credits")
    simulate.add_argument("--latency", type=_bounded(float, 0, 600), default=3.0,
                          help="seconds each simulated generation runs (0-600)")
    simulate.add_argument("--fault-rate", type=_bounded(float, 0, 1), default=0.0, help="share of requests "
                          "answered with a transient fault (429, 503, dropped connection), 0-1")
    simulate.add_argument("--port", type=_bounded(int, 1024, 65000), default=8710,
                          help="first port; one per provider (default 8710)")
    simulate.add_argument("--no-save", action="store_true", help="do not save provider blocks pointing at "
                          "the simulators")
    server = commands.add_parser("server", help="run a local Prefect server in the background, so runs stay in "
                                 "its UI and commands skip the temporary server's start-up")
    server.add_argument("action", choices=("start", "stop", "status"))
    server.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    server.add_argument("--port", type=_bounded(int, 1024, 65535), default=4200, help="port (default 4200)")
    return parser


def _bounded(kind: type, low: float, high: float):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:  # NaN fails both comparisons
            raise argparse.ArgumentTypeError(f"'{text}' is not a {kind.__name__} from {low:g} to {high:g}")
        return value
    return parse


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except StoryboardError as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `takeflow models | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # a bug or an environment problem: one line unless -v asks for more
        if getattr(args, "verbose", False):
            raise
        print(f"error: {one_line(f'{type(exc).__name__}: {exc}')} (run with -v for the traceback)",
              file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    if args.command == "models":
        return _models(args.provider, args.changes)
    if args.command == "budget":
        from flows.budget_cli import run_budget_command
        return run_budget_command(args)
    if args.command == "server":
        from flows.server import run_server_command
        return run_server_command(args.action, args.host, args.port)
    if args.command in ("produce", "validate", "estimate"):
        from flows.server import attach_to_server
        with attach_to_server():
            return _run_storyboard(args)
    if args.command == "simulate":
        from simulators.serve import serve
        _quiet_prefect_console(verbose=False)
        return serve(latency=args.latency, fault_rate=args.fault_rate, first_port=args.port, save=not args.no_save)
    raise AssertionError(f"unhandled command {args.command}")


def _run_storyboard(args: argparse.Namespace) -> int:
    overrides = check_overrides(args.takes, getattr(args, "budget", None))
    from tasks.publish import load_storyboard_at
    storyboard = load_storyboard_at(str(args.file), getattr(args, "storage", None),
                                    "it needs --storage BLOCK to read it")
    storage = _storage(args.storage) if args.storage else None
    try:
        plans = check_run(storyboard, overrides.takes, storage)
    except StoryboardError as exc:
        raise StoryboardError(f"{Path(args.file).name}: {exc}") from None
    if args.command == "validate":
        return _validate(storyboard, overrides.takes)
    if args.command == "estimate":
        from flows.budget_cli import print_estimate
        return print_estimate(storyboard, overrides.takes, overrides.budget, args.budget_name, _load_provider)
    args.takes, args.budget = overrides.takes, overrides.budget
    return _produce(storyboard, args, plans)


def _storage(name: str):
    from tasks.publish import StorageNotFound, load_storage

    try:
        return load_storage(name)
    except StorageNotFound as exc:
        raise StoryboardError(f"--storage: {exc}") from None


def _check_providers(plans: list[ShotPlan], storyboard: Storyboard) -> None:
    """Before Prefect starts: every hosted provider has its credentials and answers, so a run
    against missing keys or stopped simulators ends in a second, not after its first takes."""
    upscaler = upscaler_of(storyboard)
    names = sorted({*providers_used(plans), *([upscaler[0]] if upscaler else [])} - {"previz"})
    hint = "; to try the simulators instead, run `takeflow simulate` in another terminal"
    for name in names:
        provider = load_provider(name)
        try:
            provider.preflight()
        except GenerationError as exc:
            raise StoryboardError(f"{exc}{hint}") from None
        url = urlparse(getattr(provider, "base_url", "") or "")
        if url.hostname:
            try:
                socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)),
                                         timeout=5).close()
            except OSError as exc:
                raise StoryboardError(f"{name}: cannot reach {url.scheme}://{url.netloc} ({exc.strerror or exc})"
                                      + (hint.replace("to try", "are") if url.hostname in ("127.0.0.1", "localhost")
                                         else "; check the network or the block's base_url")) from None


def _models(provider: str | None, changes: str | None = None) -> int:
    from blocks.catalogue import load_catalogue

    catalogue = load_catalogue()
    mine = changes or os.environ.get("TAKEFLOW_CATALOGUE")
    if mine:
        _catalogue_changes(mine, provider)
    known = sorted({m.provider for m in catalogue.models})
    if provider and provider not in known:
        raise StoryboardError(f"--provider: unknown provider '{provider}'; available: {', '.join(known)}")
    print(f"catalogue {catalogue.version}; prices in takeflow credits (1 credit = 0.01 USD) per second of "
          "video, one price per resolution, audio off\n")
    print(f"{'provider/model':38} {'durations s':14} {'ratios':16} {'max res':8} {'audio':9} "
          f"{'i2v':4}{'t2v':4}{'brush':6}{'seed':5} credits/s by resolution")
    for m in catalogue.models:
        if provider and m.provider != provider:
            continue
        durations = m.describe_durations().replace(" s in steps of ", "/").removesuffix(" s")
        prices = " ".join(f"{r} {catalogue.credits(m.provider, m.model, 1, r):g}" for r in m.resolutions)
        flag = {True: "yes", False: "-"}
        print(f"{m.provider + '/' + m.model:38} {durations:14} {' '.join(m.ratios):16} {m.max_resolution:8} "
              f"{m.audio:9} {flag[m.image_to_video]:4}{flag[m.text_to_video]:4}{flag[m.motion_brush]:6}"
              f"{flag[m.seed]:5} {prices}" + (f"  RETIRED {m.retired}" if m.retired else ""))
    upscalers = [u for u in catalogue.upscalers if not provider or u.provider == provider]
    if upscalers:
        print(f"\n{'upscaler (defaults.upscaler)':40} {'delivery':24} credits/s of output by delivery")
    for u in upscalers:
        prices = " ".join(f"{r} {catalogue.upscale_credits(u.provider, u.model, 1, r):g}" for r in u.resolutions)
        print(f"{u.provider + '/' + u.model:40} {' '.join(u.resolutions):24} {prices}"
              + ("  (assumed prices: see the catalogue)" if u.price_assumed else ""))
    return 0


def _catalogue_changes(path: str, provider: str | None) -> None:
    """Print what takeflow's shipped catalogue changes relative to the user's catalogue file."""
    import yaml
    from pydantic import ValidationError

    from blocks.catalogue import DEFAULT_PATH, catalogue_changes, load_catalogue

    try:
        mine = load_catalogue(path)
    except (FileNotFoundError, ValidationError, yaml.YAMLError) as exc:
        raise StoryboardError(f"catalogue {path}: {one_line(str(exc))}; fix the file or TAKEFLOW_CATALOGUE") from None
    shipped = load_catalogue(DEFAULT_PATH)
    lines = [line for line in catalogue_changes(mine, shipped)
             if not provider or line.split(" ", 2)[2].startswith(provider + "/")]
    print(f"takeflow's catalogue {shipped.version} against yours ({path}, {mine.version}): "
          f"{len(lines) or 'no'} change{'s' if len(lines) != 1 else ''}" + ("" if lines else "\n"))
    for line in lines:
        print("  " + line)
    if lines:
        print("  (copy what you want into your file: takeflow uses yours while TAKEFLOW_CATALOGUE names it)\n")


def _load_provider(name: str):
    # Saved provider blocks (with their prices) are only read when a server is configured.
    return load_provider(name, saved=bool(os.environ.get("PREFECT_API_URL")))


def _validate(storyboard: Storyboard, takes: int | None) -> int:
    from tasks.estimate import PriceMissing, plan_run

    run = plan_run(storyboard, takes, _load_provider)
    plans = run.plans
    upscaler = upscaler_of(storyboard)
    width, height = delivery_size(storyboard.defaults.aspect_ratio, storyboard.defaults.delivery)
    print(f"{storyboard.title}: {len(plans)} shots, {storyboard.total_duration():.2f} s, "
          f"delivered at {width}x{height} {storyboard.defaults.fps} fps")
    for plan in plans:
        models = ", ".join(c.label + (f" at {c.resolution}" if c.resolution else "") for c in plan.choices)
        print(f"\n{plan.shot_id}  {plan.duration:g} s  {plan.takes} takes  {models}"
              + (f"  fallback {plan.fallback.label}" if plan.fallback else "")
              + (f"  reference {Path(plan.reference_image).name}" if plan.reference_image else "")
              + (f"  {len(plan.motion_regions)} brush regions" if plan.motion_regions else ""))
        print(f"  prompt: {one_line(plan.prompts.prompt.text(), 4000)}")
        for issue in plan.prompts.lint:
            print(f"  lint {issue.part}: {one_line(f'{issue.problem}; {issue.suggestion}')}")
    try:
        quote = run.estimate(storyboard)
        upscaling, estimate = quote.upscaling, quote.total
    except (GenerationError, PriceMissing) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    budget = storyboard.defaults.budget
    if storyboard.captions:  # a local file was read and checked when the storyboard loaded
        remote = storyboard.captions.startswith(("s3://", "https://", "http://"))
        print(f"\ncaptions: {storyboard.captions}"
              + (" (read when the run starts)" if remote else f", {len(read_srt(storyboard.captions))} cues"))
    if upscaler:
        print(f"\nupscale: {storyboard.defaults.upscaler}, {upscaling:g} credits")
    print(f"\nestimated cost: {estimate:g} credits"
          + (f" of a {budget:g} budget" if budget is not None else " (no budget set)"))
    if budget is not None and estimate > budget:
        print(f"error: estimated cost {estimate:g} credits is over the budget of {budget:g}; "
              "raise the budget, use fewer takes or shorten shots", file=sys.stderr)
        return 3
    return 0


def _quiet_prefect_console(verbose: bool) -> None:
    """Keep Prefect's run logs off the terminal (they still reach the server) unless --verbose."""
    if not os.environ.get("PREFECT_API_URL"):
        # The embedded server is this run's alone: keep its housekeeping (telemetry, shutdown
        # chatter) off the user's terminal. Its subprocess reads these from the environment.
        os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "CRITICAL")
    if verbose:
        return
    for handler in logging.getLogger().handlers:
        if type(handler).__name__ == "PrefectConsoleHandler":
            handler.setLevel(logging.WARNING)


def _produce(storyboard: Storyboard, args: argparse.Namespace, plans: list[ShotPlan]) -> int:
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from flows.produce import RunOptions, produce
    from flows.progress import terminal_display
    from flows.run_guard import guard_run

    from flows.budget_cli import precheck

    problem = precheck(storyboard, args.budget, args.budget_name, _load_provider)
    if problem:
        print(f"error: {problem} (nothing was spent)", file=sys.stderr)
        return 2
    _check_providers(plans, storyboard)
    from flows.server import note_temporary_server
    note_temporary_server()
    _quiet_prefect_console(args.verbose)
    options = RunOptions(out_dir=args.out, takes=args.takes, budget=args.budget, storage=args.storage,
                         budget_name=args.budget_name, policy=args.policy)
    # A local run has no worker watching for crashed runs, so heartbeats would only slow the exit.
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}), terminal_display(), guard_run():
        state = produce(storyboard=storyboard, options=options, return_state=True)
    if not state.is_completed():
        message = (state.message or state.name).removeprefix("Flow run encountered an exception: ")
        print(f"error: {message.splitlines()[0] if message else state.name}", file=sys.stderr)
        return 1
    report = state.result()
    folder = Path(args.out) / storyboard.project_slug
    print(f"final video: {folder / 'final.mp4'}  ({report.duration:.2f} s, "
          f"{report.width}x{report.height}, {report.fps} fps)")
    print(f"takes: {report.generated} generated, {report.cached} from cache; credits: "
          f"{report.credits_this_run:g} this run, {report.credits_spent:g} on this storyboard in all "
          f"(estimate {report.estimate:g}; budget {report.budget_name})")
    for shot in report.shots:
        print(f"  {shot.shot_id}: {shot.reason}")
    for line in report.held:  # reserved on the budget until the provider's usage record decides them
        print(f"  held: {line}")
    print(f"report: {folder / 'report.json'}")
    if report.published:
        print(f"published: {report.published['manifest.json'].rsplit('/', 1)[0]}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
