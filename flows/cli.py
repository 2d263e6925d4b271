"""`ferryman`: release, inspect and roll back apps, and run the local stack.

Exit codes of `release`, `rollback`, `approve`, `abort` and `recover`: 0 promoted (or
nothing to recover), 3 rolled back cleanly (aborts included), 4 not released now (skipped, a
dry run, or deferred to the app's upgrade window), 1 any error; the last line printed is
`outcome: promoted | rolled_back | aborted | failed | skipped | deferred`.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys

from tasks.strategy_kinds import STRATEGY_KINDS

DEFAULT_API_URL = "http://127.0.0.1:4200/api"


def _build_args(pairs: list[str]) -> dict[str, str]:
    from tasks.errors import SpecError

    args = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SpecError(f"--build-arg {pair!r}: expected KEY=VALUE")
        args[key] = value
    return args


def _finish(state, as_json: bool) -> int:
    from tasks.releases import ReleaseResult

    result = state.result(raise_on_failure=False)
    if not isinstance(result, ReleaseResult):
        # The flow crashed before it could write its record (e.g. an invalid spec).
        print(f"error: {result}", file=sys.stderr)
        return _fail(str(result), as_json)
    if as_json:
        print(result.model_dump_json())
    else:
        before = result.previous_version or "nothing"
        print(f"{result.app}: {before} -> {result.version} ({result.strategy})")
        if result.image:
            print(f"image: {result.image}")
        print(f"reason: {result.reason}")
        print(f"took: {result.seconds:.1f}s")
        print(f"outcome: {result.outcome.value}")
    return result.exit_code()


def _fail(message: str, as_json: bool) -> int:
    print(f"error: {message}", file=sys.stderr)
    print(json.dumps({"outcome": "failed", "reason": message}) if as_json else "outcome: failed")
    return 1


def cmd_release(args: argparse.Namespace) -> int:
    from tasks.errors import SpecError
    from tasks.spec import load_spec, validate_digest, validate_version, with_strategy

    try:  # before anything runs: a bad spec or version is named here, not mid-flow
        spec = load_spec(args.spec)
        if args.strategy:
            with_strategy(spec, args.strategy)
        validate_version(args.version)
        if args.digest:
            validate_digest(args.digest)
        build_args = _build_args(args.build_arg)
    except SpecError as e:
        return _fail(str(e), args.json)
    from flows.release import release

    state = release(
        spec_path=os.path.abspath(args.spec), version=args.version, build_args=build_args,
        digest=args.digest or "", dry_run=args.dry_run, ignore_window=args.ignore_window,
        strategy=args.strategy or "", return_state=True,
    )
    return _finish(state, args.json)


def _who(command: str) -> str:
    return f"{getpass.getuser()} with ferryman {command}"


def _spec_or_fail(args: argparse.Namespace):
    from tasks.errors import SpecError
    from tasks.spec import load_spec

    try:
        return load_spec(args.spec)
    except SpecError as e:
        _fail(str(e), getattr(args, "json", False))
        return None


OUTCOME_OF_STATE = {"Completed": "promoted", "RolledBack": "rolled_back",
                    "Aborted": "aborted", "Skipped": "skipped", "Deferred": "deferred"}
"""How a release run's final state name reads as an outcome (`flows.release.final_state`)."""


def _wait_for(run_id, as_json: bool) -> int:
    """Follow another process's release run to its end and print its outcome.

    The run's record stays in that process (results are not persisted), so what is printed
    is what its final state says: the outcome and the reason.
    """
    import time

    from prefect.client.orchestration import get_client

    from flows.tags import app_of_tags
    from tasks.releases import Outcome, ReleaseResult

    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(run_id)
            if run.state is not None and run.state.is_final():
                break
            time.sleep(2)
    outcome = Outcome(OUTCOME_OF_STATE.get(run.state.name, "failed"))
    app = app_of_tags(run.tags) or "?"
    result = ReleaseResult(app=app, version=str((run.parameters or {}).get("version", "?")),
                           strategy="?", outcome=outcome, reason=run.state.message or "")
    if as_json:
        print(result.model_dump_json())
    else:
        print(f"{run.name}: {run.state.name}")
        print(f"reason: {result.reason}")
        print(f"outcome: {outcome.value}")
    return result.exit_code()


