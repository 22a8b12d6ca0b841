"""`python -m rec_models`: the pipeline for people without Airflow, and the local stack commands."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import datetime, timedelta, timezone

from rec_models.stack.celery_workers import EXECUTORS
from rec_models.config import PipelineConfig, param_specs
from rec_models.names import FALLBACKS, MODEL_NAMES


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("pgserver", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _parse_end(value: str | None) -> datetime:
    from rec_models.data.synthetic import default_end

    if not value:
        return default_end()
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def config_from_params(pairs: list[str]) -> PipelineConfig:
    """The run's settings from repeated ``--param KEY=VALUE`` (the DAG's params, by the same names)."""
    params = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"--param expects KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        params[key] = value
    return PipelineConfig.from_params(params)


def params_table() -> str:
    """Every operator param as a Markdown table: the README's copy is this output."""
    lines = ["| param | default | allowed | meaning |", "| --- | --- | --- | --- |"]
    for key, spec in param_specs().items():
        default = str(spec.default).lower() if isinstance(spec.default, bool) else spec.default
        lines.append(f"| `{key}` | {default} | {spec.bounds_text()} | {spec.description} |")
    return "\n".join(lines)


def cmd_migrate(args) -> None:
    from rec_models.db import resolve_database_url
    from rec_models.db.migrate import apply_migrations

    applied = apply_migrations(resolve_database_url())
    print(f"applied: {', '.join(applied)}" if applied else "schema up to date")


def cmd_seed_demo(args) -> None:
    from rec_models.data.seed import seed_world
    from rec_models.data.synthetic import WorldSpec, generate_world
    from rec_models.db import connect, resolve_database_url
    from rec_models.db.migrate import apply_migrations

    url = resolve_database_url()
    apply_migrations(url)
    spec = WorldSpec(n_users=args.users, n_videos=args.videos, n_views=args.views,
                     n_domain_visits=args.domain_visits, seed=args.seed).at_noise(args.noise)
    if args.days is not None:
        _seed_days(url, spec, args)
        return
    world = generate_world(spec, _parse_end(args.end))
    with connect(url) as conn:
        loaded = seed_world(conn, world, replace_foreign=args.replace)
    print("seeded the demo world" if loaded else "demo world already seeded (same spec and end): nothing to do")


def _seed_days(url: str, spec, args) -> None:
    """The evolving world: its warm-up and nights 1..--days, appended (days already there are kept)."""
    from rec_models.data.evolving import EvolvingSpec, generate_evolving, last_night_end, scripted_bad_nights
    from rec_models.data.seed import seed_days
    from rec_models.db import connect

    nights = args.nights or max(args.days, 14)
    last_end = _parse_end(args.end) if args.end else last_night_end(datetime.now(timezone.utc))
    ew = generate_evolving(EvolvingSpec(world=spec, nights=nights, bad_nights=scripted_bad_nights(nights)), last_end)
    with connect(url) as conn:
        written = seed_days(conn, ew, args.days, replace_foreign=args.replace)
    print(f"seeded days {', '.join(map(str, written))}" if written else f"days 0..{args.days} already seeded")
    for night in range(1, args.days + 1):
        kind = ew.spec.bad_night(night)
        print(f"night {night}: --end {ew.night_end(night).isoformat()}" + (f"  (scripted: {kind})" if kind else ""))


def _run(args):
    from rec_models.db import resolve_database_url
    from rec_models.run import Run

    end = _parse_end(args.end)
    config = config_from_params(args.param)
    return Run(database_url=resolve_database_url(), interval_end=end, interval_start=end - timedelta(days=1),
               dag_run_id=f"cli__{end.isoformat()}", config=config)


def cmd_run(args) -> None:
    """The whole nightly run in this process, in DAG order."""
    from rec_models import pipeline

    print(pipeline.run_all(_run(args)))


def cmd_train(args) -> None:
    """Train (and evaluate: the gate needs it) one model for one data interval."""
    from rec_models import pipeline

    run = _run(args)
    if not run.files.has_snapshot():
        pipeline.migrate(run)
        pipeline.validate(run)
        pipeline.extract(run)
        pipeline.train(run, FALLBACKS)
    print(pipeline.train(run, args.model))
    print(pipeline.evaluate(run, args.model))


