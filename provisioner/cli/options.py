"""What the commands share: the user-error boundary and the options (the steps they take are in operations/).

Each command imports the layers it uses when it runs: `validate` and `plan` never load the HTTP
client, and start-up stays short.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import click

from provisioner.backends import (
    SANDBOX_STATE,
    StateMissing,
    check_workspace,
    default_state_path,
    open_backend,
    states_nearby,
)

if TYPE_CHECKING:
    from provisioner.backends import Backend
    from provisioner.core.models import State
    from provisioner.operations.connection import ApiSettings
    from provisioner.operations.run_context import RunContext

# The errors a user can cause, by the module that defines them: a layer that was not imported
# raised none of them, so it need not be imported to catch them.
USER_ERRORS = {
    "provisioner.manifest.issues": ("ManifestError",),
    "provisioner.backends.base": ("StateError", "LockError"),
    "provisioner.api.client": ("ApiError",),
    "provisioner.planning.saved_plan": ("PlanFileError",),
    "provisioner.operations.state_edits": ("StateCommandError",),
    "provisioner.operations.generate": ("GenerateError",),
    "provisioner.operations.plans": ("PlanRefused",),
}


class UserError(click.ClickException):
    """Exit 1 with one clear message; no traceback."""

    def show(self, file=None) -> None:
        click.echo(f"Error: {self.message}", err=True)


def user_error_types() -> tuple[type[Exception], ...]:
    return tuple(
        getattr(sys.modules[module], name)
        for module, names in USER_ERRORS.items()
        if module in sys.modules
        for name in names
    )


def user_errors(command):
    """Turns the errors a user can cause into one message and exit code 1."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except OSError as exc:  # disk full, permission denied, a directory where a file should be
            where = f"{exc.filename}: " if exc.filename else ""
            raise UserError(f"{where}{exc.strerror or exc}. Check that the path exists and is writable.") from None
        except Exception as exc:
            if isinstance(exc, user_error_types()):
                raise UserError(str(exc)) from None
            raise

    return wrapper


def progress(line: str) -> None:
    click.echo(line, err=True)


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


class Moment(click.ParamType):
    """--at: an ISO 8601 timestamp with a time zone, as an aware datetime in UTC."""

    name = "TIMESTAMP"
    EXAMPLE = "2026-04-01T00:00:00Z"

    def convert(self, value, param, ctx) -> datetime:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        if (
            ctx is not None
            and param is not None
            and param.envvar
            and ctx.get_parameter_source(param.name) == click.core.ParameterSource.ENVIRONMENT
        ):
            text_from = f"${param.envvar}"
        else:
            text_from = ""
        try:
            return self.parse(text)
        except ValueError as error:
            self.fail(f"{error}{f' (from {text_from})' if text_from else ''}", param, ctx)

    def parse(self, text: str) -> datetime:
        from provisioner.core.timestamps import from_iso

        try:
            moment = from_iso(text)
        except ValueError:
            raise ValueError(
                f"'{text}' is not an ISO 8601 timestamp; write it with a time zone, e.g. {self.EXAMPLE}"
            ) from None
        if len(text) <= 10:
            raise ValueError(
                f"'{text}' is a date without a time and time zone; write e.g. {text}T00:00:00Z or {text}T00:00:00+01:00"
            )
        if moment.utcoffset() is None:
            raise ValueError(f"'{text}' has no time zone; write e.g. {text}Z or {text}+01:00")
        if not 1970 <= moment.year <= 9000:
            raise ValueError(f"'{text}' is out of range; give a moment between the years 1970 and 9000")
        return moment.astimezone(timezone.utc)


at_option = click.option(
    "--at",
    type=Moment(),
    envvar="PROVISIONER_AT",
    help="The moment to plan for: grants are expanded (every period begun by then is declared) and expiries "
    f"judged at it. ISO 8601 with a time zone, e.g. {Moment.EXAMPLE}. Default: now ($PROVISIONER_AT if set). "
    "A later moment issues periods early, on purpose.",
)