def cmd_rollback(args: argparse.Namespace) -> int:
    spec = _spec_or_fail(args)
    if spec is None:
        return 1
    from flows.approval import answer, paused_run_of

    paused = paused_run_of(spec.app)
    if paused is not None:
        # The paused release holds the app's lock; answering it is the rollback.
        print(f"{spec.app}: the paused release {paused.name!r} is told to roll back",
              file=sys.stderr)
        answer(paused.id, "roll back", "rolled back with ferryman rollback", _who("rollback"))
        return _wait_for(paused.id, args.json)
    from flows.rollback import rollback_release

    state = rollback_release(spec_path=os.path.abspath(args.spec), return_state=True)
    return _finish(state, args.json)


def cmd_approve(args: argparse.Namespace) -> int:
    spec = _spec_or_fail(args)
    if spec is None:
        return 1
    from flows.approval import answer, paused_run_of

    paused = paused_run_of(spec.app)
    if paused is None:
        return _fail(f"no release of {spec.app} is waiting for a decision", args.json)
    decision = "roll back" if args.reject else "promote"
    answer(paused.id, decision, args.comment, _who("approve"))
    print(f"{paused.name}: answered {decision!r}; waiting for the release to end",
          file=sys.stderr)
    return _wait_for(paused.id, args.json)


def cmd_abort(args: argparse.Namespace) -> int:
    spec = _spec_or_fail(args)
    if spec is None:
        return 1
    from flows.abort import request_abort
    from flows.approval import answer, paused_run_of
    from flows.recovery import active_release_of

    who = _who("abort")
    run = active_release_of(spec.app)
    if run is None:
        return _fail(f"no release of {spec.app} is running", args.json)
    request_abort(run.id, getpass.getuser())
    if paused_run_of(spec.app) is not None:
        answer(run.id, "roll back", "aborted", who)
    print(f"{run.name}: abort requested; waiting for it to restore {spec.app}",
          file=sys.stderr)
    return _wait_for(run.id, args.json)


def cmd_recover(args: argparse.Namespace) -> int:
    spec = _spec_or_fail(args)
    if spec is None:
        return 1
    from flows.recovery import recover_app

    state = recover_app(spec_path=os.path.abspath(args.spec), return_state=True)
    return _finish(state, args.json)