def _evaluation(run, model: str) -> dict:
    evaluation = run.files.read_evaluation(model)
    if evaluation is None:
        raise ValueError(f"model {model} has not been trained for {run.run_key}: run `train --model {model}` first")
    return evaluation


def _evaluations(run, model: str) -> list[dict]:
    """Every evaluation the night's folder holds (``model``'s required): the publish plan reads them all."""
    _evaluation(run, model)
    return [e for e in (run.files.read_evaluation(name) for name in MODEL_NAMES) if e is not None]


def cmd_score(args) -> None:
    from rec_models import pipeline

    run = _run(args)
    print(pipeline.score(run, args.model, _evaluations(run, args.model)))


def cmd_publish(args) -> None:
    from rec_models import pipeline

    run = _run(args)
    evaluations = _evaluations(run, args.model)
    print(pipeline.publish(run, args.model, evaluations))
    if args.serve:
        print(pipeline.choose_serving(run, evaluations))


def cmd_rollback(args) -> None:
    from rec_models.db import connect, resolve_database_url
    from rec_models.db.rollback import rollback

    with connect(resolve_database_url()) as conn:
        run_id = rollback(conn, args.model, args.to)
    print(f"serving model run {run_id} ({args.model}) now")


def cmd_forget(args) -> None:
    """File erasure requests (ids, and/or a CSV whose first column is user ids); --now carries them out here."""
    from rec_models import pipeline

    users = list(args.user)
    if args.csv:
        users += _user_ids_from_csv(args.csv)
    if not users:
        raise ValueError("forget: name people with --user ID or --csv FILE")
    run = _run(args)
    pipeline.migrate(run)
    filed = pipeline.file_requests(run, users, requested_by=args.requested_by)
    print(f"filed {filed} erasure requests ({len(set(users)) - filed} already open)")
    if args.now:
        print(pipeline.erase(run, nightly=False))
    else:
        print("the next night (or the DAG erase_personal_data) carries them out")


def _user_ids_from_csv(path: str) -> list[int]:
    """User ids from a CSV's first column (a header row is skipped); a bad value names its line."""
    import csv

    ids = []
    with open(path, newline="") as f:
        for line, row in enumerate(csv.reader(f), start=1):
            if not row or not row[0].strip():
                continue
            try:
                ids.append(int(row[0]))
            except ValueError:
                if line == 1:
                    continue  # a header
                raise ValueError(f"{path} line {line}: user id {row[0]!r} is not an integer") from None
    return ids


def cmd_report(args) -> None:
    from rec_models.db import connect, resolve_database_url
    from rec_models.report import demo_report

    with connect(resolve_database_url()) as conn:
        print(demo_report(conn))


def cmd_demo(args) -> None:
    """migrate, seed, run the DAG once with `airflow dags test`, print the report."""
    from rec_models.stack import devstack

    cmd_seed_demo(args)
    end = _parse_end(args.end)
    env = devstack.airflow_env()
    print("preparing the Airflow metadata database ...", flush=True)
    devstack.migrate_metadata(env)
    # A manual run's data interval is the cron interval ending at its logical date.
    logical_date = end.isoformat()
    print(f"running DAG nightly_recommendations for the interval ending {end.isoformat()} ...", flush=True)
    log_file = devstack.AIRFLOW_HOME / "demo-dags-test.log"
    # No deadline alert in `airflow dags test`: Airflow 3.3.2's in-process run fails on one once it succeeds.
    env = {**env, "RECS_PUBLISH_DEADLINE_MINUTES": "0"}
    with open(log_file, "w") as log:
        result = devstack.airflow(["dags", "test", "nightly_recommendations", logical_date], env,
                                  stdout=log, stderr= __import__("subprocess").STDOUT)
    if result.returncode != 0:
        print(open(log_file).read()[-6000:])
        raise SystemExit(f"the DAG run failed (exit {result.returncode}); full log: {log_file}")
    print(f"DAG run finished; task logs: {log_file}")
    cmd_report(args)


def cmd_airflow(args) -> None:
    from rec_models.stack import devstack

    devstack.start_airflow(args.executor, args.workers)


def cmd_stop(args) -> None:
    from rec_models.stack import devstack
    from rec_models.db.embedded import stop_embedded_server

    devstack.stop_airflow()
    if not os.environ.get("DATABASE_URL") and stop_embedded_server():
        print("stopped the embedded PostgreSQL")


