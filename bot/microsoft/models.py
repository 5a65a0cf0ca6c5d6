"""What the bot reads from Graph and Defender, and the draft of a policy it creates.

Attribute names are the wire names (Graph's camelCase, exactly as Microsoft spells them, traps like
`allowPartnerToCollectIOSApplicationMetadata` vs `…IosCertificateMetadata` included), so a model
reads like Microsoft's docs and nothing is renamed twice. Models ignore fields they don't declare,
`@odata.*` annotations and all, and keep Microsoft's enum values as plain strings so a value added
next month does not break a read; the StrEnums below are for what the bot *writes*.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

MDE_CONNECTOR_ID = "fc780465-2017-40d4-a0c5-307022471b92"


# ---- enums the bot writes (beta spellings; microsoft-graph.md §2) ------------------------------


class ThreatLevel(StrEnum):
    """managedAppDeviceThreatLevel: the highest device threat level allowed (`secured` = no threat)."""

    NOT_CONFIGURED = "notConfigured"
    SECURED = "secured"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class RemediationAction(StrEnum):
    """managedAppRemediationAction: what the app does when the device is above the allowed level."""

    BLOCK = "block"
    WIPE = "wipe"
    WARN = "warn"
    BLOCK_WHEN_SETTING_IS_SUPPORTED = "blockWhenSettingIsSupported"


class AppGroupType(StrEnum):
    """targetedManagedAppGroupType: which apps a policy targets."""

    SELECTED_PUBLIC_APPS = "selectedPublicApps"
    ALL_CORE_MICROSOFT_APPS = "allCoreMicrosoftApps"
    ALL_MICROSOFT_APPS = "allMicrosoftApps"
    ALL_APPS = "allApps"


class AppManagementLevel(StrEnum):
    """appManagementLevel (a flags enum, sent comma-separated). Device administrator is `mdm`."""

    UNSPECIFIED = "unspecified"
    UNMANAGED = "unmanaged"
    MDM = "mdm"
    ANDROID_ENTERPRISE = "androidEnterprise"
    ANDROID_ENTERPRISE_DEDICATED_DEVICES_WITH_AZURE_AD_SHARED_MODE = (
        "androidEnterpriseDedicatedDevicesWithAzureAdSharedMode"
    )
    ANDROID_OPEN_SOURCE_PROJECT_USER_ASSOCIATED = "androidOpenSourceProjectUserAssociated"
    ANDROID_OPEN_SOURCE_PROJECT_USERLESS = "androidOpenSourceProjectUserless"
    UNKNOWN_FUTURE_VALUE = "unknownFutureValue"


class PartnerPriority(StrEnum):
    """mobileThreatDefensePartnerPriority: the conditional-launch "Primary MTD service"."""

    DEFENDER_OVER_THIRD_PARTY_PARTNER = "defenderOverThirdPartyPartner"
    THIRD_PARTY_PARTNER_OVER_DEFENDER = "thirdPartyPartnerOverDefender"
    UNKNOWN_FUTURE_VALUE = "unknownFutureValue"


class AssignmentFilterType(StrEnum):
    """deviceAndAppManagementAssignmentFilterType."""

    NONE = "none"
    INCLUDE = "include"
    EXCLUDE = "exclude"


class AssignmentSource(StrEnum):
    """deviceAndAppManagementAssignmentSource: how an assignment came to be (beta; non-null on read)."""

    DIRECT = "direct"
    POLICY_SETS = "policySets"


class PartnerState(StrEnum):
    """mobileThreatPartnerTenantState (beta members; models keep the raw string)."""

    UNAVAILABLE = "unavailable"
    AVAILABLE = "available"
    ENABLED = "enabled"
    UNRESPONSIVE = "unresponsive"
    NOT_SET_UP = "notSetUp"
    ERROR = "error"
    UNKNOWN_FUTURE_VALUE = "unknownFutureValue"


class ExportJobStatus(StrEnum):
    """deviceManagementReportStatus: where an Intune report export job is (models keep the raw string)."""

    NOT_STARTED = "notStarted"
    IN_PROGRESS = "inProgress"
    COMPLETED = "completed"
    FAILED = "failed"


class TargetKind(StrEnum):
    """The `@odata.type` of an assignment target."""

    GROUP = "#microsoft.graph.groupAssignmentTarget"
    EXCLUSION_GROUP = "#microsoft.graph.exclusionGroupAssignmentTarget"
    ALL_LICENSED_USERS = "#microsoft.graph.allLicensedUsersAssignmentTarget"
    ALL_DEVICES = "#microsoft.graph.allDevicesAssignmentTarget"


def split_flags(value: str | None) -> frozenset[str]:
    """A flags-enum string (`"mdm,androidEnterprise"`) as a set of member names."""
    return frozenset(part.strip() for part in (value or "").split(",") if part.strip())


# ---- read models --------------------------------------------------------------------------------


class GraphModel(BaseModel):
    """Tolerant reader: unknown properties and `@odata.*` annotations are ignored."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


