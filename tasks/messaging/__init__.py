"""The outbox: queue messages under an idempotency key, then hand each to its channel at most once.

queued → sending (a lease) → sent | failed | unknown; unknown → settled at the provider, or queued again once.
The unique idempotency key makes one message per (case, journey step); the lease, the committed
`attempted_at` and the reconcile make each message reach the provider once. RELIABILITY.md says what window
remains.
"""

from tasks.messaging.claims import (
    Claim,
    ClaimedMessage,
    claim_queued_messages,
    mark_attempted,
    outbox_waiting,
    release_expired_leases,
)
from tasks.messaging.consent import set_consent
from tasks.messaging.drain import (
    drain_outbox,
    ensure_sms_rate_limit,
    reconcile_messages_task,
    reconcile_outbox,
    release_leases,
    send_queued_messages,
    take_rate_slots,
)
from tasks.messaging.outbox import (
    FAULT_SMS_STEP,
    idempotency_key,
    insert_messages,
    outbox_row,
    queue_contact_email,
    queue_contact_sms,
    queue_fault_sms,
)
from tasks.messaging.outcomes import SendSummary, record_outcomes
from tasks.messaging.reconcile import ReconcileSummary
from tasks.messaging.sending import Outcome, SendPolicy, deliver, deliver_one

__all__ = [
    "FAULT_SMS_STEP",
    "Claim",
    "ClaimedMessage",
    "Outcome",
    "ReconcileSummary",
    "SendPolicy",
    "SendSummary",
    "claim_queued_messages",
    "deliver",
    "deliver_one",
    "drain_outbox",
    "ensure_sms_rate_limit",
    "idempotency_key",
    "insert_messages",
    "mark_attempted",
    "outbox_row",
    "outbox_waiting",
    "queue_contact_email",
    "queue_contact_sms",
    "queue_fault_sms",
    "reconcile_messages_task",
    "reconcile_outbox",
    "record_outcomes",
    "release_expired_leases",
    "release_leases",
    "send_queued_messages",
    "set_consent",
    "take_rate_slots",
]
