"""Carepath's domain model: typed SQLAlchemy 2 models. Importing this package registers every table."""

from models.base import Base
from models.cases import Activity, Case, CaseStatusChange, ResolutionActivity
from models.catalog import Device, DeviceFault, Product
from models.customers import Account, Consent, Contact, Lead
from models.enums import (
    ActivityType,
    CaseStatus,
    Channel,
    ConsentStatus,
    EntitlementState,
    InboxState,
    KpiState,
    LeadState,
    MessageChannel,
    MessageStatus,
    Priority,
    Tier,
)
from models.inbox import InboxEvent, WebhookRejection
from models.messaging import DeliveryEvent, Message
from models.service import (
    Agent,
    BusinessCalendar,
    CaseArticle,
    Entitlement,
    Goal,
    Holiday,
    KnowledgeArticle,
    KpiInstance,
    Queue,
    QueueItem,
    RoutingRule,
    RoutingRuleSet,
    Sla,
    SlaKpi,
)

__all__ = [
    "Account", "Activity", "ActivityType", "Agent", "Base", "BusinessCalendar", "Case", "CaseArticle",
    "CaseStatus", "CaseStatusChange", "Channel", "Consent", "ConsentStatus", "Contact", "DeliveryEvent",
    "Device", "DeviceFault", "Entitlement", "EntitlementState", "Goal", "Holiday", "InboxEvent", "InboxState",
    "KnowledgeArticle", "KpiInstance", "KpiState", "Lead", "LeadState", "Message", "MessageChannel",
    "MessageStatus", "Priority", "Product", "Queue", "QueueItem", "ResolutionActivity", "RoutingRule",
    "RoutingRuleSet", "Sla", "SlaKpi", "Tier", "WebhookRejection",
]
