"""The store: `verb_noun(conn, ...)` functions returning frozen dataclasses; the caller
owns the transaction. One module per aggregate, each with its named queries in
`shared/sql/store/<aggregate>.sql`:

- `keys`: API keys
- `runs`: runs accepted, read, listed, asked to stop
- `claims`: a worker's claims and leases, and the ends it writes
- `sweeper`: expired leases, runs to end, runs to publish, runs to wake
- `wallets`: wallets and their ledger
- `idempotency`: Idempotency-Keys and the runs they started
- `results`: a run's items
- `catalog`: the catalog table
- `metrics`: the cluster's numbers for /metrics
- `health`: endpoint health, the sweeper's rollup of recent runs
- `webhooks`: the outbox of webhook events runs' ends write
- `deliveries`: webhook deliveries as workers publish, take, send and record them

The names the rest of the code uses (`store.claim_run(...)`) are those of the first
six, gathered here with `Conn`, the connection they take; `results`, `catalog`,
`metrics`, `health`, `webhooks` and `deliveries` are imported as modules.
"""

from shared.db import Conn
from shared.store.claims import (
    AttemptEnd,
    Claim,
    ClaimState,
    Ended,
    HandedBack,
    Waiting,
    Woken,
    claim_run,
    claim_runs,
    end_run,
    follow_run,
    get_claim_state,
    get_run_caller,
    hand_back_runs,
    renew_leases,
    schedule_retry,
    slot_params,
    woken_runs,
)
from shared.store.idempotency import (
    IdempotencyKeyTaken,
    IdempotentAnswer,
    StartedRun,
    claim_idempotency_key,
    delete_expired_idempotency_keys,
    find_idempotency_key,
)
from shared.store.keys import (
    ApiKey,
    find_api_key,
    find_live_api_key,
    insert_api_key,
    list_api_keys,
    list_live_api_keys,
    record_api_keys_used,
    rename_api_key,
    revoke_api_key,
    revoke_api_key_by_label,
    user_known,
)
from shared.store.runs import (
    END_STATUSES,
    STATUSES,
    InsufficientFunds,
    Run,
    RunBlocked,
    RunEnd,
    StopRequest,
    TooManyRunsInFlight,
    get_run,
    get_run_end,
    insert_new_run,
    insert_run,
    insert_runs,
    list_runs,
    request_stop,
    run_params,
    run_status,
)
from shared.store.sweeper import (
    RunToEnd,
    ToPublish,
    WaitingSlot,
    end_unheld_run,
    find_runs_to_end,
    find_waiting_slots,
    release_expired_leases,
    release_sweeper_lock,
    take_runs_to_publish,
    try_sweeper_lock,
    wake_callers_run,
    wake_waiting_runs,
)
from shared.store.wallets import (
    LedgerEntry,
    Wallet,
    credit_wallet,
    ensure_wallet,
    get_wallet,
    list_ledger_entries,
)

__all__ = [
    "END_STATUSES",
    "STATUSES",
    "ApiKey",
    "AttemptEnd",
    "Claim",
    "ClaimState",
    "Conn",
    "Ended",
    "HandedBack",
    "IdempotencyKeyTaken",
    "IdempotentAnswer",
    "InsufficientFunds",
    "LedgerEntry",
    "Run",
    "RunBlocked",
    "RunEnd",
    "RunToEnd",
    "StartedRun",
    "StopRequest",
    "ToPublish",
    "TooManyRunsInFlight",
    "Waiting",
    "WaitingSlot",
    "Wallet",
    "Woken",
    "claim_idempotency_key",
    "claim_run",
    "claim_runs",
    "credit_wallet",
    "delete_expired_idempotency_keys",
    "end_run",
    "end_unheld_run",
    "ensure_wallet",
    "find_api_key",
    "find_idempotency_key",
    "find_live_api_key",
    "find_runs_to_end",
    "find_waiting_slots",
    "follow_run",
    "get_claim_state",
    "get_run",
    "get_run_caller",
    "get_run_end",
    "get_wallet",
    "hand_back_runs",
    "insert_api_key",
    "insert_new_run",
    "insert_run",
    "insert_runs",
    "list_api_keys",
    "list_ledger_entries",
    "list_live_api_keys",
    "list_runs",
    "record_api_keys_used",
    "release_expired_leases",
    "release_sweeper_lock",
    "rename_api_key",
    "renew_leases",
    "request_stop",
    "revoke_api_key",
    "revoke_api_key_by_label",
    "run_params",
    "run_status",
    "schedule_retry",
    "slot_params",
    "take_runs_to_publish",
    "try_sweeper_lock",
    "user_known",
    "wake_callers_run",
    "wake_waiting_runs",
    "woken_runs",
]
