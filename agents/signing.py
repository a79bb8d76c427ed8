"""Which agent resume checkpoints darla may unpickle: those this user's darla wrote.

An SB3 zip and darla's resume state (env states, RNGs, replay buffer) are pickles, and
unpickling runs whatever code the file names. The manifest's sha256 does not help: anyone can
recompute it. So :func:`sign_zip` appends an HMAC-SHA256 over the zip's members (names and
contents) keyed by a per-user secret that lives outside every run directory, and
:func:`verify_zip` recomputes it before anything is unpickled. A checkpoint copied from
someone else, crafted, or written before tags existed does not verify and is never unpickled.

The key: ``$DARLA_KEY_FILE`` if set, else ``$XDG_CONFIG_HOME/darla/checkpoint.key`` (default
``~/.config/darla/checkpoint.key``): 32 random bytes, created mode 0600 on the first save. A
key that other users can read or write is refused (they could forge tags with it).
Policies (``model.zip``) are not signed: darla reads them as weights only
(:func:`agents.train.load_agent`), so they need no trust.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
import zipfile
from pathlib import Path

from vision.checkpoint import CheckpointError

KEY_ENV = "DARLA_KEY_FILE"
#: The zip member holding the hex tag; every other member is covered by it.
TAG_MEMBER = "darla_hmac"
_DOMAIN = b"darla-agent-checkpoint/1\0"


def key_path() -> Path:
    if os.environ.get(KEY_ENV):
        return Path(os.environ[KEY_ENV]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "darla" / "checkpoint.key"


def _key(create: bool) -> bytes | None:
    path = key_path()
    if not path.exists():
        if not create:
            return None
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_bytes(32))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # atomic, and never replaces a key another process made first
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    st = path.stat()
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO) or st.st_uid != os.getuid():
        raise CheckpointError(f"{path}: the key that signs agent checkpoints must be yours and private (chmod 600 {path})")
    key = path.read_bytes()
    if len(key) < 32:
        raise CheckpointError(f"{path}: the key that signs agent checkpoints is {len(key)} bytes, expected 32; delete it")
    return key


def _tag(zf: zipfile.ZipFile, key: bytes) -> str | None:
    """HMAC over every member but the tag (sorted by name); None if names repeat (ambiguous)."""
    names = [i.filename for i in zf.infolist() if i.filename != TAG_MEMBER]
    if len(set(names)) != len(names):
        return None
    mac = hmac.new(key, _DOMAIN, hashlib.sha256)
    for name in sorted(names):
        info = zf.getinfo(name)
        encoded = name.encode("utf-8")
        mac.update(len(encoded).to_bytes(8, "little") + encoded + info.file_size.to_bytes(8, "little"))
        with zf.open(info) as f:  # reading checks each member's CRC-32 too
            for chunk in iter(lambda: f.read(1 << 20), b""):
                mac.update(chunk)
    return mac.hexdigest()


def sign_zip(path: Path) -> None:
    """Append the tag member to a zip this process has just written (before it is renamed into place)."""
    key = _key(create=True)
    with zipfile.ZipFile(path) as zf:
        tag = _tag(zf, key)
    if tag is None:
        raise ValueError(f"{path}: repeated member names; cannot sign it")
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr(TAG_MEMBER, tag)


def verify_zip(path: Path) -> bool:
    """True only if ``path`` carries a tag made with this user's key over exactly its members.

    Raises :class:`zipfile.BadZipFile` for a zip that cannot be read (corruption, not forgery).
    """
    key = _key(create=False)
    with zipfile.ZipFile(path) as zf:
        if [i.filename for i in zf.infolist()].count(TAG_MEMBER) != 1 or key is None:
            return False
        recorded = zf.read(TAG_MEMBER)[:128].decode("ascii", "replace")
        tag = _tag(zf, key)
    return tag is not None and hmac.compare_digest(tag, recorded)
