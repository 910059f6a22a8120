"""CURVE keys for a backend exposed beyond loopback (ZeroMQ's ``zmq.auth``).

``steadytalk keys DIR --client NAME`` makes, in DIR:

- ``server.key`` (public: give it to clients) and ``server.key_secret`` (stays on the server);
- ``authorized/NAME.key``: the public keys the server lets in (delete one to revoke it);
- ``clients/NAME.key_secret``: a client's key pair, to copy to that client only.

``steadytalk serve --bind tcp://0.0.0.0:5757 --keys DIR`` then refuses every client whose
public key is not in ``authorized/`` (the CURVE handshake fails; the client hears nothing).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from ..errors import SteadyTalkError

_CLIENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


class KeysError(SteadyTalkError):
    code = "keys"


def generate(folder: Path, clients: list[str]) -> dict[str, Path]:
    """Create the server's key pair (once) and one key pair per new client name."""
    import zmq.auth

    folder = Path(folder)
    for name in clients:
        if not _CLIENT_NAME.fullmatch(name):
            raise KeysError(f"{name!r} is not a usable client name.", "Use letters, digits, '-' and '_'.")
    for sub in ("authorized", "clients"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    made: dict[str, Path] = {}
    if not (folder / "server.key_secret").exists():
        zmq.auth.create_certificates(str(folder), "server")
        os.chmod(folder / "server.key_secret", 0o600)
    made["server"] = folder / "server.key"
    for name in clients:
        secret = folder / "clients" / f"{name}.key_secret"
        if not secret.exists():
            zmq.auth.create_certificates(str(folder / "clients"), name)
            os.chmod(secret, 0o600)
        shutil.copyfile(folder / "clients" / f"{name}.key", folder / "authorized" / f"{name}.key")
        made[name] = secret
    return made


def server_keys(folder: Path) -> tuple[bytes, bytes, Path]:
    """(public, secret, authorized folder) of a keys folder, with a clear error when incomplete."""
    import zmq.auth

    folder = Path(folder)
    secret_file, authorized = folder / "server.key_secret", folder / "authorized"
    if not secret_file.is_file() or not authorized.is_dir():
        raise KeysError(
            f"{folder} is not a Steady Talk keys folder (server.key_secret or authorized/ is missing).",
            f"Create it with: steadytalk keys {folder} --client NAME",
        )
    public, secret = zmq.auth.load_certificate(str(secret_file))
    if not any(authorized.glob("*.key")):
        raise KeysError(f"{authorized} holds no client keys, so no client could connect.", "Add one with --client.")
    return public, secret, authorized
