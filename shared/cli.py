"""`monidctl`: the operator's command line.

    monidctl up [--workers N] [--no-flower]
    monidctl migrate
    monidctl flower
    monidctl keys create --user USER [--label NAME] [--test] [--budget 0.50 --period DAY]
    monidctl keys list --user USER
    monidctl keys revoke KEY_ID_OR_KEY
    monidctl controls budget create --user USER --period DAY --limit 5.00
    monidctl controls budget set ID [--limit 10.00] [--status ACTIVE|PAUSED]
    monidctl controls run-cap create --user USER --limit 1.00
    monidctl controls run-cap set ID [--limit 2.00] [--status ACTIVE|PAUSED]
    monidctl wallet credit --user USER --amount 10.00
    monidctl wallet show --user USER
    monidctl users set --user USER [--username NAME] [--email E] [--workspace-name N] ...
    monidctl users show --user USER
    monidctl mcp
    monidctl catalog check [--dir DIR]
    monidctl catalog sync [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import psycopg
from psycopg_pool import ConnectionPool

from shared import accounts, controls, keys, store
from shared.catalog import Catalog, CatalogError, load_catalog
from shared.db import DatabaseUnavailable, make_pool, migrate, transaction
from shared.embedded import EmbeddedUnavailable
from shared.errors import ServiceError
from shared.money import MICROS_PER_DOLLAR, format_usd, parse_usd
from shared.settings import SettingsError, load_catalog_dir, load_database_url
from shared.store import controls as controls_store
from shared.store.catalog import sync_catalog
from shared.timefmt import iso

USER_PATTERN = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")
MAX_CREDIT_MICROS = 1_000_000 * MICROS_PER_DOLLAR
MAX_ENTRIES = 1000


class CommandError(Exception):
    """A clear message for the operator; exit code 1."""


def _user(value: str) -> str:
    if value.startswith("USER#"):
        value = value[len("USER#"):]
    if not USER_PATTERN.fullmatch(value):
        raise argparse.ArgumentTypeError(
            "a user ID is 1-128 letters, digits or _ . : @ - (e.g. user_abc123)")
    return value


def _database_url() -> str:
    """DATABASE_URL, or the embedded database `monidctl up` keeps in ./.monid."""
    try:
        url = load_database_url()
    except SettingsError as exc:
        print(f"monid: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if url:
        return url
    local = Path.cwd() / ".monid" / "postgres"
    if local.is_dir():
        from shared.embedded import start_postgres

        return start_postgres(local).database_url("monid")
    print("monid: configuration error: DATABASE_URL is not set: expected a postgresql:// URL "
          "(or run `monidctl up` here first, for an embedded database in .monid/)",
          file=sys.stderr)
    raise SystemExit(2)


def _catalog_dir(given: Path | None = None) -> Path:
    if given is not None:
        return given
    try:
        return load_catalog_dir()
    except SettingsError as exc:
        print(f"monid: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_migrate(args: argparse.Namespace) -> None:
    directory = _catalog_dir()
    catalog = load_catalog(directory)  # a broken catalog fails before any change
    applied = migrate(_database_url())
    for migration in applied:
        print(f"applied {migration.version:04d}_{migration.name}")
    print(f"database is up to date ({len(applied)} migration(s) applied now)")
    _sync_catalog(catalog, directory)


def _with_conn(action: str) -> ConnectionPool:
    pool = make_pool(_database_url(), min_size=1, max_size=1, name=f"monidctl-{action}")
    pool.open(wait=True, timeout=10)
    return pool


def cmd_keys_create(args: argparse.Namespace) -> None:
    if (args.budget is None) != (args.period is None):
        raise CommandError("a key's own budget needs both --budget and --period")
    if args.label is not None and (problem := keys.label_problem(args.label)) is not None:
        raise CommandError(f"--label {problem}")
    key = keys.generate_key(test=args.test)
    pool = _with_conn("keys")
    budget = None
    try:
        with transaction(pool) as conn:
            created = store.insert_api_key(
                conn, user_id=args.user, label=args.label, mode="test" if args.test else "live",
                key_prefix=keys.display_prefix(key), key_hash=keys.hash_key(key))
            if created is None:
                raise CommandError(f"{args.user} already has a key labelled {args.label!r}: "
                                   "choose another label, or revoke that key first")
            accounts.ensure_account(conn, args.user)
        if args.budget is not None:
            budget = controls.create_budget(pool, created.caller, period=args.period,
                                            limit_micros=args.budget, api_key_id=created.id)
    finally:
        pool.close()
    if budget is not None:
        print(f"key budget {budget.id}: this key may spend at most {_usd(budget.limit_micros)} "
              f"a {budget.period} (UTC)")
    print(f"created key {created.id} for {created.caller} ({created.label})"
          + "; it is shown only now, so keep it:")
    print(key)


def cmd_keys_list(args: argparse.Namespace) -> None:
    pool = _with_conn("keys")
    try:
        with transaction(pool) as conn:
            found = store.list_api_keys(conn, args.user)
            known = bool(found) or store.user_known(conn, args.user)
    finally:
        pool.close()
    if not known:
        raise CommandError(_unknown_user(args.user))
    if not found:
        print(f"no keys for USER#{args.user}")
        return
    print(f"{'ID':>6}  {'KEY':<20}  {'MODE':<4}  {'CREATED':<24}  {'REVOKED':<24}  LABEL")
    for k in found:
        print(f"{k.id:>6}  {k.key_prefix + '...':<20}  {k.mode:<4}  {iso(k.created_at):<24}  "
              f"{iso(k.revoked_at) or '-':<24}  {k.label or ''}")


def _unknown_user(user: str) -> str:
    return (f"no user {user}: it has no key and no wallet here (make its first key with "
            f"`monidctl keys create --user {user}`)")


def cmd_keys_revoke(args: argparse.Namespace) -> None:
    target: str = args.key
    owner = f" of USER#{args.user}" if args.user else ""
    pool = _with_conn("keys")
    try:
        with transaction(pool) as conn:
            if target.isdigit():
                key_id = int(target)
            elif keys.key_mode(target):
                found = store.find_api_key(conn, keys.hash_key(target))
                if found is None:
                    raise CommandError(
                        "no such key here: it was not made on this database (check "
                        "DATABASE_URL), or it is mistyped; `monidctl keys list --user USER` "
                        "shows a user's keys by ID")
                key_id = found.id
            else:
                raise CommandError("give the key's ID (from 'keys list') or the whole key "
                                   "(monid_live_... or monid_test_...)")
            revoked = store.revoke_api_key(conn, key_id, args.user)
    finally:
        pool.close()
    if revoked is None:
        raise CommandError(f"no key with ID {target}{owner}; `monidctl keys list --user USER` "
                           "shows a user's keys and their IDs")
    print(f"revoked key {revoked.id} ({revoked.key_prefix}...) of {revoked.caller}; web "
          "processes refuse it within API_KEY_CACHE_SECONDS (2 s by default)")


def _amount(value: str) -> int:
    try:
        micros = parse_usd(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an amount in USD: digits with at most 6 after the point, "
            "e.g. 10.00") from None
    if micros <= 0:
        raise argparse.ArgumentTypeError("the amount must be more than 0 USD")
    if micros > MAX_CREDIT_MICROS:
        raise argparse.ArgumentTypeError(
            f"at most {format_usd(MAX_CREDIT_MICROS)} USD at once")
    return micros


def _limit(value: str) -> int:
    try:
        micros = parse_usd(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an amount in USD: digits with at most 6 after the point, "
            "e.g. 5.00") from None
    if micros > controls.MAX_LIMIT_MICROS:
        raise argparse.ArgumentTypeError(
            f"at most {format_usd(controls.MAX_LIMIT_MICROS)} USD")
    return micros


def _known_caller(pool: ConnectionPool, user: str) -> str:
    with transaction(pool) as conn:
        if not store.user_known(conn, user):
            raise CommandError(_unknown_user(user))
    return f"USER#{user}"


def cmd_budget_create(args: argparse.Namespace) -> None:
    pool = _with_conn("controls")
    try:
        budget = controls.create_budget(pool, _known_caller(pool, args.user),
                                        period=args.period, limit_micros=args.limit)
    finally:
        pool.close()
    print(f"budget for {budget.caller}: at most {_usd(budget.limit_micros)} a {budget.period} "
          f"(UTC), from the next run on; its ID:")
    print(budget.id)


def cmd_budget_set(args: argparse.Namespace) -> None:
    pool = _with_conn("controls")
    try:
        with transaction(pool) as conn:
            caller = controls_store.find_control_owner(conn, args.id)
        if caller is None:
            raise CommandError(f"no budget {args.id}")
        budget = controls.update_budget(pool, caller, args.id,
                                        limit_micros=args.limit, status=args.status)
    finally:
        pool.close()
    print(f"budget {budget.id} of {budget.caller}: {budget.status}, at most "
          f"{_usd(budget.limit_micros)} a {budget.period}; spent {_usd(budget.spent_micros)}, "
          f"held {_usd(budget.held_micros)}, available {_usd(budget.available_micros)}")
    print(budget.id)


def cmd_run_cap_create(args: argparse.Namespace) -> None:
    pool = _with_conn("controls")
    try:
        cap = controls.create_run_cap(pool, _known_caller(pool, args.user),
                                      limit_micros=args.limit)
    finally:
        pool.close()
    print(f"run cap for {cap.caller}: no run may hold more than {_usd(cap.limit_micros)}, "
          "from the next run on; its ID:")
    print(cap.id)


def cmd_run_cap_set(args: argparse.Namespace) -> None:
    pool = _with_conn("controls")
    try:
        with transaction(pool) as conn:
            caller = controls_store.find_control_owner(conn, args.id)
        if caller is None:
            raise CommandError(f"no run cap {args.id}")
        cap = controls.update_run_cap(pool, caller, args.id,
                                      limit_micros=args.limit, status=args.status)
    finally:
        pool.close()
    print(f"run cap {cap.id} of {cap.caller}: {cap.status}, at most {_usd(cap.limit_micros)} "
          "a run")
    print(cap.id)


def _entries(value: str) -> int:
    try:
        count = int(value)
    except ValueError:
        count = -1
    if not 0 <= count <= MAX_ENTRIES:
        raise argparse.ArgumentTypeError(f"a number of entries from 0 to {MAX_ENTRIES}")
    return count


def _usd(micros: int) -> str:
    return f"{format_usd(micros)} USD"


def cmd_wallet_credit(args: argparse.Namespace) -> None:
    caller = f"USER#{args.user}"
    pool = _with_conn("wallet")
    try:
        with transaction(pool) as conn:
            if not store.user_known(conn, args.user):
                raise CommandError(_unknown_user(args.user))
            wallet = store.credit_wallet(conn, caller, args.amount, args.note)
    finally:
        pool.close()
    print(f"credited {_usd(args.amount)} to {caller}")
    print(f"balance {_usd(wallet.balance_micros)}, held {_usd(wallet.held_micros)}, "
          f"available {_usd(wallet.available_micros)}")


def cmd_wallet_show(args: argparse.Namespace) -> None:
    caller = f"USER#{args.user}"
    pool = _with_conn("wallet")
    try:
        with transaction(pool) as conn:
            if not store.user_known(conn, args.user):
                raise CommandError(_unknown_user(args.user))
            wallet = store.get_wallet(conn, caller)
            entries = store.list_ledger_entries(conn, caller, args.entries)
    finally:
        pool.close()
    print(f"{caller}: balance {_usd(wallet.balance_micros)}, held {_usd(wallet.held_micros)}, "
          f"available {_usd(wallet.available_micros)}")
    if entries:
        print(f"{'ENTRY':>8}  {'WHEN':<24}  {'KIND':<7}  {'AMOUNT (USD)':>16}  RUN / NOTE")
    for e in entries:
        print(f"{e.id:>8}  {iso(e.created_at):<24}  {e.kind:<7}  "
              f"{format_usd(e.amount_micros):>16}  {e.run_id or e.note or ''}")


def _print_account(account: accounts.Account) -> None:
    user, workspace = account.user, account.workspace
    print(f"user {user.user_id}: {user.username}" + (f" <{user.email}>" if user.email else "")
          + (f" {json.dumps(user.metadata)}" if user.metadata else ""))
    print(f"workspace {workspace.workspace_id}: {workspace.name} (slug {workspace.slug})"
          + (f" {json.dumps(workspace.metadata)}" if workspace.metadata else ""))


def cmd_users_set(args: argparse.Namespace) -> None:
    pool = _with_conn("users")
    try:
        with transaction(pool) as conn:
            if not store.user_known(conn, args.user):
                raise CommandError(_unknown_user(args.user))
            try:
                account = accounts.update_account(
                    conn, args.user, username=args.username, email=args.email or None,
                    clear_email=args.email == "", metadata=args.metadata,
                    workspace_name=args.workspace_name, workspace_slug=args.workspace_slug,
                    workspace_metadata=args.workspace_metadata)
            except psycopg.errors.UniqueViolation:
                raise CommandError(f"another workspace has the slug {args.workspace_slug}; "
                                   "choose another") from None
    finally:
        pool.close()
    _print_account(account)


def cmd_users_show(args: argparse.Namespace) -> None:
    pool = _with_conn("users")
    try:
        with transaction(pool) as conn:
            if not store.user_known(conn, args.user):
                raise CommandError(_unknown_user(args.user))
            account = accounts.ensure_account(conn, args.user)
    finally:
        pool.close()
    _print_account(account)


def cmd_mcp(args: argparse.Namespace) -> None:
    from shared.mcp_stdio import run_stdio

    raise SystemExit(run_stdio())


def _text(limit: int) -> Callable[[str], str]:
    def check(value: str) -> str:
        if not value.strip() or len(value) > limit or not value.isprintable():
            raise argparse.ArgumentTypeError(f"1-{limit} printable characters")
        return value
    return check


def _email(value: str) -> str:
    if value and not re.fullmatch(r"[^@\s]{1,64}@[^@\s]{1,189}", value):
        raise argparse.ArgumentTypeError("an e-mail address, or \"\" to forget it")
    return value


def _slug(value: str) -> str:
    if not accounts.SLUG_PATTERN.fullmatch(value):
        raise argparse.ArgumentTypeError("1-63 lower-case letters, digits or dashes, starting "
                                         "with a letter or digit")
    return value


def _metadata(value: str) -> dict[str, object]:
    try:
        found = json.loads(value)
    except ValueError:
        found = None
    if not isinstance(found, dict) or len(value) > 4096:
        raise argparse.ArgumentTypeError("a JSON object of at most 4096 characters")
    return found


def cmd_catalog_check(args: argparse.Namespace) -> None:
    directory = _catalog_dir(args.dir)
    catalog = load_catalog(directory)
    for endpoint in catalog.all():
        print(f"{endpoint.provider:<12} {endpoint.path:<40} {endpoint.price.type:<10} "
              f"{endpoint.adapter}")
    print(f"catalog {directory} is valid: {len(catalog.provider_names)} provider(s), "
          f"{len(catalog.endpoints)} endpoint(s)")


def _sync_catalog(catalog: Catalog, directory: Path) -> None:
    pool = _with_conn("catalog")
    try:
        with transaction(pool) as conn:
            report = sync_catalog(conn, catalog)
    finally:
        pool.close()
    print(f"catalog {directory} synced: {report}")


def cmd_catalog_sync(args: argparse.Namespace) -> None:
    directory = _catalog_dir(args.dir)
    _sync_catalog(load_catalog(directory), directory)


def cmd_flower(args: argparse.Namespace) -> None:
    from shared.localrun import FLOWER_USER, flower_login

    env, password = flower_login()
    if password:
        print(f"Flower login: user {FLOWER_USER}, password {password} (shown only now)",
              flush=True)
    argv = [sys.executable, "-m", "worker.flower", *args.flower_args]
    os.execve(sys.executable, argv, {**os.environ, **env})


def cmd_up(args: argparse.Namespace) -> None:
    from shared.localrun import run_local

    code = run_local(workers=args.workers, flower=not args.no_flower)
    if code:
        raise SystemExit(code)


def _command(group: argparse._SubParsersAction[argparse.ArgumentParser], name: str,
             summary: str, details: str = "") -> argparse.ArgumentParser:
    """A subcommand: `summary` in its parent's list, and with `details` on its own --help."""
    return group.add_parser(name, help=summary, description=summary[0].upper() + summary[1:]
                            + "." + (f" {details}" if details else ""))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="monidctl", description="Operate a monid-runs backend. Commands that use the "
        "database read DATABASE_URL, or find the embedded one `monidctl up` keeps in ./.monid.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _command(commands, "migrate", "apply the database migrations not yet applied, then "
                 "sync the catalog", "Safe to run twice, and from two places at once. Needs "
                 "only the database (DATABASE_URL, or ./.monid) and reads CATALOG_DIR.")
    p.set_defaults(func=cmd_migrate)

    p = _command(commands, "up", "run everything here until Ctrl-C",
                 "Web, worker(s) with the sweeper, and Flower; with DATABASE_URL and REDIS_URL "
                 "unset, an embedded PostgreSQL and Redis (the `local` extra) with their data "
                 "in ./.monid. One `up` per folder; logs in ./.monid/logs.")
    p.add_argument("--workers", type=int, default=1, choices=range(1, 9), metavar="N",
                   help="worker processes to start (1-8, default 1)")
    p.add_argument("--no-flower", action="store_true", help="do not start Flower")
    p.set_defaults(func=cmd_up)

    p = _command(commands, "flower", "run Flower on this machine, on 127.0.0.1",
                 "It needs only REDIS_URL (and REDIS_SSL_CERT_REQS for a platform's TLS Redis), "
                 "so it can watch a deployment whose platform gives HTTP to `web` alone. It "
                 "listens on FLOWER_PORT (5555) and asks for FLOWER_BASIC_AUTH's login, or a "
                 "password made now and printed once.")
    p.add_argument("flower_args", nargs=argparse.REMAINDER,
                   help="Flower's own options, passed on (e.g. --max_tasks=50000)")
    p.set_defaults(func=cmd_flower)

    keys_parser = _command(commands, "keys", "make, list and revoke API keys")
    key_commands = keys_parser.add_subparsers(dest="keys_command", required=True,
                                              metavar="COMMAND")
    p = _command(key_commands, "create", "make a key; it is printed on the last line",
                 "Only its hash is stored: the key is shown this once.")
    p.add_argument("--user", required=True, type=_user, help="the user ID, e.g. user_abc123")
    p.add_argument("--label", help="a name to recognise the key by, unique among the user's "
                                  "live keys (1-64 of A-Za-z0-9._:@-; default key-<id>)")
    p.add_argument("--test", action="store_true", help="make a monid_test_ key")
    p.add_argument("--budget", type=_limit, help="the key's own budget in USD (with --period): "
                   "what it may spend at most, whatever the workspace's budgets allow")
    p.add_argument("--period", choices=controls.PERIODS, help="the window of --budget (UTC)")
    p.set_defaults(func=cmd_keys_create)
    p = _command(key_commands, "list", "list a user's keys (never the secrets)")
    p.add_argument("--user", required=True, type=_user, help="the user ID")
    p.set_defaults(func=cmd_keys_list)
    p = _command(key_commands, "revoke", "revoke a key by its ID or the key itself",
                 "Web processes refuse it within API_KEY_CACHE_SECONDS.")
    p.add_argument("key", help="the key's ID (from 'keys list') or the whole key")
    p.add_argument("--user", type=_user, help="only revoke if the key is this user's")
    p.set_defaults(func=cmd_keys_revoke)

    wallet_parser = _command(commands, "wallet", "credit and read prepaid wallets")
    wallet_commands = wallet_parser.add_subparsers(dest="wallet_command", required=True,
                                                   metavar="COMMAND")
    p = _command(wallet_commands, "credit", "add funds to a user's wallet; prints the new "
                 "balance", "The user must have a key (or a wallet) already.")
    p.add_argument("--user", required=True, type=_user, help="the user ID")
    p.add_argument("--amount", required=True, type=_amount,
                   help="USD, with at most 6 decimals (a micro-dollar), e.g. 10.00; at most "
                        f"{format_usd(MAX_CREDIT_MICROS)}")
    p.add_argument("--note", help="why, for the ledger")
    p.set_defaults(func=cmd_wallet_credit)
    p = _command(wallet_commands, "show", "balance, held, and the last ledger entries")
    p.add_argument("--user", required=True, type=_user, help="the user ID")
    p.add_argument("--entries", type=_entries, default=10,
                   help=f"how many entries, 0-{MAX_ENTRIES} (default 10)")
    p.set_defaults(func=cmd_wallet_show)

    controls_parser = _command(commands, "controls", "spend controls: budgets and run caps",
                               "A run a control refuses ends BLOCKED, holding nothing.")
    control_commands = controls_parser.add_subparsers(dest="controls_command", required=True,
                                                      metavar="COMMAND")
    budget_parser = _command(control_commands, "budget", "a workspace's budgets")
    budget_commands = budget_parser.add_subparsers(dest="budget_command", required=True,
                                                   metavar="COMMAND")
    p = _command(budget_commands, "create", "make a budget; its ID is on the last line",
                 "It counts what runs hold and cost in each calendar window (UTC).")
    p.add_argument("--user", required=True, type=_user, help="the user ID (the workspace)")
    p.add_argument("--period", required=True, choices=controls.PERIODS, help="the window")
    p.add_argument("--limit", required=True, type=_limit, help="USD a window, e.g. 5.00")
    p.set_defaults(func=cmd_budget_create)
    p = _command(budget_commands, "set", "change a budget's limit or status",
                 "It counts from the next run on.")
    p.add_argument("id", help="the budget's ID")
    p.add_argument("--limit", type=_limit, help="USD a window")
    p.add_argument("--status", choices=controls.CONTROL_STATUSES,
                   help="PAUSED: it judges no run until ACTIVE again")
    p.set_defaults(func=cmd_budget_set)
    cap_parser = _command(control_commands, "run-cap", "a workspace's run caps")
    cap_commands = cap_parser.add_subparsers(dest="run_cap_command", required=True,
                                             metavar="COMMAND")
    p = _command(cap_commands, "create", "make a run cap; its ID is on the last line",
                 "No run may hold more than the cap.")
    p.add_argument("--user", required=True, type=_user, help="the user ID (the workspace)")
    p.add_argument("--limit", required=True, type=_limit, help="USD a run, e.g. 1.00")
    p.set_defaults(func=cmd_run_cap_create)
    p = _command(cap_commands, "set", "change a run cap's limit or status")
    p.add_argument("id", help="the run cap's ID")
    p.add_argument("--limit", type=_limit, help="USD a run")
    p.add_argument("--status", choices=controls.CONTROL_STATUSES,
                   help="PAUSED: it judges no run until ACTIVE again")
    p.set_defaults(func=cmd_run_cap_set)

    users_parser = _command(commands, "users", "name users and their workspaces",
                            "A workspace is its user's account: one per user. `GET "
                            "/v1/auth/whoami` shows them.")
    user_commands = users_parser.add_subparsers(dest="users_command", required=True,
                                                metavar="COMMAND")
    p = _command(user_commands, "set", "name a user and its workspace; what is not given is "
                 "kept", "The user must have a key (or a wallet) already.")
    p.add_argument("--user", required=True, type=_user, help="the user ID")
    p.add_argument("--username", type=_text(128), help="the user's name")
    p.add_argument("--email", type=_email, help="the user's e-mail address (\"\" forgets it)")
    p.add_argument("--metadata", type=_metadata, help="the user's metadata, a JSON object")
    p.add_argument("--workspace-name", type=_text(128), help="the workspace's name")
    p.add_argument("--workspace-slug", type=_slug, help="the workspace's slug, e.g. acme-data")
    p.add_argument("--workspace-metadata", type=_metadata,
                   help="the workspace's metadata, a JSON object")
    p.set_defaults(func=cmd_users_set)
    p = _command(user_commands, "show", "a user and its workspace")
    p.add_argument("--user", required=True, type=_user, help="the user ID")
    p.set_defaults(func=cmd_users_show)

    p = _command(commands, "mcp", "serve the MCP tools over stdio, for a local agent",
                 "They act on the monid-runs server at MONID_API_BASE_URL (its /mcp) with the "
                 "key MONID_API_KEY.")
    p.set_defaults(func=cmd_mcp)

    catalog_parser = _command(commands, "catalog", "check the catalog files and load them")
    catalog_commands = catalog_parser.add_subparsers(dest="catalog_command", required=True,
                                                     metavar="COMMAND")
    p = _command(catalog_commands, "check", "validate the catalog files",
                 "Needs nothing but the files: run it before you deploy.")
    p.add_argument("--dir", type=Path, help="the catalog folder (default: CATALOG_DIR, or the "
                                            "built-in catalog)")
    p.set_defaults(func=cmd_catalog_check)
    p = _command(catalog_commands, "sync", "copy the catalog files into the database",
                 "`migrate` does it too.")
    p.add_argument("--dir", type=Path, help="the catalog folder (default: CATALOG_DIR, or the "
                                            "built-in catalog)")
    p.set_defaults(func=cmd_catalog_sync)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (CommandError, CatalogError, SettingsError, EmbeddedUnavailable) as exc:
        print(f"monidctl: {exc}", file=sys.stderr)
        return 1
    except ServiceError as exc:
        print(f"monidctl: {exc.message}", file=sys.stderr)
        return 1
    except DatabaseUnavailable as exc:
        print(f"monidctl: the database is unavailable: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        if type(exc).__module__.startswith(("psycopg", "psycopg_pool")):
            print(f"monidctl: database error: {str(exc).splitlines()[0]}", file=sys.stderr)
            return 1
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
