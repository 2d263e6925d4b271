"""`ferryman`: release, inspect and roll back apps, and run the local stack.

Exit codes of `release` and `rollback`: 0 promoted, 3 rolled back cleanly, 4 not released
now (skipped, a dry run, or deferred to the app's upgrade window), 1 any error; the last
line printed is `outcome: promoted | rolled_back | failed | skipped | deferred`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

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
    from tasks.spec import load_spec, validate_digest, validate_version

    try:  # before anything runs: a bad spec or version is named here, not mid-flow
        load_spec(args.spec)
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
        return_state=True,
    )
    return _finish(state, args.json)


def cmd_rollback(args: argparse.Namespace) -> int:
    from tasks.errors import SpecError
    from tasks.spec import load_spec

    try:
        load_spec(args.spec)
    except SpecError as e:
        return _fail(str(e), args.json)
    from flows.rollback import rollback_release

    state = rollback_release(spec_path=os.path.abspath(args.spec), return_state=True)
    return _finish(state, args.json)


def cmd_status(args: argparse.Namespace) -> int:
    from tasks.errors import FerrymanError
    from tasks.registries import load_auth
    from tasks.spec import load_spec
    from tasks.targets import get_target

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
    print(f"{args.spec}: valid ({spec.app}, {spec.target.kind}, {spec.strategy})")
    return 0


def cmd_webhook(args: argparse.Namespace) -> int:
    from flows import receiver
    from tasks.errors import FerrymanError

    try:
        secret = receiver.read_secret(args.secret_file)
        receiver.serve(args.host, args.port, secret, args.specs)
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
    r.add_argument("--json", action="store_true", help="print one JSON object")
    r.set_defaults(func=cmd_release)

    s = sub.add_parser("status", help="running, stable and previous versions of an app")
    s.add_argument("spec")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_status)

    b = sub.add_parser("rollback", help="restore the previous version and verify it")
    b.add_argument("spec")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_rollback)

    v = sub.add_parser("validate", help="check a release spec and its stack file")
    v.add_argument("spec")
    v.set_defaults(func=cmd_validate)

    w = sub.add_parser("webhook", help="the webhook receiver: serve")
    w.add_argument("action", choices=["serve"])
    w.add_argument("--host", default="127.0.0.1")
    w.add_argument("--port", type=int, default=8470)
    w.add_argument("--specs", default=None, help="folder of release specs (deployments/)")
    w.add_argument("--secret-file", default=None,
                   help="file holding the shared secret (default: $FERRYMAN_WEBHOOK_SECRET)")
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
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