class MtdConnector(GraphModel):
    """mobileThreatDefenseConnector, v1.0 and beta properties."""

    id: str
    allowPartnerToCollectIOSApplicationMetadata: bool | None = None
    allowPartnerToCollectIOSPersonalApplicationMetadata: bool | None = None
    allowPartnerToCollectIosCertificateMetadata: bool | None = None
    allowPartnerToCollectIosPersonalCertificateMetadata: bool | None = None
    androidDeviceBlockedOnMissingPartnerData: bool | None = None
    androidEnabled: bool | None = None
    androidMobileApplicationManagementEnabled: bool | None = None
    grantMobileThreatDefensePartnerRole: bool | None = None
    iosDeviceBlockedOnMissingPartnerData: bool | None = None
    iosEnabled: bool | None = None
    iosMobileApplicationManagementEnabled: bool | None = None
    lastHeartbeatDateTime: datetime | None = None
    launchMobileThreatDefensePartnerOnSetupEnabled: bool | None = None
    macDeviceBlockedOnMissingPartnerData: bool | None = None
    macEnabled: bool | None = None
    microsoftDefenderForEndpointAttachEnabled: bool | None = None
    partnerState: str | None = None
    partnerUnresponsivenessThresholdInDays: int | None = None
    partnerUnsupportedOsVersionBlocked: bool | None = None
    windowsDeviceBlockedOnMissingPartnerData: bool | None = None
    windowsEnabled: bool | None = None
    windowsMobileApplicationManagementEnabled: bool | None = None

    @property
    def is_mde(self) -> bool:
        return self.id.lower() == MDE_CONNECTOR_ID


class AppIdentifier(GraphModel):
    """mobileAppIdentifier: Android apps carry `packageId`, iOS apps `bundleId`."""

    odata_type: str | None = Field(default=None, alias="@odata.type")
    packageId: str | None = None
    bundleId: str | None = None


class ManagedMobileApp(GraphModel):
    """managedMobileApp: an app a policy targets; its id is `<packageId>.android`."""

    id: str | None = None
    mobileAppIdentifier: AppIdentifier | None = None
    version: str | None = None

    @property
    def packageId(self) -> str | None:
        return self.mobileAppIdentifier.packageId if self.mobileAppIdentifier else None


class AssignmentTarget(GraphModel):
    """deviceAndAppManagementAssignmentTarget and its subtypes (which one: `odata_type`)."""

    odata_type: str = Field(alias="@odata.type")
    groupId: str | None = None
    deviceAndAppManagementAssignmentFilterId: str | None = None
    deviceAndAppManagementAssignmentFilterType: str | None = None

    @classmethod
    def include_group(cls, group_id: str) -> AssignmentTarget:
        return cls.model_validate({"@odata.type": TargetKind.GROUP.value, "groupId": group_id})

    @classmethod
    def exclude_group(cls, group_id: str) -> AssignmentTarget:
        return cls.model_validate({"@odata.type": TargetKind.EXCLUSION_GROUP.value, "groupId": group_id})

    @classmethod
    def all_licensed_users(cls) -> AssignmentTarget:
        return cls.model_validate({"@odata.type": TargetKind.ALL_LICENSED_USERS.value})

    @classmethod
    def all_devices(cls) -> AssignmentTarget:
        return cls.model_validate({"@odata.type": TargetKind.ALL_DEVICES.value})

    @property
    def is_exclusion(self) -> bool:
        return self.odata_type == TargetKind.EXCLUSION_GROUP

    @property
    def assignment_filter(self) -> tuple[str, str] | None:
        """(filter id, include|exclude) when an assignment filter narrows this target; None otherwise."""
        kind = (self.deviceAndAppManagementAssignmentFilterType or AssignmentFilterType.NONE.value).strip()
        if not self.deviceAndAppManagementAssignmentFilterId or kind.lower() == AssignmentFilterType.NONE.value:
            return None
        return self.deviceAndAppManagementAssignmentFilterId, kind

    @property
    def key(self) -> tuple[str, str | None]:
        """Identity within an assignment set: the same group can't be both included twice."""
        return (self.odata_type, self.groupId.lower() if self.groupId else None)


class PolicyAssignment(GraphModel):
    """targetedManagedAppPolicyAssignment."""

    id: str | None = None
    target: AssignmentTarget
    source: str | None = None
    sourceId: str | None = None

    @property
    def from_policy_set(self) -> bool:
        """Made by a policy set (`source` policySets): the bot leaves it to its policy set, never writes it back."""
        return (self.source or "").strip().lower() == AssignmentSource.POLICY_SETS.value.lower()