report_at_option = click.option(
    "--at",
    type=Moment(),
    envvar="PROVISIONER_AT",
    help="Report as of this moment instead of now: batches expired by then count as expired, days left and "
    "'expires soon' are counted from it, and the upcoming grants are those after it. The balances are "
    f"those recorded (or read live with --refresh), not those of that moment. ISO 8601 with a time zone, e.g. "
    f"{Moment.EXAMPLE}. Default: now ($PROVISIONER_AT if set).",
)


def moment(at: datetime | None, *, report: bool = False) -> datetime:
    """The moment a command plans (or, ``report``, reports) for: --at, said on stderr so that nobody
    mistakes it for now; else now."""
    if at is None:
        return now_utc()
    from provisioner.core.timestamps import format_timestamp

    if report:  # said even with --quiet: $PROVISIONER_AT may be set without the reader knowing
        progress(
            f"Note: reporting as of {format_timestamp(at)} (--at), not now: expiries and days left are "
            "judged at that moment."
        )
    else:
        progress(
            f"Note: planning for {format_timestamp(at)} (--at), not for now: grants are expanded and "
            "expiries judged for that moment."
        )
    return at


def ask_yes(question: str, refusal: str, cancelled: str = "cancelled; nothing was changed.") -> None:
    """Only 'yes' goes on; no terminal to ask on is a refusal that says what to do instead."""
    if not sys.stdin.isatty():
        raise UserError(refusal)
    answer = click.prompt(question, default="", show_default=False)
    if answer.strip() != "yes":
        raise UserError(cancelled)


# --- options ------------------------------------------------------------------------

paths_argument = click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
optional_paths_argument = click.argument("paths", nargs=-1, type=click.Path(path_type=Path))


def with_backend(command=None, *, read_only: bool = False):
    """--state and --workspace, turned into the one ``backend`` object the command is given.

    ``read_only``: the command only reads the state (show, state list ...): when there is none, it
    names the states that do exist rather than suggest creating one."""
    if command is None:
        return functools.partial(with_backend, read_only=read_only)

    @functools.wraps(command)
    def wrapper(*args, state_location, workspace, **kwargs):
        context = click.get_current_context()
        given = context.get_parameter_source("state_location") == click.core.ParameterSource.COMMANDLINE
        if given and state_location and _has_password(state_location):
            # Not echoed: the message must not repeat the password it refuses.
            raise UserError(
                "--state carries a database password, which would stay in shell history and CI logs. Put it in "
                "PGPASSWORD, ~/.pgpass or a PGSERVICE entry, or give the whole URL in PROVISIONER_STATE (from a "
                "CI secret), and pass --state without it."
            )
        from_environment = context.get_parameter_source("workspace") == click.core.ParameterSource.ENVIRONMENT
        check_workspace(workspace, from_environment)
        sandbox = kwargs.get("sandbox", False)
        with open_backend(state_location, workspace, sandbox=sandbox, location_given=given) as backend:
            if sandbox and not backend.exists():
                backend.create()  # the sandbox is for trying things: it starts its own state
            try:
                return command(*args, backend=backend, **kwargs)
            except StateMissing as missing:
                located_by = None if not state_location else "--state" if given else "PROVISIONER_STATE"
                raise UserError(no_state_message(backend, str(missing), read_only, located_by)) from None

    wrapper = click.option(
        "--workspace",
        default="default",
        show_default=True,
        envvar="PROVISIONER_WORKSPACE",
        help="Which state of several (one per instance or environment). Default from $PROVISIONER_WORKSPACE.",
    )(wrapper)
    return click.option(
        "--state",
        "state_location",
        default=None,
        envvar="PROVISIONER_STATE",
        metavar="FILE|URL",
        help=f"State file, or postgresql://... for a shared state. Default: $PROVISIONER_STATE, else "
        f"{default_state_path('WORKSPACE')} ({SANDBOX_STATE} with --sandbox).",
    )(wrapper)


