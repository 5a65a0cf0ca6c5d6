"""The tenant's people, groups, devices and app registrations, as a pure function of the config.

A small hand-written cast comes first so demos and tests can name people; beyond it, rows are
generated from their index (hash of seed and index), so a 350k-row tenant costs no memory until a
page is asked for. Only changes made through the mutators are stored (an overlay per row).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.sandbox.cast import (
    CAST_ANDROID,
    CAST_PENDING,
    CAST_REGISTRATIONS,
    CAST_USERS,
    CAST_WINDOWS,
    DOMAIN,
    EDGE,
    LEE,
    OUTLOOK,
    PATTI,
    TEAMS,
    CastDevice,
    CastRegistration,
)
from bot.sandbox.cast import CAST_GROUPS as CAST_GROUPS
from bot.sandbox.cast import SEED_POLICY_ID as SEED_POLICY_ID
from bot.sandbox.cast import SEED_POLICY_NAME as SEED_POLICY_NAME
from bot.sandbox.config import CURATED_ANDROID_DEVICES, CURATED_USERS, SandboxConfig
from bot.sandbox.groups import GroupsMixin
from bot.sandbox.ids import ReversibleIds, stable_guid
from bot.sandbox.licences import Licences
from bot.sandbox.schema import ANDROID_APP_ID_TYPE

GENERATED_APPS = (OUTLOOK, TEAMS, EDGE, "com.microsoft.office.word", "com.microsoft.office.excel",
                  "com.microsoft.skydrive")
APP_VERSIONS = {OUTLOOK: "4.2420.1", TEAMS: "1416/1.0.0.2024143402", EDGE: "125.0.2535.60",
                "com.microsoft.office.word": "16.0.17628.20070", "com.microsoft.office.excel":
                "16.0.17628.20070", "com.microsoft.skydrive": "7.8.2"}
# Generated registration r is an iPhone's when r % IOS_EVERY == IOS_EVERY // 5, and of the line-of-business
# LOB_APP when r % LOB_EVERY == LOB_EVERY // 5 (both rare, both present in any tenant past a few dozen rows).
IOS_EVERY = 53
LOB_EVERY = 41
LOB_APP = "com.contoso.expenses"
IOS_BUNDLES = {OUTLOOK: "com.microsoft.Office.Outlook", TEAMS: "com.microsoft.skype.teams",
               EDGE: "com.microsoft.msedge", "com.microsoft.office.word": "com.microsoft.Office.Word",
               "com.microsoft.office.excel": "com.microsoft.Office.Excel",
               "com.microsoft.skydrive": "com.microsoft.skydrive"}
RISK_LEVELS = ("None", "Informational", "Low", "Medium", "High")
ONBOARDING_STATES = ("Onboarded", "CanBeOnboarded", "Unsupported", "InsufficientInfo")


def _h(*parts: object) -> bytes:
    return hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=16).digest()


def _row_hash(seed: int, kind: str, index: int) -> bytes:
    return hashlib.blake2b(f"{seed}:{kind}:{index}".encode(), digest_size=16).digest()


def stamp(moment: datetime, tick: int = 0) -> str:
    """Graph/Defender style UTC timestamp with 7 fractional digits; `tick` varies the digits per row."""
    fraction = (moment.microsecond * 10 + tick * 1_234_577) % 10_000_000
    return f"{moment.astimezone(UTC):%Y-%m-%dT%H:%M:%S}.{fraction:07d}Z"


# ---- generated rows --------------------------------------------------------------------------------

_FIRST = ("Avery", "Blake", "Casey", "Dana", "Elliot", "Frankie", "Gabriel", "Harper", "Indira", "Jonas",
          "Kai", "Lena", "Mateo", "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Sami", "Tomas", "Uma",
          "Viktor", "Wen", "Yara", "Zoe")
_LAST = ("Andersen", "Barros", "Chen", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Ivanova",
         "Jensen", "Kowalski", "Lopez", "Moreau", "Nakamura", "Okafor", "Petrov", "Quispe", "Rossi",
         "Santos", "Tanaka", "Usman", "Vasquez", "Weber", "Yilmaz", "Zhang")
_DEPARTMENTS = ("Sales", "Sales", "Finance", "Contractor", "Operations")
_MODELS = (("samsung", "SM-S911B", "Galaxy S23", "14"), ("samsung", "SM-A546B", "Galaxy A54", "14"),
           ("Google", "Pixel 8", "Pixel 8", "14"), ("Google", "Pixel 7a", "Pixel 7a", "14"),
           ("motorola", "moto g84 5G", "moto g84", "13"), ("Xiaomi", "2306EPN60G", "Xiaomi 13T", "13"),
           ("OnePlus", "CPH2449", "OnePlus 11", "13"), ("samsung", "SM-X710", "Galaxy Tab S9", "14"))
_RISK_WEIGHTS = (("None", 70), ("Informational", 10), ("Low", 10), ("Medium", 6), ("High", 4))
_CLOCK_FACE = tuple(f"{m // 60:02d}:{m % 60:02d}:" for m in range(24 * 60))
_EXPOSURE = {"None": "Low", "Informational": "Low", "Low": "Low", "Medium": "Medium", "High": "High"}


def _ios_registration(rid: str, user_id: str, bundle: str, aad: str | None, created: str,
                      synced: str) -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.iosManagedAppRegistration",
        "createdDateTime": created,
        "lastSyncDateTime": synced,
        "applicationVersion": "4.2421.0",
        "managementSdkVersion": "19.4.1",
        "platformVersion": "17.5",
        "deviceType": "iPhone",
        "deviceTag": None,
        "deviceName": "iPhone",
        "managedDeviceId": None,
        "azureADDeviceId": aad,
        "deviceModel": "iPhone15,2",
        "deviceManufacturer": "Apple",
        "flaggedReasons": [],
        "userId": user_id,
        "version": "3",
        "id": rid,
        "appIdentifier": {"@odata.type": "#microsoft.graph.iosMobileAppIdentifier", "bundleId": bundle},
    }


def _weighted(byte: int, table: tuple[tuple[str, int], ...]) -> str:
    pick = byte * 100 // 256
    for value, weight in table:
        if pick < weight:
            return value
        pick -= weight
    return table[-1][0]


@dataclass
class DeviceMeta:
    """What Intune knows about a device (for registrations) and who owns it."""

    owner: int | None
    manufacturer: str
    model: str
    name: str
    os_version: str
    aad_device_id: str | None


class World(GroupsMixin):
    """Users, groups, Defender machines and app registrations of one sandbox tenant."""

    def __init__(self, config: SandboxConfig, anchor: datetime) -> None:
        self.config = config
        self.anchor = anchor.astimezone(UTC)
        self._epoch = int(self.anchor.timestamp())
        self._dates: dict[int, str] = {}
        seed = config.seed
        total_users = config.users
        android = max(0, config.android_devices)
        self.android_cast = CAST_ANDROID[: min(android, CURATED_ANDROID_DEVICES)]
        self.devices_generated = max(0, android - CURATED_ANDROID_DEVICES)
        if total_users is None:
            total_users = CURATED_USERS + self.devices_generated
        if total_users < CURATED_USERS:
            raise ValueError(f"users must be at least {CURATED_USERS} (the hand-written seed)")
        self.users_generated = total_users - CURATED_USERS
        if self.devices_generated and not self.users_generated:
            raise ValueError("devices beyond the hand-written seed need users beyond it too")
        regs = config.registrations
        if regs is None:
            regs = len(CAST_REGISTRATIONS) + 2 * self.devices_generated
        self.cast_registrations = CAST_REGISTRATIONS[: min(regs, len(CAST_REGISTRATIONS))]
        self.registrations_generated = max(0, regs - len(CAST_REGISTRATIONS))
        if self.registrations_generated and not self.devices_generated:
            raise ValueError("registrations beyond the hand-written seed need android_devices beyond it")

        self._user_ids = ReversibleIds(seed, "user")
        self._machine_ids = ReversibleIds(seed, "machine")
        self._aad_ids = ReversibleIds(seed, "aad-device")
        self._pending_aad_ids = ReversibleIds(seed, "aad-pending")
        self._ios_aad_ids = ReversibleIds(seed, "aad-ios")
        self._reg_ids = ReversibleIds(seed, "registration")
        self._seed = seed
        self.licences = Licences(seed, self.anchor)

        self._build_users()
        self._build_groups()
        self._build_devices()
        self._build_registrations()

    def ago(self, seconds: int, tick: int = 0) -> str:
        """stamp(anchor - seconds), fast enough for generating 100k rows per second."""
        day, second = divmod(self._epoch - seconds, 86400)
        date = self._dates.get(day)
        if date is None:
            date = f"{datetime.fromtimestamp(day * 86400, UTC):%Y-%m-%d}T"
            self._dates[day] = date
        return f"{date}{_CLOCK_FACE[second // 60]}{second % 60:02d}.{tick * 1_234_577 % 10_000_000:07d}Z"

    # ---- users -----------------------------------------------------------------------------------

    def _build_users(self) -> None:
        self._cast_users: list[dict[str, Any]] = []
        self._user_lookup: dict[str, int] = {}
        for index, person in enumerate(CAST_USERS):
            created = self.anchor - timedelta(days=400 + 17 * index, hours=index)
            self._cast_users.append(self._user_dict(
                person.id, person.given, person.surname, person.mail, person.job, person.department,
                person.office, created))
            for key in (person.id, person.mail):
                self._user_lookup[key.lower()] = index

    def _user_dict(self, uid: str, given: str, surname: str, mail: str, job: str, department: str,
                   office: str, created: datetime) -> dict[str, Any]:
        return {
            "id": uid,
            "businessPhones": [],
            "displayName": f"{given} {surname}",
            "givenName": given,
            "jobTitle": job,
            "mail": mail,
            "mobilePhone": None,
            "officeLocation": office,
            "preferredLanguage": "en-US",
            "surname": surname,
            "userPrincipalName": mail,
            "accountEnabled": True,
            "department": department,
            "companyName": "Contoso",
            "usageLocation": "US",
            "createdDateTime": f"{created:%Y-%m-%dT%H:%M:%SZ}",
            "userType": "Member",
        }

    def user(self, index: int) -> dict[str, Any]:
        if index < CURATED_USERS:
            user = dict(self._cast_users[index])
        else:
            g = index - CURATED_USERS
            given, surname, mail = self._generated_name(g)
            digest = _row_hash(self._seed, "user", g)
            created = self.anchor - timedelta(days=30 + digest[2] * 3, seconds=digest[3] * 97)
            user = self._user_dict(self._user_ids.guid(g), given, surname, mail, "Associate",
                                   _DEPARTMENTS[g % len(_DEPARTMENTS)], "Remote", created)
        user["assignedPlans"] = self.licences.assigned_plans(index)
        return user

    def _generated_name(self, g: int) -> tuple[str, str, str]:
        digest = _row_hash(self._seed, "user", g)
        given = _FIRST[digest[0] % len(_FIRST)]
        surname = _LAST[digest[1] % len(_LAST)]
        return given, surname, f"{given}.{surname}{g}@{DOMAIN}".lower()

    def user_id(self, index: int) -> str:
        if index < CURATED_USERS:
            return str(self._cast_users[index]["id"])
        return self._user_ids.guid(index - CURATED_USERS)

    def user_name_mail(self, index: int) -> tuple[str, str]:
        """(displayName, mail) without building the whole user."""
        if index < CURATED_USERS:
            user = self._cast_users[index]
            return str(user["displayName"]), str(user["mail"])
        given, surname, mail = self._generated_name(index - CURATED_USERS)
        return f"{given} {surname}", mail

    def find_user(self, ref: str) -> int | None:
        """Index of the user with this id, mail or UPN (case-insensitive)."""
        ref = ref.strip().lower()
        found = self._user_lookup.get(ref)
        if found is not None:
            return found
        if "@" in ref:
            local = ref.split("@", 1)[0]
            digits = len(local) - len(local.rstrip("0123456789"))
            if not digits:
                return None
            g = int(local[-digits:])
        else:
            g_or_none = self._user_ids.index_of_guid(ref)
            if g_or_none is None:
                return None
            g = g_or_none
        if g >= self.users_generated:
            return None
        index = CURATED_USERS + g
        user = self.user(index)
        return index if ref in (user["id"].lower(), user["mail"].lower()) else None

    # ---- devices ---------------------------------------------------------------------------------

    def _build_devices(self) -> None:
        windows = [*CAST_WINDOWS]
        for extra in range(len(CAST_WINDOWS), self.config.windows_devices):
            windows.append(CastDevice(f"windows-{extra}", PATTI if extra % 2 else LEE, "Lenovo",
                                      "ThinkPad T14", f"desktop-{extra:04d}", "23H2", platform="Windows11"))
        windows = windows[: max(0, self.config.windows_devices)]
        self._cast_devices: list[CastDevice] = [*self.android_cast, *CAST_PENDING, *windows]
        self.machine_overlay: dict[int, dict[str, Any]] = {}
        self.machines_version = 0
        self._machine_lookup: dict[str, int] = {}
        self._cast_machines: list[dict[str, Any]] = []
        for raw, device in enumerate(self._cast_devices):
            self._cast_machines.append(self._cast_machine(raw, device))
            self._machine_lookup[device.machine_id] = raw
            if device.aad_device_id:
                self._machine_lookup[device.aad_device_id] = raw
        self._cast_by_key = {d.key: i for i, d in enumerate(self._cast_devices)}
        self._owner_devices: dict[int, list[int]] = {}
        for raw, device in enumerate(self._cast_devices):
            if device.owner is not None:
                self._owner_devices.setdefault(device.owner, []).append(raw)

    def _machine_dict(self, mid: str, name: str, first: str, last: str, platform: str,
                      version: str, health: str, risk: str, aad: str | None, tags: list[str], value: str,
                      onboarding: str, ip_seed: bytes) -> dict[str, Any]:
        android = platform == "Android"
        ip = f"10.{ip_seed[0] % 32}.{ip_seed[1]}.{ip_seed[2] % 254 + 1}"
        return {
            "id": mid,
            "computerDnsName": name,
            "firstSeen": first,
            "lastSeen": last,
            "osPlatform": platform,
            "osProcessor": None if android else "x64",
            "version": version,
            "osBuild": None if android else 22631,
            "lastIpAddress": ip,
            "lastExternalIpAddress": f"203.0.113.{ip_seed[5] % 254 + 1}",
            "healthStatus": health,
            "rbacGroupName": "Mobile devices" if android else "Workstations",
            "rbacGroupId": 41 if android else 12,
            "riskScore": risk,
            "exposureLevel": _EXPOSURE[risk] if onboarding == "Onboarded" else "None",
            "aadDeviceId": aad,
            "isAadJoined": aad is not None and not android,
            "machineTags": tags,
            "deviceValue": value,
            "onboardingStatus": onboarding,
            "osArchitecture": "64-bit",
            "ipAddresses": [{"ipAddress": ip, "macAddress": None, "type": "Wireless80211",
                             "operationalStatus": "Up"}],
        }

    def _cast_machine(self, raw: int, device: CastDevice) -> dict[str, Any]:
        digest = _h("cast-machine", device.key)
        first = self.anchor - timedelta(days=90 + digest[0] % 200, seconds=digest[1] * 131)
        last = self.anchor - timedelta(hours=device.last_seen_hours, seconds=digest[2] * 7)
        name = device.key if device.owner is not None else device.name
        return self._machine_dict(device.machine_id, name, stamp(first, digest[5]), stamp(last, digest[6]),
                                  device.platform, device.os_version,
                                  device.health, device.risk, device.aad_device_id, list(device.tags),
                                  device.value, device.onboarding, digest[3:])

    @property
    def machine_raw_count(self) -> int:
        return len(self._cast_devices) + self.devices_generated

    def _generated_device(self, g: int) -> tuple[bytes, tuple[str, str, str, str]]:
        digest = _row_hash(self._seed, "device", g)
        return digest, _MODELS[digest[0] % len(_MODELS)]

    def machine(self, raw: int) -> dict[str, Any] | None:
        """The machine as Defender shows it, or None when Defender does not know it."""
        cast = len(self._cast_devices)
        overlay = self.machine_overlay.get(raw)
        if raw < cast:
            hidden = not self._cast_devices[raw].in_defender
            if overlay is not None:
                hidden = overlay.get("_hidden", hidden)
            if hidden:
                return None
            machine = dict(self._cast_machines[raw])
            machine["machineTags"] = list(machine["machineTags"])
            machine["ipAddresses"] = [dict(a) for a in machine["ipAddresses"]]
        else:
            if overlay is not None and overlay.get("_hidden"):
                return None
            machine = self._generated_machine(raw - cast)
        if overlay:
            machine.update({k: v for k, v in overlay.items() if not k.startswith("_")})
        return machine

    def _generated_machine(self, g: int) -> dict[str, Any]:
        digest, (_maker, _model, marketing, os_version) = self._generated_device(g)
        onboard_pick = digest[1] % 100
        onboarding = ("Onboarded" if onboard_pick < 96 else "CanBeOnboarded" if onboard_pick < 98
                      else "InsufficientInfo" if onboard_pick < 99 else "Unsupported")
        risk = _weighted(digest[2], _RISK_WEIGHTS) if onboarding == "Onboarded" else "None"
        first = self.ago((20 + digest[3] % 300) * 86400 + digest[4] * 113, digest[13])
        inactive = digest[5] % 20 == 0
        hours = (8 * 24 + digest[6] % 72) if inactive else digest[6] % 20
        last = self.ago(hours * 3600 + digest[7] * 11, digest[14])
        name = f"{marketing.lower().replace(' ', '-')}-{digest[8:11].hex()}"
        return self._machine_dict(self._machine_ids.hex40(g), name, first, last, "Android", os_version,
                                  "Inactive" if inactive else "Active", risk, self._aad_ids.guid(g),
                                  ["BYOD"] if digest[12] % 4 == 0 else [], "Normal", onboarding, digest[9:])

    def machine_id(self, raw: int) -> str:
        """The Defender machine id of raw device `raw`, listed by Defender or not."""
        cast = len(self._cast_devices)
        return self._cast_devices[raw].machine_id if raw < cast else self._machine_ids.hex40(raw - cast)

    def find_machine(self, ref: str) -> int | None:
        """Raw index of the machine with this Defender id or Entra device id (known to Defender or not)."""
        ref = ref.strip().lower()
        found = self._machine_lookup.get(ref)
        if found is not None:
            return found
        g = self._machine_ids.index_of_hex40(ref) if len(ref) == 40 else self._aad_ids.index_of_guid(ref)
        if g is None or g >= self.devices_generated:
            return None
        return len(self._cast_devices) + g

    def device_meta(self, raw: int) -> DeviceMeta:
        cast = len(self._cast_devices)
        if raw < cast:
            d = self._cast_devices[raw]
            return DeviceMeta(d.owner, d.manufacturer, d.model, d.name, d.os_version, d.aad_device_id)
        g = raw - cast
        _digest, (maker, model, marketing, os_version) = self._generated_device(g)
        owner = CURATED_USERS + g % self.users_generated
        return DeviceMeta(owner, maker, model, marketing, os_version, self._aad_ids.guid(g))

    def set_machine(self, raw: int, **fields: Any) -> None:
        self.machine_overlay.setdefault(raw, {}).update(fields)
        self.machines_version += 1

    def has_machines(self) -> bool:
        cast = range(len(self._cast_devices))
        return self.devices_generated > 0 or any(self.machine(r) is not None for r in cast)

    def machine_is_android(self, raw: int) -> bool:
        return raw >= len(self._cast_devices) or self._cast_devices[raw].platform == "Android"

    # ---- registrations ---------------------------------------------------------------------------

    def _build_registrations(self) -> None:
        self._cast_reg_dicts = [self._cast_registration(r) for r in self.cast_registrations]
        self._reg_lookup = {r["id"]: i for i, r in enumerate(self._cast_reg_dicts)}
        self._user_regs: dict[int, list[int]] = {}
        for index, reg in enumerate(self.cast_registrations):
            self._user_regs.setdefault(reg.user, []).append(index)

    def _registration_dict(self, rid: str, user_id: str, package: str, meta: DeviceMeta, aad: str | None,
                           created: str, synced: str) -> dict[str, Any]:
        return {
            "@odata.type": "#microsoft.graph.androidManagedAppRegistration",
            "createdDateTime": created,
            "lastSyncDateTime": synced,
            "applicationVersion": APP_VERSIONS.get(package, "1.0.0"),
            "managementSdkVersion": "10.3.1",
            "platformVersion": meta.os_version,
            "deviceType": meta.model,
            "deviceTag": None,
            "deviceName": meta.name,
            "managedDeviceId": None,
            "azureADDeviceId": aad,
            "deviceModel": meta.model,
            "deviceManufacturer": meta.manufacturer,
            "flaggedReasons": [],
            "userId": user_id,
            "version": "3",
            "patchVersion": "2024-05-01" if meta.os_version == "14" else "2023-11-01",
            "id": rid,
            "appIdentifier": {"@odata.type": ANDROID_APP_ID_TYPE, "packageId": package},
        }

    def _cast_registration(self, reg: CastRegistration) -> dict[str, Any]:
        digest = _h("cast-registration", reg.id)
        created = self.anchor - timedelta(days=60 + digest[0] % 120, seconds=digest[1] * 101)
        synced = self.anchor - timedelta(minutes=20 + digest[2] * 3)
        user_id = CAST_USERS[reg.user].id
        if reg.ios:
            return _ios_registration(reg.id, user_id, reg.package, stable_guid("aad-device:megan-iphone"),
                                     stamp(created, digest[3]), stamp(synced, digest[4]))
        assert reg.device is not None
        device = next(d for d in (*CAST_ANDROID, *CAST_PENDING) if d.key == reg.device)
        meta = DeviceMeta(device.owner, device.manufacturer, device.model, device.name, device.os_version,
                          device.aad_device_id)
        return self._registration_dict(reg.id, user_id, reg.package, meta, device.aad_device_id,
                                       stamp(created, digest[3]), stamp(synced, digest[4]))

    @property
    def registration_count(self) -> int:
        return len(self.cast_registrations) + self.registrations_generated

    def registration(self, index: int) -> dict[str, Any]:
        cast = len(self.cast_registrations)
        if index < cast:
            reg = dict(self._cast_reg_dicts[index])
            reg["appIdentifier"] = dict(reg["appIdentifier"])
            reg["flaggedReasons"] = []
            return reg
        r = index - cast
        g = r % self.devices_generated
        package = GENERATED_APPS[(r // self.devices_generated) % len(GENERATED_APPS)]
        meta = self.device_meta(len(self._cast_devices) + g)
        digest = _row_hash(self._seed, "registration", r)
        pick = digest[0] % 100
        # A few sign in from a second, not-yet-onboarded device, a few from one not Entra-registered.
        aad = (self._pending_aad_ids.guid(r) if pick < 4 else None if pick < 6 else meta.aad_device_id)
        created = self.ago((5 + digest[1] % 200) * 86400 + digest[2] * 89, digest[4])
        synced = self.ago(300 + digest[3] * 420, digest[5])
        user_id = self._user_ids.guid(g % self.users_generated)
        if r % IOS_EVERY == IOS_EVERY // 5:
            # Now and then the same user's iPhone (never in Defender: the sandbox's machines are Android).
            return _ios_registration(self._reg_ids.guid(r), user_id, IOS_BUNDLES[package],
                                     self._ios_aad_ids.guid(r), created, synced)
        if r % LOB_EVERY == LOB_EVERY // 5:
            package = LOB_APP   # a line-of-business app: no Microsoft app table names it
        return self._registration_dict(self._reg_ids.guid(r), user_id, package, meta, aad, created, synced)

    def registration_owner(self, index: int) -> int:
        cast = len(self.cast_registrations)
        if index < cast:
            return self.cast_registrations[index].user
        g = (index - cast) % self.devices_generated
        return CURATED_USERS + g % self.users_generated

    def find_registration(self, ref: str) -> int | None:
        ref = ref.strip().lower()
        found = self._reg_lookup.get(ref)
        if found is not None:
            return found
        r = self._reg_ids.index_of_guid(ref)
        if r is None or r >= self.registrations_generated:
            return None
        return len(self.cast_registrations) + r

    def registrations_of(self, user: int) -> list[int]:
        found = list(self._user_regs.get(user, []))
        if user >= CURATED_USERS and self.devices_generated:
            gu = user - CURATED_USERS
            cast = len(self.cast_registrations)
            for g in range(gu, self.devices_generated, self.users_generated):
                found.extend(cast + r for r in range(g, self.registrations_generated, self.devices_generated))
        return sorted(found)

    def cast_device_raw(self, key: str) -> int | None:
        return self._cast_by_key.get(key)
