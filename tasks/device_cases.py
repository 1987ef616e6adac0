"""The records the IoT fault steps hand each other: a device's owner, and the case opened for a device.

They sit below tasks/cases.py, tasks/faults.py and tasks/messaging.py, which all import them, so none of
those three needs another only for its types.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DeviceOwner:
    device_id: str
    contact_id: int
    account_id: int | None
    first_name: str
    phone: str | None
    phone_valid: bool | None  # checked when the contact was written; None: not known for this number
    language: str
    sms_consent: str | None
    product_id: int | None
    product_name: str | None
    product_sku: str | None


@dataclass(frozen=True)
class OpenedCase:
    id: int
    ticket_number: str
    tracking_token: str
    device_id: str
    contact_id: int
    error_code: int