def no_state_message(backend: Backend, message: str, read_only: bool, located_by: str | None = None) -> str:
    """The backend's own words for a missing state, with the states that do exist named first; a
    command that only reads is not told to create one (an empty state has nothing to show)."""
    nearby = states_nearby(backend, located_by)
    if not nearby:
        return message
    if read_only:
        named = "\n".join(f"  - {location}: {how}" for location, how in nearby)
        return f"there is no state at {backend.name}. These states exist:\n{named}"
    first, rest = (message.split("\n", 1) + [""])[:2]
    named = ", ".join(f"{location} ({how})" for location, how in nearby)
    return f"{first}\n  - These states exist: {named}.\n{rest}".rstrip("\n")


def _has_password(location: str) -> bool:
    from provisioner.backends.postgres import is_database_url, url_has_password

    return is_database_url(location) and url_has_password(location)


def sandbox_option(command):
    return click.option("--sandbox", is_flag=True, help=f"Use the sandbox's state file ({SANDBOX_STATE}).")(command)


def _checked_base_url(context, parameter, base_url: str | None) -> str | None:
    """Judged before anything runs: a saved plan repeats --base-url in the command it prints."""
    if base_url is None:
        return None
    from provisioner.api.client import ConfigurationError, check_base_url

    try:
        check_base_url(base_url)
    except ConfigurationError as error:
        raise UserError(f"--base-url: {error}") from None
    return base_url


# Said here so that --help need not import the client (a test keeps the two equal).
GIVE_UP_AFTER_HELP = 25


def _keep_give_up_after(context, parameter, seconds: float | None) -> None:
    """Kept for api_context, so that the commands need not pass it along."""
    context.meta["give_up_after"] = seconds


def given_give_up_after() -> float | None:
    """--give-up-after of the command running (None: not given, the watcher's default)."""
    context = click.get_current_context(silent=True)
    return context.meta.get("give_up_after") if context is not None else None


def api_settings(sandbox: bool, base_url: str | None, rate_limit: float | None, parallelism: int) -> ApiSettings:
    """The options of ``api_options``, as the operations take them."""
    from provisioner.operations.connection import ApiSettings

    return ApiSettings(
        sandbox=sandbox,
        base_url=base_url,
        rate_limit=rate_limit,
        parallelism=parallelism,
        give_up_after=given_give_up_after(),
    )


