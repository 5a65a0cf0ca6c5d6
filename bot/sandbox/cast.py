"""The hand-written cast of the sandbox tenant: people, groups, devices and app registrations that demos
and tests name. Ids depend only on names (never on the seed), so they never move."""

from __future__ import annotations

from dataclasses import dataclass

from bot.sandbox.config import CURATED_USERS
from bot.sandbox.ids import stable_guid, stable_hex

DOMAIN = "contoso.example"
OUTLOOK = "com.microsoft.office.outlook"
TEAMS = "com.microsoft.teams"
EDGE = "com.microsoft.emmx"


@dataclass(frozen=True)
class CastUser:
    given: str
    surname: str
    job: str
    department: str
    office: str

    @property
    def nick(self) -> str:
        return f"{self.given}.{self.surname}".lower()

    @property
    def mail(self) -> str:
        return f"{self.nick}@{DOMAIN}"

    @property
    def id(self) -> str:
        return stable_guid("user:" + self.nick)


CAST_USERS: tuple[CastUser, ...] = (
    CastUser("Adele", "Vance", "Retail Manager", "Sales", "Dublin"),
    CastUser("Alex", "Wilber", "Marketing Assistant", "Sales", "Seattle"),
    CastUser("Megan", "Bowen", "Marketing Manager", "Marketing", "Seattle"),
    CastUser("Lee", "Gu", "Director", "Finance", "Seattle"),
    CastUser("Nestor", "Wilke", "Director", "Operations", "Dublin"),
    CastUser("Isaiah", "Langer", "Sales Rep", "Sales", "Tulsa"),
    CastUser("Diego", "Siciliani", "HR Manager", "HR", "Birmingham"),
    CastUser("Johanna", "Lorenz", "Senior Engineer", "Engineering", "Berlin"),
    CastUser("Grady", "Archie", "Designer", "R&D", "Bellevue"),
    CastUser("Patti", "Fernandez", "President", "Executive Management", "Seattle"),
)
ADELE, ALEX, MEGAN, LEE, NESTOR, ISAIAH, DIEGO, JOHANNA, GRADY, PATTI = range(CURATED_USERS)


@dataclass(frozen=True)
class CastGroup:
    name: str
    description: str
    users: tuple[int, ...] = ()
    nested: tuple[str, ...] = ()          # keys of member groups
    generated: tuple[int, int] | str | None = None   # ("all") or (modulus, remainder) of generated users
    unified: bool = False
    key: str = ""

    @property
    def id(self) -> str:
        return stable_guid("group:" + (self.key or self.name))


CAST_GROUPS: tuple[CastGroup, ...] = (
    CastGroup("MAM Pilot", "Pilot ring for app protection with Defender risk", (ADELE, ALEX, MEGAN, ISAIAH),
              generated=(100, 0)),
    CastGroup("MAM Pilot Users", "Second pilot ring (legacy name)", (LEE, NESTOR)),
    CastGroup("Sales", "All of Sales", (ISAIAH,), nested=("Sales EMEA", "Sales AMER")),
    CastGroup("Sales EMEA", "Sales, Europe and Middle East", (ADELE,), generated=(5, 0)),
    CastGroup("Sales AMER", "Sales, Americas", (ALEX, GRADY), generated=(5, 1)),
    CastGroup("Finance", "Finance department", (LEE, NESTOR), generated=(5, 2)),
    CastGroup("All Android Users", "Everyone with a corporate app on Android",
              (ADELE, ALEX, MEGAN, LEE, NESTOR, ISAIAH, DIEGO, JOHANNA, GRADY), generated="all"),
    CastGroup("Executives", "Leadership team", (MEGAN, PATTI)),
    CastGroup("Contractors", "External contractors (security group)", (DIEGO, GRADY), generated=(5, 3)),
    CastGroup("Contractors", "Contractors collaboration space", (JOHANNA,), unified=True,
              key="Contractors (Microsoft 365)"),
    CastGroup("IT Helpdesk", "Service desk staff", ()),
    CastGroup("Contoso Marketing", "Marketing team site and mailbox", (MEGAN, ALEX), unified=True),
)


@dataclass(frozen=True)
class CastDevice:
    key: str
    owner: int | None
    manufacturer: str
    model: str
    name: str
    os_version: str
    risk: str = "None"
    onboarding: str = "Onboarded"
    health: str = "Active"
    last_seen_hours: float = 2.0
    in_defender: bool = True
    entra_registered: bool = True
    platform: str = "Android"
    tags: tuple[str, ...] = ()
    value: str = "Normal"

    @property
    def machine_id(self) -> str:
        return stable_hex("machine:" + self.key)

    @property
    def aad_device_id(self) -> str | None:
        return stable_guid("aad-device:" + self.key) if self.entra_registered else None


