"""The trained avatars a server renders with (named by clients, found only inside its
``--avatars`` folders, loaded once on first use) and its render sessions: ``render_open`` keeps a
pass's audio features, ``render_frames`` renders runs of client-drawn shape passes against them,
``render_audio`` renders a whole mp4 in the jobs folder."""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from steadytalk_shared.protocol import ErrorCode, Message, ProtocolError

from ..lipsync.engine import LipsyncEngine
from .config import JobHost, ServerConfig
from .requests import PLAIN_NAME, confined, render_frames_params


@dataclass
class LoadedAvatar:
    renderer: object  # inference.AvatarRenderer (torch imported lazily: lip-sync needs none)
    reference: object  # pipeline.Reference
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class RenderSession:
    avatar: str
    features: np.ndarray  # (N, D) S2A features of the pass's audio at 100 Hz, normalized
    fps: float
    frames: int
    used: float = field(default_factory=time.monotonic)


class AvatarHost(JobHost):
    """Avatars and render sessions of one server. ``engine`` gives the calling worker thread's
    lip-sync engine; ``cancelled(request)`` tells a job whether to stop."""

    def __init__(
        self,
        config: ServerConfig,
        jobs_dir: Path,
        engine: Callable[[], LipsyncEngine],
        cancelled: Callable[[Message], Callable[[], bool]],
    ) -> None:
        super().__init__(config, jobs_dir, engine, cancelled)
        self._lock = threading.Lock()
        self._avatars: dict[str, LoadedAvatar] = {}
        self._avatar_loading = threading.Lock()
        self._sessions: OrderedDict[str, RenderSession] = OrderedDict()

    def session_count(self) -> int:
        with self._lock:
            return len(self._sessions)

    def names(self) -> list[str]:
        names = []
        for root in self.config.avatars:
            root = Path(root)
            candidates = (
                [root] if (root / "manifest.json").exists() else sorted(p for p in root.glob("*") if p.is_dir())
            )
            names += [p.name for p in candidates if (p / "model" / "renderer.safetensors").exists()]
        return sorted(set(names))

    def resolve_style(self, options):
        """``options`` (``FaceOptions``) with an ``avatar:NAME`` style pointing at that avatar's
        ``style.json`` (any prepared avatar of the server's folders, trained or not)."""
        import dataclasses

        style = options.style
        if not style or not style.startswith("avatar:"):
            return options
        name = style.removeprefix("avatar:")
        for root in map(Path, self.config.avatars):
            for path in (root, root / name):
                if path.name == name and (path / "style.json").is_file():
                    return dataclasses.replace(options, style="avatar:" + str((path / "style.json").resolve()))
        roots = list(map(Path, self.config.avatars))
        known = sorted({p.name for r in roots for p in [r, *r.glob("*")] if (p / "style.json").is_file()})
        raise ProtocolError(
            ErrorCode.UNKNOWN_AVATAR,
            f"the backend has no avatar with a learned style named {name!r} (it has: {', '.join(known) or 'none'}). "
            "Start it with 'steadytalk serve --avatars FOLDER' where FOLDER holds the prepared avatar.",
        )

    def path(self, name: str) -> Path:
        if PLAIN_NAME.fullmatch(name) and ".." not in name:
            for root in map(Path, self.config.avatars):
                for path in (root, root / name):
                    if path.name == name and (path / "model" / "renderer.safetensors").exists():
                        return path
        known = ", ".join(self.names()) or "none"
        raise ProtocolError(
            ErrorCode.UNKNOWN_AVATAR,
            f"the backend has no trained avatar named {name!r} (it has: {known}). Start it with "
            "'steadytalk serve --avatars FOLDER' where FOLDER holds the avatar, and train it first.",
        )

    def load(self, name: str, progress) -> LoadedAvatar:
        path = self.path(name)
        with self._avatar_loading:  # one load at a time; a second client waits and shares it
            if name not in self._avatars:
                from ..render.inference import AvatarRenderer
                from ..render.pipeline import Reference

                progress(0.0, f"loading avatar {name}")
                renderer = AvatarRenderer(path, device=self.config.device)
                self._avatars[name] = LoadedAvatar(renderer, Reference(path, renderer.config.size))
            return self._avatars[name]

    def open_session(self, request: Message, params: dict, progress) -> Message:
        from ..render.pipeline import audio_features

        avatar = self.load(params["avatar"], progress)
        if params["frames"] > self.config.max_frames_per_session:
            raise ProtocolError(
                ErrorCode.TOO_MANY_FRAMES,
                f"{params['frames']} frames is more than this backend's limit of "
                f"{self.config.max_frames_per_session} per pass; render the range in parts.",
            )
        progress(0.2, "audio features")
        if params["audio"] is None:
            features = np.zeros((1, avatar.renderer.config.audio_features), dtype=np.float32)
        else:
            from ..lipsync.audio import load_audio

            samples = load_audio(params["audio"], self.config.audio)
            result = self._engine().run(params["audio"], fps=params["fps"], cancelled=self._cancelled(request))
            features = audio_features(samples, result.phones)
        session = uuid.uuid4().hex
        with self._lock:
            self._sessions[session] = RenderSession(
                params["avatar"], avatar.renderer.normalizer(features), params["fps"], params["frames"]
            )
            while len(self._sessions) > self.config.max_sessions:
                self._sessions.popitem(last=False)  # the least recently used
        renderer, reference = avatar.renderer, avatar.reference
        body = {
            "session": session,
            "size": renderer.config.size,
            "context": renderer.context,
            "loop": reference.loop,
            "width": reference.width,
            "height": reference.height,
            "fps": renderer.fps,
            "max_frames_per_request": self.config.max_frames_per_request,
        }
        return request.reply(body=body)

    def frames_session(self, request: Message) -> dict:
        """The request's checked fields, its session looked up (and marked as used)."""
        params = render_frames_params(request, self.config.max_frames_per_request)
        with self._lock:
            session = self._sessions.get(params["session"])
            if session is not None:
                self._sessions.move_to_end(params["session"])
                session.used = time.monotonic()
        if session is None:
            raise ProtocolError(ErrorCode.UNKNOWN_SESSION, "unknown or expired render session; open a new one")
        if params["first"] + params["count"] > session.frames:
            raise ProtocolError(ErrorCode.BAD_REQUEST, f"frames beyond the session's {session.frames}")
        params["session"] = session
        return params

    def render_frames(self, request: Message, params: dict, progress) -> Message:
        from ..render.data import audio_windows

        session: RenderSession = params["session"]
        avatar = self._avatars[session.avatar]
        renderer, reference = avatar.renderer, avatar.reference
        size = renderer.config.size
        shapes, coefficients = params["shapes"], params["coefficients"]
        if shapes.shape[1:] != (size, size, 3):
            raise ProtocolError(ErrorCode.BAD_REQUEST, f"shape passes must be {size}x{size} RGB for this avatar")
        n = len(shapes)
        references = np.asarray(params["references"], dtype=np.int64)
        if references.min() < 0 or references.max() >= reference.loop:
            raise ProtocolError(ErrorCode.BAD_REQUEST, f"reference frames must be in 0..{reference.loop - 1}")
        start = params["first"] - params["context_before"]
        times = np.arange(start, start + n) / session.fps
        audio = audio_windows(session.features, times, renderer.config.audio_context)
        inputs = [reference.frame_input(int(references[k]), coefficients[k], audio[k], shapes[k]) for k in range(n)]
        with avatar.lock:  # one pass through the network at a time per avatar: bounded memory
            crops = renderer.render_span(inputs, params["context_before"], params["count"])
        frames = reference.paste(
            crops, references[params["context_before"] : params["context_before"] + params["count"]]
        )
        return request.reply(body={"first": params["first"], "count": params["count"]}, buffers=[frames])

    def render_audio(self, request: Message, params: dict, progress) -> Message:
        from ..render.pipeline import RenderConfig, render_audio

        avatar = self.load(params["avatar"], progress)
        job = confined(self.jobs_dir, f"{request.id}.mp4")
        audio = confined(self.jobs_dir, f"{request.id}.audio")
        try:
            audio.write_bytes(params["audio"])
            with avatar.lock:
                summary = render_audio(
                    avatar.renderer,
                    avatar.reference,
                    audio,
                    job,
                    params["transcript"],
                    RenderConfig(smoothing=params["smoothing"]),
                    progress,
                    self._cancelled(request),
                    max_frames=self.config.max_frames_per_session,
                )
            data = job.read_bytes()
        finally:
            job.unlink(missing_ok=True)
            audio.unlink(missing_ok=True)
        summary.pop("out")
        return request.reply(body=summary, buffers=[data])
