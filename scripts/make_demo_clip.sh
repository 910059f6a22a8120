#!/usr/bin/env bash
# Regenerates the bundled demo clip (the project's own speech, made with espeak-ng, so no
# third-party recording ships in the repository). Needs: apt-get install espeak-ng sox
set -euo pipefail
cd "$(dirname "$0")/.."
out=backend/data
text="Peter built a marvellous blue boat, and five brave whales followed the bubbles through the waves."
printf '%s\n' "$text" > "$out/demo_speech.txt"
tmp=$(mktemp --suffix=.wav)
espeak-ng -v en-us -s 150 -w "$tmp" "$text"
# 16 kHz mono 16-bit with half a second of silence on each side (rest pose at both ends).
sox "$tmp" -r 16000 -c 1 -b 16 "$out/demo_speech.wav" pad 0.5 0.5
rm -f "$tmp"
soxi -D "$out/demo_speech.wav"
