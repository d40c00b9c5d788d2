"""CURVE key folders and the coordinator's authenticator (docs/protocol.md, "CURVE").

`fedsim keys generate DIR` writes two folders, one per host role, so that no secret ever
needs to leave the host it belongs to:

    DIR/server/server.key            the coordinator's public key
    DIR/server/server.key_secret     ... and its secret: stays on the coordinator host
    DIR/server/authorized/NAME.key   one public key per worker identity allowed to join
    DIR/NAME/worker.key              a worker identity's public key
    DIR/NAME/worker.key_secret       ... and its secret: goes to that worker's host only
    DIR/NAME/server.key              the coordinator's public key (to know it is talking to it)

The first worker identity is named `worker`; `add_worker(DIR, NAME)` makes more. Deleting
`authorized/NAME.key` revokes that identity: the authenticator reads the folder again for
every handshake, so a new connection with that key is refused at once (a connected worker
keeps its session until it reconnects).

`Authenticator` is pyzmq's ZAP handler (RFC 27) with the allow-list read from the folder
and a callback for every refused peer, so the coordinator can log it.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.asyncio import AsyncioAuthenticator
from zmq.utils import z85

SERVER = "server"
AUTHORIZED = "authorized"
FIRST_WORKER = "worker"
WORKER_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*"  # a folder name: no separator, no leading dot


class KeyFolderError(Exception):
    """A key folder that is missing, incomplete or of the wrong role: the message says which
    file and what to run."""


# ---- writing ----------------------------------------------------------------------------------


def _pair(folder: Path, name: str) -> tuple[Path, Path]:
    """A fresh key pair NAME.key / NAME.key_secret in folder (the secret owner-only)."""
    for suffix in (".key", ".key_secret"):
        (folder / f"{name}{suffix}").unlink(missing_ok=True)
    pub, sec = zmq.auth.create_certificates(str(folder), name)
    os.chmod(sec, 0o600)
    return Path(pub), Path(sec)


def _check_name(name: str) -> None:
    if not re.fullmatch(WORKER_NAME, name) or name == SERVER:
        raise KeyFolderError(
            f"worker name {name!r}: use letters, digits, '_', '.', '-' (not starting with "
            f"'.', '_' or '-'), and not {SERVER!r}"
        )


def generate_keys(keys_dir: str | Path, *, force: bool = False) -> list[Path]:
    """DIR/server (coordinator pair + authorized/) and DIR/worker (the first worker identity).

    Refuses a DIR that already holds keys unless `force`, which replaces every key there
    (every worker identity of DIR is then removed: they would not match the new server key).
    """
    d = Path(keys_dir)
    if d.exists() and not d.is_dir():
        raise KeyFolderError(f"{d} is a file, not a folder")
    if d.exists() and any(d.iterdir()):
        if not force:
            raise KeyFolderError(
                f"{d} is not empty: it holds keys already (pass --force to replace them all; "
                f"workers holding the old ones can no longer join)"
            )
        for child in d.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    server = d / SERVER
    (server / AUTHORIZED).mkdir(parents=True, exist_ok=True)
    os.chmod(server, 0o700)
    out = list(_pair(server, SERVER))
    return out + add_worker(d, FIRST_WORKER)


def add_worker(keys_dir: str | Path, name: str, *, force: bool = False) -> list[Path]:
    """One more worker identity: DIR/NAME (its pair + the server's public key) and its public
    key in DIR/server/authorized/NAME.key."""
    _check_name(name)
    d = Path(keys_dir)
    server_pub = d / SERVER / f"{SERVER}.key"
    if not server_pub.exists():
        raise KeyFolderError(f"{server_pub} not found (run `fedsim keys generate {d}` first)")
    folder = d / name
    if folder.exists() and not force:
        raise KeyFolderError(f"{folder} exists (pass --force to give {name!r} new keys)")
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    os.chmod(folder, 0o700)
    pub, sec = _pair(folder, FIRST_WORKER)
    shutil.copyfile(server_pub, folder / f"{SERVER}.key")
    authorized = d / SERVER / AUTHORIZED / f"{name}.key"
    shutil.copyfile(pub, authorized)
    return [pub, sec, folder / f"{SERVER}.key", authorized]


def local_identity(server_folder: str | Path, dest: str | Path) -> Path:
    """A worker folder for the coordinator's own local workers, made fresh for one run (the
    coordinator lets its key in without listing it in `authorized/`)."""
    d = Path(dest)
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    _pair(d, FIRST_WORKER)
    server_pub = Path(server_folder) / f"{SERVER}.key"
    _load(server_pub, secret=False, hint="the server folder lacks its public key")
    shutil.copyfile(server_pub, d / f"{SERVER}.key")
    return d


def handshake_failure(code: int) -> str:
    """Words for a ZMTP handshake failure on the coordinator's side (a monitor event value)."""
    if code == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
        return "handshake failed: the peer does not use CURVE"
    if code == zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
        return (
            "CURVE handshake failed: the peer does not hold this coordinator's public key "
            "(a worker folder of another `fedsim keys generate`?)"
        )
    return f"handshake failed (ZMTP protocol error {code:#x})"


# ---- reading ----------------------------------------------------------------------------------


