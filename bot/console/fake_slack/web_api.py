"""The Web API methods the bot calls, answered from and into the recorded workspace.

auth.test, chat.*, conversations.open, views.*, users.*, usergroups.*, the two-step file upload
(files.getUploadURLExternal, the upload itself, files.completeUploadExternal) and
apps.connections.open. Each method takes the call's arguments and returns the rest of Slack's
`{"ok": true, ...}` answer, or raises ApiError; the HTTP server (server.py) checks the token,
applies rate limits and injected failures, and records the call.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from bot.console.fake_slack.model import (
    BOT_ID,
    BOT_NAME,
    BOT_USER_ID,
    TEAM_DOMAIN,
    TEAM_ID,
    ApiError,
    EventKind,
    FakeMessage,
    LimitError,
    RecordedCall,
    truthy,
)
from bot.console.fake_slack.recording import Recording
from bot.slack_limits import view_problems

if TYPE_CHECKING:
    from bot.console.socket_mode import SocketModeServer


class WebApi(Recording):
    """Slack's Web API methods over the workspace (all called with the lock held)."""

    _socket_mode: SocketModeServer | None
    """FakeSlack's Socket Mode server once `socket_mode()` started it: apps.connections.open hands out its URLs."""

    def _methods(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        return {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.update": self._chat_update,
            "chat.delete": self._chat_delete,
            "chat.getPermalink": self._chat_get_permalink,
            "conversations.open": self._conversations_open,
            "views.open": self._views_open,
            "views.update": self._views_update,
            "views.push": self._views_push,
            "views.publish": self._views_publish,
            "users.info": self._users_info,
            "users.list": self._users_list,
            "users.lookupByEmail": self._users_lookup_by_email,
            "usergroups.list": self._usergroups_list,
            "usergroups.users.list": self._usergroups_users_list,
            "files.getUploadURLExternal": self._files_get_upload_url,
            "files.completeUploadExternal": self._files_complete_upload,
            "apps.connections.open": self._apps_connections_open,
        }

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": f"https://{TEAM_DOMAIN}.slack.example/",
            "team": "Console",
            "user": BOT_NAME,
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _chat_post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._resolve_channel(args.get("channel"))
        message = self._new_message(channel, args)
        kind: EventKind = "dm" if channel.startswith("D") else "post"
        self._emit_message(kind, message)
        return {"channel": channel, "ts": message.ts, "message": message.to_api()}

    def _chat_post_ephemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._resolve_channel(args.get("channel"))
        user = str(args.get("user") or "")
        owner = self.dm_owner(channel)
        if user not in self._users or (owner is not None and owner != user):
            raise ApiError("user_not_in_channel")
        message = self._new_message(channel, args, ephemeral_to=user)
        self._emit_message("ephemeral", message)
        return {"message_ts": message.ts}

    def _chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        # Ephemeral messages live only in one client: chat.update can't find them (respond() can).
        current = self._existing_message(args, allow_ephemeral=False)
        self._checked_message(args)
        changes: dict[str, Any] = {"edits": current.edits + 1}
        if "text" in args:
            changes["text"] = str(args.get("text") or "")
        if "blocks" in args:
            changes["blocks"] = self._checked_blocks(args.get("blocks"))
        if "attachments" in args:
            changes["attachments"] = list(args.get("attachments") or [])
        updated = replace(current, **changes)
        if not (updated.text or updated.blocks or updated.attachments):
            raise ApiError("no_text")
        self._messages[(updated.channel, updated.ts)] = updated
        self._emit_message("update", updated)
        return {
            "channel": updated.channel,
            "ts": updated.ts,
            "text": updated.text,
            "message": updated.to_api(),
        }

    def _chat_delete(self, args: dict[str, Any]) -> dict[str, Any]:
        current = self._existing_message(args, allow_ephemeral=False)
        self._messages[(current.channel, current.ts)] = replace(current, deleted=True)
        self._emit("delete", channel=current.channel, ts=current.ts, user=current.audience)
        return {"channel": current.channel, "ts": current.ts}

    def _chat_get_permalink(self, args: dict[str, Any]) -> dict[str, Any]:
        current = self._messages.get((str(args.get("channel") or ""), str(args.get("message_ts") or "")))
        if current is None or current.deleted or current.ephemeral:
            raise ApiError("message_not_found")
        permalink = (
            f"https://{TEAM_DOMAIN}.slack.example/archives/{current.channel}/p{current.ts.replace('.', '')}"
        )
        return {"channel": current.channel, "permalink": permalink}

    def _conversations_open(self, args: dict[str, Any]) -> dict[str, Any]:
        if args.get("channel"):
            return {"channel": {"id": self._resolve_channel(args["channel"])}}
        users = _id_list(args.get("users"))
        if not users:
            raise ApiError("users_list_not_supplied")
        unknown = [u for u in users if u not in self._users]
        if unknown:
            raise ApiError("user_not_found")
        if len(users) == 1:
            channel = self.dm_channel(users[0])
            already = channel in self._opened_dms
            self._opened_dms.add(channel)
            opened: dict[str, Any] = {"channel": {"id": channel}}
            if already:
                opened.update({"no_op": True, "already_open": True})
            return opened
        # A group DM: stable id for the same set of people.
        digest = hashlib.sha256(",".join(sorted(users)).encode()).hexdigest()[:8].upper()
        channel = f"G{digest}"
        self._channels.setdefault(channel, "mpdm-" + "--".join(self._users[u].name for u in sorted(users)))
        return {"channel": {"id": channel}}

    def _views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        user = self._exchange_trigger(args.get("trigger_id"))
        view = self._view_arg(args, expected_type="modal")
        self.clear_modals(user)
        return {"view": self._push_modal(user, view, kind="view_open")}

    def _views_push(self, args: dict[str, Any]) -> dict[str, Any]:
        user = self._exchange_trigger(args.get("trigger_id"))
        view = self._view_arg(args, expected_type="modal")
        if not self._modal_stacks.get(user):
            raise ApiError(
                "not_found", response_metadata={"messages": ["[ERROR] no open modal to push onto"]}
            )
        if len(self._modal_stacks[user]) >= 3:
            raise ApiError("push_limit_reached")
        return {"view": self._push_modal(user, view)}

    def _views_update(self, args: dict[str, Any]) -> dict[str, Any]:
        view_id = args.get("view_id")
        if not view_id and args.get("external_id"):
            view_id = next(
                (k for k, v in self._views.items() if v.view["external_id"] == args["external_id"]), None
            )
        if not view_id:
            raise ApiError("not_found") if args.get("external_id") else ApiError("invalid_arguments")
        stored = self._open_view(str(view_id))
        view = self._view_arg(args, expected_type=stored.view["type"])
        kind: EventKind = "home" if stored.view["type"] == "home" else "view_update"
        return {"view": self._update_view(stored, view, hash_=args.get("hash"), kind=kind)}

    def _views_publish(self, args: dict[str, Any]) -> dict[str, Any]:
        user = str(args.get("user_id") or "")
        if user not in self._users:
            raise ApiError("user_not_found")
        view = self._view_arg(args, expected_type="home")
        home_id = self._homes.get(user)
        if home_id is not None:
            full = self._update_view(self._views[home_id], view, hash_=args.get("hash"), kind="home")
        else:
            full = self._store_view(user, view, previous=None)
            self._homes[user] = full["id"]
            self._emit("home", user=user, view=copy.deepcopy(full))
        return {"view": full}

    def _users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user = self._users.get(str(args.get("user") or ""))
        if user is None:
            raise ApiError("user_not_found")
        return {"user": user.to_api()}

    def _users_list(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "members": [u.to_api() for u in self._users.values()],
            "response_metadata": {"next_cursor": ""},
        }

    def _users_lookup_by_email(self, args: dict[str, Any]) -> dict[str, Any]:
        email = str(args.get("email") or "").strip().lower()
        for user in self._users.values():
            if user.email and user.email.lower() == email:
                return {"user": user.to_api()}
        raise ApiError("users_not_found")

    def _usergroups_list(self, args: dict[str, Any]) -> dict[str, Any]:
        include = truthy(args.get("include_users"))
        return {"usergroups": [g.to_api(include_users=include) for g in self._usergroups.values()]}

    def _usergroups_users_list(self, args: dict[str, Any]) -> dict[str, Any]:
        group = self._usergroups.get(str(args.get("usergroup") or ""))
        if group is None:
            raise ApiError("no_such_subteam")
        return {"users": list(group.users)}

    def _files_get_upload_url(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("filename") or not str(args.get("length") or "").isdigit():
            raise ApiError("invalid_arguments")
        file_id = f"F{self._next():08d}"
        self._uploads[file_id] = {
            "filename": str(args["filename"]),
            "length": int(args["length"]),
            "data": None,
        }
        return {"upload_url": f"{self.base_url}/upload/v1/{file_id}", "file_id": file_id}

    def _upload(self, file_id: str, raw: bytes) -> tuple[int, dict[str, str], bytes]:
        """A POST to the URL files.getUploadURLExternal handed out: the file's bytes (not a Web API method)."""
        with self._lock:
            upload = self._uploads.get(file_id)
            if upload is None:
                status, body = 404, "not_found"
            else:
                upload["data"] = raw
                status, body = 200, f"OK - {len(raw)}"
            self._calls.append(
                RecordedCall("upload", {"file_id": file_id, "length": len(raw)}, self._clock(), status)
            )
        return status, {"Content-Type": "text/plain"}, body.encode()

    def _files_complete_upload(self, args: dict[str, Any]) -> dict[str, Any]:
        files = args.get("files")
        if not isinstance(files, list) or not files:
            raise ApiError("invalid_arguments")
        shared = []
        for item in files:
            upload = self._uploads.get(str(item.get("id")))
            if upload is None or upload["data"] is None:
                raise ApiError("file_not_found")
            shared.append(
                {
                    "id": item["id"],
                    "name": upload["filename"],
                    "title": item.get("title") or upload["filename"],
                    "size": len(upload["data"]),
                    "user": BOT_USER_ID,
                }
            )
        channel_arg = args.get("channel_id") or next(iter(_id_list(args.get("channels"))), None)
        if channel_arg:
            channel = self._resolve_channel(channel_arg)
            comment = str(args.get("initial_comment") or "")
            message = FakeMessage(
                channel,
                self._next_ts(),
                comment,
                files=shared,
                thread_ts=args.get("thread_ts"),
                audience=self.dm_owner(channel),
            )
            self._messages[(channel, message.ts)] = message
            for item in shared:
                self._emit(
                    "file",
                    channel=channel,
                    ts=message.ts,
                    text=comment,
                    file=dict(item),
                    user=message.audience,
                )
        return {"files": shared}

    def _apps_connections_open(self, args: dict[str, Any]) -> dict[str, Any]:
        server = self._socket_mode
        if server is None:
            raise ApiError(
                "not_allowed_token_type",
                response_metadata={"messages": [
                    "[ERROR] this FakeSlack has no Socket Mode: start it with socket_mode() first"
                ]},
            )
        if server.disabled:  # after link_disabled: Socket Mode is off for the app
            raise ApiError("invalid_auth")
        return {"url": server.new_url()}

    # --- helpers (lock held) --------------------------------------------------------------------

    def _resolve_channel(self, channel: Any) -> str:
        """A channel id as chat.postMessage accepts it: C…/G… as given, U… becomes that user's DM."""
        channel = str(channel or "")
        if channel.startswith("U") and channel in self._users:
            return self.dm_channel(channel)
        if channel.startswith("D") and self.dm_owner(channel):
            return channel
        if channel[:1] in ("C", "G") and len(channel) > 2 and channel.isalnum():
            self._channels.setdefault(channel, channel)
            return channel
        raise ApiError("channel_not_found")

    def _new_message(
        self, channel: str, args: Mapping[str, Any], *, ephemeral_to: str | None = None
    ) -> FakeMessage:
        text = str(args.get("text") or "")
        if not (text or args.get("blocks") or args.get("attachments")):
            raise ApiError("no_text")
        self._checked_message(args)
        message = FakeMessage(
            channel,
            self._next_ts(),
            text,
            self._checked_blocks(args.get("blocks")),
            list(args.get("attachments") or []),
            thread_ts=args.get("thread_ts") or None,
            audience=ephemeral_to or self.dm_owner(channel),
            ephemeral=ephemeral_to is not None,
        )
        self._messages[(channel, message.ts)] = message
        return message

    def _existing_message(self, args: Mapping[str, Any], *, allow_ephemeral: bool = True) -> FakeMessage:
        channel = str(args.get("channel") or "")
        if not (channel.startswith(("C", "G")) or self.dm_owner(channel)):
            raise ApiError("channel_not_found")
        message = self._messages.get((channel, str(args.get("ts") or "")))
        if message is None or message.deleted or (message.ephemeral and not allow_ephemeral):
            raise ApiError("message_not_found")
        if message.user != BOT_USER_ID:
            raise ApiError("cant_update_message")
        return message

    def _exchange_trigger(self, trigger_id: Any) -> str:
        trigger = self._triggers.get(str(trigger_id or ""))
        if trigger is None:
            raise ApiError("invalid_trigger_id")
        if trigger.used:
            raise ApiError("exchanged_trigger_id")
        if self._clock() - trigger.issued > self._trigger_ttl:
            raise ApiError("expired_trigger_id")
        trigger.used = True
        return trigger.user

    def _view_arg(self, args: Mapping[str, Any], *, expected_type: str) -> dict[str, Any]:
        view = args.get("view")
        if not isinstance(view, dict):
            raise ApiError(
                "invalid_arguments", response_metadata={"messages": ["[ERROR] missing required field: view"]}
            )
        problems = view_problems(view, expected_type=expected_type)
        if problems:
            raise LimitError("invalid_arguments", problems)
        return view


def _id_list(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    return [v.strip() for v in str(value or "").split(",") if v.strip()]