def build_parser() -> argparse.ArgumentParser:
    from rec_models.data.synthetic import NOISE_LEVELS

    parser = argparse.ArgumentParser(prog="python -m rec_models", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("migrate", help="apply the SQL migrations").set_defaults(func=cmd_migrate)

    def world_args(p):
        p.add_argument("--users", type=int, default=3000)
        p.add_argument("--videos", type=int, default=600)
        p.add_argument("--views", type=int, default=60_000)
        p.add_argument("--domain-visits", type=int, default=90_000)
        p.add_argument("--seed", type=int, default=7)
        p.add_argument("--noise", choices=list(NOISE_LEVELS), default="clean",
                       help="noise level: clean, or noisy (hub domains, overlapping words, wrong tags, drift)")
        p.add_argument("--end", help="data interval end (ISO 8601, UTC if no zone); default: the latest 02:00 UTC")
        p.add_argument("--replace", action="store_true", help="overwrite source tables not written by the seeder")

    seed = sub.add_parser("seed-demo", help="write the synthetic video service into the source tables")
    world_args(seed)
    seed.add_argument("--days", type=int, help="an evolving world instead: its warm-up plus nights 1..DAYS, appended "
                                               "idempotently (--end: the LAST night's interval end)")
    seed.add_argument("--nights", type=int, help="with --days: nights in the evolving world (default: 14 or DAYS)")
    seed.set_defaults(func=cmd_seed_demo)

    run = sub.add_parser("run", help="run the whole nightly pipeline in this process (no Airflow)")
    run.add_argument("--end", help="data interval end; default: the latest 02:00 UTC")
    run.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="pipeline param, repeatable")
    run.set_defaults(func=cmd_run)

    def step(name: str, func, help_text: str):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--model", required=True, choices=MODEL_NAMES)
        p.add_argument("--end", help="data interval end; default: the latest 02:00 UTC")
        p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
        p.set_defaults(func=func)
        return p

    step("train", cmd_train, "validate, extract (if not yet done for this interval), train and evaluate one model")
    step("score", cmd_score, "top-N similar videos and user lists of one trained model, to files")
    step("publish", cmd_publish, "stage, audit and attach one model's scored run").add_argument(
        "--serve", action="store_true", help="also point the _current views at it")
    rollback = sub.add_parser("rollback", help="serve an earlier published run again, atomically")
    rollback.add_argument("--model", required=True, choices=MODEL_NAMES)
    rollback.add_argument("--to", type=int, help="model run id (default: the previous published run of the model)")
    rollback.set_defaults(func=cmd_rollback)
    forget = sub.add_parser("forget", help="file erasure requests: people removed from every place the product "
                                           "owns and never read or published again")
    forget.add_argument("--user", type=int, action="append", default=[], metavar="ID", help="user id, repeatable")
    forget.add_argument("--csv", help="a CSV file whose first column holds user ids (bulk)")
    forget.add_argument("--requested-by", help="who asked (recorded with each request; default: the database user)")
    forget.add_argument("--now", action="store_true", help="carry out every open request now, in this process")
    forget.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="pipeline param (the run root comes from RECS_RUN_ROOT)")
    forget.set_defaults(func=cmd_forget, end=None)
    sub.add_parser("report", help="print what the published run contains").set_defaults(func=cmd_report)
    sub.add_parser("params", help="every --param key (the DAG's params): default, bounds, meaning").set_defaults(
        func=lambda args: print(params_table()))

    demo = sub.add_parser("demo", help="seed, run the DAG once with airflow dags test, print the report")
    world_args(demo)
    demo.set_defaults(func=cmd_demo, days=None, nights=None)  # the one-shot world, never the evolving one

    stack = sub.add_parser("airflow", help="start the Airflow UI and scheduler")
    stack.add_argument("--executor", choices=EXECUTORS, default="local",
                       help="local: the LocalExecutor; celery: a Redis broker and Celery workers (Debian's redis-server)")
    stack.add_argument("--workers", type=int, default=2, help="Celery workers, one task at a time each")
    stack.set_defaults(func=cmd_airflow)
    sub.add_parser("stop", help="stop Airflow and the embedded PostgreSQL").set_defaults(func=cmd_stop)

    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        args.func(args)
    except (ValueError, RuntimeError) as exc:
        logging.getLogger("rec_models").debug("failed", exc_info=True)
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