def api_options(command):
    options = [
        click.option(
            "--sandbox", is_flag=True, help="Use an embedded local sandbox (data under state/) instead of TI_BASE_URL."
        ),
        click.option(
            "--base-url",
            envvar=None,
            callback=_checked_base_url,
            help="API base URL; default: $TI_BASE_URL. The key always comes from $TI_API_KEY.",
        ),
        click.option(
            "--parallelism",
            default=10,
            show_default=True,
            type=click.IntRange(1, 64),
            help="Requests in flight at once.",
        ),
        click.option(
            "--rate-limit",
            default=None,
            envvar="TI_RATE_LIMIT",
            type=click.FloatRange(0),
            help="Requests per minute never to exceed (Standard plan: 120, Enterprise: 600; 0: no limit "
            "of our own). Default ($TI_RATE_LIMIT unset): start at 120 and follow the limit the server "
            "announces.",
        ),
        click.option(
            "--give-up-after",
            default=None,
            envvar="PROVISIONER_GIVE_UP_AFTER",
            type=click.FloatRange(1),
            metavar="SECONDS",
            expose_value=False,
            callback=_keep_give_up_after,
            help="When the API stops answering (connection refused, timeouts, 502/503/504), stop the whole "
            "run after this many seconds without an answer, and say what is left to do. "
            f"Default: {GIVE_UP_AFTER_HELP} ($PROVISIONER_GIVE_UP_AFTER if set).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


class Seconds(click.ParamType):
    """A wait in seconds: 90, 2.5, or as Terraform writes it, 90s, 2m, 1m30s."""

    name = "SECONDS"
    PATTERN = re.compile(r"(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")

    def convert(self, value, param, ctx) -> float:
        if isinstance(value, int | float):
            return float(value)
        text = str(value).strip()
        try:
            seconds = float(text)
        except ValueError:
            match = self.PATTERN.fullmatch(text)
            if not text or match is None:
                self.fail(f"'{text}' is not a number of seconds; write e.g. 60, 60s or 2m", param, ctx)
            seconds = float(match[1] or 0) * 60 + float(match[2] or 0)
        if not seconds >= 0 or seconds == float("inf"):
            self.fail(f"'{text}' is not a number of seconds of 0 or more", param, ctx)
        return seconds


def lock_option(command):
    return click.option(
        "--lock-timeout",
        default=0.0,
        show_default=True,
        type=Seconds(),
        help="Seconds to wait for another run's lock on the state before failing (60, or 60s, 2m as in Terraform).",
    )(command)


def allow_duplicate_option(command):
    return click.option(
        "--allow-duplicate",
        "allow_duplicate",
        multiple=True,
        metavar="ADDRESS",
        help="Create this batch even though its client already has an unclaimed one just like it (issues its "
        "credits again, on purpose).",
    )(command)


def policy_options(command):
    options = [
        click.option("--max-batch-credits", type=click.IntRange(0), help="Override policy maxBatchCredits."),
        click.option("--max-apply-credits", type=click.IntRange(0), help="Override policy maxApplyCredits."),
        click.option("--max-creates", type=click.IntRange(0), help="Override policy maxCreates."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


reason_option = click.option(
    "--reason",
    default=None,
    metavar="TEXT",
    help="Why this change is made, for the audit trail (provisioner log). Default: $PROVISIONER_REASON.",
)


def run_context(reason: str | None, paths: Iterable[str | Path] = ()) -> RunContext:
    """Who, from which commit and run, and why: gathered once for the whole command."""
    from provisioner.operations.run_context import gather_run_context

    first = next(iter(paths), None)
    return gather_run_context(reason, manifests=Path(first) if first is not None else Path.cwd())


quiet_option = click.option(
    "--quiet", "-q", is_flag=True, help="Progress: only the estimate, the summary lines and the final line."
)

cache_option = click.option(
    "--no-cache",
    is_flag=True,
    help="Read every manifest again, ignoring the cache of files read before (.provisioner/cache/, "
    "or $XDG_CACHE_HOME/provisioner/).",
)


# --- steps every command takes -------------------------------------------------------------


def refuse_output_over_own_files(out_path: Path, backend: Backend, sandbox: bool, *, what: str, example: str) -> None:
    """--out never replaces a file the state lives in (the ids recorded there would be lost) or a manifest."""
    own = list(backend.own_files())
    if sandbox:
        from provisioner.operations.connection import sandbox_directory, sandbox_files

        own += sandbox_files(sandbox_directory(backend))
    if out_path.resolve() in {path.resolve() for path in own}:
        raise UserError(
            f"--out {out_path}: a file the state lives in (the state, its journal, backup or lock, or the "
            f"sandbox's data); writing the {what} there would destroy what it records. Nothing was "
            f"written. Name the {what} e.g. {example}, outside the state directory."
        )
    if out_path.suffix.lower() in (".yaml", ".yml"):
        raise UserError(
            f"--out {out_path}: a .yaml/.yml name would make the {what} read as a manifest (or overwrite one). "
            f"Nothing was written. Name it e.g. {example}, outside the manifests directory."
        )


def hint_at_the_sandbox_state(recorded: State, backend: Backend, sandbox: bool) -> None:
    """After the quick start, the batches are in the sandbox's state file, not the default one."""
    if not sandbox and not recorded.resources and Path(SANDBOX_STATE).exists():
        progress(f"({backend.name} is empty; the sandbox's batches are in {SANDBOX_STATE}: add --sandbox.)")
