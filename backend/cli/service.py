"""``steadytalk serve`` and ``keys``: the ZeroMQ backend and the CURVE keys that expose it safely."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import __version__
from ..errors import SteadyTalkError
from .common import add_device_option


def register(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser("serve", help="run the ZeroMQ backend (loopback by default)")
    serve.add_argument("--bind", default="tcp://127.0.0.1:5757", help="ZeroMQ endpoint to bind (loopback by default)")
    serve.add_argument("--workers", type=int, default=2, help="jobs processed at once")
    serve.add_argument(
        "--avatars",
        type=Path,
        action="append",
        default=[],
        help="a folder of trained avatars (or one avatar folder) that clients may render with; repeatable",
    )
    serve.add_argument("--jobs-dir", type=Path, help="the only folder the server writes to (default: temporary)")
    serve.add_argument("--keys", type=Path, help="CURVE keys folder (steadytalk keys); required off loopback")
    add_device_option(serve, " for the renderer")
    serve.add_argument("--max-frames", type=int, default=64, help="most frames in one render request")
    serve.add_argument(
        "--asr-model",
        help="faster-whisper model folder for word recognition (default: $STEADYTALK_ASR_MODEL, else bundled tiny.en)",
    )
    serve.add_argument("--job-memory-mb", type=int, default=2500, help="a lip-sync job past this size is stopped")
    serve.set_defaults(handler=cmd_serve)

    keys = sub.add_parser("keys", help="CURVE keys so the backend can listen beyond this computer")
    keys.add_argument("folder", type=Path, help="keys folder (created; the server key is made once)")
    keys.add_argument("--client", action="append", default=[], help="make a key pair for this client; repeatable")
    keys.set_defaults(handler=cmd_keys)


def cmd_serve(args: argparse.Namespace) -> int:
    from ..lipsync.recognizer import resolve_model
    from ..service.lipsync_worker import WorkerLimits
    from ..service.server import LipsyncServer, ServerConfig

    resolve_model(args.asr_model)  # a bad model setting stops here, not at the first request
    for folder in args.avatars:
        if not folder.is_dir():
            raise SteadyTalkError(f"--avatars {folder} is not a folder.", "Give the folder that holds your avatars.")
    config = ServerConfig(
        bind=args.bind,
        workers=args.workers,
        avatars=tuple(args.avatars),
        jobs_dir=args.jobs_dir,
        keys=args.keys,
        device=args.device,
        max_frames_per_request=args.max_frames,
        asr_model=args.asr_model,
        lipsync_limits=WorkerLimits(memory_mb=args.job_memory_mb),
        preload=True,
    )
    server = LipsyncServer(config)
    server.install_signal_handlers()
    secured = " with CURVE authentication" if args.keys else ""
    print(f"steadytalk {__version__} serving on {server.endpoint}{secured} (Ctrl+C to stop)", flush=True)
    avatars = server.avatars.names()
    print(f"avatars: {', '.join(avatars) if avatars else 'none (add --avatars FOLDER to render)'}", flush=True)
    server.serve_forever()
    print("stopped")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    from ..service.keys import generate

    made = generate(args.folder, args.client)
    print(f"server public key: {made.pop('server')} (give it to clients; server.key_secret stays here)")
    for name, path in made.items():
        print(f"client {name}: {path} (copy it to that client only; authorized/{name}.key lets it in)")
    print(f"serve with: steadytalk serve --bind tcp://0.0.0.0:5757 --keys {args.folder}")
    return 0