def _load(path: Path, *, secret: bool, hint: str) -> tuple[bytes, bytes | None]:
    if not path.is_file():
        raise KeyFolderError(f"{path} not found ({hint})")
    try:
        public, sec = zmq.auth.load_certificate(str(path))
    except (ValueError, OSError) as e:
        raise KeyFolderError(f"{path}: not a CURVE key file ({e})") from None
    if secret and sec is None:
        raise KeyFolderError(f"{path}: holds no secret key")
    return public, sec


def server_keys(folder: str | Path) -> tuple[bytes, bytes]:
    """(public, secret) of the coordinator from DIR/server."""
    f = Path(folder)
    if (f / SERVER / f"{SERVER}.key_secret").exists():
        raise KeyFolderError(f"{f} holds the key folders: point runtime.curve_keys at {f / SERVER}")
    if (f / f"{FIRST_WORKER}.key_secret").exists():
        raise KeyFolderError(
            f"{f} is a worker's folder; the coordinator needs DIR/{SERVER} of the same "
            "`fedsim keys generate DIR`"
        )
    pub, sec = _load(
        f / f"{SERVER}.key_secret",
        secret=True,
        hint=f"runtime.curve_keys names the server folder of `fedsim keys generate DIR`: DIR/{SERVER}",
    )
    if not (f / AUTHORIZED).is_dir():
        raise KeyFolderError(
            f"{f / AUTHORIZED} not found: a key folder of an older fedsim? run "
            "`fedsim keys generate NEWDIR` and give each worker host only NEWDIR/worker"
        )
    return pub, sec  # type: ignore[return-value]


def worker_keys(folder: str | Path) -> tuple[bytes, bytes, bytes]:
    """(public, secret, server public) of a worker identity from DIR/NAME."""
    f = Path(folder)
    if (f / FIRST_WORKER / f"{FIRST_WORKER}.key_secret").exists():
        raise KeyFolderError(f"{f} holds the key folders: give the worker {f / FIRST_WORKER}")
    if (f / f"{SERVER}.key_secret").exists() and (f / AUTHORIZED).is_dir():
        raise KeyFolderError(
            f"{f} is the coordinator's folder; a worker needs its own (DIR/{FIRST_WORKER})"
        )
    hint = "--keys names a worker folder of `fedsim keys generate DIR`: DIR/worker"
    pub, sec = _load(f / f"{FIRST_WORKER}.key_secret", secret=True, hint=hint)
    server_pub, _ = _load(f / f"{SERVER}.key", secret=False, hint=hint)
    return pub, sec, server_pub  # type: ignore[return-value]


def authorized_keys(server_folder: str | Path) -> set[bytes]:
    """The z85 public keys in DIR/server/authorized, read now."""
    folder = Path(server_folder) / AUTHORIZED
    try:
        return set(zmq.auth.load_certificates(str(folder)))
    except (OSError, ValueError):
        return set()


# ---- sockets ------------------------------------------------------------------------------------


def make_server(sock: zmq.Socket, folder: str | Path) -> None:
    pub, sec = server_keys(folder)
    sock.curve_server = True
    sock.curve_publickey = pub
    sock.curve_secretkey = sec


def make_client(sock: zmq.Socket, folder: str | Path) -> bytes:
    """Present a worker identity and expect the coordinator's key; returns our public key."""
    pub, sec, server_pub = worker_keys(folder)
    sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = pub, sec, server_pub
    return pub


class Authenticator(AsyncioAuthenticator):
    """ZAP on the coordinator's context: a CURVE client is let in only if its public key is in
    `authorized/` now, or one of `extra` (the coordinator's own local workers). Each refused
    peer is reported to `on_refused(address=..., key=..., reason=...)`, at most once a minute
    for the same key and address (a refused peer retries every few hundred milliseconds)."""

    REPEAT_S = 60.0

    def __init__(
        self,
        ctx: zmq.Context,
        folder: str | Path,
        on_refused: Callable[..., None],
        extra: set[bytes] = frozenset(),  # type: ignore[assignment]
    ):
        super().__init__(ctx)
        self.folder = Path(folder)
        self.on_refused = on_refused
        self.extra = set(extra)
        self._address = ""
        self._reported: dict[tuple[str, str], tuple[float, int]] = {}

    def start(self) -> None:
        super().start()
        self.configure_curve_callback(domain="*", credentials_provider=self)

    def callback(self, domain: str, key: bytes) -> bool:
        """pyzmq's credentials provider hook: key is z85."""
        return key in self.extra or key in authorized_keys(self.folder)

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        self._address = msg[3].decode("utf-8", "replace") if len(msg) > 3 else ""
        self._key = z85.encode(msg[6]).decode() if len(msg) > 6 and len(msg[6]) == 32 else ""
        await super().handle_zap_message(msg)

    def _send_zap_reply(self, request_id, status_code, status_text, user_id="anonymous"):
        super()._send_zap_reply(request_id, status_code, status_text, user_id)
        if status_code != b"200":
            reason = status_text.decode("utf-8", "replace")
            self.report(self._address, self._key, f"CURVE: {reason.lower()}")

    def report(self, address: str, key: str, reason: str) -> None:
        now = time.monotonic()
        last, count = self._reported.get((address, key), (-self.REPEAT_S, 0))
        if now - last < self.REPEAT_S:
            self._reported[(address, key)] = (last, count + 1)
            return
        self._reported[(address, key)] = (now, 0)
        extra = {"repeats": count} if count else {}
        self.on_refused(address=address, key=key, reason=reason, **extra)