CAST_ANDROID: tuple[CastDevice, ...] = (
    CastDevice("adele-pixel8", ADELE, "Google", "Pixel 8", "Pixel 8", "14", tags=("BYOD",)),
    CastDevice("alex-s23", ALEX, "samsung", "SM-S911B", "Galaxy S23", "14", risk="High", tags=("BYOD",)),
    CastDevice("megan-s24", MEGAN, "samsung", "SM-S921B", "Galaxy S24", "14", risk="Medium"),
    CastDevice("lee-pixel7a", LEE, "Google", "Pixel 7a", "Pixel 7a", "14", risk="Low"),
    CastDevice("nestor-motog84", NESTOR, "motorola", "moto g84 5G", "moto g84", "13", risk="Informational"),
    CastDevice("johanna-pixel8pro", JOHANNA, "Google", "Pixel 8 Pro", "Pixel 8 Pro", "14"),
    CastDevice("johanna-tabs9", JOHANNA, "samsung", "SM-X710", "Galaxy Tab S9", "14", risk="Medium",
               tags=("Shared",)),
    CastDevice("grady-oneplus11", GRADY, "OnePlus", "CPH2449", "OnePlus 11", "13", risk="High",
               health="Inactive", last_seen_hours=9 * 24),
    CastDevice("patti-a54", PATTI, "samsung", "SM-A546B", "Galaxy A54", "14", risk="Low", value="High"),
    CastDevice("diego-xiaomi13t", DIEGO, "Xiaomi", "2306EPN60G", "Xiaomi 13T", "13", entra_registered=False),
    CastDevice("android-discovered", None, "unknown", "unknown", "android-5f2c1a", "12",
               onboarding="CanBeOnboarded", health="Inactive", entra_registered=False, last_seen_hours=30),
    CastDevice("android-legacy", None, "LGE", "LM-G710", "lm-g710", "8.0", onboarding="Unsupported",
               health="Inactive", entra_registered=False, last_seen_hours=50),
)
# Isaiah's phone has the apps but no Defender yet: it appears in Defender once set_onboarded().
CAST_PENDING: tuple[CastDevice, ...] = (
    CastDevice("isaiah-s22", ISAIAH, "samsung", "SM-S901B", "Galaxy S22", "14", in_defender=False),
)
CAST_WINDOWS: tuple[CastDevice, ...] = (
    CastDevice("adele-laptop", ADELE, "Microsoft", "Surface Laptop 5", "adele-laptop", "22H2", risk="High",
               platform="Windows11"),
    CastDevice("patti-laptop", PATTI, "Microsoft", "Surface Pro 9", "patti-laptop", "23H2",
               platform="Windows11", value="High"),
    CastDevice("lee-desktop", LEE, "Dell", "OptiPlex 7010", "lee-desktop", "22H2", risk="Medium",
               platform="Windows10"),
)


@dataclass(frozen=True)
class CastRegistration:
    user: int
    device: str | None    # CastDevice key; None: the device is not Entra-registered
    package: str
    ios: bool = False

    @property
    def id(self) -> str:
        return stable_guid(f"registration:{self.user}:{self.device}:{self.package}:{self.ios}")


CAST_REGISTRATIONS: tuple[CastRegistration, ...] = (
    CastRegistration(ADELE, "adele-pixel8", OUTLOOK),
    CastRegistration(ADELE, "adele-pixel8", TEAMS),
    CastRegistration(ADELE, "adele-pixel8", EDGE),
    CastRegistration(ALEX, "alex-s23", OUTLOOK),
    CastRegistration(ALEX, "alex-s23", TEAMS),
    CastRegistration(MEGAN, "megan-s24", OUTLOOK),
    CastRegistration(MEGAN, "megan-s24", TEAMS),
    CastRegistration(MEGAN, "megan-s24", EDGE),
    CastRegistration(MEGAN, None, "com.microsoft.Office.Outlook", ios=True),
    CastRegistration(LEE, "lee-pixel7a", OUTLOOK),
    CastRegistration(NESTOR, "nestor-motog84", OUTLOOK),
    CastRegistration(NESTOR, "nestor-motog84", TEAMS),
    CastRegistration(JOHANNA, "johanna-pixel8pro", OUTLOOK),
    CastRegistration(JOHANNA, "johanna-pixel8pro", TEAMS),
    CastRegistration(JOHANNA, "johanna-tabs9", OUTLOOK),
    CastRegistration(GRADY, "grady-oneplus11", OUTLOOK),
    CastRegistration(GRADY, "grady-oneplus11", EDGE),
    CastRegistration(ISAIAH, "isaiah-s22", OUTLOOK),
    CastRegistration(ISAIAH, "isaiah-s22", TEAMS),
    CastRegistration(DIEGO, "diego-xiaomi13t", OUTLOOK),
)

SEED_POLICY_ID = "T_" + stable_guid("policy:android-byod")
SEED_POLICY_NAME = "Android BYOD App Protection"
