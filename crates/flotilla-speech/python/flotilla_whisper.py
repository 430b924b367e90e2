"""Flotilla's speech-to-text helper: one Whisper model, loaded once, serving JSON lines.

Run by the Rust crate flotilla-speech (which embeds this file and writes it to a cache
directory), one process per model:

    python3 flotilla_whisper.py --model DIR [--device auto|cpu|cuda:N]
                                [--compute-type default] [--language en]
                                [--threads N] [--chunk-s 600]

A 16 kHz mono 16-bit WAV (what the Rust side extracts) is read and transcribed --chunk-s
seconds at a time, so memory stays bounded for hours of audio (ten minutes are 38 MB of
float32 samples); timestamps are shifted by each chunk's start, and the language found in
the first chunk with speech is kept for the rest. Any other file is handed to
faster-whisper whole.

Protocol, one JSON object per line. stdout carries the protocol only: at start the real
stdout is moved to a private descriptor and descriptor 1 is pointed at stderr, so nothing a
library prints (Python or C++) can corrupt it. stderr is for logs only.

    <- {"type": "ready", "model": DIR, "multilingual": bool, "load_s": float}
    <- {"type": "error", "kind": "runtime_missing"|"model_missing"|"model_corrupt"|"device",
        "message": str}                                 (then exit status 2)
    -> {"id": int, "wav": path, "word_timestamps": bool}
    <- {"id": int, "ok": true, "transcript": {...}}
    <- {"id": int, "ok": false, "kind": "bad_audio"|"bad_request"|"inference",
        "message": str}

The model is opened with local_files_only: this process never downloads anything.
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
NO_SPEECH_NOTE = "no speech detected: the audio is silent or holds no voice activity"


def protocol_stream():
    """Moves the real stdout to a private descriptor and sends descriptor 1 to stderr."""
    private = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(private, "w", encoding="utf-8", buffering=1)


def send(out, message):
    out.write(json.dumps(message) + "\n")
    out.flush()


def log(message):
    sys.stderr.write("flotilla_whisper: " + message + "\n")
    sys.stderr.flush()


def parse_args():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compute-type", default="default")
    parser.add_argument("--language", default=None)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: every core)")
    parser.add_argument("--chunk-s", type=int, default=600, help="seconds of audio per pass")
    return parser.parse_args()


def split_device(device):
    if device.startswith("cuda:"):
        return "cuda", int(device.split(":", 1)[1])
    return device, 0


def load_model(args):
    """Returns (model, None) or (None, error message dict)."""
    try:
        from faster_whisper import WhisperModel
    except ImportError as e:
        return None, {"kind": "runtime_missing", "message": "cannot import faster_whisper: %s" % e}
    for name in ("model.bin", "config.json", "tokenizer.json"):
        if not os.path.isfile(os.path.join(args.model, name)):
            return None, {"kind": "model_missing", "message": "%s has no %s" % (args.model, name)}
    device, index = split_device(args.device)
    try:
        model = WhisperModel(args.model, device=device, device_index=index,
                             compute_type=args.compute_type, cpu_threads=args.threads,
                             local_files_only=True)
    except (ValueError, RuntimeError, OSError) as e:
        text = str(e)
        kind = "device" if ("CUDA" in text or "cuda" in text or "device" in text) else "model_corrupt"
        return None, {"kind": kind, "message": text}
    return model, None


def segments_of(segments, word_timestamps, offset=0.0):
    """The segments as JSON, their times shifted by `offset` seconds."""
    out = []
    for s in segments:
        words = []
        if word_timestamps and s.words:
            words = [{"start": round(offset + w.start, 3), "end": round(offset + w.end, 3),
                      "word": w.word, "probability": round(w.probability, 4)} for w in s.words]
        out.append({"start": round(offset + s.start, 3), "end": round(offset + s.end, 3),
                    "text": s.text.strip(), "words": words})
    return out


def transcript_of(segments, language, probability, duration):
    empty = not any(s["text"] for s in segments)
    return {
        "language": language,
        "language_probability": None if probability is None else round(float(probability), 4),
        "duration_s": round(float(duration), 3),
        "segments": segments,
        "empty": empty,
        "note": NO_SPEECH_NOTE if empty else None,
    }


def wav_chunks(path, chunk_s):
    """Yields (start_s, float32 samples) of a 16 kHz mono 16-bit WAV, chunk_s seconds at a
    time; None when the file is not such a WAV."""
    import wave
    import numpy as np
    try:
        w = wave.open(path, "rb")
    except (wave.Error, EOFError):
        return None
    if (w.getnchannels(), w.getsampwidth(), w.getframerate()) != (1, 2, 16000):
        w.close()
        return None

    def chunks():
        with w:
            start = 0
            while True:
                frames = w.readframes(chunk_s * 16000)
                if not frames:
                    return
                samples = np.frombuffer(frames, dtype=np.int16).astype(np.float32) / 32768.0
                yield start / 16000.0, samples
                start += len(samples)
    return chunks()


def transcribe(model, args, wav, words):
    """The transcript of `wav`, a chunk at a time when it is a 16 kHz mono WAV."""
    options = dict(word_timestamps=words, vad_filter=True, beam_size=5)
    chunks = wav_chunks(wav, max(1, args.chunk_s))
    if chunks is None:
        segments, info = model.transcribe(wav, language=args.language, **options)
        return transcript_of(segments_of(segments, words), info.language,
                             info.language_probability, info.duration)
    # The language heard first is kept; until speech is heard, the detector's guess.
    language, guess, probability, duration, out = args.language, None, None, 0.0, []
    for start, samples in chunks:
        segments, info = model.transcribe(samples, language=language, **options)
        found = segments_of(segments, words, offset=start)
        if language is None and any(s["text"] for s in found):
            language, probability = info.language, info.language_probability
        if guess is None:
            guess = info.language
            probability = info.language_probability if probability is None else probability
        out.extend(found)
        duration = start + len(samples) / 16000.0
    return transcript_of(out, language or guess, probability, duration)


def handle(model, args, request):
    wav = request.get("wav")
    if not isinstance(wav, str):
        return {"ok": False, "kind": "bad_request", "message": "`wav` must be a path"}
    if not os.path.isfile(wav):
        return {"ok": False, "kind": "bad_audio", "message": "%s does not exist" % wav}
    words = bool(request.get("word_timestamps", True))
    try:
        return {"ok": True, "transcript": transcribe(model, args, wav, words)}
    except Exception as e:  # PyAV raises its own errors for undecodable input
        kind = "bad_audio" if type(e).__module__.startswith("av") else "inference"
        return {"ok": False, "kind": kind, "message": "%s: %s" % (type(e).__name__, e)}


def serve(model, args, out):
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            request = json.loads(line)
        except json.JSONDecodeError as e:
            send(out, {"id": None, "ok": False, "kind": "bad_request", "message": str(e)})
            continue
        started = time.monotonic()
        answer = handle(model, args, request)
        answer["id"] = request.get("id")
        send(out, answer)
        log("request %s done in %.3fs" % (request.get("id"), time.monotonic() - started))


def main():
    out = protocol_stream()
    args = parse_args()
    started = time.monotonic()
    model, error = load_model(args)
    if error is not None:
        send(out, dict(type="error", **error))
        sys.exit(2)
    send(out, {"type": "ready", "model": args.model, "multilingual": model.model.is_multilingual,
               "load_s": round(time.monotonic() - started, 3)})
    serve(model, args, out)


if __name__ == "__main__":
    main()
