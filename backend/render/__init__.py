"""The photoreal renderer: augmented erosion, the StableFace network, its training data, training
and presets, windowed inference, the person's audio-to-expression model and the headless render
pipeline (lip-sync -> shape pass -> renderer -> mp4).

May import ``avatar``, ``face`` and ``lipsync``; never ``service``, ``evaluation`` or ``cli``.
"""