def cmd_status(args: argparse.Namespace) -> int:
    from tasks.errors import FerrymanError
    from tasks.platforms import get_target
    from tasks.registries import load_auth
    from tasks.spec import load_spec

    try:
        spec = load_spec(args.spec)
        status = get_target(spec, load_auth(spec.registry)).status()
    except FerrymanError as e:
        return _fail(str(e), args.json)
    data = {
        "app": spec.app,
        "deployed": status.exists,
        "running": status.current.version if status.current else None,
        "running_image": status.current.image if status.current else None,
        "stable": status.stable.version if status.stable else None,
        "previous": status.previous.version if status.previous else None,
        "replicas": f"{status.running_replicas}/{status.desired_replicas}",
        "update_state": status.update_state,
        "beside_it": {w.role.value: f"{w.version.version if w.version else '?'} "
                      f"{w.ready}/{w.desired}" + (" on the app's address"
                                                  if w.on_app_address else "")
                      for w in status.workloads if w.role.value != "stable"} or None,
        "release_in_flight": (f"{status.in_flight.version} (run {status.in_flight.run_id}, "
                              f"since {status.in_flight.started})"
                              if status.in_flight else None),
    }
    if args.json:
        print(json.dumps(data))
    else:
        for key, value in data.items():
            print(f"{key}: {value if value is not None else '-'}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from tasks.errors import SpecError
    from tasks.spec import load_spec

    try:
        spec = load_spec(args.spec)
    except SpecError as e:
        print(e, file=sys.stderr)
        return 1
    print(f"{args.spec}: valid ({spec.app}, {spec.target.kind}, {spec.strategy.kind})")
    return 0


def cmd_webhook(args: argparse.Namespace) -> int:
    from flows import receiver
    from tasks.errors import FerrymanError

    try:
        secret, dockerhub_token = receiver.read_secrets(args.secret_file,
                                                        args.dockerhub_token_file)
        receiver.serve(args.host, args.port, secret, args.specs, dockerhub_token)
    except FerrymanError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def cmd_stack(args: argparse.Namespace) -> int:
    from devstack import stack
    from tasks.errors import StackError

    try:
        if args.action == "up":
            stack.up(kubernetes=args.kubernetes)
        elif args.action == "down":
            stack.down(purge=args.purge)
        else:
            return 0 if stack.status() else 1
    except StackError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ferryman", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("release", help="build, push, deploy, verify, promote or roll back")
    r.add_argument("spec", help="release spec, e.g. deployments/demo/release.yaml")
    r.add_argument("--version", required=True, help="version to release (the image tag)")
    r.add_argument("--build-arg", action="append", default=[], metavar="KEY=VALUE")
    r.add_argument("--digest", help="release this image from the registry instead of building")
    r.add_argument("--dry-run", action="store_true", help="check everything, change nothing")
    r.add_argument("--ignore-window", action="store_true",
                   help="release now even outside the app's upgrade window")
    r.add_argument("--strategy", choices=STRATEGY_KINDS,
                   help="instead of the spec's (with that kind's defaults if the spec "
                        "has no settings for it)")
    r.add_argument("--json", action="store_true", help="print one JSON object")
    r.set_defaults(func=cmd_release)

    s = sub.add_parser("status", help="running, stable and previous versions of an app")
    s.add_argument("spec")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_status)

    b = sub.add_parser("rollback", help="restore the previous version and verify it "
                       "(a paused release is told to roll back)")
    b.add_argument("spec")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_rollback)

    a = sub.add_parser("approve", help="answer a release that waits for a person")
    a.add_argument("spec")
    a.add_argument("--reject", action="store_true", help="roll back instead of going on")
    a.add_argument("--comment", default="", help="why; it goes into the release report")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_approve)

    x = sub.add_parser("abort", help="stop the app's running release and restore its "
                       "stable version")
    x.add_argument("spec")
    x.add_argument("--json", action="store_true")
    x.set_defaults(func=cmd_abort)

    c = sub.add_parser("recover", help="restore the stable version an interrupted release "
                       "left unjudged, and verify it")
    c.add_argument("spec")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_recover)

    v = sub.add_parser("validate", help="check a release spec and its stack file")
    v.add_argument("spec")
    v.set_defaults(func=cmd_validate)

    w = sub.add_parser("webhook", help="the webhook receiver: serve")
    w.add_argument("action", choices=["serve"])
    w.add_argument("--host", default="127.0.0.1")
    w.add_argument("--port", type=int, default=8470)
    w.add_argument("--specs", default=None, help="folder of release specs (deployments/)")
    w.add_argument("--secret-file", default=None,
                   help="file holding the secret of the senders that send headers "
                        "(distribution, ECR): bearer token and HMAC key "
                        "(default: $FERRYMAN_WEBHOOK_SECRET)")
    w.add_argument("--dockerhub-token-file", default=None,
                   help="file holding the token Docker Hub sends in the URL (?token=), "
                        "another value than the secret; /hooks/dockerhub is off without one "
                        "(default: $FERRYMAN_DOCKERHUB_TOKEN)")
    w.set_defaults(func=cmd_webhook)

    k = sub.add_parser("stack", help="the local stack: up | status | down")
    k.add_argument("action", choices=["up", "status", "down"])
    k.add_argument("--purge", action="store_true", help="with down: delete the data too")
    k.add_argument("--kubernetes", action="store_true",
                   help="with up: also the single-node Kubernetes test bed")
    k.set_defaults(func=cmd_stack)
    return p


def main(argv: list[str] | None = None) -> int:
    # Before Prefect is imported: runs go to the local stack's server unless told otherwise.
    os.environ.setdefault("PREFECT_API_URL", DEFAULT_API_URL)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # A release run says it is alive every 30 s (Prefect's default is 180): recovery and the
    # stack's automation take 90 s of silence for a dead process.
    os.environ.setdefault("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "30")
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
