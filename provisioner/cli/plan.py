"""validate, plan, schema: the commands that read manifests and say what would change."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from provisioner.cli.options import (
    UserError,
    allow_duplicate_option,
    api_options,
    at_option,
    cache_option,
    given_give_up_after,
    moment,
    now_utc,
    paths_argument,
    policy_options,
    progress,
    quiet_option,
    refuse_output_over_own_files,
    user_errors,
    with_backend,
)
from provisioner.core.plurals import plural
from provisioner.operations.live_batches import read_live
from provisioner.operations.manifests import effective_policy, load_manifests, read_manifests
from provisioner.operations.plans import plan_changes

if TYPE_CHECKING:
    from provisioner.backends import Backend
    from provisioner.core.models import Plan, State


@click.command(short_help="Check manifests only: no state, no network.")
@paths_argument
@cache_option
@user_errors
def validate(paths: tuple[Path, ...], no_cache: bool) -> None:
    """Check manifests only: no state, no network."""
    desired = load_manifests(paths, no_cache)
    grants = f" and {plural(len(desired.grants), 'grant', 'grants')}" if desired.grants else ""
    verb = "is" if len(desired.batches) == 1 and not grants else "are"
    click.echo(
        f"Success! {plural(len(desired.batches), 'batch', 'batches')}{grants} of "
        f"{plural(len(desired.clients), 'client', 'clients')} {verb} valid."
    )


@click.command(short_help="Show what apply would change, and the credits.")
@paths_argument
@api_options
@policy_options
@click.option("--refresh", is_flag=True, help="Compare with the live API as well as the state file.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json", "markdown"]),
    default="text",
    show_default=True,
    help="text for people, json for tools (documented format), markdown for a pull-request comment.",
)
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Save the plan for 'provisioner apply FILE'.",
)
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="Exit 0: no changes, 2: changes that can be applied, 1: an error or a plan that cannot be applied "
    "(without it: 0, or 1 for those). Also spelled -detailed-exitcode.",
)
@click.option("--no-color", is_flag=True, help="No ANSI colours in the text output.")
@click.option("--replace", "replace", multiple=True, metavar="ADDRESS", help="Plan to recreate this batch on purpose.")
@allow_duplicate_option
@at_option
@quiet_option
@cache_option
@user_errors
@with_backend
def plan(
    paths,
    backend,
    sandbox,
    base_url,
    parallelism,
    rate_limit,
    refresh,
    output_format,
    out_path,
    detailed_exitcode,
    no_color,
    replace,
    allow_duplicate,
    at,
    quiet,
    no_cache,
    **policy_overrides,
) -> None:
    """Show what apply would change, and the credits it would issue."""
    from provisioner.planning.saved_plan import refuse_saved_plans, save_plan
    from provisioner.render.progress import Progress

    refuse_saved_plans(paths)
    if out_path is not None:
        refuse_output_over_own_files(out_path, backend, sandbox, what="saved plan", example="provisioner.plan")
    asked_at, at = at, moment(at)
    declarations = read_manifests(paths, no_cache)
    state = backend.read()
    check_replace_addresses(replace, state)
    policy = effective_policy(declarations, policy_overrides)
    color = not no_color and sys.stdout.isatty()
    # Without --at, the moment is now; a later --at may mark periods early, which only a plan made whole says.
    real_now = now_utc() if asked_at is not None else at

    def observe(desired):
        observed, api_now = read_live(
            desired,
            state,
            backend,
            sandbox=sandbox,
            base_url=base_url,
            rate_limit=rate_limit,
            parallelism=parallelism,
            reporter=Progress.for_stream(quiet=quiet),
            give_up_after=given_give_up_after(),
        )
        # By the API's clock for a moment other than now; now is now, as apply judges it.
        return observed, (api_now if asked_at is not None else at)

    result, desired = plan_changes(
        declarations,
        state,
        at,
        policy,
        replace=replace,
        allow_duplicates=allow_duplicate,
        observe=observe if refresh else None,
        real_now=real_now,
        # The text a reviewer's CI job keeps: reusing the parts of the last plan that still hold.
        reuse_parts=output_format == "text"
        and not (color or refresh or replace or out_path or no_cache or at > real_now),
    )
    emit_plan(result, output_format, color=color)
    refusal = why_it_cannot_be_applied(result)
    if out_path is not None:
        assert desired is not None  # --out never reuses the memo's parts: the batches were built
        save_plan(
            out_path,
            desired,
            result,
            state,
            policy,
            list(replace),
            refresh=refresh,
            allow_duplicates=list(allow_duplicate),
        )
        if refusal is None:
            progress(
                f"Saved the plan to {out_path}. Apply exactly this plan with: "
                f"{apply_command(out_path, backend, base_url)}"
            )
        else:
            progress(f"Saved the plan to {out_path}, but apply refuses it as it stands (below).")
    if refusal is not None:  # after the whole plan: the reviewer reads what is wrong in it
        raise UserError(f"this plan cannot be applied: {refusal}")
    if detailed_exitcode and result.change_count:
        sys.exit(2)


def why_it_cannot_be_applied(result: Plan, allow_large: bool = False, then: str = "plan") -> str | None:
    """Why apply would refuse this plan (blocked changes, batches missing from the API, guardrail
    violations), or None. plan exits 1 for the same reasons, so CI needs nothing else to tell."""
    blocked = result.count("blocked")
    missing = result.count("missing")
    reasons = []
    if blocked:
        reasons.append(f"{plural(blocked, 'change is', 'changes are')} blocked (marked '!' above)")
    if missing:
        reasons.append(
            f"{plural(missing, 'recorded batch is', 'recorded batches are')} missing from the API (marked '!' above)"
        )
    violations = len(result.violations)
    broken = violations > 0 and not allow_large
    if reasons:
        also = (
            (f" It also breaks {plural(violations, 'guardrail', 'guardrails')} of the policy (listed above).")
            if broken
            else ""
        )
        return f"{' and '.join(reasons)}. Fix them as the plan says, then run {then} again.{also}"
    if broken:
        return (
            f"it breaks {plural(violations, 'guardrail', 'guardrails')} of the policy (listed "
            "above). If this is intended, raise the policy in the manifest (visible in review), or apply "
            "with --allow-large."
        )
    return None


def apply_command(out_path: Path, backend: Backend, base_url: str | None) -> str:
    """The apply of a saved plan, with every option it needs to find the same state and API."""
    words = ["provisioner", "apply", str(out_path), *shlex.split(backend.location_options())]
    if base_url:
        words += ["--base-url", base_url]
    return shlex.join(words)


def emit_plan(result: Plan, output_format: str, color: bool) -> None:
    if output_format == "json":
        from provisioner.planning.plan_document import render_json

        click.echo(render_json(result))
    elif output_format == "markdown":
        from provisioner.render.markdown import render_markdown

        click.echo(render_markdown(result))
    else:
        from provisioner.render.text import text_chunks

        for chunk in text_chunks(result, color=color):  # a large plan is never held whole
            # color=True: written as rendered (no colour codes unless asked), not scanned for them again.
            click.echo(chunk, nl=False, color=True)
        click.echo()


def check_replace_addresses(replace, state: State) -> None:
    unknown = [address for address in replace if address not in state.resources]
    if unknown:
        raise UserError(
            f"--replace {unknown[0]}: no such address in state; 'provisioner state list' shows the recorded ones."
        )


@click.command(short_help="Print the JSON Schema of a manifest file.")
def schema() -> None:
    """Print the JSON Schema of a manifest file (for editors and CI)."""
    from provisioner.manifest.schema import manifest_schema

    click.echo(json.dumps(manifest_schema(), indent=2, sort_keys=True))