class AndroidPolicy(GraphModel):
    """androidManagedAppProtection (beta): what the bot shows and changes; the other ~90 settings
    are left to Intune."""

    id: str
    displayName: str
    description: str | None = None
    createdDateTime: datetime | None = None
    lastModifiedDateTime: datetime | None = None
    version: str | None = None
    roleScopeTagIds: list[str] | None = None
    maximumAllowedDeviceThreatLevel: str | None = None
    mobileThreatDefenseRemediationAction: str | None = None
    mobileThreatDefensePartnerPriority: str | None = None
    targetedAppManagementLevels: str | None = None
    appGroupType: str | None = None
    isAssigned: bool | None = None
    deployedAppCount: int | None = None
    apps: list[ManagedMobileApp] = Field(default_factory=list)
    assignments: list[PolicyAssignment] = Field(default_factory=list)

    @property
    def management_levels(self) -> frozenset[str]:
        return split_flags(self.targetedAppManagementLevels)

    @property
    def package_ids(self) -> list[str]:
        return [app.packageId for app in self.apps if app.packageId]


class ManagedAppRegistration(GraphModel):
    """managedAppRegistration (beta): one app on one device for one user."""

    odata_type: str | None = Field(default=None, alias="@odata.type")
    id: str
    userId: str | None = None
    azureADDeviceId: str | None = None
    managedDeviceId: str | None = None
    appIdentifier: AppIdentifier | None = None
    applicationVersion: str | None = None
    deviceName: str | None = None
    deviceTag: str | None = None
    deviceType: str | None = None
    deviceManufacturer: str | None = None
    deviceModel: str | None = None
    platformVersion: str | None = None
    managementSdkVersion: str | None = None
    createdDateTime: datetime | None = None
    lastSyncDateTime: datetime | None = None
    flaggedReasons: list[str] = Field(default_factory=list)

    @property
    def is_android(self) -> bool:
        if self.odata_type:
            return self.odata_type.endswith("androidManagedAppRegistration")
        return bool(self.appIdentifier and self.appIdentifier.packageId)

    @property
    def packageId(self) -> str | None:
        return self.appIdentifier.packageId if self.appIdentifier else None


class Group(GraphModel):
    id: str
    displayName: str | None = None
    description: str | None = None
    mail: str | None = None
    mailEnabled: bool | None = None
    securityEnabled: bool | None = None
    groupTypes: list[str] = Field(default_factory=list)
    membershipRule: str | None = None

    @property
    def is_dynamic(self) -> bool:
        return "DynamicMembership" in self.groupTypes


class User(GraphModel):
    id: str
    displayName: str | None = None
    mail: str | None = None
    userPrincipalName: str | None = None


class ExportJob(GraphModel):
    """deviceManagementExportJob (beta): an Intune report being written to a CSV (in a zip).

    `url` is a signed download link (its query string is the credential), so it is left out of the
    model's repr and must never be logged whole.
    """

    id: str
    reportName: str | None = None
    status: str | None = None  # ExportJobStatus, or a value Microsoft adds later
    url: str | None = Field(default=None, repr=False)
    requestDateTime: datetime | None = None
    expirationDateTime: datetime | None = None

    @property
    def done(self) -> bool:
        """Completed, with a link to download."""
        return _same(self.status, ExportJobStatus.COMPLETED) and bool(self.url)

    @property
    def failed(self) -> bool:
        """Intune gave up on this job; a new one has to be created."""
        return _same(self.status, ExportJobStatus.FAILED)

    @property
    def pending(self) -> bool:
        """Neither done nor failed yet (notStarted, inProgress, completed without a link, or unknown)."""
        return not (self.done or self.failed)


def _same(value: str | None, member: StrEnum) -> bool:
    return (value or "").strip().lower() == member.value.lower()


class Machine(GraphModel):
    """A Defender for Endpoint machine (`GET /api/machines`); Defender's enum values stay strings."""

    id: str
    computerDnsName: str | None = None
    osPlatform: str | None = None
    osVersion: str | None = None
    version: str | None = None
    aadDeviceId: str | None = None
    riskScore: str | None = None
    exposureLevel: str | None = None
    healthStatus: str | None = None
    onboardingStatus: str | None = None
    firstSeen: datetime | None = None
    lastSeen: datetime | None = None
    machineTags: list[str] = Field(default_factory=list)

    @field_validator("machineTags", mode="before")
    @classmethod
    def _null_tags(cls, value: Any) -> Any:
        return [] if value is None else value

    @property
    def is_android(self) -> bool:
        return (self.osPlatform or "").strip().lower() == "android"


# ---- what the bot writes ------------------------------------------------------------------------


class AndroidPolicyDraft(BaseModel):
    """A new Android app protection policy: conditional launch on device threat level, plus apps.

    `packageIds` are attached with `targetApps` after the create (Graph ignores inline apps).
    """

    model_config = ConfigDict(frozen=True)

    displayName: str = Field(min_length=1, max_length=256)
    description: str = ""
    maximumAllowedDeviceThreatLevel: ThreatLevel
    mobileThreatDefenseRemediationAction: RemediationAction = RemediationAction.BLOCK
    targetedAppManagementLevels: tuple[AppManagementLevel, ...] = (AppManagementLevel.UNSPECIFIED,)
    appGroupType: AppGroupType = AppGroupType.SELECTED_PUBLIC_APPS
    packageIds: tuple[str, ...] = ()
    mobileThreatDefensePartnerPriority: PartnerPriority | None = None
