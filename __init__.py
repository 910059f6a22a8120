"""Steady Talk as a Blender extension: the repository root is the extension's package.

Blender imports this file (``blender_manifest.toml`` sits beside it); everything else lives in
``addon/`` (Blender side) and ``shared/`` (numpy-only code shared with the backend). Outside
Blender nothing imports this package: the backend and tests use ``steadytalk_shared`` and
``steadytalk_backend`` (see pyproject.toml).
"""


def register() -> None:
    from .addon import register as register_addon

    register_addon()


def unregister() -> None:
    from .addon import unregister as unregister_addon

    unregister_addon()
