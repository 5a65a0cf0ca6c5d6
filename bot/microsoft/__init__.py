"""Microsoft Graph and Defender for Endpoint clients: the only code that calls httpx or msal.

    clients = build_clients(settings)            # or build_clients(settings, tenant.transport())
    clients.graph.get_mde_connector()
    clients.background().defender.iter_android_machines()
    clients.close()
"""

from bot.microsoft.auth import AccessToken, CertificateCredential, TokenSource, load_certificate
from bot.microsoft.bodies import CONNECTOR_WRITABLE_FLAGS, POLICY_PATCHABLE
from bot.microsoft.budget import LocalBudget, RateLimit, RequestBudget, UnlimitedBudget
from bot.microsoft.clients import MicrosoftClients, build_clients
from bot.microsoft.defender import DefenderClient
from bot.microsoft.errors import (
    DEFENDER,
    GRAPH,
    ApiUnavailable,
    ConnectionFailed,
    DownloadFailed,
    IncompleteOperation,
    MicrosoftError,
    NotFound,
    PermissionDenied,
    RequestRejected,
    ServiceUnavailable,
    SignInError,
    Throttled,
)
from bot.microsoft.graph import AssignmentChange, GraphClient
from bot.microsoft.models import (
    MDE_CONNECTOR_ID,
    AndroidPolicy,
    AndroidPolicyDraft,
    AppGroupType,
    AppIdentifier,
    AppManagementLevel,
    AssignmentFilterType,
    AssignmentTarget,
    ExportJob,
    ExportJobStatus,
    Group,
    Machine,
    ManagedAppRegistration,
    ManagedMobileApp,
    MtdConnector,
    PartnerPriority,
    PartnerState,
    PolicyAssignment,
    RemediationAction,
    TargetKind,
    ThreatLevel,
    User,
)
from bot.microsoft.permissions import FEATURES, Feature, PermissionRow, Requirement, check_permissions
from bot.microsoft.transport import BACKGROUND, INTERACTIVE, CallProfile

__all__ = [
    "BACKGROUND",
    "CONNECTOR_WRITABLE_FLAGS",
    "DEFENDER",
    "FEATURES",
    "GRAPH",
    "INTERACTIVE",
    "MDE_CONNECTOR_ID",
    "POLICY_PATCHABLE",
    "AccessToken",
    "AndroidPolicy",
    "AndroidPolicyDraft",
    "ApiUnavailable",
    "AppGroupType",
    "AppIdentifier",
    "AppManagementLevel",
    "AssignmentChange",
    "AssignmentFilterType",
    "AssignmentTarget",
    "CallProfile",
    "CertificateCredential",
    "ConnectionFailed",
    "DefenderClient",
    "DownloadFailed",
    "ExportJob",
    "ExportJobStatus",
    "Feature",
    "GraphClient",
    "Group",
    "IncompleteOperation",
    "LocalBudget",
    "Machine",
    "ManagedAppRegistration",
    "ManagedMobileApp",
    "MicrosoftClients",
    "MicrosoftError",
    "MtdConnector",
    "NotFound",
    "PartnerPriority",
    "PartnerState",
    "PermissionDenied",
    "PermissionRow",
    "PolicyAssignment",
    "RateLimit",
    "RemediationAction",
    "RequestBudget",
    "RequestRejected",
    "Requirement",
    "ServiceUnavailable",
    "SignInError",
    "TargetKind",
    "ThreatLevel",
    "Throttled",
    "TokenSource",
    "UnlimitedBudget",
    "User",
    "build_clients",
    "check_permissions",
    "load_certificate",
]
